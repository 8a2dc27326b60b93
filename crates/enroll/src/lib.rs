//! Seed 000's enrollment, below the HTTP layer: who is enrolling (the DPoP proof of an
//! installation key, or a Firebase ID token), the credential of the configured mode (the
//! static key, a per-device API key, or an enrollment code then an HMAC secret and an RSA
//! key), and where it is delivered (the built-in mailbox, sealed in the store, or the uid's
//! node of the Firebase Realtime Database).
//!
//! [`Enrollment`] is the service: built once from its [`Parts`] and [`Settings`], called by
//! the server's handlers, which map its [`Error`] to problem responses.

mod error;
pub mod firebase;
mod flows;
mod identify;
mod mailbox;
mod otp;
pub mod rsa_pool;
mod service;
mod settings;

pub use error::Error;
pub use flows::{Caller, Delivery, validate_device_id};
pub use identify::{Proof, Who};
pub use mailbox::MAILBOX_READ_LIMIT;
pub use otp::{OTP_DIGITS, OTP_STEP};
pub use service::{CredentialCache, Enrollment, KeyRing, Parts};
pub use settings::{Mode, Settings};
