use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use super::*;

fn vectors() -> Value {
    serde_json::from_str(include_str!("../../vectors/rfc9421_appendix_b.json")).expect("vectors")
}

/// An HTTP/1.1 request from the RFC's figures: request line, fields, blank line, body.
struct Req {
    method: String,
    path: String,
    query: Option<String>,
    authority: String,
    headers: HeaderMap,
}

fn parse_request(text: &str) -> Req {
    let mut lines = text.lines();
    let request_line = lines.next().expect("request line");
    let mut parts = request_line.split(' ');
    let method = parts.next().expect("method").to_owned();
    let target = parts.next().expect("target");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (target.to_owned(), None),
    };
    let mut headers = HeaderMap::new();
    for line in lines.by_ref() {
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').expect("field line");
        headers.append(
            HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes()).expect("name"),
            HeaderValue::from_str(value.trim()).expect("value"),
        );
    }
    let authority = headers
        .get("host")
        .expect("host")
        .to_str()
        .expect("ascii")
        .to_owned();
    Req {
        method,
        path,
        query,
        authority,
        headers,
    }
}

impl Req {
    fn message(&self) -> Message<'_> {
        Message {
            method: &self.method,
            scheme: "https",
            authority: &self.authority,
            path: &self.path,
            query: self.query.as_deref(),
            headers: &self.headers,
        }
    }
}

fn example<'a>(v: &'a Value, label: &str) -> &'a Value {
    v["examples"]
        .as_array()
        .expect("examples")
        .iter()
        .find(|e| e["label"] == label)
        .expect("example")
}

fn message_text(v: &Value, ex: &Value) -> String {
    let name = ex["message"].as_str().expect("message name");
    v["messages"][name]["unwrapped"]
        .as_str()
        .expect("unwrapped")
        .to_owned()
}

fn parsed(ex: &Value, label: &str) -> ParsedSignature {
    ParsedSignature::parse(
        ex["signature_input_header"].as_str().expect("input"),
        ex["signature_header"].as_str().expect("signature"),
        label,
    )
    .expect("parses")
}

fn key_for(v: &Value, keyid: &str) -> VerifyingKey {
    let key = &v["keys"][keyid];
    if keyid == "test-shared-secret" {
        let secret = b64::std_decode(key["secret_base64"].as_str().expect("secret")).expect("b64");
        return VerifyingKey::hmac_sha256(&secret);
    }
    VerifyingKey::from_jwk(&PublicJwk::from_json(&public_only(&key["jwk"])).expect("jwk"))
        .expect("key")
}

fn public_only(jwk: &Value) -> Value {
    let mut obj = jwk.as_object().expect("object").clone();
    obj.remove("d");
    Value::Object(obj)
}

#[test]
fn appendix_b_signature_bases_are_rebuilt_exactly() {
    let v = vectors();
    for label in ["sig-b21", "sig-b23", "sig-b25", "sig-b26", "ttrp"] {
        let ex = example(&v, label);
        let text = if label == "ttrp" {
            ex["signed_request_unwrapped"]
                .as_str()
                .expect("text")
                .to_owned()
        } else {
            message_text(&v, ex)
        };
        let req = parse_request(&text);
        let sig = parsed(ex, label);
        assert_eq!(
            sig.signature_base(&req.message()).expect("base"),
            ex["signature_base"].as_str().expect("expected base"),
            "{label}"
        );
    }
}

#[test]
fn appendix_b_signatures_verify_for_moat_algorithms() {
    let v = vectors();
    for label in ["sig-b25", "sig-b26", "ttrp"] {
        let ex = example(&v, label);
        let text = if label == "ttrp" {
            ex["signed_request_unwrapped"]
                .as_str()
                .expect("text")
                .to_owned()
        } else {
            message_text(&v, ex)
        };
        let req = parse_request(&text);
        let sig = parsed(ex, label);
        let key = key_for(&v, ex["keyid"].as_str().expect("keyid"));
        sig.verify(&req.message(), &key)
            .unwrap_or_else(|e| panic!("{label}: {e}"));
    }
}

#[test]
fn appendix_b_4_transformations() {
    let v = vectors();
    let ex = example(&v, "transform");
    let key = key_for(&v, "test-key-ed25519");
    for m in ex["messages"].as_array().expect("messages") {
        let req = parse_request(m["unwrapped"].as_str().expect("text"));
        let input = req
            .headers
            .get("signature-input")
            .expect("input")
            .to_str()
            .expect("ascii");
        let signature = req
            .headers
            .get("signature")
            .expect("sig")
            .to_str()
            .expect("ascii");
        let sig = ParsedSignature::parse(input, signature, "transform").expect("parse");
        let ok = sig.verify(&req.message(), &key).is_ok();
        assert_eq!(
            ok,
            m["signature_expected_valid"].as_bool().expect("bool"),
            "{}",
            m["description"]
        );
    }
}

#[test]
fn query_param_component_is_refused_not_misread() {
    let v = vectors();
    let ex = example(&v, "sig-b22");
    let req = parse_request(&message_text(&v, ex));
    let sig = parsed(ex, "sig-b22");
    assert_eq!(
        sig.signature_base(&req.message()),
        Err(Error::Unsupported("component parameters"))
    );
}

fn sample_headers(body: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "content-digest",
        HeaderValue::from_str(&crate::digest::sha256_field(body)).expect("v"),
    );
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h
}

#[test]
fn sign_then_verify_and_tampering_fails() {
    let secret = [7u8; 32];
    let hkey = hmac::Key::new(hmac::HMAC_SHA256, &secret);
    let headers = sample_headers(b"{}");
    let msg = Message {
        method: "POST",
        scheme: "https",
        authority: "api.example:443",
        path: "/v1/device/echo",
        query: Some("a=1"),
        headers: &headers,
    };
    let params = Params {
        created: Some(1_700_000_000),
        nonce: Some("n0nce-1234".into()),
        keyid: Some("mc_abc".into()),
        alg: Some("hmac-sha256".into()),
        ..Params::default()
    };
    let components = ["@method", "@authority", "@path", "@query", "content-digest"];
    let out = sign("moat", &components, &params, &msg, SigningKey::Hmac(&hkey)).expect("sign");
    let sig = ParsedSignature::parse(&out.signature_input, &out.signature, "moat").expect("parse");
    assert_eq!(sig.params, params);
    let vkey = VerifyingKey::hmac_sha256(&secret);
    sig.verify(&msg, &vkey).expect("verifies");
    check_coverage(
        &sig,
        Coverage {
            has_body: true,
            has_query: true,
            has_authorization: false,
        },
    )
    .expect("coverage");
    // Default port is normalised away: a client that omitted :443 signs the same base.
    sig.verify(
        &Message {
            authority: "api.example",
            ..msg
        },
        &vkey,
    )
    .expect("port normalised");

    for tampered in [
        Message {
            path: "/v1/device",
            ..msg
        },
        Message {
            method: "PUT",
            ..msg
        },
        Message {
            query: Some("a=2"),
            ..msg
        },
        Message {
            authority: "evil.example",
            ..msg
        },
    ] {
        assert_eq!(
            sig.verify(&tampered, &vkey),
            Err(Error::SignatureInvalid("signature does not verify"))
        );
    }
    let other_body = sample_headers(b"{\"x\":1}");
    assert!(
        sig.verify(
            &Message {
                headers: &other_body,
                ..msg
            },
            &vkey
        )
        .is_err()
    );
    assert!(
        sig.verify(&msg, &VerifyingKey::hmac_sha256(&[8u8; 32]))
            .is_err()
    );
}

#[test]
fn installation_keys_sign_and_alg_must_match() {
    for (key, _) in [
        InstallationKey::generate_p256().expect("p256"),
        InstallationKey::generate_ed25519().expect("ed"),
    ] {
        let headers = HeaderMap::new();
        let msg = Message {
            method: "GET",
            scheme: "http",
            authority: "127.0.0.1:8080",
            path: "/v1/device",
            query: None,
            headers: &headers,
        };
        let params = Params {
            created: Some(10),
            nonce: Some("abcdefgh".into()),
            keyid: Some(key.public_jwk().thumbprint()),
            alg: Some(SigningKey::Installation(&key).algorithm().name().into()),
            ..Params::default()
        };
        let out = sign(
            "moat",
            &["@method", "@target-uri"],
            &params,
            &msg,
            SigningKey::Installation(&key),
        )
        .expect("sign");
        let sig =
            ParsedSignature::parse(&out.signature_input, &out.signature, "moat").expect("parse");
        let vkey = VerifyingKey::from_jwk(&key.public_jwk()).expect("vkey");
        sig.verify(&msg, &vkey).expect("verifies");
        assert_eq!(
            sig.verify(&msg, &VerifyingKey::hmac_sha256(b"secret")),
            Err(Error::SignatureInvalid("alg does not match the key"))
        );
    }
}

#[test]
fn coverage_rules() {
    let parse = |components: &str, params: &str| {
        ParsedSignature::parse(
            &format!("moat=({components}){params}"),
            "moat=:AAAA:",
            "moat",
        )
        .expect("parse")
    };
    let full = ";created=1;nonce=\"abcdefgh\"";
    let none = Coverage::default();
    assert!(check_coverage(&parse("\"@method\" \"@target-uri\"", full), none).is_ok());
    assert!(check_coverage(&parse("\"@method\" \"@authority\" \"@path\"", full), none).is_ok());
    let missing_method = parse("\"@target-uri\"", full);
    assert_eq!(
        check_coverage(&missing_method, none),
        Err(Error::SignatureInvalid("@method not covered"))
    );
    let path_only = parse("\"@method\" \"@path\"", full);
    assert!(check_coverage(&path_only, none).is_err());
    let no_query = parse("\"@method\" \"@authority\" \"@path\"", full);
    assert_eq!(
        check_coverage(
            &no_query,
            Coverage {
                has_query: true,
                ..none
            }
        ),
        Err(Error::SignatureInvalid("@query not covered"))
    );
    assert_eq!(
        check_coverage(
            &no_query,
            Coverage {
                has_body: true,
                ..none
            }
        ),
        Err(Error::SignatureInvalid("content-digest not covered"))
    );
    assert_eq!(
        check_coverage(
            &no_query,
            Coverage {
                has_authorization: true,
                ..none
            }
        ),
        Err(Error::SignatureInvalid("authorization not covered"))
    );
    let short_nonce = parse("\"@method\" \"@target-uri\"", ";created=1;nonce=\"short\"");
    assert!(check_coverage(&short_nonce, none).is_err());
    let no_created = parse("\"@method\" \"@target-uri\"", ";nonce=\"abcdefgh\"");
    assert!(check_coverage(&no_created, none).is_err());
}

#[test]
fn time_window() {
    let p = |created, expires| Params {
        created: Some(created),
        expires,
        ..Params::default()
    };
    assert!(check_window(&p(1000, None), 1000 + 300, 300).is_ok());
    assert_eq!(
        check_window(&p(1000, None), 1000 + 301, 300),
        Err(Error::SignatureExpired)
    );
    assert_eq!(
        check_window(&p(1000, None), 1000 - 301, 300),
        Err(Error::SignatureExpired)
    );
    assert_eq!(
        check_window(&p(1000, Some(1010)), 1011, 300),
        Err(Error::SignatureExpired)
    );
    assert!(check_window(&p(1000, Some(1010)), 1005, 300).is_ok());
}

/// Hardened with the fuzz targets: `created` at the ends of i64 is outside the window rather
/// than an overflow.
#[test]
fn time_window_extremes() {
    let p = |created| Params {
        created: Some(created),
        ..Params::default()
    };
    let now = 1_618_884_473_i64;
    for created in [i64::MIN, now.wrapping_add(i64::MIN), i64::MAX] {
        assert_eq!(
            check_window(&p(created), now, 300),
            Err(Error::SignatureExpired),
            "{created}"
        );
    }
    assert_eq!(
        check_window(&p(now), now + 1, -1),
        Err(Error::SignatureExpired)
    );
}

#[test]
fn hostile_inputs_are_errors_not_panics() {
    for (input, sig) in [
        ("", ""),
        ("moat=", "moat=:AAAA:"),
        ("moat=(\"@method\"", "moat=:AAAA:"),
        ("moat=(1 2);created=1", "moat=:AAAA:"),
        ("moat=(\"@method\");created=\"x\"", "moat=:AAAA:"),
        ("moat=(\"@method\");created=1", "moat=abc"),
        ("moat=(\"@method\");created=1", "other=:AAAA:"),
    ] {
        assert!(
            ParsedSignature::parse(input, sig, "moat").is_err(),
            "{input} / {sig}"
        );
    }
    let long = "a".repeat(MAX_HEADER_LEN + 1);
    assert!(ParsedSignature::parse(&long, "moat=:AAAA:", "moat").is_err());
}

/// The canonical-form parser agrees with the general parser on every input it accepts, and
/// accepts what clients send. Inputs are mutations of real fields (spaces, escapes, case,
/// duplicates, other value types, extra labels, cut-offs), from a fixed-seed generator so a
/// failure reproduces.
#[test]
fn canonical_parser_agrees_with_the_general_parser() {
    let input = r#"moat=("@method" "@authority" "@path" "content-digest" "authorization");created=1700000000;nonce="n0nce-123456";keyid="mc_abc";alg="hmac-sha256";x=tok/en:1"#;
    let signature = "moat=:dGhlIHNpZ25hdHVyZSBieXRlcyEhIQ==:";
    assert!(
        assert_parsers_agree(input, signature),
        "a client's fields take the fast path"
    );

    let pieces: &[&str] = &[
        " ",
        "  ",
        ",",
        ";",
        "=",
        "\"",
        "\\",
        "(",
        ")",
        ":",
        "-",
        "0",
        "00",
        "-0",
        "1.5",
        "?1",
        "@",
        "%\"",
        "a",
        "A",
        "*",
        "_",
        "=:",
        "dGVzdA==",
        "dGVzdA",
        "dGVzdB==",
        "moat",
        "other",
        ";created=5",
        ";created=\"5\"",
        ";nonce=5",
        ";keyid=tok",
        ";alg",
        "\"x\";sf",
        ", other=(\"@path\")",
        "\\\"",
        "1234567890123456",
        "999999999999999",
    ];
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut accepted, mut agreed_errors) = (0, 0);
    for _ in 0..40_000 {
        let mut inp = input.to_owned();
        let mut sig = signature.to_owned();
        for _ in 0..=(next() % 3) {
            let target = if next() % 4 == 0 { &mut sig } else { &mut inp };
            let len = target.len();
            let at = (next() as usize) % (len + 1);
            let at = (0..=at)
                .rev()
                .find(|i| target.is_char_boundary(*i))
                .unwrap_or(0);
            match next() % 3 {
                0 => target.insert_str(at, pieces[(next() as usize) % pieces.len()]),
                1 => {
                    let end = (at + 1 + (next() as usize) % 4).min(len);
                    if target.is_char_boundary(end) {
                        target.replace_range(at..end, "");
                    }
                }
                _ => {
                    let piece = pieces[(next() as usize) % pieces.len()];
                    let end = (at + piece.len()).min(len);
                    if target.is_char_boundary(end) {
                        target.replace_range(at..end, piece);
                    }
                }
            }
        }
        if assert_parsers_agree(&inp, &sig) {
            accepted += 1;
        } else if ParsedSignature::parse_general(&inp, &sig, "moat").is_err() {
            agreed_errors += 1;
        }
    }
    // Both kinds of outcome were exercised, not just one.
    assert!(accepted > 1_000, "fast path taken {accepted} times");
    assert!(agreed_errors > 1_000, "refusals {agreed_errors}");
}

/// `sign` writes the inner list in the canonical form the structured-field serializer gives,
/// escapes included, so what a client signs is what the server rebuilds.
#[test]
fn signing_writes_the_canonical_serialization() {
    let headers = sample_headers(b"");
    let msg = Message {
        method: "GET",
        scheme: "https",
        authority: "api.example",
        path: "/x",
        query: Some("a=1"),
        headers: &headers,
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, b"secret");
    for params in [
        Params {
            created: Some(1_700_000_000),
            nonce: Some("nonce-123456".into()),
            keyid: Some("mc_abc".into()),
            alg: Some("hmac-sha256".into()),
            ..Params::default()
        },
        Params {
            created: Some(-5),
            expires: Some(999_999_999_999_999),
            nonce: Some(r#"quote " and \ backslash"#.into()),
            tag: Some(String::new()),
            ..Params::default()
        },
    ] {
        let signed = sign(
            "moat",
            &["@method", "@authority", "@path", "@query"],
            &params,
            &msg,
            SigningKey::Hmac(&key),
        )
        .expect("sign");
        let general =
            ParsedSignature::parse_general(&signed.signature_input, &signed.signature, "moat")
                .expect("parse");
        assert_eq!(
            format!("moat={}", general.params_value),
            signed.signature_input
        );
        assert_eq!(general.params, params);
        general
            .verify(&msg, &VerifyingKey::hmac_sha256(b"secret"))
            .expect("verifies");
    }
    let too_big = Params {
        created: Some(1_000_000_000_000_000),
        ..Params::default()
    };
    assert!(sign("moat", &["@method"], &too_big, &msg, SigningKey::Hmac(&key)).is_err());
    let not_ascii = Params {
        nonce: Some("é".into()),
        ..Params::default()
    };
    assert!(
        sign(
            "moat",
            &["@method"],
            &not_ascii,
            &msg,
            SigningKey::Hmac(&key)
        )
        .is_err()
    );
}
