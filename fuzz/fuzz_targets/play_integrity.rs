//! Google Play Integrity tokens: `play_integrity::decode` (JWE `A256KW` + `A256GCM` around a
//! JWS `ES256`) and `play_integrity::check` of the verdict, with fixed keys.
//!
//! Two modes, by the first byte:
//! - `{`: the input is the verdict payload; the target signs and encrypts it with the fixed
//!   keys, so the verdict checks are reached (and `decode` must accept it);
//! - anything else: the input is the token as received.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_core::play_integrity::{self, Expectation};
use moat_fuzz::{NOW, PLAY_BINDING, PLAY_KEYS, PLAY_PACKAGE, play_token};

fn check(token: &str, must_decode: bool) {
    let payload = match play_integrity::decode(token, &PLAY_KEYS) {
        Ok(payload) => payload,
        Err(e) => {
            assert!(!must_decode, "a well-made token did not decode: {e}");
            return;
        }
    };
    let digests = ["c2lnbmluZy1jZXJ0".to_owned()];
    for certificate_digests in [&digests[..], &[]] {
        let _ = play_integrity::check(
            &payload,
            &Expectation {
                package_name: PLAY_PACKAGE,
                request_binding: PLAY_BINDING,
                certificate_digests,
                device_verdict: "MEETS_DEVICE_INTEGRITY",
                now_ms: NOW * 1000,
                max_age_ms: 300_000,
            },
        );
    }
}

fuzz_target!(init: moat_fuzz::seeds::on_request(), |data: &[u8]| {
    if data.first() == Some(&b'{') {
        let well_formed = serde_json::from_slice::<serde_json::Value>(data).is_ok();
        let token = play_token(data);
        if token.len() <= play_integrity::MAX_TOKEN_LEN {
            check(&token, well_formed);
        }
    } else if let Ok(token) = std::str::from_utf8(data) {
        check(token, false);
    }
});
