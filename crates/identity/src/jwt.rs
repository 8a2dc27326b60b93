//! What every Moat-checked JWT goes through, once: the header is read, a `crit` extension is
//! refused (RFC 7515 section 4.1.11: Moat understands none, and jsonwebtoken parses `crit`
//! without enforcing it), and for tokens Moat issues itself the algorithm, the `kid`, the
//! issuer and the expiry are checked the same way for access and integrity tokens.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::de::DeserializeOwned;

/// Why a validly signed token past its `exp` is refused.
pub const EXPIRED: &str = "token expired";

/// Claims every token Moat issues carries.
pub trait Expiring {
    /// `exp`, Unix seconds.
    fn exp(&self) -> i64;
}

/// The header of `token`, refused if malformed or if it names a critical extension.
///
/// # Errors
/// The reason, for the caller's problem detail.
pub fn header(token: &str) -> Result<Header, &'static str> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| "malformed token")?;
    if header.crit.is_some() {
        return Err("unsupported critical header");
    }
    Ok(header)
}

/// Verifies a token Moat issued: signed with `alg` by the key its `kid` names in `keys`,
/// from `issuer`, with `exp`, `iss` and `sub`, unexpired at `now` (no leeway).
///
/// # Errors
/// The reason, for the caller's problem detail.
pub fn verify_issued<C: DeserializeOwned + Expiring>(
    token: &str,
    alg: Algorithm,
    keys: &HashMap<String, DecodingKey>,
    issuer: &str,
    now: i64,
) -> Result<C, &'static str> {
    let header = header(token)?;
    if header.alg != alg {
        return Err("unexpected algorithm");
    }
    let kid = header.kid.ok_or("token has no kid")?;
    let key = keys.get(&kid).ok_or("unknown kid")?;
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    validation.leeway = 0;
    // jsonwebtoken checks the signature before the claims, so "expired" is only ever said of
    // a token this server signed: an app can tell a token to refresh from a forged one.
    let claims = jsonwebtoken::decode::<C>(token, key, &validation)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => EXPIRED,
            _ => "token rejected",
        })?
        .claims;
    if claims.exp() <= now {
        return Err(EXPIRED);
    }
    Ok(claims)
}
