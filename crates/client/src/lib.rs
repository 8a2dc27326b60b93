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

pub mod firebase;
pub mod pin;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use moat_core::dpop::InstallationKey;
use moat_core::httpsig::{self, Message, Params, SigningKey};
use moat_core::jwk::PublicJwk;
use moat_core::{b64, digest, jwe, random};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Errors of the SDK.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Transport failure.
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    /// The server refused with a problem document.
    #[error("{status} {code}: {detail}")]
    Problem {
        /// HTTP status.
        status: u16,
        /// Moat problem code.
        code: String,
        /// Detail.
        detail: String,
    },
    /// Protocol or crypto failure on the client side.
    #[error("protocol: {0}")]
    Protocol(#[from] moat_core::Error),
    /// The mailbox did not deliver what was expected in time.
    #[error("mailbox: {0}")]
    Mailbox(String),
    /// The client has no credential (or the wrong kind) for the request.
    #[error("credential: {0}")]
    Credential(&'static str),
    /// The URL or a header value is not usable.
    #[error("invalid input: {0}")]
    Invalid(String),
}

/// Result type of the SDK.
pub type Result<T, E = Error> = std::result::Result<T, E>;

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

/// The headers an RFC 9421 signature adds to a request.
#[derive(Clone, Debug)]
pub struct SignedHeaders {
    /// `(name, value)` pairs: `signature-input`, `signature`, and `content-digest` if a body
    /// was given.
    pub headers: Vec<(&'static str, String)>,
}

/// Signs a request the way Moat expects: covers `@method`, `@authority`, `@path`, `@query`
/// (when there is one), `content-digest` (when there is a body) and `authorization` (when
/// sent), with `created`, a fresh 16-byte `nonce`, `keyid` and `alg`.
///
/// # Errors
/// [`Error::Invalid`] for an unusable URL, [`Error::Protocol`] if signing fails.
pub fn sign_request(
    method: &Method,
    url: &reqwest::Url,
    headers: &HeaderMap,
    body: Option<&[u8]>,
    keyid: &str,
    key: SigningKey<'_>,
    now: i64,
) -> Result<SignedHeaders> {
    let mut headers = headers.clone();
    let mut out = Vec::new();
    if let Some(body) = body.filter(|b| !b.is_empty()) {
        let field = digest::sha256_field(body);
        headers.insert(
            "content-digest",
            HeaderValue::from_str(&field).map_err(|e| Error::Invalid(e.to_string()))?,
        );
        out.push(("content-digest", field));
    }
    let host = url
        .host_str()
        .ok_or_else(|| Error::Invalid("URL has no host".into()))?;
    let authority = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    let msg = Message {
        method: method.as_str(),
        scheme: url.scheme(),
        authority: &authority,
        path: url.path(),
        query: url.query(),
        headers: &headers,
    };
    let mut components = vec!["@method", "@authority", "@path"];
    if url.query().is_some() {
        components.push("@query");
    }
    if headers.contains_key("content-digest") {
        components.push("content-digest");
    }
    if headers.contains_key(http::header::AUTHORIZATION) {
        components.push("authorization");
    }
    let params = Params {
        created: Some(now),
        nonce: Some(random::token(16)?),
        keyid: Some(keyid.to_owned()),
        alg: Some(key.algorithm().name().to_owned()),
        ..Params::default()
    };
    let signed = httpsig::sign("moat", &components, &params, &msg, key)?;
    out.push(("signature-input", signed.signature_input));
    out.push(("signature", signed.signature));
    Ok(SignedHeaders { headers: out })
}

/// Current Unix time.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The code of an `enrollment_otp` mailbox item (`None` for any other kind).
fn otp_code(item: &Value) -> Result<Option<String>> {
    if item["kind"] != "enrollment_otp" {
        return Ok(None);
    }
    item["code"]
        .as_str()
        .map(|c| Some(c.to_owned()))
        .ok_or_else(|| Error::Mailbox("otp item has no code".into()))
}

/// A device talking to one Moat server.
pub struct Client {
    http: reqwest::Client,
    base: reqwest::Url,
    key: InstallationKey,
    key_pkcs8: Vec<u8>,
    device_id: Option<String>,
    credential: Option<Credential>,
    hmac: Option<hmac::Key>,
    clock_offset: i64,
    pins: Vec<String>,
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

    fn now(&self) -> i64 {
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

    fn url(&self, path_and_query: &str) -> Result<reqwest::Url> {
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

    async fn read(response: reqwest::Response) -> Result<Response> {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await?.to_vec();
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    fn problem(r: &Response) -> Error {
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

    async fn identity_post(&self, path: &str, body: &Value) -> Result<Value> {
        let proof = self.dpop(&Method::POST, path)?;
        let r = Self::read(
            self.http
                .post(self.url(path)?)
                .header("dpop", proof)
                .json(body)
                .send()
                .await?,
        )
        .await?;
        if r.status != 200 {
            return Err(Self::problem(&r));
        }
        r.json()
    }

    /// `POST /v1/enroll`.
    ///
    /// # Errors
    /// [`Error::Problem`] when refused.
    pub async fn enroll(&mut self, device_id: &str, platform: Option<&str>) -> Result<Value> {
        let mut body = serde_json::json!({"device_id": device_id});
        if let Some(p) = platform {
            body["platform"] = p.into();
        }
        let out = self.identity_post("/v1/enroll", &body).await?;
        self.device_id = Some(device_id.to_owned());
        Ok(out)
    }

    /// `POST /v1/enroll/confirm`.
    ///
    /// # Errors
    /// [`Error::Problem`] when refused.
    pub async fn confirm(&self, device_id: &str, otp: &str) -> Result<Value> {
        self.identity_post(
            "/v1/enroll/confirm",
            &serde_json::json!({"device_id": device_id, "otp": otp}),
        )
        .await
    }

    /// `GET /v1/mailbox`: the items waiting for this identity (each returned once).
    ///
    /// # Errors
    /// [`Error::Problem`] when refused.
    pub async fn mailbox(&self) -> Result<Vec<Value>> {
        let proof = self.dpop(&Method::GET, "/v1/mailbox")?;
        let r = Self::read(
            self.http
                .get(self.url("/v1/mailbox")?)
                .header("dpop", proof)
                .send()
                .await?,
        )
        .await?;
        if r.status != 200 {
            return Err(Self::problem(&r));
        }
        Ok(r.json()?
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    async fn wait_for(&self, kind: &str) -> Result<Value> {
        // The built-in mailbox is written before enroll answers; polling covers delivery
        // channels that are asynchronous.
        for attempt in 0..20u64 {
            if let Some(item) = self
                .mailbox()
                .await?
                .into_iter()
                .rev()
                .find(|i| i["kind"] == kind)
            {
                return Ok(item);
            }
            tokio::time::sleep(Duration::from_millis(50 * (attempt + 1))).await;
        }
        Err(Error::Mailbox(format!("no `{kind}` item arrived")))
    }

    /// The whole enrollment: enroll, read the mailbox, confirm the code if the server is in
    /// `otp` mode, read the credential. Stores and returns it.
    ///
    /// # Errors
    /// [`Error::Problem`] when a step is refused, [`Error::Mailbox`] if nothing arrives.
    pub async fn enroll_and_fetch(
        &mut self,
        device_id: &str,
        platform: Option<&str>,
    ) -> Result<Credential> {
        self.enroll(device_id, platform).await?;
        let mut item = None;
        for attempt in 0..20u64 {
            item = self
                .mailbox()
                .await?
                .into_iter()
                .rev()
                .find(|i| i["kind"] == "api_key" || i["kind"] == "enrollment_otp");
            if item.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50 * (attempt + 1))).await;
        }
        let item = item.ok_or_else(|| Error::Mailbox("no enrollment item arrived".into()))?;
        let item = match otp_code(&item)? {
            Some(code) => {
                self.confirm(device_id, &code).await?;
                self.wait_for("client_credential").await?
            }
            None => item,
        };
        self.adopt(item)
    }

    /// Stores the credential a mailbox item carries, and returns it.
    fn adopt(&mut self, item: Value) -> Result<Credential> {
        let credential: Credential = serde_json::from_value(item)
            .map_err(|e| Error::Mailbox(format!("unexpected item: {e}")))?;
        self.set_credential(Some(credential.clone()))?;
        Ok(credential)
    }

    /// Builds the headers and body of a protected call without sending it.
    ///
    /// # Errors
    /// [`Error::Credential`] when the requested authentication is not possible.
    pub fn prepare(
        &self,
        method: &Method,
        path_and_query: &str,
        body: Option<&Value>,
        options: &CallOptions,
    ) -> Result<(reqwest::Url, HeaderMap, Option<Vec<u8>>)> {
        self.prepare_payload(
            method,
            path_and_query,
            body.map_or(Payload::None, Payload::Json),
            options,
        )
    }

    /// As [`Self::prepare`], for any payload.
    ///
    /// # Errors
    /// [`Error::Credential`] when the requested authentication is not possible.
    pub fn prepare_payload(
        &self,
        method: &Method,
        path_and_query: &str,
        payload: Payload<'_>,
        options: &CallOptions,
    ) -> Result<(reqwest::Url, HeaderMap, Option<Vec<u8>>)> {
        let url = self.url(path_and_query)?;
        let mut headers = HeaderMap::new();
        for (name, value) in &options.headers {
            headers.append(
                HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                    .map_err(|e| Error::Invalid(e.to_string()))?,
                HeaderValue::from_str(value).map_err(|e| Error::Invalid(e.to_string()))?,
            );
        }
        let body = match payload {
            Payload::None => None,
            Payload::Form(pairs) => {
                headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/x-www-form-urlencoded"),
                );
                Some(
                    serde_urlencoded::to_string(pairs)
                        .map_err(|e| Error::Invalid(e.to_string()))?
                        .into_bytes(),
                )
            }
            Payload::Json(v) if options.encrypt => {
                let Some(Credential::ClientCredential { encryption_key, .. }) = &self.credential
                else {
                    return Err(Error::Credential(
                        "encryption needs an otp-mode client credential",
                    ));
                };
                let jwk = PublicJwk::from_json(&strip_jwk_metadata(encryption_key))?;
                let kid = encryption_key.get("kid").and_then(Value::as_str);
                headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/jose"),
                );
                Some(jwe::encrypt(v.to_string().as_bytes(), &jwk, kid)?.into_bytes())
            }
            Payload::Json(v) => {
                headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                Some(v.to_string().into_bytes())
            }
        };
        let auth = match options.auth {
            Auth::Auto => match &self.credential {
                Some(Credential::ClientCredential { .. }) => Auth::HmacSignature,
                Some(Credential::ApiKey { .. }) => Auth::ApiKey,
                None => Auth::None,
            },
            other => other,
        };
        let now = self.now();
        let signed = match auth {
            Auth::ApiKey => {
                let Some(Credential::ApiKey { key, .. }) = &self.credential else {
                    return Err(Error::Credential("no API key"));
                };
                headers.insert(
                    "moat-device-key",
                    HeaderValue::from_str(key).map_err(|e| Error::Invalid(e.to_string()))?,
                );
                None
            }
            Auth::HmacSignature => {
                let (Some(Credential::ClientCredential { client_id, .. }), Some(key)) =
                    (&self.credential, &self.hmac)
                else {
                    return Err(Error::Credential("no client credential"));
                };
                Some(sign_request(
                    method,
                    &url,
                    &headers,
                    body.as_deref(),
                    client_id,
                    SigningKey::Hmac(key),
                    now,
                )?)
            }
            Auth::InstallationSignature => Some(sign_request(
                method,
                &url,
                &headers,
                body.as_deref(),
                &self.thumbprint(),
                SigningKey::Installation(&self.key),
                now,
            )?),
            _ => None,
        };
        if let Some(signed) = signed {
            for (name, value) in signed.headers {
                headers.insert(
                    name,
                    HeaderValue::from_str(&value).map_err(|e| Error::Invalid(e.to_string()))?,
                );
            }
        }
        Ok((url, headers, body))
    }

    /// Calls a protected endpoint with any payload (JSON, form or none) and returns the
    /// response whatever its status.
    ///
    /// # Errors
    /// As [`Self::call`].
    pub async fn call_payload(
        &self,
        method: Method,
        path_and_query: &str,
        payload: Payload<'_>,
        options: CallOptions,
    ) -> Result<Response> {
        let (url, headers, body) =
            self.prepare_payload(&method, path_and_query, payload, &options)?;
        let mut request = self.http.request(method, url).headers(headers);
        if let Some(body) = body {
            request = request.body(body);
        }
        Self::read(request.send().await?).await
    }

    /// Posts a form (e.g. to the RFC 6749 token endpoint) with the device credential.
    ///
    /// # Errors
    /// As [`Self::call`].
    pub async fn call_form(
        &self,
        path: &str,
        pairs: &[(&str, &str)],
        options: CallOptions,
    ) -> Result<Response> {
        let (url, headers, body) =
            self.prepare_payload(&Method::POST, path, Payload::Form(pairs), &options)?;
        let mut request = self.http.post(url).headers(headers);
        if let Some(body) = body {
            request = request.body(body);
        }
        Self::read(request.send().await?).await
    }

    /// Attests the app by measurement: asks for a challenge for `(app_id, version)`, hashes the
    /// nonce and the challenged ranges of `package`, and returns the integrity token (whether
    /// it is genuine only the API server can tell). `bind` ties the token to an
    /// `Authorization` header value.
    ///
    /// # Errors
    /// [`Error::Problem`] when a call is refused.
    pub async fn attest_package(
        &self,
        app_id: &str,
        version: &str,
        package: &[u8],
        bind: Option<&str>,
    ) -> Result<String> {
        let body = serde_json::json!({"app_id": app_id, "version": version});
        let r = self
            .call(
                Method::POST,
                "/v1/attest/challenge",
                Some(&body),
                CallOptions::default(),
            )
            .await?;
        if r.status != 200 {
            return Err(Self::problem(&r));
        }
        let c = r.json()?;
        let nonce = b64::url_decode(c["nonce"].as_str().unwrap_or_default())?;
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(&nonce);
        for range in c["ranges"].as_array().cloned().unwrap_or_default() {
            let offset = usize::try_from(range[0].as_u64().unwrap_or(0)).unwrap_or(usize::MAX);
            let len = usize::try_from(range[1].as_u64().unwrap_or(0)).unwrap_or(0);
            let end = offset.saturating_add(len).min(package.len());
            ctx.update(package.get(offset.min(end)..end).unwrap_or_default());
        }
        let mut body = serde_json::json!({
            "challenge_id": c["challenge_id"],
            "measurement": b64::url_encode(ctx.finish().as_ref()),
        });
        if let Some(authorization) = bind {
            body["bind"] = b64::url_encode(aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                authorization.as_bytes(),
            ))
            .into();
        }
        let r = self
            .call(
                Method::POST,
                "/v1/attest",
                Some(&body),
                CallOptions::default(),
            )
            .await?;
        if r.status != 200 {
            return Err(Self::problem(&r));
        }
        r.json()?["integrity_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Error::Invalid("no integrity_token".into()))
    }

    /// Calls a protected endpoint and returns the response whatever its status.
    ///
    /// # Errors
    /// [`Error::Http`] on transport failure, [`Error::Credential`] as for [`Self::prepare`].
    pub async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
        options: CallOptions,
    ) -> Result<Response> {
        let (url, headers, body) = self.prepare(&method, path_and_query, body, &options)?;
        let mut request = self.http.request(method, url).headers(headers);
        if let Some(body) = body {
            request = request.body(body);
        }
        Self::read(request.send().await?).await
    }
}

/// The encryption key as delivered carries `kid`, `alg` and `use` beside the key members.
fn strip_jwk_metadata(jwk: &Value) -> Value {
    let mut v = jwk.clone();
    if let Some(obj) = v.as_object_mut() {
        obj.remove("kid");
        obj.remove("alg");
        obj.remove("use");
    }
    v
}
