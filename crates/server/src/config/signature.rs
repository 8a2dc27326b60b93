//! `[signature]`: the clock skew accepted of RFC 9421 signatures and DPoP proofs.

use serde::Deserialize;

use super::errors::Errors;

/// Accepted skew of RFC 9421 `created`, seconds (PROTOCOL section 4).
pub const DEFAULT_SIGNATURE_SKEW: i64 = 300;
/// Accepted skew of DPoP `iat`, seconds (PROTOCOL section 2).
pub const DEFAULT_DPOP_SKEW: i64 = 60;

/// `[signature]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawSignature {
    pub max_skew: Option<i64>,
    pub dpop_max_skew: Option<i64>,
}

/// `[signature]` validated: `Config::signature_max_skew` and `Config::dpop_max_skew`.
pub(crate) struct Signature {
    pub(crate) max_skew: i64,
    pub(crate) dpop_max_skew: i64,
}

/// Validates `[signature]`.
pub(crate) fn validate(raw: RawSignature, errors: &mut Errors) -> Signature {
    Signature {
        max_skew: errors.positive(raw.max_skew, DEFAULT_SIGNATURE_SKEW, "signature.max_skew"),
        dpop_max_skew: errors.positive(
            raw.dpop_max_skew,
            DEFAULT_DPOP_SKEW,
            "signature.dpop_max_skew",
        ),
    }
}
