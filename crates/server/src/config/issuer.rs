//! `[[issuer]]`: external token issuers whose user tokens are accepted.

use serde::Deserialize;

/// One `[[issuer]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawIssuer {
    pub issuer: String,
    pub jwks_url: String,
    pub audience: String,
}

/// Validates the `[[issuer]]` entries. Nothing to refuse: serde requires every key.
pub(crate) fn validate(raw: Vec<RawIssuer>) -> Vec<moat_identity::issuers::IssuerConfig> {
    raw.into_iter()
        .map(|i| moat_identity::issuers::IssuerConfig {
            issuer: i.issuer,
            jwks_url: i.jwks_url,
            audience: i.audience,
        })
        .collect()
}
