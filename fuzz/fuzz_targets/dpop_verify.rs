//! RFC 9449 DPoP proof verification against a fixed expectation (RFC 9449's first example:
//! `POST https://server.example.com/token` at its `iat`, 60 s skew).
//!
//! Two modes, by the first byte:
//! - `{`: the input is the claims JSON; the target signs it (ES256 and EdDSA, fixed keys, a
//!   correct header), so the claim checks behind the signature are reached;
//! - anything else: the input is the whole proof, as received in the `DPoP` header.
//!
//! Beyond "no panic": an accepted proof's `iat` is within the skew of `now`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_core::dpop::{self, Expectation};
use moat_fuzz::{DPOP_MAX_SKEW, DPOP_METHOD, DPOP_NOW, DPOP_URL, ED25519, P256, dpop_header, jws};

fn check(proof: &str) {
    let expect = Expectation {
        method: DPOP_METHOD,
        url: DPOP_URL,
        now: DPOP_NOW,
        max_skew: DPOP_MAX_SKEW,
    };
    if let Ok(verified) = dpop::verify(proof, &expect) {
        let distance = (i128::from(verified.iat) - i128::from(DPOP_NOW)).abs();
        assert!(
            distance <= i128::from(DPOP_MAX_SKEW),
            "accepted a proof with iat {} outside the window",
            verified.iat
        );
        assert!(verified.identity().starts_with("inst:"));
    }
}

fuzz_target!(init: moat_fuzz::seeds::on_request(), |data: &[u8]| {
    if data.first() == Some(&b'{') {
        for key in [&*P256, &*ED25519] {
            check(&jws(&dpop_header(key), data, key));
        }
    } else if let Ok(proof) = std::str::from_utf8(data) {
        check(proof);
    }
});
