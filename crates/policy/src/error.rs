//! Why a request was refused by its route's policy. The messages are the details the client
//! is shown (tests and clients read them), so they stay as they are; the server maps each
//! variant to its problem response in one place.

use std::borrow::Cow;

use http::{HeaderName, HeaderValue};
use moat_store::StoreError;

/// The kind of credential a header carries, which decides how a repeated one is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential {
    /// `Signature`, `Signature-Input`, `Content-Digest`.
    Signature,
    /// `Moat-Device-Key`.
    DeviceKey,
    /// `Moat-Integrity`.
    Integrity,
    /// `Authorization`.
    Token,
}

/// A refusal or failure of the policy check.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A credential header appears more than once.
    #[error("the {header} header appears more than once")]
    Repeated {
        /// The header.
        header: HeaderName,
        /// What it carries.
        credential: Credential,
    },
    /// The request cannot be parsed (a header that is not ASCII, a bad JWE body).
    #[error("{0}")]
    Malformed(Cow<'static, str>),
    /// The device credential is missing or invalid.
    #[error("{0}")]
    CredentialInvalid(&'static str),
    /// The request signature is missing or does not verify.
    #[error("{0}")]
    SignatureInvalid(Cow<'static, str>),
    /// Signed before the replay cache's memory begins: its nonce cannot be checked.
    #[error("signed before the server's replay memory begins; sign again")]
    SignedBeforeHorizon,
    /// The signature's nonce was already used.
    #[error("this signature nonce was already used")]
    Replayed,
    /// The device was revoked.
    #[error("this device has been revoked")]
    Revoked,
    /// The user access token is missing or invalid.
    #[error("{0}")]
    TokenInvalid(&'static str),
    /// The integrity token is missing or belongs to another device or request.
    #[error("{0}")]
    IntegrityInvalid(&'static str),
    /// An encrypted body from a device that has no encryption key.
    #[error("this device has no encryption key; send the body unencrypted")]
    NoEncryptionKey,
    /// Over the route's rate limit.
    #[error("rate limit exceeded")]
    RateLimited {
        /// Seconds until the next request would pass.
        retry_after: u64,
        /// The route's `RateLimit-Policy` value.
        policy: HeaderValue,
        /// The `RateLimit` value (nothing left, and when that changes).
        state: HeaderValue,
    },
    /// A dependency (replay cache, rate limiter) cannot answer.
    #[error("a dependency is unavailable")]
    Unavailable,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A signature, digest, key or JWE check failed, or a crypto operation did.
    #[error(transparent)]
    Core(#[from] moat_core::Error),
    /// The server's own access token was refused.
    #[error(transparent)]
    Token(#[from] moat_accounts::Error),
    /// An external issuer's token was refused.
    #[error(transparent)]
    Issuer(#[from] moat_identity::Error),
    /// The integrity token was refused.
    #[error(transparent)]
    Integrity(#[from] moat_attest::Error),
    /// A failure inside Moat; logged, never sent.
    #[error("{0}")]
    Internal(String),
}
