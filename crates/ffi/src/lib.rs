//! Kotlin and Swift bindings of the Moat client SDK ([`moat_client`]), made with UniFFI.
//!
//! The interface is one object, [`MoatClient`], plus the records and the error it uses.
//! Network calls are `async` (Kotlin `suspend fun`, Swift `async throws`); they run on a
//! tokio runtime that UniFFI starts on first use, because `moat-client` and its HTTP stack
//! (reqwest) are tokio-based. Everything that needs no network (`sign_request`,
//! `encrypt_json`, `state_json`, …) is synchronous and never waits on a network call.
//!
//! `cargo run -p moat-ffi --bin uniffi-bindgen -- generate --library <libmoat_ffi> --language
//! kotlin|swift --out-dir DIR` writes the bindings (docs/mobile-bindings.md).
#![forbid(unsafe_code)]

use std::sync::{Arc, PoisonError, RwLock};

use aws_lc_rs::hmac;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use moat_client::{Auth, Client, Credential, DeviceState};
use moat_core::b64;
use moat_core::dpop::InstallationKey;
use moat_core::httpsig::SigningKey;
use serde_json::Value;

uniffi::setup_scaffolding!("moat");

/// Errors of every fallible call. In Kotlin this is `MoatException` (a sealed class with one
/// subclass per variant), in Swift `MoatError`.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum MoatError {
    /// The request did not complete: connection refused, TLS (including a pin mismatch),
    /// timeout.
    #[error("transport: {detail}")]
    Transport {
        /// What failed, with its causes.
        detail: String,
    },
    /// The server refused with a problem document (docs/PROTOCOL.md): `code` is Moat's
    /// problem code, e.g. `otp_invalid`, `dpop_invalid`, `rate_limited`.
    #[error("{status} {code}: {detail}")]
    Problem {
        /// HTTP status.
        status: u16,
        /// Moat problem code.
        code: String,
        /// Human-readable detail.
        detail: String,
    },
    /// A protocol or crypto step failed on the device (bad key, bad JWK, signing failed).
    #[error("protocol: {detail}")]
    Protocol {
        /// What failed.
        detail: String,
    },
    /// The mailbox did not deliver what the enrollment expected in time.
    #[error("mailbox: {detail}")]
    Mailbox {
        /// What was missing.
        detail: String,
    },
    /// The client has no credential, or not the kind the request needs.
    #[error("credential: {detail}")]
    Credential {
        /// What is missing.
        detail: String,
    },
    /// An argument is not usable: URL, method, header, JSON, saved state.
    #[error("invalid input: {detail}")]
    Invalid {
        /// What is wrong with it.
        detail: String,
    },
}

/// `detail` with the error's causes, which reqwest keeps out of its own message.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl From<moat_client::Error> for MoatError {
    fn from(e: moat_client::Error) -> Self {
        use moat_client::Error as E;
        match e {
            E::Http(e) => Self::Transport {
                detail: with_causes(&e),
            },
            E::Problem {
                status,
                code,
                detail,
            } => Self::Problem {
                status,
                code,
                detail,
            },
            E::Protocol(e) => Self::Protocol {
                detail: e.to_string(),
            },
            E::Mailbox(detail) => Self::Mailbox { detail },
            E::Credential(detail) => Self::Credential {
                detail: detail.to_owned(),
            },
            E::Invalid(detail) => Self::Invalid { detail },
            other => Self::Protocol {
                detail: other.to_string(),
            },
        }
    }
}

impl From<moat_core::Error> for MoatError {
    fn from(e: moat_core::Error) -> Self {
        Self::Protocol {
            detail: e.to_string(),
        }
    }
}

fn invalid(detail: impl std::fmt::Display) -> MoatError {
    MoatError::Invalid {
        detail: detail.to_string(),
    }
}

/// One HTTP header (or form field, for `call_form`).
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct HttpHeader {
    /// Name; Moat's own headers are returned in lower case.
    pub name: String,
    /// Value.
    pub value: String,
}

/// How a request is authenticated. Where a call takes an optional `AuthMode`, leaving it
/// out (`null`/`nil`) picks the credential the device has: an RFC 9421 `hmac-sha256`
/// signature with a client credential (`otp` mode), else the API key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum AuthMode {
    /// `Moat-Device-Key: <api key>` (`static` and `dynamic` modes).
    ApiKey,
    /// RFC 9421 `hmac-sha256` signature with the client credential (`otp` mode).
    HmacSignature,
    /// RFC 9421 `ecdsa-p256-sha256` signature with the installation key; `keyid` is its
    /// thumbprint. No shared secret exists at all.
    InstallationSignature,
    /// No credential.
    Unauthenticated,
}

impl From<AuthMode> for Auth {
    fn from(mode: AuthMode) -> Self {
        match mode {
            AuthMode::ApiKey => Auth::ApiKey,
            AuthMode::HmacSignature => Auth::HmacSignature,
            AuthMode::InstallationSignature => Auth::InstallationSignature,
            AuthMode::Unauthenticated => Auth::None,
        }
    }
}

/// Options of `call` and `call_form`.
#[derive(Clone, Debug, Default, uniffi::Record)]
pub struct CallOptions {
    /// How to authenticate; unset: by the credential the device has.
    #[uniffi(default)]
    pub auth: Option<AuthMode>,
    /// Send the JSON body as a JWE (`application/jose`) encrypted to the server's key from
    /// the client credential (`otp` mode only).
    #[uniffi(default = false)]
    pub encrypt: bool,
    /// Extra headers to send; an `authorization` header is covered by the signature.
    #[uniffi(default)]
    pub headers: Vec<HttpHeader>,
}

impl CallOptions {
    fn sdk(&self) -> moat_client::CallOptions {
        moat_client::CallOptions {
            auth: self.auth.map_or(Auth::Auto, Auth::from),
            encrypt: self.encrypt,
            headers: self
                .headers
                .iter()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
        }
    }
}

/// A response, fully read, whatever its status.
#[derive(Clone, Debug, uniffi::Record)]
pub struct MoatResponse {
    /// HTTP status.
    pub status: u16,
    /// Response headers, names in lower case, in the order received.
    pub headers: Vec<HttpHeader>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Moat's problem `code` when the body is a problem document
    /// (`application/problem+json`), e.g. `device_key_invalid`.
    pub problem_code: Option<String>,
}

impl From<moat_client::Response> for MoatResponse {
    fn from(r: moat_client::Response) -> Self {
        let problem = r
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/problem+json"));
        Self {
            status: r.status,
            headers: headers_out(&r.headers),
            problem_code: if problem { r.problem_code() } else { None },
            body: r.body,
        }
    }
}

/// Which kind of credential the mailbox delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum CredentialKind {
    /// An API key (`static` or `dynamic` mode), sent as `Moat-Device-Key`.
    ApiKey,
    /// An HMAC client credential and the server's encryption key (`otp` mode).
    ClientCredential,
    /// A kind this version of the bindings does not know.
    Other,
}

/// What the device holds, without its secrets (those are only in `state_json`).
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct CredentialInfo {
    /// The kind of credential.
    pub kind: CredentialKind,
    /// The device uuid Moat assigned (absent for the `static` mode's shared key).
    pub device: Option<String>,
    /// The RFC 9421 `keyid` of HMAC signatures (client credentials only).
    pub client_id: Option<String>,
}

impl From<&Credential> for CredentialInfo {
    fn from(c: &Credential) -> Self {
        match c {
            Credential::ClientCredential {
                device, client_id, ..
            } => Self {
                kind: CredentialKind::ClientCredential,
                device: Some(device.clone()),
                client_id: Some(client_id.clone()),
            },
            Credential::ApiKey { device, .. } => Self {
                kind: CredentialKind::ApiKey,
                device: device.clone(),
                client_id: None,
            },
            _ => Self {
                kind: CredentialKind::Other,
                device: None,
                client_id: None,
            },
        }
    }
}

/// One item read from the built-in mailbox.
#[derive(Clone, Debug, uniffi::Record)]
pub struct MailboxItem {
    /// `api_key`, `enrollment_otp` or `client_credential` (docs/PROTOCOL.md section 3).
    pub kind: String,
    /// The whole item as JSON (it may hold a secret: keep it out of logs).
    pub json: String,
}

fn headers_out(headers: &HeaderMap) -> Vec<HttpHeader> {
    headers
        .iter()
        .map(|(name, value)| HttpHeader {
            name: name.as_str().to_owned(),
            value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
        })
        .collect()
}

fn headers_in(headers: &[HttpHeader]) -> Result<HeaderMap, MoatError> {
    let mut map = HeaderMap::new();
    for h in headers {
        map.append(
            HeaderName::from_bytes(h.name.to_ascii_lowercase().as_bytes())
                .map_err(|e| invalid(format!("header name `{}`: {e}", h.name)))?,
            HeaderValue::from_str(&h.value)
                .map_err(|e| invalid(format!("header `{}`: {e}", h.name)))?,
        );
    }
    Ok(map)
}

fn method(text: &str) -> Result<Method, MoatError> {
    Method::from_bytes(text.as_bytes()).map_err(|e| invalid(format!("method `{text}`: {e}")))
}

fn json_body(text: Option<&str>) -> Result<Option<Value>, MoatError> {
    text.map(|t| serde_json::from_str(t).map_err(|e| invalid(format!("body is not JSON: {e}"))))
        .transpose()
}

/// The client and the clock correction it was built with. Calls take a snapshot (the `Arc`)
/// and never hold the lock across a network wait; the few calls that change the client build
/// a new one from its state and swap it in.
struct Inner {
    client: Arc<Client>,
    clock_offset: i64,
}

/// A device talking to one Moat server: its installation key (its identity), and, once
/// enrolled, the credential the mailbox delivered.
///
/// Persist `state_json` after enrolling (it holds the private key and the
/// credential: keep it in the Android Keystore-backed storage or the iOS Keychain) and
/// restore with `from_state_json`.
#[derive(uniffi::Object)]
pub struct MoatClient {
    inner: RwLock<Inner>,
}

impl MoatClient {
    fn wrap(client: Client) -> Arc<Self> {
        Arc::new(Self {
            inner: RwLock::new(Inner {
                client: Arc::new(client),
                clock_offset: 0,
            }),
        })
    }

    fn current(&self) -> Arc<Client> {
        Arc::clone(
            &self
                .inner
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .client,
        )
    }

    /// A new client from the current one's state, for a call that changes it.
    fn fresh(&self) -> Result<Client, MoatError> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let mut client = Client::from_state(&inner.client.state())?;
        client.set_clock_offset(inner.clock_offset);
        Ok(client)
    }

    fn install(&self, mut client: Client) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        client.set_clock_offset(inner.clock_offset);
        inner.client = Arc::new(client);
    }

    /// The URL to sign: a path (`/v1/device?x=1`) below the server URL, or an absolute URL
    /// on the server's origin. Other origins are refused: an API key must not be sent to
    /// them, and a signature for them would be refused by Moat anyway (`@authority`).
    fn target(client: &Client, method: &Method, url: &str) -> Result<reqwest::Url, MoatError> {
        let none = moat_client::CallOptions {
            auth: Auth::None,
            ..moat_client::CallOptions::default()
        };
        if url.starts_with('/') {
            return Ok(client.prepare(method, url, None, &none)?.0);
        }
        let target = reqwest::Url::parse(url).map_err(|e| invalid(format!("URL: {e}")))?;
        let base = client.prepare(method, "/", None, &none)?.0;
        if target.origin() != base.origin() {
            return Err(invalid(format!(
                "URL `{}` is not on the Moat server's origin `{}`",
                target.origin().ascii_serialization(),
                base.origin().ascii_serialization()
            )));
        }
        Ok(target)
    }
}

#[uniffi::export(async_runtime = "tokio")]
impl MoatClient {
    /// A client for `server_url` (e.g. `https://api.example.com`) with a newly generated
    /// EC P-256 installation key.
    ///
    /// # Errors
    /// `Invalid` for a URL that is not http(s) or has a query.
    #[uniffi::constructor]
    pub fn new(server_url: String) -> Result<Arc<Self>, MoatError> {
        Ok(Self::wrap(Client::generate(&server_url)?))
    }

    /// As `new`, trusting only servers whose TLS key matches one of `pins`
    /// (`sha256/<base64 of the SPKI hash>`, as `moat tls self-signed` prints them).
    ///
    /// # Errors
    /// `Invalid` for a bad URL or pin.
    #[uniffi::constructor]
    pub fn new_pinned(server_url: String, pins: Vec<String>) -> Result<Arc<Self>, MoatError> {
        Ok(Self::wrap(Client::generate_pinned(&server_url, &pins)?))
    }

    /// A client restored from `state_json`.
    ///
    /// # Errors
    /// `Invalid` if the text is not a saved state, `Protocol` if
    /// its key or credential is unusable.
    #[uniffi::constructor]
    pub fn from_state_json(state_json: String) -> Result<Arc<Self>, MoatError> {
        let state: DeviceState =
            serde_json::from_str(&state_json).map_err(|e| invalid(format!("saved state: {e}")))?;
        Ok(Self::wrap(Client::from_state(&state)?))
    }

    /// Everything to persist: server URL, device id, the installation key (PKCS#8), the
    /// credential and the pins, as JSON. It contains secrets.
    ///
    /// # Errors
    /// `Protocol` if it cannot be serialized (not expected).
    pub fn state_json(&self) -> Result<String, MoatError> {
        serde_json::to_string(&self.current().state()).map_err(|e| MoatError::Protocol {
            detail: format!("saving state: {e}"),
        })
    }

    /// The server URL this client talks to.
    pub fn server_url(&self) -> String {
        self.current().state().server
    }

    /// The RFC 7638 thumbprint of the installation key: the identity is `inst:<thumbprint>`,
    /// and it is the `keyid` of installation-key signatures.
    pub fn thumbprint(&self) -> String {
        self.current().thumbprint()
    }

    /// The device id given to the last successful enrollment.
    pub fn device_id(&self) -> Option<String> {
        self.current().state().device_id
    }

    /// The credential held, without its secrets; `None` before enrollment.
    pub fn credential(&self) -> Option<CredentialInfo> {
        self.current().credential().map(CredentialInfo::from)
    }

    /// Corrects the device clock by `seconds` (server time minus device time, e.g. from the
    /// `Date` header of a response) in DPoP proofs and signatures from now on.
    ///
    /// # Errors
    /// As `from_state_json` (not expected: the state was usable before).
    pub fn set_clock_offset(&self, seconds: i64) -> Result<(), MoatError> {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let mut client = Client::from_state(&inner.client.state())?;
        client.set_clock_offset(seconds);
        inner.clock_offset = seconds;
        inner.client = Arc::new(client);
        Ok(())
    }

    /// Stores the credential of a mailbox item (`api_key` or `client_credential`) read by
    /// the app itself: from `read_mailbox`, or from the Firebase mailbox.
    ///
    /// # Errors
    /// `Mailbox` if the item carries no credential.
    pub fn adopt_credential(&self, item_json: String) -> Result<CredentialInfo, MoatError> {
        let credential: Credential =
            serde_json::from_str(&item_json).map_err(|e| MoatError::Mailbox {
                detail: format!("not a credential item: {e}"),
            })?;
        let mut client = self.fresh()?;
        client.set_credential(Some(credential.clone()))?;
        self.install(client);
        Ok(CredentialInfo::from(&credential))
    }

    /// `POST /v1/enroll` with a DPoP proof of the installation key. Returns the response
    /// JSON (`{"channel", "expires_in"}`); the credential then waits in the mailbox.
    ///
    /// # Errors
    /// `Problem` when refused, `Transport` when unreachable.
    #[uniffi::method(default(platform = None))]
    pub async fn enroll(
        &self,
        device_id: String,
        platform: Option<String>,
    ) -> Result<String, MoatError> {
        let mut client = self.fresh()?;
        let answer = client.enroll(&device_id, platform.as_deref()).await?;
        self.install(client);
        Ok(answer.to_string())
    }

    /// `POST /v1/enroll/confirm` (`otp` mode) with the code the mailbox delivered. Returns the
    /// response JSON; the client credential then waits in the mailbox.
    ///
    /// # Errors
    /// `Problem` when refused (`otp_invalid`, `otp_locked`, …).
    pub async fn confirm(&self, device_id: String, otp: String) -> Result<String, MoatError> {
        let answer = self.current().confirm(&device_id, &otp).await?;
        Ok(answer.to_string())
    }

    /// `GET /v1/mailbox`: the items waiting for this installation identity (each is returned
    /// once). Use `adopt_credential` to keep a credential item.
    ///
    /// # Errors
    /// `Problem` when refused.
    pub async fn read_mailbox(&self) -> Result<Vec<MailboxItem>, MoatError> {
        let items = self.current().mailbox().await?;
        Ok(items
            .into_iter()
            .map(|item| MailboxItem {
                kind: item["kind"].as_str().unwrap_or_default().to_owned(),
                json: item.to_string(),
            })
            .collect())
    }

    /// The whole enrollment: enroll, read the mailbox, confirm the one-time code if the
    /// server is in `otp` mode, read and keep the credential.
    ///
    /// # Errors
    /// `Problem` when a step is refused, `Mailbox` if nothing
    /// arrives.
    #[uniffi::method(default(platform = None))]
    pub async fn enroll_and_fetch(
        &self,
        device_id: String,
        platform: Option<String>,
    ) -> Result<CredentialInfo, MoatError> {
        let mut client = self.fresh()?;
        let credential = client
            .enroll_and_fetch(&device_id, platform.as_deref())
            .await?;
        self.install(client);
        Ok(CredentialInfo::from(&credential))
    }

    /// Calls an endpoint behind Moat: `path` (with any query) below the server URL,
    /// `body_json` sent as `application/json` (or as a JWE with `options.encrypt`), with the
    /// device's credential. Returns the response whatever its status.
    ///
    /// # Errors
    /// `Transport` when unreachable, `Credential` when the
    /// requested authentication is not possible, `Invalid` for bad arguments.
    #[uniffi::method(default(body_json = None, options = None))]
    pub async fn call(
        &self,
        method: String,
        path: String,
        body_json: Option<String>,
        options: Option<CallOptions>,
    ) -> Result<MoatResponse, MoatError> {
        let method = self::method(&method)?;
        let body = json_body(body_json.as_deref())?;
        let options = options.unwrap_or_default().sdk();
        let r = self
            .current()
            .call(method, &path, body.as_ref(), options)
            .await?;
        Ok(r.into())
    }

    /// `POST`s an `application/x-www-form-urlencoded` body (e.g. to the token endpoint
    /// `/api/token`), authenticated as `call`.
    ///
    /// # Errors
    /// As `call`.
    #[uniffi::method(default(options = None))]
    pub async fn call_form(
        &self,
        path: String,
        fields: Vec<HttpHeader>,
        options: Option<CallOptions>,
    ) -> Result<MoatResponse, MoatError> {
        let pairs: Vec<(&str, &str)> = fields
            .iter()
            .map(|f| (f.name.as_str(), f.value.as_str()))
            .collect();
        let options = options.unwrap_or_default().sdk();
        let r = self.current().call_form(&path, &pairs, options).await?;
        Ok(r.into())
    }

    /// The headers that authenticate a request the app sends with its own HTTP stack
    /// (OkHttp, URLSession). Send the request exactly as signed, with these headers added:
    /// with a signature, `content-digest` (when `body` is not empty), `signature-input` and
    /// `signature` (RFC 9421, label `moat`, covering `@method`, `@authority`, `@path`,
    /// `@query` when there is one, `content-digest` and `authorization` when present, with
    /// `created`, `nonce`, `keyid`, `alg`); with an API key, `moat-device-key`.
    ///
    /// `url` is a path below the server URL (`/v1/device?x=1`) or an absolute URL on the
    /// server's origin. `headers` are the ones the request will carry (an `authorization`
    /// header among them is covered). Synchronous and offline; each call makes a new nonce.
    ///
    /// # Errors
    /// `Credential` before enrollment (unless `auth` is
    /// `InstallationSignature` or `Unauthenticated`), `Invalid` for a bad
    /// method, URL or header.
    #[uniffi::method(default(auth = None))]
    pub fn sign_request(
        &self,
        method: String,
        url: String,
        headers: Vec<HttpHeader>,
        body: Option<Vec<u8>>,
        auth: Option<AuthMode>,
    ) -> Result<Vec<HttpHeader>, MoatError> {
        let (client, offset) = {
            let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
            (Arc::clone(&inner.client), inner.clock_offset)
        };
        let method = self::method(&method)?;
        let url = Self::target(&client, &method, &url)?;
        let headers = headers_in(&headers)?;
        let mode = match auth {
            Some(mode) => mode,
            None => match client.credential() {
                Some(Credential::ClientCredential { .. }) => AuthMode::HmacSignature,
                Some(_) => AuthMode::ApiKey,
                None => {
                    return Err(MoatError::Credential {
                        detail: "not enrolled: enroll first, or sign with the installation key"
                            .into(),
                    });
                }
            },
        };
        let now = moat_client::unix_now() + offset;
        let signed = match mode {
            AuthMode::Unauthenticated => return Ok(Vec::new()),
            AuthMode::ApiKey => {
                let Some(Credential::ApiKey { key, .. }) = client.credential() else {
                    return Err(MoatError::Credential {
                        detail: "no API key".into(),
                    });
                };
                return Ok(vec![HttpHeader {
                    name: "moat-device-key".into(),
                    value: key.clone(),
                }]);
            }
            AuthMode::HmacSignature => {
                let Some(Credential::ClientCredential {
                    client_id,
                    hmac_secret,
                    ..
                }) = client.credential()
                else {
                    return Err(MoatError::Credential {
                        detail: "no client credential".into(),
                    });
                };
                let key = hmac::Key::new(hmac::HMAC_SHA256, &b64::url_decode(hmac_secret)?);
                moat_client::sign_request(
                    &method,
                    &url,
                    &headers,
                    body.as_deref(),
                    client_id,
                    SigningKey::Hmac(&key),
                    now,
                )?
            }
            AuthMode::InstallationSignature => {
                let pkcs8 = b64::url_decode(client.state().installation_key)?;
                let key = InstallationKey::from_pkcs8_p256(&pkcs8)?;
                moat_client::sign_request(
                    &method,
                    &url,
                    &headers,
                    body.as_deref(),
                    &client.thumbprint(),
                    SigningKey::Installation(&key),
                    now,
                )?
            }
        };
        Ok(signed
            .headers
            .into_iter()
            .map(|(name, value)| HttpHeader {
                name: name.to_owned(),
                value,
            })
            .collect())
    }

    /// Encrypts a JSON body as a compact JWE (RSA-OAEP-256 + A256GCM) to the server's key
    /// from the client credential (`otp` mode), for an app sending it with its own HTTP
    /// stack: send it with `Content-Type: application/jose`, signing the JWE bytes.
    ///
    /// # Errors
    /// `Credential` without a client credential, `Invalid` if
    /// `json` is not JSON.
    pub fn encrypt_json(&self, json: String) -> Result<String, MoatError> {
        let body = json_body(Some(&json))?;
        let options = moat_client::CallOptions {
            auth: Auth::None,
            encrypt: true,
            headers: Vec::new(),
        };
        let (_, _, bytes) = self
            .current()
            .prepare(&Method::POST, "/", body.as_ref(), &options)?;
        let bytes = bytes.ok_or_else(|| MoatError::Protocol {
            detail: "no body".into(),
        })?;
        String::from_utf8(bytes).map_err(|e| MoatError::Protocol {
            detail: e.to_string(),
        })
    }
}
