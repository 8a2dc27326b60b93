//! The device: its installation key, credential, clock correction and HTTP client.

use aws_lc_rs::hmac;
use http::Method;
use moat_core::b64;
use moat_core::dpop::InstallationKey;
use serde_json::Value;

use crate::call::Response;
use crate::credential::{Credential, DeviceState};
use crate::error::{Error, Result};
use crate::pin;
use crate::sign::unix_now;

/// A device talking to one Moat server.
pub struct Client {
    pub(crate) http: reqwest::Client,
    pub(crate) base: reqwest::Url,
    pub(crate) key: InstallationKey,
    pub(crate) key_pkcs8: Vec<u8>,
    pub(crate) device_id: Option<String>,
    pub(crate) credential: Option<Credential>,
    pub(crate) hmac: Option<hmac::Key>,
    pub(crate) clock_offset: i64,
    pub(crate) pins: Vec<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("credential", &self.credential)
            .finish()
    }
}

fn base_url(text: &str) -> Result<reqwest::Url> {
    let url = reqwest::Url::parse(text.trim_end_matches('/'))
        .map_err(|e| Error::Invalid(format!("server URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.query().is_some() {
        return Err(Error::Invalid(
            "server URL must be http(s) without query".into(),
        ));
    }
    Ok(url)
}

impl Client {
    /// A client with a newly generated P-256 installation key.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad URL.
    pub fn generate(server: &str) -> Result<Self> {
        let (key, pkcs8) = InstallationKey::generate_p256()?;
        Self::with_key(server, key, pkcs8, reqwest::Client::new())
    }

    /// A client from saved state.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad URL or key.
    pub fn from_state(state: &DeviceState) -> Result<Self> {
        let pkcs8 = b64::url_decode(&state.installation_key)?;
        let key = InstallationKey::from_pkcs8_p256(&pkcs8)?;
        let http = if state.pins.is_empty() {
            reqwest::Client::new()
        } else {
            pin::pinned_http_client(&state.pins)?
        };
        let mut client = Self::with_key(&state.server, key, pkcs8, http)?;
        client.pins = state.pins.clone();
        client.device_id = state.device_id.clone();
        client.set_credential(state.credential.clone())?;
        Ok(client)
    }

    /// A client with a given key and HTTP client (to set timeouts, TLS pins, …).
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad URL.
    pub fn with_key(
        server: &str,
        key: InstallationKey,
        pkcs8: Vec<u8>,
        http: reqwest::Client,
    ) -> Result<Self> {
        Ok(Self {
            http,
            base: base_url(server)?,
            key,
            key_pkcs8: pkcs8,
            device_id: None,
            credential: None,
            hmac: None,
            clock_offset: 0,
            pins: Vec::new(),
        })
    }

    /// Sends this client's requests through `http` from now on (to set a proxy, a resolver
    /// override, timeouts). The server URL signed into requests stays the same.
    pub fn set_http_client(&mut self, http: reqwest::Client) {
        self.http = http;
    }

    /// Corrects the device clock by `seconds` (for example from the server's `Date` header)
    /// in DPoP `iat` and signature `created`.
    pub fn set_clock_offset(&mut self, seconds: i64) {
        self.clock_offset = seconds;
    }

    pub(crate) fn now(&self) -> i64 {
        unix_now() + self.clock_offset
    }

    /// The state to persist.
    pub fn state(&self) -> DeviceState {
        DeviceState {
            server: self.base.as_str().trim_end_matches('/').to_owned(),
            device_id: self.device_id.clone(),
            installation_key: b64::url_encode(&self.key_pkcs8),
            credential: self.credential.clone(),
            pins: self.pins.clone(),
        }
    }

    /// A client with a new P-256 key that trusts only servers whose key matches `pins`.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a bad URL or pin.
    pub fn generate_pinned(server: &str, pins: &[String]) -> Result<Self> {
        let (key, pkcs8) = InstallationKey::generate_p256()?;
        let mut client = Self::with_key(server, key, pkcs8, pin::pinned_http_client(pins)?)?;
        client.pins = pins.to_vec();
        Ok(client)
    }

    /// The installation identity's thumbprint (the `keyid` of installation-key signatures).
    pub fn thumbprint(&self) -> String {
        self.key.public_jwk().thumbprint()
    }

    /// The current credential.
    pub fn credential(&self) -> Option<&Credential> {
        self.credential.as_ref()
    }

    /// Replaces the credential.
    ///
    /// # Errors
    /// [`Error::Protocol`] if an HMAC secret is not base64url.
    pub fn set_credential(&mut self, credential: Option<Credential>) -> Result<()> {
        self.hmac = match &credential {
            Some(Credential::ClientCredential { hmac_secret, .. }) => Some(hmac::Key::new(
                hmac::HMAC_SHA256,
                &b64::url_decode(hmac_secret)?,
            )),
            _ => None,
        };
        self.credential = credential;
        Ok(())
    }

    pub(crate) fn url(&self, path_and_query: &str) -> Result<reqwest::Url> {
        if !path_and_query.starts_with('/') {
            return Err(Error::Invalid("path must start with /".into()));
        }
        let mut url = self.base.clone();
        let base_path = url.path().trim_end_matches('/').to_owned();
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        url.set_path(&format!("{base_path}{path}"));
        url.set_query(query);
        Ok(url)
    }

    /// A DPoP proof for `method` on `path`.
    ///
    /// # Errors
    /// [`Error::Protocol`] if signing fails.
    pub fn dpop(&self, method: &Method, path: &str) -> Result<String> {
        let url = self.url(path)?;
        Ok(self
            .key
            .dpop_proof(method.as_str(), url.as_str(), self.now())?)
    }

    pub(crate) async fn read(response: reqwest::Response) -> Result<Response> {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await?.to_vec();
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    pub(crate) fn problem(r: &Response) -> Error {
        let v = r.json().unwrap_or(Value::Null);
        Error::Problem {
            status: r.status,
            code: v
                .get("code")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_owned(),
            detail: v
                .get("detail")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        }
    }
}
