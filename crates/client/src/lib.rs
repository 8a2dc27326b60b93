//! Moat client SDK: what a mobile app does, in Rust.
//!
//! A [`Client`] holds the device's installation key (the private half of its identity) and,
//! once enrolled, its [`Credential`]. It makes the DPoP proofs for enrollment and the mailbox,
//! signs protected requests (RFC 9421), and encrypts bodies (JWE) with the device's encryption
//! key. The CLI and the benchmarks use it; the Kotlin and Swift guides describe the same
//! steps.
//!
//! ```no_run
//! # async fn demo() -> Result<(), moat_client::Error> {
//! let mut client = moat_client::Client::generate("http://127.0.0.1:8080")?;
//! client.enroll_and_fetch("my-device-1", Some("android")).await?;
//! let answer = client.call(http::Method::GET, "/v1/device", None, moat_client::CallOptions::default()).await?;
//! assert_eq!(answer.status, 200);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod attest;
mod call;
mod client;
mod credential;
mod enroll;
mod error;
pub mod firebase;
pub mod pin;
mod request;
mod sign;

pub use call::{Auth, CallOptions, Payload, Response};
pub use client::Client;
pub use credential::{Credential, DeviceState};
pub use error::{Error, Result};
pub use sign::{SignedHeaders, sign_request, unix_now};
