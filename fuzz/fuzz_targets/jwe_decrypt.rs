//! Compact JWE (`RSA-OAEP-256` + `A256GCM`) parsing and decryption with a fixed RSA-2048 key
//! (RFC 7516 A.1's), and `peek_kid`.
//!
//! Two modes, by the first byte:
//! - `{`: the first line is the protected header (as given), the rest the plaintext; the
//!   target encrypts correctly for the fixed key. Whenever Moat accepts the header, it must
//!   decrypt to exactly that plaintext (never "decryption failed");
//! - anything else: the input is the compact JWE as received (both `RSA-OAEP-256` and, as the
//!   RFC vector needs, `RSA-OAEP` allowed).
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_core::Error;
use moat_core::jwe::{self, KeyAlgorithm};
use moat_fuzz::{JWE_KEY, jwe_for_fixed_key};

fuzz_target!(init: moat_fuzz::seeds::on_request(), |data: &[u8]| {
    if data.first() == Some(&b'{') {
        let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
        let (header, plaintext) = data.split_at(split);
        let plaintext = plaintext.get(1..).unwrap_or_default();
        let compact = jwe_for_fixed_key(header, plaintext);
        let _ = jwe::peek_kid(&compact);
        match jwe::decrypt(&compact, &JWE_KEY, &[KeyAlgorithm::RsaOaep256]) {
            Ok(decrypted) => assert_eq!(decrypted, plaintext),
            Err(Error::DecryptionFailed) => panic!("a correctly encrypted JWE did not decrypt"),
            Err(_) => {}
        }
    } else if let Ok(compact) = std::str::from_utf8(data) {
        let _ = jwe::peek_kid(compact);
        let _ = jwe::decrypt(
            compact,
            &JWE_KEY,
            &[KeyAlgorithm::RsaOaep256, KeyAlgorithm::RsaOaep],
        );
    }
});
