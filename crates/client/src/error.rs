//! Errors of the SDK.

/// Errors of the SDK.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Transport failure.
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    /// The server refused with a problem document.
    #[error("{status} {code}: {detail}")]
    Problem {
        /// HTTP status.
        status: u16,
        /// Moat problem code.
        code: String,
        /// Detail.
        detail: String,
    },
    /// Protocol or crypto failure on the client side.
    #[error("protocol: {0}")]
    Protocol(#[from] moat_core::Error),
    /// The mailbox did not deliver what was expected in time.
    #[error("mailbox: {0}")]
    Mailbox(String),
    /// The client has no credential (or the wrong kind) for the request.
    #[error("credential: {0}")]
    Credential(&'static str),
    /// The URL or a header value is not usable.
    #[error("invalid input: {0}")]
    Invalid(String),
}

/// Result type of the SDK.
pub type Result<T, E = Error> = std::result::Result<T, E>;
