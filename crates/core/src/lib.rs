//! Moat's protocol and cryptography, with no I/O.
//!
//! Everything that decides whether a request is genuine lives here, as pure functions over
//! bytes and parsed values: the server and the client SDK both call into this crate, so the
//! two sides of the wire share one implementation of each format.
//!
//! # Layout
//! - [`jwk`]: public JWKs and their RFC 7638 thumbprints (the installation identity).
//! - [`dpop`]: RFC 9449 DPoP proofs, created by the client and verified by the server.
//! - [`httpsig`]: RFC 9421 HTTP Message Signatures (`hmac-sha256`, `ecdsa-p256-sha256`,
//!   `ed25519`): signature base, signing and verification, and Moat's coverage policy.
//! - [`digest`]: RFC 9530 `Content-Digest`.
//! - [`jwe`]: compact JWE with `RSA-OAEP-256` + `A256GCM` for request bodies.
//! - [`totp`]: RFC 4226 HOTP and RFC 6238 TOTP.
//! - [`seal`]: AES-256-GCM encryption of secrets at rest under the data key.
//! - [`apikey`]: the format of per-device API keys and their keyed hash.
//! - [`secret`]: a byte buffer for secrets: no `Debug`, zeroized on drop.
//! - [`play_integrity`]: local decryption and verification of Google Play Integrity tokens.
//! - [`app_attest`]: Apple App Attest attestations and assertions.
//!
//! # Design
//! Time is always passed in as Unix seconds (`now`), never read from the system clock, so
//! every window and expiry can be tested exactly. All cryptography is aws-lc-rs, the one
//! crypto backend of the project. Comparisons of secrets use `subtle`'s constant-time
//! equality. Inputs from the network never cause a panic: every parser returns [`Error`].
#![forbid(unsafe_code)]

pub mod apikey;
pub mod app_attest;
pub mod b64;
pub mod clock;
pub mod digest;
pub mod dpop;
mod error;
pub mod httpsig;
pub mod jwe;
pub mod jwk;
pub mod names;
pub mod play_integrity;
pub mod random;
pub mod seal;
pub mod secret;
pub mod totp;

pub use error::Error;

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
