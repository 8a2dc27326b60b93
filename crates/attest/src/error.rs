//! What can go wrong in attestation, in the service's own terms; the server maps each to
//! its problem response in one place.

/// Why an attestation request or an integrity token was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value of the request is not acceptable (labels, `bind`, the answer's shape); the
    /// reason is safe to show.
    #[error("{0}")]
    InvalidRequest(&'static str),
    /// The caller is not a device with its own credential (a shared static key cannot be
    /// attested).
    #[error("attestation needs a per-device credential")]
    DeviceRequired,
    /// An integrity token is malformed, forged, expired or not ours; the reason is safe to
    /// show.
    #[error("{0}")]
    IntegrityInvalid(&'static str),
    /// A dependency cannot answer (Redis holding the challenges), the challenges are full, or
    /// no integrity secret is loaded: the caller refuses rather than guess.
    #[error("a dependency is unavailable")]
    Unavailable,
    /// The store failed (packages, integrity secrets).
    #[error(transparent)]
    Store(#[from] moat_store::StoreError),
    /// The RNG or sealing of a secret failed.
    #[error(transparent)]
    Crypto(#[from] moat_core::Error),
    /// The Play Integrity keys of the settings cannot be used.
    #[error("{0}")]
    PlayIntegrityKeys(moat_core::Error),
    /// A failure inside the service; the cause is logged, never shown.
    #[error("{0}")]
    Internal(String),
}
