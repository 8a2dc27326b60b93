//! Checking JWTs, below the HTTP layer: [`jwt`] holds the rules every token Moat issues goes
//! through (one header check, one validation), and [`issuers`] verifies tokens of external
//! OAuth2/OIDC issuers against their JWKS, fetched and cached.

pub mod issuers;
pub mod jwt;

/// Why a token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The token is malformed, forged, expired, or not for us; the reason is safe to show.
    #[error("{0}")]
    Invalid(&'static str),
    /// The issuer's key set cannot be fetched: the caller refuses (fails closed).
    #[error("the issuer's key set is unavailable")]
    Unavailable,
}
