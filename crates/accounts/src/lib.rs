//! The seed's accounts (PROTOCOL section 6), below the HTTP layer: users and their passwords
//! ([`password`]), phone numbers ([`phone`]), SMS codes ([`codes`], attempts judged by
//! [`otp`]) and the messages that carry them ([`sms`]: senders, the pumping guard, the
//! worker), access and refresh tokens ([`tokens`]), and the flows that tie them together
//! ([`Accounts`]: register, confirm, resend, password reset, login, refresh, me).
//!
//! Nothing here knows HTTP: a refusal is an [`Error`] saying what went wrong, and the server
//! maps it to its problem response in one place.

pub mod codes;
pub use moat_store::otp;
pub mod password;
pub mod phone;
mod service;
pub mod sms;
pub mod tokens;

use aws_lc_rs::hmac;
use moat_core::seal::DataKey;
use moat_store::StoreError;

pub use service::{Accounts, CODE_MAX_ATTEMPTS, Grant, Parts, Settings};

/// Why an account operation was refused or failed. The messages are the details the client
/// is shown (tests and clients read them), so they stay as they are.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value is not acceptable (phone, password, code format, country, purpose); the
    /// reason is safe to show.
    #[error("{0}")]
    Invalid(String),
    /// The SMS code is wrong, unknown, or was asked for by another device.
    #[error("the code is not valid")]
    OtpInvalid,
    /// The SMS code is past its expiry.
    #[error("the code has expired; ask for a new one")]
    OtpExpired,
    /// Too many wrong codes: this one is locked.
    #[error("too many wrong codes; ask for a new one")]
    OtpLocked,
    /// The SMS-pumping guard refuses to send now.
    #[error("too many SMS requests; try again later")]
    SmsBlocked {
        /// Seconds until a send may be admitted.
        retry_after: u64,
    },
    /// Too many login attempts for this phone or client IP.
    #[error("too many login attempts; try again later")]
    LoginLimited {
        /// Seconds until a login may be tried again.
        retry_after: u64,
    },
    /// The phone already has an account.
    #[error("this phone already has an account")]
    AccountExists,
    /// The token endpoint refuses the grant (RFC 6749 `invalid_grant`).
    #[error("{0}")]
    InvalidGrant(&'static str),
    /// The access token (or the user it names) is not valid.
    #[error("{0}")]
    TokenInvalid(String),
    /// The access token is past its `exp`: the app should refresh it.
    #[error("the access token has expired; refresh it")]
    TokenExpired,
    /// No password hash could start in time: the hashing queue is full.
    #[error("the password hashing queue is full")]
    Busy,
    /// A dependency (the shared limiter, the signing keys) cannot answer: refuse, not guess.
    #[error("a dependency is unavailable")]
    Unavailable,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A primitive (RNG, sealing) failed.
    #[error(transparent)]
    Core(#[from] moat_core::Error),
    /// A failure inside Moat; the cause is for the log, not the client.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    fn internal(cause: &dyn std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }
}

/// The server's keys this crate uses: the data key that seals SMS texts and signing keys at
/// rest, and the pepper of the keyed hashes of SMS codes and refresh tokens.
pub trait KeyRing: Send + Sync {
    /// Seals secrets at rest.
    fn data(&self) -> &DataKey;
    /// Keyed hash of codes and tokens.
    fn pepper(&self) -> &hmac::Key;
}

impl<K: KeyRing + ?Sized> KeyRing for std::sync::Arc<K> {
    fn data(&self) -> &DataKey {
        (**self).data()
    }

    fn pepper(&self) -> &hmac::Key {
        (**self).pepper()
    }
}
