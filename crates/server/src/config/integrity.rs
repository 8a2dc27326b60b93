//! `[integrity]`: the integrity tokens Moat issues (`Moat-Integrity`).

use serde::Deserialize;

use super::errors::Errors;

/// Default `integrity.ttl`, seconds.
const DEFAULT_TTL: i64 = 300;
/// Shortest `integrity.secret` accepted, bytes.
const MIN_SECRET_LEN: usize = 32;

/// `[integrity]` as written. No `Debug`: it holds the integrity secret.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawIntegrity {
    pub secret: Option<String>,
    pub ttl: Option<i64>,
}

/// `[integrity]` validated. No `Debug`: it holds the integrity secret.
pub(crate) struct Integrity {
    pub(crate) secret: Option<Vec<u8>>,
    pub(crate) ttl: i64,
}

/// Validates `[integrity]`.
pub(crate) fn validate(raw: RawIntegrity, errors: &mut Errors) -> Integrity {
    let secret = raw
        .secret
        .as_deref()
        .and_then(|s| match moat_core::b64::url_decode(s) {
            Ok(bytes) if bytes.len() >= MIN_SECRET_LEN => Some(bytes),
            _ => {
                errors.push("integrity.secret: must be base64url of at least 32 bytes");
                None
            }
        });
    Integrity {
        secret,
        ttl: errors.positive(raw.ttl, DEFAULT_TTL, "integrity.ttl"),
    }
}
