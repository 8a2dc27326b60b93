//! Micro-benchmarks of the verification path: what one protected request costs in
//! `moat-core`.
//!
//! `cargo bench -p moat-core`

#![allow(missing_docs)]

use std::hint::black_box;

use aws_lc_rs::hmac;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use moat_core::apikey::ApiKey;
use moat_core::dpop::{self, InstallationKey};
use moat_core::httpsig::{
    self, Coverage, Message, Params, ParsedSignature, SigningKey, VerifyingKey,
};
use moat_core::{digest, jwe};

fn request_headers(body: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert(
        "content-digest",
        HeaderValue::from_str(&digest::sha256_field(body)).expect("value"),
    );
    h.insert(
        "authorization",
        HeaderValue::from_static("Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2ln"),
    );
    h
}

fn message(headers: &HeaderMap) -> Message<'_> {
    Message {
        method: "POST",
        scheme: "https",
        authority: "api.example.com",
        path: "/api/orders",
        query: Some("page=2"),
        headers,
    }
}

fn signed(key: SigningKey<'_>, keyid: &str, headers: &HeaderMap) -> (String, String) {
    let params = Params {
        created: Some(1_700_000_000),
        nonce: Some("n0nce-abcdefgh".into()),
        keyid: Some(keyid.into()),
        alg: Some(key.algorithm().name().into()),
        ..Params::default()
    };
    let components = [
        "@method",
        "@authority",
        "@path",
        "@query",
        "content-digest",
        "authorization",
    ];
    let out = httpsig::sign("moat", &components, &params, &message(headers), key).expect("sign");
    (out.signature_input, out.signature)
}

fn bench(c: &mut Criterion) {
    let body = vec![b'x'; 1024];
    let headers = request_headers(&body);

    let secret = [7u8; 32];
    let hkey = hmac::Key::new(hmac::HMAC_SHA256, &secret);
    let (input, sig) = signed(SigningKey::Hmac(&hkey), "mc_client", &headers);
    let vkey = VerifyingKey::hmac_sha256(&secret);
    c.bench_function("rfc9421 hmac-sha256: parse + coverage + verify", |b| {
        b.iter(|| {
            let p =
                ParsedSignature::parse(black_box(&input), black_box(&sig), "moat").expect("parse");
            httpsig::check_coverage(
                &p,
                Coverage {
                    has_body: true,
                    has_query: true,
                    has_authorization: true,
                },
            )
            .expect("coverage");
            p.verify(&message(&headers), &vkey).expect("verify");
        })
    });

    let (ikey, _) = InstallationKey::generate_p256().expect("key");
    let (input_e, sig_e) = signed(SigningKey::Installation(&ikey), "thumb", &headers);
    let vkey_e = VerifyingKey::from_jwk(&ikey.public_jwk()).expect("vkey");
    c.bench_function("rfc9421 ecdsa-p256-sha256: parse + verify", |b| {
        b.iter(|| {
            let p = ParsedSignature::parse(black_box(&input_e), black_box(&sig_e), "moat")
                .expect("parse");
            p.verify(&message(&headers), &vkey_e).expect("verify");
        })
    });

    let field = digest::sha256_field(&body);
    c.bench_function("content-digest sha-256, 1 KiB body", |b| {
        b.iter(|| digest::verify(black_box(&field), black_box(&body)).expect("digest"))
    });

    let proof = ikey
        .dpop_proof("POST", "https://api.example.com/v1/enroll", 1_700_000_000)
        .expect("proof");
    let expect = dpop::Expectation {
        method: "POST",
        url: "https://api.example.com/v1/enroll",
        now: 1_700_000_000,
        max_skew: 60,
    };
    c.bench_function("dpop proof verify (ES256) + thumbprint", |b| {
        b.iter(|| dpop::verify(black_box(&proof), &expect).expect("dpop"))
    });

    let pepper = hmac::Key::new(hmac::HMAC_SHA256, b"pepper");
    let (key, text) = ApiKey::generate().expect("key");
    let stored = key.hash(&pepper);
    let text = String::from_utf8(text.expose().to_vec()).expect("utf8");
    c.bench_function("api key parse + keyed hash + constant-time compare", |b| {
        b.iter(|| {
            assert!(
                ApiKey::parse(black_box(&text))
                    .expect("parse")
                    .matches(&pepper, &stored)
            )
        })
    });

    let rsa = jwe::RsaPrivateKey::generate_2048().expect("rsa");
    let token = jwe::encrypt(&body, &rsa.public_jwk().expect("jwk"), Some("k")).expect("jwe");
    c.bench_function("jwe RSA-OAEP-256 + A256GCM decrypt, 1 KiB", |b| {
        b.iter(|| {
            jwe::decrypt(black_box(&token), &rsa, &[jwe::KeyAlgorithm::RsaOaep256])
                .expect("decrypt")
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
