//! The service's settings: plain values the server fills in from its configuration.

/// Enrollment mode (seed 000 sections 3.1-3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One operator-chosen key for every device (teaching and migration only).
    Static,
    /// A new API key per device.
    Dynamic,
    /// An enrollment code, then an HMAC client credential and an RSA encryption key.
    Otp,
}

impl Mode {
    /// The configuration name (also the metrics and dashboard label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Static => "static",
            Self::Dynamic => "dynamic",
            Self::Otp => "otp",
        }
    }
}

/// What the enrollment service is configured with.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The enrollment mode.
    pub mode: Mode,
    /// The server's public base URL: DPoP proofs name `<public_base_url><path>` as `htu`.
    pub public_base_url: String,
    /// Accepted clock skew of DPoP proofs, seconds.
    pub dpop_max_skew: i64,
    /// Whether installations identify by the DPoP proof of their key.
    pub identity_installation: bool,
    /// Whether users identify by a Firebase ID token.
    pub identity_firebase: bool,
    /// Whether mailbox items of Firebase identities go to the Realtime Database.
    pub delivery_firebase: bool,
    /// The `[firebase]` section, if any.
    pub firebase: Option<crate::firebase::Settings>,
    /// Seconds a mailbox item stays readable.
    pub mailbox_ttl: i64,
    /// Seconds an enrollment code stays valid.
    pub otp_ttl: i64,
    /// Wrong codes allowed before a code locks.
    pub otp_max_attempts: i64,
    /// Enrollments allowed per client address and hour.
    pub per_ip_hour: u32,
    /// RSA keys kept ready (otp mode).
    pub rsa_pool_size: usize,
}
