//! A call's body, authentication and options, and its response.

use http::HeaderMap;
use serde_json::Value;

use crate::error::{Error, Result};

/// A request body.
#[non_exhaustive]
#[derive(Clone, Copy, Debug)]
pub enum Payload<'a> {
    /// No body.
    None,
    /// JSON (encrypted as a JWE when [`CallOptions::encrypt`] is set).
    Json(&'a Value),
    /// `application/x-www-form-urlencoded`.
    Form(&'a [(&'a str, &'a str)]),
}

/// How to authenticate a call.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Auth {
    /// HMAC signature with a client credential, else the API key.
    #[default]
    Auto,
    /// `Moat-Device-Key` only.
    ApiKey,
    /// RFC 9421 `hmac-sha256` with the client credential.
    HmacSignature,
    /// RFC 9421 signature with the installation key (ECDSA P-256).
    InstallationSignature,
    /// No credential at all.
    None,
}

/// Options of one call.
#[derive(Clone, Debug, Default)]
pub struct CallOptions {
    /// How to authenticate.
    pub auth: Auth,
    /// Encrypt the body as a JWE with the device's encryption key.
    pub encrypt: bool,
    /// Extra headers to send (and cover, when they are `authorization`).
    pub headers: Vec<(String, String)>,
}

/// A response, fully read.
#[derive(Clone, Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON.
    ///
    /// # Errors
    /// [`Error::Invalid`] if the body is not JSON.
    pub fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::Invalid(format!("response is not JSON: {e}")))
    }

    /// The problem `code`, if the body is a problem document.
    pub fn problem_code(&self) -> Option<String> {
        self.json().ok()?.get("code")?.as_str().map(str::to_owned)
    }
}
