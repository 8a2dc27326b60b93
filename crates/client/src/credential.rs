//! What a device holds: the credential Moat delivered and the state kept between runs.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The credential Moat delivered through the mailbox.
#[non_exhaustive]
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Credential {
    /// `static` or `dynamic` mode: an API key.
    ApiKey {
        /// The key, sent as `Moat-Device-Key`.
        key: String,
        /// Device uuid (dynamic mode).
        #[serde(default)]
        device: Option<String>,
    },
    /// `otp` mode: HMAC client credential and the server's RSA encryption key.
    ClientCredential {
        /// Device uuid.
        device: String,
        /// RFC 9421 `keyid`.
        client_id: String,
        /// base64url of the 32-byte HMAC secret.
        hmac_secret: String,
        /// `hmac-sha256`.
        alg: String,
        /// RSA public JWK with `kid`, for JWE bodies.
        encryption_key: Value,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ApiKey { device, .. } => write!(f, "ApiKey(device={device:?})"),
            Self::ClientCredential {
                device, client_id, ..
            } => {
                write!(
                    f,
                    "ClientCredential(device={device}, client_id={client_id})"
                )
            }
        }
    }
}

/// Everything a device keeps between runs (the CLI writes it to a 0600 file).
#[derive(Clone, Serialize, Deserialize)]
pub struct DeviceState {
    /// Server base URL.
    pub server: String,
    /// The app's device id.
    pub device_id: Option<String>,
    /// PKCS#8 of the P-256 installation key, base64url.
    pub installation_key: String,
    /// The delivered credential.
    pub credential: Option<Credential>,
    /// TLS pins (`sha256/<base64>`); when set, only servers with a pinned key are trusted.
    #[serde(default)]
    pub pins: Vec<String>,
}
