//! App attestation (seed 002, PROTOCOL section 5), below the HTTP layer: challenge-response
//! measurement of the app package, platform attestation (Play Integrity, App Attest,
//! Firebase App Check), and the integrity tokens that result.
//!
//! [`Attestation`] is the service the server's handlers call: it issues challenges
//! ([`challenge`]), checks answers (by measurement or through a platform verifier,
//! [`platform`]) and issues integrity tokens ([`integrity`]). A failed attestation gets a
//! token of the same shape signed with a random secret, computed in about the same time, so
//! a client (or a script probing for what works) cannot tell pass from fail; the pass or
//! fail never leaves the service except as metrics.
//!
//! The crate reads no configuration and no secret references: the server hands it
//! [`Settings`] of plain values and key bytes. Time is passed in (`now`, Unix seconds).

pub mod app_attest;
pub mod challenge;
mod error;
pub mod integrity;
pub mod platform;
mod service;

pub use error::Error;
pub use service::{Answer, Attestation, IssuedChallenge, IssuedToken, Settings};
