//! `moat admin …`: operator commands run against the server's configuration and store, or
//! (with `--admin-url`) through a running instance's admin API. Both paths call the same
//! function of `moat_server::admin` for each operation.
//!
//! Every command that prints something prints text for people by default and JSON with the
//! global `--json` flag (stdout either way; progress and hints go to stderr).

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;
use moat_server::admin::DeviceView;
use moat_server::clock::SystemClock;
use serde_json::json;

/// A problem with the command's arguments or input files: `moat` exits 64 (EX_USAGE).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Run the cleanup job.
    Cleanup {
        /// Run one pass now and exit (the server runs it periodically by itself).
        #[arg(long)]
        once: bool,
    },
    /// List or revoke devices.
    Devices {
        #[command(subcommand)]
        command: DevicesCommand,
    },
    /// SMS: the development outbox.
    Sms {
        #[command(subcommand)]
        command: SmsCommand,
    },
    /// Access-token signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Genuine app packages for attestation.
    App {
        #[command(subcommand)]
        command: AppCommand,
    },
    /// Integrity-token secrets (shared with the API servers).
    Integrity {
        #[command(subcommand)]
        command: IntegrityCommand,
    },
    /// The audit log: security events, newest first.
    Audit {
        /// Only this kind (`device.enrolled`, `device.revoked`, `admin.call`, …).
        #[arg(long)]
        kind: Option<String>,
        /// Only events about this subject (a device uuid, user id or key id).
        #[arg(long)]
        subject: Option<String>,
        /// Only the last N hours.
        #[arg(long)]
        hours: Option<i64>,
        /// Only events older than this event id (paging).
        #[arg(long)]
        before: Option<String>,
        /// Most events to print.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Copy a deployment's data from SQLite to an empty PostgreSQL database, in one
    /// transaction (stop the servers first; then point store.url at the new database and give
    /// every instance the old secrets file's data key as `server.data_key`).
    Migrate {
        /// Source, `sqlite://path/to/moat.db`.
        #[arg(long)]
        from: String,
        /// Target, `postgres://user:password@host:port/db`.
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand)]
pub enum AppCommand {
    /// Store a genuine package (APK/IPA bytes) for measurement.
    Register {
        /// The app's package name or bundle id (the challenge's `app_id`).
        #[arg(long)]
        app_id: String,
        /// The app version this package is.
        #[arg(long)]
        version: String,
        /// The package file (APK or IPA).
        #[arg(long)]
        file: PathBuf,
    },
    /// List registered packages.
    List,
    /// Stop accepting a package.
    Retire {
        /// The app's package name or bundle id.
        #[arg(long)]
        app_id: String,
        /// The version to stop accepting.
        #[arg(long)]
        version: String,
    },
}

#[derive(Subcommand)]
pub enum IntegrityCommand {
    /// Make a new secret; the previous one verifies until its tokens expire.
    Rotate,
    /// Print the secrets an API server needs to verify integrity tokens (handle with care).
    Show,
}

#[derive(Subcommand)]
pub enum SmsCommand {
    /// Messages kept by the `outbox` sender, newest first.
    Outbox {
        /// Only this phone (E.164).
        #[arg(long)]
        phone: Option<String>,
        /// Most messages to print.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Make a new signing key; the previous one verifies until its tokens expire.
    Rotate,
}

#[derive(Subcommand)]
pub enum DevicesCommand {
    /// List devices, newest first.
    List {
        /// Most devices to print (at most 500).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Devices to skip first (paging).
        #[arg(long, default_value_t = 0)]
        offset: u32,
    },
    /// Revoke a device by its uuid, or every device listed in a file.
    Revoke {
        /// The device's uuid.
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        id: Option<uuid::Uuid>,
        /// A file of device uuids, one a line (blank lines and lines starting with `#` are
        /// skipped). The whole file is checked before anything is revoked. Exits 1 if any
        /// revocation failed; unknown ids are counted and listed, not an error.
        #[arg(long, value_name = "IDS.txt")]
        file: Option<PathBuf>,
    },
}

/// How `moat admin` reaches the deployment: its store (the default, found through the
/// configuration), or a running instance's admin API.
#[derive(clap::Args, Debug, Default)]
pub struct Connection {
    /// Create the store (and its secrets) when there is none, instead of refusing.
    #[arg(long, global = true, conflicts_with = "admin_url")]
    pub create: bool,
    /// Drive a running deployment through its admin API (e.g. `http://10.0.0.5:9091`)
    /// instead of opening its store: the same operations, run by the server.
    #[arg(long, global = true, value_name = "URL")]
    pub admin_url: Option<String>,
    /// The admin API's bearer token (`admin.token`), for --admin-url.
    #[arg(
        long,
        global = true,
        env = "MOAT_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub admin_token: Option<String>,
}

/// Where the operations run: on the store, in this process, or on a server through its
/// admin API. Either way one function of `moat_server::admin` does each operation.
enum Backend {
    Store(moat_server::AppState),
    Api(Api),
}

/// A running instance's admin API.
struct Api {
    base: reqwest::Url,
    token: String,
    http: reqwest::Client,
}

/// A refusal of the admin API (or of the same operation run on the store).
#[derive(Debug)]
struct Refused {
    status: u16,
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

impl Api {
    fn new(url: &str, token: String) -> Result<Self> {
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

/// Runs an admin command. `config` is the server's configuration file, `json` the output
/// format, `connection` says whether to open the store or call an admin API.
pub async fn run(
    command: AdminCommand,
    config: Option<&Path>,
    json: bool,
    connection: &Connection,
) -> Result<()> {
    // Migrating opens both stores itself; it needs no configuration.
    if let AdminCommand::Migrate { from, to } = &command {
        if connection.admin_url.is_some() {
            return Err(
                UsageError("migrate works on the stores, not through --admin-url".into()).into(),
            );
        }
        return migrate(from, to, json).await;
    }
    // Check input files before the store is opened (and the data directory created): a bad
    // line revokes nothing.
    let revoke_ids = match &command {
        AdminCommand::Devices {
            command: DevicesCommand::Revoke {
                file: Some(file), ..
            },
        } => Some(read_ids(file)?),
        _ => None,
    };
    let backend = match &connection.admin_url {
        Some(url) => {
            if config.is_some() {
                return Err(UsageError(
                    "--config and --admin-url: the one names a store to open, the other a \
                     server to ask; give one"
                        .into(),
                )
                .into());
            }
            let token = connection
                .admin_token
                .clone()
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    UsageError(
                        "--admin-url needs the admin token: --admin-token or MOAT_ADMIN_TOKEN"
                            .into(),
                    )
                })?;
            let api = Api::new(url, token)?;
            eprintln!("moat admin: admin API at {}", api.base);
            Backend::Api(api)
        }
        None => Backend::Store(open_store(config, connection.create).await?),
    };
    if let Some(ids) = revoke_ids {
        return revoke_many(&backend, &ids, json).await;
    }
    execute(command, &backend, json).await
}

/// Opens the store the configuration names, saying on stderr which configuration and store
/// it is. Refuses (exit 64) when there is no store, unless `create`.
async fn open_store(config: Option<&Path>, create: bool) -> Result<moat_server::AppState> {
    let label = config.map_or_else(
        || "embedded defaults (no --config)".to_owned(),
        |p| p.display().to_string(),
    );
    let loaded = crate::load_config(config)?;
    eprintln!(
        "moat admin: configuration {label}; store {}; data dir {}",
        moat_store::shown_url(&loaded.store_url),
        loaded.data_dir.display()
    );
    moat_server::build_state_for(
        loaded,
        Arc::new(SystemClock),
        moat_server::Purpose::Admin { create },
    )
    .await
    .map_err(|e| match e {
        moat_server::ServerError::Missing(message) => {
            UsageError(format!("configuration {label}: {message}")).into()
        }
        other => anyhow::Error::from(other),
    })
}

/// Prints `value` as JSON, or `text` for people. A closed pipe (`moat admin … | head`) ends
/// the output quietly.
fn emit(json: bool, value: &impl serde::Serialize, text: impl FnOnce() -> String) -> Result<()> {
    use std::io::Write as _;
    let out = if json {
        serde_json::to_string_pretty(value)?
    } else {
        text().trim_end().to_owned()
    };
    if out.is_empty() {
        return Ok(());
    }
    match writeln!(std::io::stdout().lock(), "{out}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// What a bulk revocation did.
#[derive(serde::Serialize)]
struct RevokeReport {
    revoked: usize,
    not_found: usize,
    failed: usize,
    duplicates: usize,
    not_found_ids: Vec<uuid::Uuid>,
    failed_ids: Vec<FailedRevoke>,
}

#[derive(serde::Serialize)]
struct FailedRevoke {
    id: uuid::Uuid,
    error: String,
}

#[derive(serde::Deserialize)]
struct DevicesBody {
    devices: Vec<DeviceView>,
}

#[derive(serde::Deserialize)]
struct MessagesBody {
    messages: Vec<moat_server::admin::OutboxMessage>,
}

#[derive(serde::Deserialize)]
struct AppsBody {
    apps: Vec<moat_server::admin::AppView>,
}

#[derive(serde::Deserialize)]
struct Kid {
    kid: String,
}

/// Revokes one device; `None` when there is no such device.
async fn revoke_one(backend: &Backend, id: uuid::Uuid) -> Result<Option<DeviceView>> {
    let outcome = match backend {
        Backend::Store(state) => moat_server::admin::revoke(state, id, "cli")
            .await
            .map_err(refused),
        Backend::Api(api) => {
            let id = id.to_string();
            api.call(
                reqwest::Method::POST,
                &["admin", "v1", "devices", &id, "revoke"],
                &[],
                None,
            )
            .await
        }
    };
    match outcome {
        Ok(view) => Ok(Some(view)),
        Err(e) if e.downcast_ref::<Refused>().is_some_and(|r| r.status == 404) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `e` of an operation run on the store, as the API path reports it.
fn refused(e: moat_server::error::ApiError) -> anyhow::Error {
    Refused::from(e).into()
}

#[allow(clippy::too_many_lines)]
async fn execute(command: AdminCommand, backend: &Backend, json: bool) -> Result<()> {
    use reqwest::Method;
    match command {
        AdminCommand::Migrate { .. } => unreachable!("handled before the store is opened"),
        AdminCommand::Cleanup { once } => {
            if !once {
                bail!("the server runs the cleanup job by itself; use --once to run one pass now");
            }
            let removed: moat_server::admin::CleanupView = match backend {
                Backend::Store(state) => moat_server::admin::run_cleanup(state)
                    .await
                    .map_err(refused)?,
                Backend::Api(api) => {
                    api.call(Method::POST, &["admin", "v1", "cleanup"], &[], None)
                        .await?
                }
            };
            emit(json, &removed, || {
                format!(
                    "removed {} expired mailbox items, {} enrollment codes, {} dormant devices, \
                     {} credentials of dormant revoked devices, {} revocations past their retention, \
                     {} remote mailbox items, {} expired SMS codes, refresh tokens and old SMS",
                    removed.mailbox_items,
                    removed.enrollment_otps,
                    removed.dormant_devices,
                    removed.revoked_credentials,
                    removed.expired_revocations,
                    removed.remote_items,
                    removed.account_rows,
                )
            })?;
        }
        AdminCommand::Audit {
            kind,
            subject,
            hours,
            before,
            limit,
        } => {
            let filter = moat_server::admin::AuditFilter {
                kind,
                subject,
                since: hours.map(|h| moat_client::unix_now() - h.max(0) * 3600),
                until: None,
                before,
                limit: Some(limit.clamp(1, moat_store::ops::MAX_AUDIT_PAGE)),
            };
            let page: moat_server::admin::AuditPage = match backend {
                Backend::Store(state) => moat_server::admin::audit(state, filter)
                    .await
                    .map_err(refused)?,
                Backend::Api(api) => {
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
                    api.call(Method::GET, &["admin", "v1", "audit"], &query, None)
                        .await?
                }
            };
            emit(json, &page, || {
                let mut out = format!(
                    "{:<20}  {:<22}  {:<24}  {:<36}  IP\n",
                    "AT", "KIND", "ACTOR", "SUBJECT"
                );
                for e in &page.events {
                    out += &format!(
                        "{:<20}  {:<22}  {:<24}  {:<36}  {}\n",
                        e.at,
                        e.kind,
                        e.actor,
                        e.subject.as_deref().unwrap_or("-"),
                        e.ip.as_deref().unwrap_or("-"),
                    );
                }
                if let Some(next) = &page.next {
                    out += &format!("more: --before {next}\n");
                }
                out
            })?;
        }
        AdminCommand::Devices {
            command: DevicesCommand::List { limit, offset },
        } => {
            let limit = limit.clamp(1, moat_store::MAX_PAGE);
            let views = match backend {
                Backend::Store(state) => moat_server::admin::devices(state, limit, offset, None)
                    .await
                    .map_err(refused)?,
                Backend::Api(api) => {
                    let body: DevicesBody = api
                        .call(
                            Method::GET,
                            &["admin", "v1", "devices"],
                            &[("limit", limit.to_string()), ("offset", offset.to_string())],
                            None,
                        )
                        .await?;
                    body.devices
                }
            };
            emit(json, &json!({"devices": views}), || {
                let mut out = format!(
                    "{:<36}  {:<8}  {:<7}  {:<20}  DEVICE ID\n",
                    "DEVICE", "STATUS", "MODE", "LAST USED"
                );
                for v in &views {
                    out += &format!(
                        "{:<36}  {:<8}  {:<7}  {:<20}  {}\n",
                        v.id, v.status, v.mode, v.last_used_at, v.device_id
                    );
                }
                out
            })?;
        }
        AdminCommand::Devices {
            command: DevicesCommand::Revoke { id, file },
        } => {
            debug_assert!(file.is_none(), "files are revoked by revoke_many");
            let id = id.context("a device uuid or --file is required")?;
            let Some(view) = revoke_one(backend, id).await? else {
                bail!("no device {id}");
            };
            emit(json, &serde_json::to_value(&view)?, || {
                format!("revoked {id}")
            })?;
        }
        AdminCommand::Sms {
            command: SmsCommand::Outbox { phone, limit },
        } => {
            let limit = limit.clamp(1, moat_store::MAX_PAGE);
            let messages = match backend {
                Backend::Store(state) => moat_server::admin::outbox(state, phone.as_deref(), limit)
                    .await
                    .map_err(refused)?,
                Backend::Api(api) => {
                    let mut query = vec![("limit", limit.to_string())];
                    if let Some(phone) = phone {
                        query.push(("phone", phone));
                    }
                    let body: MessagesBody = api
                        .call(Method::GET, &["admin", "v1", "sms", "outbox"], &query, None)
                        .await?;
                    body.messages
                }
            };
            emit(json, &json!({"messages": messages}), || {
                let mut out = format!("{:<20}  {:<16}  BODY\n", "CREATED", "TO");
                for m in &messages {
                    out += &format!(
                        "{:<20}  {:<16}  {}\n",
                        m.created_at,
                        m.to,
                        m.body.replace('\n', " "),
                    );
                }
                out
            })?;
        }
        AdminCommand::Keys {
            command: KeysCommand::Rotate,
        } => {
            let kid = match backend {
                Backend::Store(state) => moat_server::admin::rotate_signing_key(state, "cli")
                    .await
                    .map_err(refused)?,
                Backend::Api(api) => {
                    let body: Kid = api
                        .call(Method::POST, &["admin", "v1", "keys", "rotate"], &[], None)
                        .await?;
                    body.kid
                }
            };
            emit(json, &json!({"kid": kid}), || {
                format!(
                    "new access-token signing key {kid}; the previous key verifies until its \
                     tokens expire"
                )
            })?;
        }
        AdminCommand::App {
            command:
                AppCommand::Register {
                    app_id,
                    version,
                    file,
                },
        } => {
            let meta =
                std::fs::metadata(&file).with_context(|| format!("reading {}", file.display()))?;
            if meta.len() > moat_server::admin::MAX_PACKAGE as u64 {
                bail!(
                    "{} is larger than {} bytes",
                    file.display(),
                    moat_server::admin::MAX_PACKAGE
                );
            }
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let out: serde_json::Value = match backend {
                Backend::Store(state) => {
                    moat_server::admin::register(state, &app_id, &version, &bytes)
                        .await
                        .map_err(refused)?
                }
                Backend::Api(api) => {
                    api.call(
                        Method::PUT,
                        &["admin", "v1", "apps", &app_id, &version],
                        &[],
                        Some(bytes),
                    )
                    .await?
                }
            };
            emit(json, &out, || {
                format!(
                    "registered {app_id} {version}: {} bytes, sha256 {}",
                    out["size"],
                    out["sha256"].as_str().unwrap_or("")
                )
            })?;
        }
        AdminCommand::App {
            command: AppCommand::List,
        } => {
            let packages = match backend {
                Backend::Store(state) => moat_server::admin::apps(state).await.map_err(refused)?,
                Backend::Api(api) => {
                    let body: AppsBody = api
                        .call(Method::GET, &["admin", "v1", "apps"], &[], None)
                        .await?;
                    body.apps
                }
            };
            emit(json, &json!({"packages": packages}), || {
                packages
                    .iter()
                    .map(|r| {
                        format!(
                            "{:<40} {:<12} {:>12} bytes  {}\n",
                            r.app_id, r.version, r.size, r.status
                        )
                    })
                    .collect()
            })?;
        }
        AdminCommand::App {
            command: AppCommand::Retire { app_id, version },
        } => {
            let outcome: Result<serde_json::Value> = match backend {
                Backend::Store(state) => moat_server::admin::retire(state, &app_id, &version)
                    .await
                    .map_err(refused),
                Backend::Api(api) => {
                    api.call(
                        Method::POST,
                        &["admin", "v1", "apps", &app_id, &version, "retire"],
                        &[],
                        None,
                    )
                    .await
                }
            };
            let out = match outcome {
                Err(e) if e.downcast_ref::<Refused>().is_some_and(|r| r.status == 404) => {
                    bail!("no package {app_id} {version}")
                }
                other => other?,
            };
            emit(json, &out, || format!("retired {app_id} {version}"))?;
        }
        AdminCommand::Integrity {
            command: IntegrityCommand::Rotate,
        } => {
            let kid = match backend {
                Backend::Store(state) => moat_server::admin::rotate_integrity_secret(state, "cli")
                    .await
                    .map_err(refused)?,
                Backend::Api(api) => {
                    let body: Kid = api
                        .call(
                            Method::POST,
                            &["admin", "v1", "integrity", "rotate"],
                            &[],
                            None,
                        )
                        .await?;
                    body.kid
                }
            };
            emit(json, &json!({"kid": kid}), || {
                format!(
                    "new integrity secret {kid}; the previous one verifies until its tokens \
                     expire (give `moat admin integrity show` to the API servers)"
                )
            })?;
        }
        AdminCommand::Integrity {
            command: IntegrityCommand::Show,
        } => {
            let Backend::Store(state) = backend else {
                return Err(UsageError(
                    "integrity show reads the secrets from the store; the admin API does not \
                     hand them out (run it with --config where the data key is)"
                        .into(),
                )
                .into());
            };
            let keys = state.attestation.integrity().export();
            let value = json!({
                "alg": "HS256",
                "keys": keys
                    .iter()
                    .map(|(kid, secret, current)| json!({"kid": kid, "secret": secret, "current": current}))
                    .collect::<Vec<_>>(),
            });
            emit(json, &value, || {
                let mut out = String::from("HS256 secrets (kid, base64url secret):\n");
                for (kid, secret, current) in &keys {
                    out += &format!(
                        "{kid}  {secret}{}\n",
                        if *current { "  (current)" } else { "" }
                    );
                }
                out
            })?;
        }
    }
    Ok(())
}

/// Reads a file of device uuids, one a line. Any bad line is a [`UsageError`] naming it.
fn read_ids(path: &Path) -> Result<Vec<uuid::Uuid>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("--file {}: {e}", path.display())))?;
    let mut ids = Vec::new();
    let mut bad = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match uuid::Uuid::try_parse(line) {
            Ok(id) => ids.push(id),
            Err(_) => bad.push(n + 1),
        }
    }
    if let Some(first) = bad.first() {
        let more = match bad.len() {
            1 => String::new(),
            n => format!(" (and {} more bad lines)", n - 1),
        };
        return Err(UsageError(format!(
            "{} line {first}: not a device uuid{more}; nothing was revoked",
            path.display()
        ))
        .into());
    }
    Ok(ids)
}

/// Progress of a long operation on stderr: a bar when a person watches (stderr is a
/// terminal), else a plain line at most every few seconds.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    what: &'static str,
    total: u64,
    done: u64,
    last_line: Instant,
}

impl Progress {
    const PLAIN_EVERY: Duration = Duration::from_secs(2);

    fn new(what: &'static str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {msg} [{bar:30}] {pos}/{len} {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_message(what);
            bar
        });
        Self {
            bar,
            what,
            total,
            done: 0,
            last_line: Instant::now(),
        }
    }

    fn inc(&mut self) {
        self.done += 1;
        match &self.bar {
            Some(bar) => bar.inc(1),
            None if self.last_line.elapsed() >= Self::PLAIN_EVERY => {
                self.last_line = Instant::now();
                eprintln!("{}: {}/{}", self.what, self.done, self.total);
            }
            None => {}
        }
    }

    fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Revokes every device in `ids` (duplicates once) with the call the single form uses,
/// then reports revoked / not found / failed. Fails (exit 1) if any revocation failed.
async fn revoke_many(backend: &Backend, ids: &[uuid::Uuid], json: bool) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<uuid::Uuid> = ids.iter().copied().filter(|id| seen.insert(*id)).collect();
    let mut report = RevokeReport {
        revoked: 0,
        not_found: 0,
        failed: 0,
        duplicates: ids.len() - unique.len(),
        not_found_ids: Vec::new(),
        failed_ids: Vec::new(),
    };
    let mut progress = Progress::new("revoking devices", unique.len() as u64);
    for id in unique {
        match revoke_one(backend, id).await {
            Ok(Some(_)) => report.revoked += 1,
            Ok(None) => report.not_found_ids.push(id),
            Err(e) => report.failed_ids.push(FailedRevoke {
                id,
                error: format!("{e:#}"),
            }),
        }
        progress.inc();
    }
    progress.finish();
    report.not_found = report.not_found_ids.len();
    report.failed = report.failed_ids.len();
    emit(json, &report, || {
        let mut out = format!(
            "revoked {}, not found {}, failed {}",
            report.revoked, report.not_found, report.failed
        );
        if report.duplicates > 0 {
            out += &format!(" ({} duplicate lines skipped)", report.duplicates);
        }
        out.push('\n');
        for id in &report.not_found_ids {
            out += &format!("not found: {id}\n");
        }
        for f in &report.failed_ids {
            out += &format!("failed: {}: {}\n", f.id, f.error);
        }
        out
    })?;
    if report.failed > 0 {
        bail!(
            "{} of {} revocations failed (the others are done; run the file again to retry)",
            report.failed,
            report.revoked + report.not_found + report.failed
        );
    }
    Ok(())
}

async fn migrate(from: &str, to: &str, json: bool) -> Result<()> {
    if !from.starts_with("sqlite:") {
        bail!("--from must be a sqlite:// URL");
    }
    if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
        bail!("--to must be a postgres:// URL");
    }
    let started = Instant::now();
    // Rows are counted as they are copied; the totals are not known in advance, so people
    // watching get a spinner, logs a plain line a second.
    let spinner = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let mut last = Instant::now();
    let copied = moat_store::migrate::sqlite_to_postgres(from, to, |table, rows| {
        if let Some(bar) = &spinner {
            bar.set_message(format!("copying {table}: {rows} rows"));
        } else if last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            eprintln!("copying {table}: {rows} rows");
        }
    })
    .await;
    if let Some(bar) = spinner {
        bar.finish_and_clear();
    }
    let copied = copied.context("migrating (nothing was committed)")?;
    let total: u64 = copied.iter().map(|c| c.rows).sum();
    let seconds = started.elapsed().as_secs_f64();
    let hint = "now set store.url to the new database, and give every instance this deployment's \
                data key: server.data_key = \"env:…\" holding the data_key of the old secrets \
                file (or a copy of that file)";
    if json {
        eprintln!("copied {total} rows in {seconds:.1} s; {hint}");
    }
    let value = json!({
        "tables": copied.iter().map(|c| (c.table, c.rows)).collect::<std::collections::BTreeMap<_, _>>(),
        "rows": total,
    });
    emit(json, &value, || {
        let mut out = format!("copied {total} rows in {seconds:.1} s:\n");
        for c in &copied {
            out += &format!("  {:<24} {:>10}\n", c.table, c.rows);
        }
        out + hint
    })
}
