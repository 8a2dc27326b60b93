//! RFC 9530 `Content-Digest` parsing and verification.
//!
//! Input: the field value, a newline, then the body (any bytes). Beyond "no panic": the field
//! Moat writes for a body always verifies against that body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_core::digest;

fuzz_target!(init: moat_fuzz::seeds::on_request(), |data: &[u8]| {
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let (field, body) = data.split_at(split);
    let body = body.get(1..).unwrap_or_default();
    if let Ok(field) = std::str::from_utf8(field) {
        let _ = digest::verify(field, body);
    }
    digest::verify(&digest::sha256_field(body), body).expect("own Content-Digest verifies");
});
