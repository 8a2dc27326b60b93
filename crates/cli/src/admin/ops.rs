//! The admin operations, each written once as a method of [`Operations`], with two
//! implementations: [`Local`] runs it in this process on the store (through
//! `moat_server::admin`), [`Remote`] asks a running instance's admin API, which runs the same
//! `moat_server::admin` function there. The commands call the trait and never ask which.

use std::time::Duration;

use anyhow::{Context as _, Result};
use moat_server::admin::{AppView, AuditFilter, AuditPage, CleanupView, DeviceView, OutboxMessage};
use reqwest::Method;

use crate::usage::UsageError;

/// The admin operations (see the module documentation).
pub trait Operations {
    /// Runs one pass of the cleanup job.
    async fn cleanup(&self) -> Result<CleanupView>;
    /// A page of the audit log.
    async fn audit(&self, filter: AuditFilter) -> Result<AuditPage>;
    /// A page of devices, newest first.
    async fn devices(&self, limit: u32, offset: u32) -> Result<Vec<DeviceView>>;
    /// Revokes a device; a missing one is a [`Refused`] with status 404.
    async fn revoke(&self, id: uuid::Uuid) -> Result<DeviceView>;
    /// The SMS outbox (messages kept by the log provider), optionally of one phone.
    async fn outbox(&self, phone: Option<String>, limit: u32) -> Result<Vec<OutboxMessage>>;
    /// Rotates the access-token signing key; returns the new `kid`.
    async fn rotate_signing_key(&self) -> Result<String>;
    /// Registers an app package.
    async fn register(
        &self,
        app_id: &str,
        version: &str,
        bytes: Vec<u8>,
    ) -> Result<serde_json::Value>;
    /// The registered app packages.
    async fn apps(&self) -> Result<Vec<AppView>>;
    /// Retires an app package; a missing one is a [`Refused`] with status 404.
    async fn retire(&self, app_id: &str, version: &str) -> Result<serde_json::Value>;
    /// Rotates the integrity-token secret; returns the new `kid`.
    async fn rotate_integrity_secret(&self) -> Result<String>;
    /// The integrity secrets as `(kid, base64url secret, current)`.
    fn integrity_secrets(&self) -> Result<Vec<(String, String, bool)>>;
}

/// The operations run in this process, on the store the configuration names.
pub struct Local(pub moat_server::AppState);

/// The operations run by a server, through its admin API.
pub struct Remote(pub Api);

/// A refusal of the admin API (or of the same operation run on the store).
#[derive(Debug)]
pub struct Refused {
    /// The HTTP status the API answers (or would answer) with.
    pub status: u16,
    message: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refused {}

impl From<moat_server::error::ApiError> for Refused {
    fn from(e: moat_server::error::ApiError) -> Self {
        Self {
            status: e.status().as_u16(),
            message: format!("{}: {}", e.code(), e.detail()),
        }
    }
}

/// `e` of an operation run on the store, as the API path reports it.
fn refused(e: moat_server::error::ApiError) -> anyhow::Error {
    Refused::from(e).into()
}

/// Whether `e` is a refusal with status 404 (no such device or package).
pub fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Refused>().is_some_and(|r| r.status == 404)
}

/// The actor the audit log records for operations run in this process.
const ACTOR: &str = "cli";

impl Operations for Local {
    async fn cleanup(&self) -> Result<CleanupView> {
        moat_server::admin::run_cleanup(&self.0)
            .await
            .map_err(refused)
    }

    async fn audit(&self, filter: AuditFilter) -> Result<AuditPage> {
        moat_server::admin::audit(&self.0, filter)
            .await
            .map_err(refused)
    }

    async fn devices(&self, limit: u32, offset: u32) -> Result<Vec<DeviceView>> {
        moat_server::admin::devices(&self.0, limit, offset, None)
            .await
            .map_err(refused)
    }

    async fn revoke(&self, id: uuid::Uuid) -> Result<DeviceView> {
        moat_server::admin::revoke(&self.0, id, ACTOR)
            .await
            .map_err(refused)
    }

    async fn outbox(&self, phone: Option<String>, limit: u32) -> Result<Vec<OutboxMessage>> {
        moat_server::admin::outbox(&self.0, phone.as_deref(), limit)
            .await
            .map_err(refused)
    }

    async fn rotate_signing_key(&self) -> Result<String> {
        moat_server::admin::rotate_signing_key(&self.0, ACTOR)
            .await
            .map_err(refused)
    }

    async fn register(
        &self,
        app_id: &str,
        version: &str,
        bytes: Vec<u8>,
    ) -> Result<serde_json::Value> {
        moat_server::admin::register(&self.0, app_id, version, &bytes)
            .await
            .map_err(refused)
    }

    async fn apps(&self) -> Result<Vec<AppView>> {
        moat_server::admin::apps(&self.0).await.map_err(refused)
    }

    async fn retire(&self, app_id: &str, version: &str) -> Result<serde_json::Value> {
        moat_server::admin::retire(&self.0, app_id, version)
            .await
            .map_err(refused)
    }

    async fn rotate_integrity_secret(&self) -> Result<String> {
        moat_server::admin::rotate_integrity_secret(&self.0, ACTOR)
            .await
            .map_err(refused)
    }

    fn integrity_secrets(&self) -> Result<Vec<(String, String, bool)>> {
        Ok(self.0.attestation.integrity().export())
    }
}

#[derive(serde::Deserialize)]
struct DevicesBody {
    devices: Vec<DeviceView>,
}

#[derive(serde::Deserialize)]
struct MessagesBody {
    messages: Vec<OutboxMessage>,
}

#[derive(serde::Deserialize)]
struct AppsBody {
    apps: Vec<AppView>,
}

#[derive(serde::Deserialize)]
struct Kid {
    kid: String,
}

impl Operations for Remote {
    async fn cleanup(&self) -> Result<CleanupView> {
        self.0
            .call(Method::POST, &["admin", "v1", "cleanup"], &[], None)
            .await
    }

    async fn audit(&self, filter: AuditFilter) -> Result<AuditPage> {
        let mut query = Vec::new();
        for (name, value) in [
            ("kind", filter.kind),
            ("subject", filter.subject),
            ("before", filter.before),
            ("since", filter.since.map(|s| s.to_string())),
            ("limit", filter.limit.map(|l| l.to_string())),
        ] {
            if let Some(value) = value {
                query.push((name, value));
            }
        }
        self.0
            .call(Method::GET, &["admin", "v1", "audit"], &query, None)
            .await
    }

    async fn devices(&self, limit: u32, offset: u32) -> Result<Vec<DeviceView>> {
        let body: DevicesBody = self
            .0
            .call(
                Method::GET,
                &["admin", "v1", "devices"],
                &[("limit", limit.to_string()), ("offset", offset.to_string())],
                None,
            )
            .await?;
        Ok(body.devices)
    }

    async fn revoke(&self, id: uuid::Uuid) -> Result<DeviceView> {
        let id = id.to_string();
        self.0
            .call(
                Method::POST,
                &["admin", "v1", "devices", &id, "revoke"],
                &[],
                None,
            )
            .await
    }

    async fn outbox(&self, phone: Option<String>, limit: u32) -> Result<Vec<OutboxMessage>> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(phone) = phone {
            query.push(("phone", phone));
        }
        let body: MessagesBody = self
            .0
            .call(Method::GET, &["admin", "v1", "sms", "outbox"], &query, None)
            .await?;
        Ok(body.messages)
    }

    async fn rotate_signing_key(&self) -> Result<String> {
        let body: Kid = self
            .0
            .call(Method::POST, &["admin", "v1", "keys", "rotate"], &[], None)
            .await?;
        Ok(body.kid)
    }

    async fn register(
        &self,
        app_id: &str,
        version: &str,
        bytes: Vec<u8>,
    ) -> Result<serde_json::Value> {
        self.0
            .call(
                Method::PUT,
                &["admin", "v1", "apps", app_id, version],
                &[],
                Some(bytes),
            )
            .await
    }

    async fn apps(&self) -> Result<Vec<AppView>> {
        let body: AppsBody = self
            .0
            .call(Method::GET, &["admin", "v1", "apps"], &[], None)
            .await?;
        Ok(body.apps)
    }

    async fn retire(&self, app_id: &str, version: &str) -> Result<serde_json::Value> {
        self.0
            .call(
                Method::POST,
                &["admin", "v1", "apps", app_id, version, "retire"],
                &[],
                None,
            )
            .await
    }

    async fn rotate_integrity_secret(&self) -> Result<String> {
        let body: Kid = self
            .0
            .call(
                Method::POST,
                &["admin", "v1", "integrity", "rotate"],
                &[],
                None,
            )
            .await?;
        Ok(body.kid)
    }

    fn integrity_secrets(&self) -> Result<Vec<(String, String, bool)>> {
        Err(UsageError(
            "integrity show reads the secrets from the store; the admin API does not \
             hand them out (run it with --config where the data key is)"
                .into(),
        )
        .into())
    }
}

/// A running instance's admin API.
pub struct Api {
    /// Its base URL, ending in `/`.
    pub base: reqwest::Url,
    token: String,
    http: reqwest::Client,
}

impl Api {
    /// The API at `url`, called with the bearer `token`.
    pub fn new(url: &str, token: String) -> Result<Self> {
        let mut base =
            reqwest::Url::parse(url).map_err(|e| UsageError(format!("--admin-url {url}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(UsageError(format!("--admin-url {url}: not an http(s) URL")).into());
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self { base, token, http })
    }

    /// `segments` under the base URL, each percent-encoded as one path segment.
    fn url(&self, segments: &[&str]) -> reqwest::Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<T> {
        let mut url = self.url(segments);
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let mut request = self
            .http
            .request(method, url.clone())
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("calling the admin API at {}", self.base))?;
        let status = response.status();
        let bytes = response.bytes().await?;
        if !status.is_success() {
            let problem: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let message = match (problem["code"].as_str(), problem["detail"].as_str()) {
                _ if status == reqwest::StatusCode::UNAUTHORIZED => format!(
                    "the admin API at {} refused the token (401): check --admin-token / \
                     MOAT_ADMIN_TOKEN",
                    self.base
                ),
                (Some(code), Some(detail)) => format!("{code}: {detail}"),
                _ => format!("the admin API answered {status}"),
            };
            return Err(Refused {
                status: status.as_u16(),
                message,
            }
            .into());
        }
        serde_json::from_slice(&bytes)
            .with_context(|| format!("the admin API's answer to {url} is not what was expected"))
    }
}
