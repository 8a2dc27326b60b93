//! The seed inputs of every target: published test vectors, valid inputs made with the
//! targets' fixed keys, and the TOML examples from `docs/`, written into `corpus/<target>/`.
//! File names are content hashes, as libFuzzer names its own finds.
//!
//! Every target calls [`on_request`] at start-up: with `MOAT_FUZZ_SEEDS=write` in the
//! environment it writes all seeds and exits, so regenerating them needs no separate build
//! (a plain binary could not link the instrumented crates without libFuzzer).

use std::path::PathBuf;

use crate::server::{ISSUER, SERVICES};
use crate::{
    DPOP_METHOD, DPOP_NOW, DPOP_URL, ED25519, HMAC_SECRET, JWE_KEY, NOW, P256, PLAY_BINDING,
    PLAY_PACKAGE, Request, json, play_token, vectors,
};
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::hmac;
use moat_core::b64;
use moat_core::httpsig::{self, Params, SigningKey};
use serde_json::{Value, json};

/// The `fuzz/` directory (the seeds need `../docs` and write `corpus/`).
fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn write(target: &str, seed: impl AsRef<[u8]>) {
    let seed = seed.as_ref();
    let dir = fuzz_dir().join("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    let name: String = digest(&SHA256, seed).as_ref()[..20]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(dir.join(name), seed).expect("write seed");
}

fn text<'v>(v: &'v Value, pointer: &str) -> &'v str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("vector member {pointer}"))
}

/// RFC 9421's test request as the target's request description.
fn rfc9421_request(v: &Value) -> String {
    let message = text(v, "/messages/test-request/unwrapped");
    let mut lines = message.lines();
    let request_line = lines.next().expect("request line");
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().expect("method"), parts.next().expect("target"));
    let mut out = String::new();
    let mut host = "";
    let mut headers = String::new();
    for line in lines.by_ref().take_while(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').expect("header line");
        if name.eq_ignore_ascii_case("host") {
            host = value.trim();
        }
        headers.push_str(&format!(
            "{}: {}\n",
            name.to_ascii_lowercase(),
            value.trim()
        ));
    }
    out.push_str(&format!("{method} https://{host}{target}\n{headers}"));
    out
}

fn httpsig_seeds() {
    let v = json(vectors::RFC9421);
    let request = rfc9421_request(&v);
    for example in v["examples"].as_array().expect("examples") {
        if example["message"] != "test-request" {
            continue;
        }
        write(
            "httpsig_parse",
            format!(
                "{}\n{}\n{request}",
                text(example, "/signature_input_header"),
                text(example, "/signature_header")
            ),
        );
    }
    // Moat's own requests, as its SDK signs them, with each algorithm.
    let body = br#"{"hello": "world"}"#;
    let moat_request = format!(
        "POST https://api.example.com/v1/device/echo?x=1\nhost: api.example.com\n\
         content-type: application/json\ncontent-digest: {}\nauthorization: Bearer abc.def\n",
        moat_core::digest::sha256_field(body)
    );
    let req = Request::parse(&moat_request);
    let hmac_key = hmac::Key::new(hmac::HMAC_SHA256, &HMAC_SECRET);
    let signers = [
        SigningKey::Hmac(&hmac_key),
        SigningKey::Installation(&P256),
        SigningKey::Installation(&ED25519),
    ];
    let coverages: [&[&str]; 2] = [
        &[
            "@method",
            "@authority",
            "@path",
            "@query",
            "content-digest",
            "authorization",
        ],
        &["@method", "@target-uri", "content-digest", "authorization"],
    ];
    for signer in signers {
        for components in coverages {
            let params = Params {
                created: Some(NOW),
                expires: Some(NOW + 60),
                nonce: Some("n0nce-f0r-fuzz".into()),
                keyid: Some("dev_123".into()),
                alg: Some(signer.algorithm().name().into()),
                tag: None,
            };
            let headers = httpsig::sign("sig", components, &params, &req.message(), signer)
                .expect("sign seed");
            write(
                "httpsig_parse",
                format!(
                    "{}\n{}\n{moat_request}",
                    headers.signature_input, headers.signature
                ),
            );
        }
    }
}

fn content_digest_seeds() {
    let body = br#"{"hello": "world"}"#;
    let sha512 = "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:";
    let sha256 = moat_core::digest::sha256_field(body);
    for field in [
        sha512.to_owned(),
        sha256.clone(),
        format!("{sha256}, {sha512}"),
        format!("md5=:AAAA:, {sha256};p=1"),
    ] {
        let mut seed = field.into_bytes();
        seed.push(b'\n');
        seed.extend_from_slice(body);
        write("content_digest", seed);
    }
}

fn dpop_seeds() {
    let v = json(vectors::RFC9449);
    for proof in v["proofs"].as_array().expect("proofs") {
        write("dpop_verify", text(proof, "/dpop_header_value"));
    }
    for key in [&*P256, &*ED25519] {
        write(
            "dpop_verify",
            key.dpop_proof(DPOP_METHOD, DPOP_URL, DPOP_NOW)
                .expect("proof"),
        );
    }
    // The last two are the overflow regressions (see `dpop::tests`).
    for (htu, iat) in [
        (DPOP_URL.to_owned(), DPOP_NOW),
        (format!("{DPOP_URL}?q=1#f"), DPOP_NOW - 59),
        (DPOP_URL.to_owned(), i64::MIN),
        (DPOP_URL.to_owned(), DPOP_NOW.wrapping_add(i64::MIN)),
    ] {
        let claims = json!({"jti": "-BwC3ESc6acc2lTc", "htm": DPOP_METHOD, "htu": htu, "iat": iat});
        write("dpop_verify", claims.to_string());
    }
}

fn integrity_seeds() {
    let services = &*SERVICES;
    let pay = b64::url_encode(digest(&SHA256, b"Bearer abc.def"));
    write(
        "integrity_token",
        services
            .integrity
            .issue(
                "0190f7d2-7c1e-7000-8000-000000000001",
                Some(pay.clone()),
                true,
                NOW,
            )
            .expect("integrity token"),
    );
    let integrity = json!({"iss": ISSUER, "sub": "0190f7d2-7c1e-7000-8000-000000000001", "iat": NOW, "exp": NOW + 300, "jti": "j7Yk2v", "pay": pay});
    write("integrity_token", integrity.to_string());
    let access = json!({"iss": ISSUER, "sub": "0190f7d2-7c1e-7000-8000-000000000002", "iat": NOW, "exp": NOW + 900, "jti": "a9Xq", "cnf": {"moat_device": "0190f7d2-7c1e-7000-8000-000000000001"}});
    write("integrity_token", access.to_string());
}

fn play_integrity_seeds() {
    let verdict = json!({
        "requestDetails": {
            "requestPackageName": PLAY_PACKAGE,
            "requestHash": PLAY_BINDING,
            "timestampMillis": (NOW * 1000).to_string(),
        },
        "appIntegrity": {
            "appRecognitionVerdict": "PLAY_RECOGNIZED",
            "packageName": PLAY_PACKAGE,
            "certificateSha256Digest": ["c2lnbmluZy1jZXJ0"],
            "versionCode": "42",
        },
        "deviceIntegrity": {"deviceRecognitionVerdict": ["MEETS_DEVICE_INTEGRITY"]},
        "accountDetails": {"appLicensingVerdict": "LICENSED"},
    });
    let payload = verdict.to_string();
    write("play_integrity", &payload);
    write("play_integrity", play_token(payload.as_bytes()));
    let classic = payload.replace("requestHash", "nonce");
    write("play_integrity", &classic);
    // The overflow regression (see `play_integrity::tests`): no timestamp.
    let mut untimed = verdict;
    untimed["requestDetails"]
        .as_object_mut()
        .expect("object")
        .remove("timestampMillis");
    write("play_integrity", untimed.to_string());
}

fn jwe_seeds() {
    let v = json(vectors::RFC7516);
    write("jwe_decrypt", text(&v, "/A1/compact_serialization"));
    let jwk = JWE_KEY.public_jwk().expect("public jwk");
    write(
        "jwe_decrypt",
        moat_core::jwe::encrypt(br#"{"hello":"world"}"#, &jwk, Some("k1")).expect("encrypt"),
    );
    write(
        "jwe_decrypt",
        "{\"alg\":\"RSA-OAEP-256\",\"enc\":\"A256GCM\",\"kid\":\"k1\"}\n{\"hello\":\"world\"}",
    );
}

fn config_seeds() {
    for entry in std::fs::read_dir(fuzz_dir().join("../docs")).expect("docs") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let doc = std::fs::read_to_string(&path).expect("doc");
        let mut rest = doc.as_str();
        while let Some(start) = rest.find("```toml\n") {
            rest = &rest[start + 8..];
            let end = rest.find("```").unwrap_or(rest.len());
            write("config_load", &rest[..end]);
            rest = &rest[end..];
        }
    }
    write(
        "config_load",
        "[server]\nlisten = \"0.0.0.0:8080\"\n\n#@env\nMOAT_SERVER__PUBLIC_BASE_URL=https://api.example.com\nMOAT_STORE__MAX_CONNECTIONS=4\n",
    );
}

fn app_attest_seeds() {
    let v = json(vectors::APP_ATTEST);
    let with_mode = |mode: u8, bytes: &[u8]| [&[mode][..], bytes].concat();
    for s in v["attestations"].as_array().expect("attestations") {
        let object = b64::std_decode(text(s, "/attestation_object_base64")).expect("b64");
        write("app_attest_cbor", with_mode(0, &object));
        // The leaf certificate, for the extension walker.
        let value: ciborium::Value = ciborium::de::from_reader(&object[..]).expect("cbor");
        let leaf = value
            .as_map()
            .and_then(|m| m.iter().find(|(k, _)| k.as_text() == Some("attStmt")))
            .and_then(|(_, v)| v.as_map())
            .and_then(|m| m.iter().find(|(k, _)| k.as_text() == Some("x5c")))
            .and_then(|(_, v)| v.as_array())
            .and_then(|a| a.first())
            .and_then(ciborium::Value::as_bytes)
            .expect("x5c[0]");
        write("app_attest_cbor", with_mode(2, leaf));
    }
    for s in v["assertions"].as_array().expect("assertions") {
        let object = b64::std_decode(text(s, "/assertion_base64")).expect("b64");
        write("app_attest_cbor", with_mode(0, &object));
    }
    // authenticatorData for the signed mode: rpIdHash of the first sample's app id, flags,
    // counter 8.
    let app_id = text(&v, "/attestations/0/app_id");
    let mut auth = digest(&SHA256, app_id.as_bytes()).as_ref().to_vec();
    auth.push(0x40);
    auth.extend_from_slice(&8u32.to_be_bytes());
    write("app_attest_cbor", with_mode(1, &auth));
}

/// Writes the seeds and exits if `MOAT_FUZZ_SEEDS=write`; otherwise does nothing.
pub fn on_request() {
    if std::env::var("MOAT_FUZZ_SEEDS").is_ok_and(|v| v == "write") {
        write_all();
        std::process::exit(0);
    }
}

/// Writes every target's seeds into `corpus/<target>/`.
pub fn write_all() {
    httpsig_seeds();
    content_digest_seeds();
    dpop_seeds();
    integrity_seeds();
    play_integrity_seeds();
    jwe_seeds();
    config_seeds();
    app_attest_seeds();
}
