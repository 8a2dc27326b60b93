//! The server's token verification: integrity tokens (HS256, `IntegrityService::verify`) and
//! access tokens (ES256, `TokenService::verify_access`), with keys loaded the way the server
//! loads them (from a store, here in memory).
//!
//! Two modes, by the first byte:
//! - `{`: the input is the claims JSON; the target signs it with the services' own keys and
//!   `kid`s, so the claim validation behind the signature is reached;
//! - anything else: the input is the token as received.
//!
//! Beyond "no panic": an accepted token has not expired and names the configured issuer.
#![no_main]

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;
use moat_fuzz::NOW;
use moat_fuzz::server::{INTEGRITY_SECRET, ISSUER, SERVICES};

/// A JWT with `claims` (as given) signed by `key`.
fn token(alg: Algorithm, kid: &str, claims: &[u8], key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    let header = serde_json::to_vec(&header).expect("header");
    let input = format!(
        "{}.{}",
        moat_core::b64::url_encode(header),
        moat_core::b64::url_encode(claims)
    );
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).expect("sign");
    format!("{input}.{signature}")
}

fn check(integrity: &str, access: &str) {
    let services = &*SERVICES;
    if let Ok(claims) = services.integrity.verify(integrity, NOW) {
        assert!(claims.exp > NOW, "accepted an expired integrity token");
        assert_eq!(claims.iss, ISSUER);
    }
    if let Ok(claims) = services.tokens.verify_access(access, NOW) {
        assert!(claims.exp > NOW, "accepted an expired access token");
        assert_eq!(claims.iss, ISSUER);
    }
}

fuzz_target!(init: moat_fuzz::seeds::on_request(), |data: &[u8]| {
    let services = &*SERVICES;
    if data.first() == Some(&b'{') {
        let integrity = token(
            Algorithm::HS256,
            &services.integrity_kid,
            data,
            &EncodingKey::from_secret(INTEGRITY_SECRET),
        );
        let access = token(
            Algorithm::ES256,
            &services.access_kid,
            data,
            &services.access_key,
        );
        check(&integrity, &access);
    } else if let Ok(text) = std::str::from_utf8(data) {
        check(text, text);
    }
});
