//! Why an enrollment step was refused or failed, in the service's own terms; the server maps
//! each variant to its problem response in one place.

use moat_cluster::quota::Refusal;
use moat_store::StoreError;

/// Why an enrollment, a confirmation or a mailbox read did not succeed. The `Display` text of
/// each variant is the detail the client is shown.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request value is not acceptable.
    #[error("{0}")]
    Validation(&'static str),
    /// Too many enrollments from this client address (or the limiter cannot answer).
    #[error("too many enrollments from this address; try again later")]
    TooManyEnrollments(Refusal),
    /// The identity proof (DPoP proof, Firebase ID token) is missing, refused or not enabled.
    #[error("{0}")]
    Identity(String),
    /// The DPoP proof's `jti` was seen before.
    #[error("this DPoP proof was already used")]
    Replay,
    /// The device was revoked: it cannot enroll again.
    #[error("this device has been revoked")]
    Revoked,
    /// Another enrollment of the same device completed first.
    #[error("another enrollment of this device completed at the same time; enroll again")]
    Concurrent,
    /// A confirmation reached a server that does not enroll in otp mode.
    #[error("this server does not enroll in otp mode")]
    NotOtpMode,
    /// The enrollment code is wrong or unknown.
    #[error("the code is not valid")]
    OtpInvalid,
    /// The enrollment code expired.
    #[error("the code has expired; enroll again")]
    OtpExpired,
    /// Too many wrong codes.
    #[error("too many wrong codes; enroll again")]
    OtpLocked,
    /// No RSA key became ready in time: retry shortly (the answer says after 2 s).
    #[error("no encryption key is ready; try again")]
    KeysExhausted,
    /// A dependency (replay cache, Firebase, Realtime Database, the RSA pool) is down: refuse
    /// rather than guess.
    #[error("a dependency is unavailable, try again")]
    Unavailable,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A check or a cryptographic step of moat-core failed.
    #[error(transparent)]
    Core(#[from] moat_core::Error),
    /// A failure inside Moat; it carries the cause, to be logged and never sent.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// An identity refusal with `detail`.
    pub(crate) fn identity(detail: impl Into<String>) -> Self {
        Self::Identity(detail.into())
    }
}
