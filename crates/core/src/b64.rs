//! Base64 helpers: base64url without padding (JOSE, Moat tokens) and standard base64 (HTTP
//! structured-field byte sequences).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use crate::{Error, Result};

/// Encodes bytes as base64url without padding.
pub fn url_encode(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding.
///
/// # Errors
/// [`Error::Malformed`] when the input is not canonical base64url.
pub fn url_decode(text: impl AsRef<[u8]>) -> Result<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| Error::Malformed("invalid base64url"))
}

/// Encodes bytes as standard base64 with padding.
pub fn std_encode(bytes: impl AsRef<[u8]>) -> String {
    STANDARD.encode(bytes)
}

/// Decodes standard base64 with padding.
///
/// # Errors
/// [`Error::Malformed`] when the input is not canonical base64.
pub fn std_decode(text: impl AsRef<[u8]>) -> Result<Vec<u8>> {
    STANDARD
        .decode(text)
        .map_err(|_| Error::Malformed("invalid base64"))
}
