//! Apple App Attest: attestation and assertion objects (CBOR), and the DER walk that finds
//! the nonce in the leaf certificate.
//!
//! The first byte picks the mode, the rest is the input:
//! - `0`: the rest is an attestation object and an assertion: both verifiers run on it,
//!   with the expectations of the first published sample (its app id, key id, client data
//!   hash, pinned time, Apple's root);
//! - `1`: the rest is `authenticatorData`; the target signs it with a fixed P-256 key and
//!   wraps it in an assertion, so the checks behind the signature are reached;
//! - `2`: the rest is a DER certificate for the nonce-extension walker (the verifier only
//!   reaches it with a leaf whose chain verified, i.e. never with mutated DER);
//! - anything else: as `0`.
#![no_main]

use std::sync::LazyLock;

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use ciborium::Value;
use libfuzzer_sys::fuzz_target;
use moat_core::app_attest;
use moat_fuzz::{json, vectors};

struct Sample {
    client_data_hash: [u8; 32],
    app_id: String,
    key_id: Vec<u8>,
    root: Vec<u8>,
    at: u64,
    assertion_key: EcdsaKeyPair,
}

static SAMPLE: LazyLock<Sample> = LazyLock::new(|| {
    let v = json(vectors::APP_ATTEST);
    let s = &v["attestations"][0];
    let text = |k: &str| s[k].as_str().unwrap_or_else(|| panic!("sample {k}"));
    let b64 = |k: &str| moat_core::b64::std_decode(text(k)).expect("sample base64");
    // The pinned time is RFC 3339 with a Z; only the date and time fields are needed.
    let t = text("pinned_verification_time");
    let n = |a: usize, b: usize| t[a..b].parse::<i64>().expect("digits");
    let (y, m, d) = (n(0, 4), n(5, 7), n(8, 10));
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let at = days * 86_400 + n(11, 13) * 3600 + n(14, 16) * 60 + n(17, 19);
    Sample {
        client_data_hash: b64("client_data_hash_base64").try_into().expect("32 bytes"),
        app_id: text("app_id").to_owned(),
        key_id: b64("key_id_base64"),
        root: app_attest::apple_root_der().expect("Apple root"),
        at: u64::try_from(at).expect("after 1970"),
        assertion_key: EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &SystemRandom::new())
                .expect("keygen")
                .as_ref(),
        )
        .expect("key"),
    }
});

fuzz_target!(init: moat_fuzz::seeds::on_request(), |data: &[u8]| {
    let s = &*SAMPLE;
    let (mode, rest) = data.split_first().map_or((0, data), |(m, r)| (*m, r));
    match mode {
        1 => {
            let mut signed = rest.to_vec();
            signed.extend_from_slice(&s.client_data_hash);
            let nonce = digest(&SHA256, &signed);
            let signature = s
                .assertion_key
                .sign(&SystemRandom::new(), nonce.as_ref())
                .expect("sign");
            let object = Value::Map(vec![
                (
                    Value::Text("signature".into()),
                    Value::Bytes(signature.as_ref().to_vec()),
                ),
                (
                    Value::Text("authenticatorData".into()),
                    Value::Bytes(rest.to_vec()),
                ),
            ]);
            let mut cbor = Vec::new();
            ciborium::ser::into_writer(&object, &mut cbor).expect("cbor");
            let public = s.assertion_key.public_key().as_ref();
            if let Ok(counter) = app_attest::verify_assertion(
                &cbor,
                &s.client_data_hash,
                &s.app_id,
                public,
                7,
            ) {
                assert!(counter > 7, "accepted a counter that did not increase");
            }
        }
        2 => {
            let _ = app_attest::fuzzing::extension_nonce(rest);
        }
        _ => {
            let _ = app_attest::verify_attestation(
                rest,
                &s.client_data_hash,
                &s.app_id,
                &s.key_id,
                &s.root,
                s.at,
            );
            let public = s.assertion_key.public_key().as_ref();
            let _ = app_attest::verify_assertion(rest, &s.client_data_hash, &s.app_id, public, 0);
        }
    }
});
