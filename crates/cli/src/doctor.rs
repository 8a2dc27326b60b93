//! `moat doctor`: loads the configuration the way `moat serve` does, then checks everything
//! it names, concurrently and each within a time limit, and prints one line per check.
//!
//! Nothing is changed: the data directory and store are only looked at (a write probe is a
//! uniquely named empty file, removed at once), listen addresses are bound and released, and
//! secret values are never printed (references and locations are).

use std::future::Future;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use moat_server::Config;
use moat_server::config::SmsSenderConfig;
use moat_store::schema::{MigrationStatus, StatusError};
use serde::Serialize;
use zeroize::Zeroize as _;

const EX_USAGE: u8 = 64;
/// A certificate expiring sooner than this is a warning.
const EXPIRY_WARNING_DAYS: i64 = 30;

/// `moat doctor` arguments.
#[derive(clap::Args)]
pub struct Args {
    /// TOML configuration file, as given to `moat serve` (embedded defaults without it);
    /// MOAT_<SECTION>__<KEY> variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print JSON: {"checks": [{"name", "status", "detail"}], "ok": bool}.
    #[arg(long)]
    json: bool,
    /// Seconds each check may take.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 3,
        value_parser = clap::value_parser!(u64).range(1..=60)
    )]
    timeout: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }
}

#[derive(Serialize)]
struct Report<'a> {
    checks: &'a [Check],
    ok: bool,
}

#[derive(Serialize)]
struct Check {
    name: String,
    status: Status,
    detail: String,
}

type Outcome = (Status, String);

fn ok(detail: impl Into<String>) -> Outcome {
    (Status::Ok, detail.into())
}

fn warn(detail: impl Into<String>) -> Outcome {
    (Status::Warn, detail.into())
}

fn fail(detail: impl Into<String>) -> Outcome {
    (Status::Fail, detail.into())
}

/// Runs the checks; exit 0 when none failed (warnings allowed), 1 when one did, 64 when the
/// configuration cannot be loaded.
pub async fn run(args: Args) -> ExitCode {
    // The server's one crypto backend, for rustls (TLS files, Redis and HTTPS checks).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let (config, source) = match load(args.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(detail) => {
            report(
                args.json,
                &[Check {
                    name: "config".into(),
                    status: Status::Fail,
                    detail,
                }],
            );
            return ExitCode::from(EX_USAGE);
        }
    };
    let limit = Duration::from_secs(args.timeout);
    let mut checks: Vec<(String, tokio::task::JoinHandle<Option<Outcome>>)> = Vec::new();
    let mut add = |name: String, handle| checks.push((name, handle));

    add(
        "config".into(),
        spawn(
            limit,
            std::future::ready(ok(format!(
                "{source}: {} mode, {} store",
                config.mode.as_str(),
                if config.store_url.starts_with("sqlite:") {
                    "SQLite"
                } else {
                    "PostgreSQL"
                }
            ))),
        ),
    );
    let dir = config.data_dir.clone();
    add(
        "data_dir".into(),
        spawn_blocking(limit, move || check_data_dir(&dir)),
    );
    let dir = config.data_dir.clone();
    add(
        "secrets".into(),
        spawn_blocking(limit, move || check_secrets_file(&dir)),
    );
    if let Some(reference) = config.data_key.clone() {
        add(
            "server.data_key".into(),
            spawn_blocking(limit, move || check_data_key(&reference)),
        );
    }
    let url = config.store_url.clone();
    add("store".into(), spawn(limit, check_store(url)));
    if let Some(redis) = config.redis.clone() {
        add("redis".into(), spawn(limit, check_redis(redis)));
    }
    if let Some(firebase) = &config.firebase {
        if let Some(path) = firebase.service_account.clone() {
            add(
                "firebase.service_account".into(),
                spawn_blocking(limit, move || check_service_account(&path)),
            );
        }
        if let Some(url) = firebase.database_url.clone() {
            add(
                "firebase.database_url".into(),
                spawn(limit, async move { check_http(&url, limit).await }),
            );
        }
        if let Some(host) = firebase.auth_emulator_host.clone() {
            add(
                "firebase.auth_emulator_host".into(),
                spawn(limit, async move { check_host_port(&host).await }),
            );
        }
    }
    for upstream in &config.upstreams {
        let refs: Vec<(String, String)> = upstream
            .inject_headers
            .iter()
            .map(|(name, r)| (format!("inject_headers.{name}"), r.clone()))
            .chain(
                upstream
                    .inject_query
                    .iter()
                    .map(|(name, r)| (format!("inject_query.{name}"), r.clone())),
            )
            .collect();
        let url = upstream.upstream.to_string();
        add(
            format!("upstream {}", upstream.prefix),
            spawn(
                limit,
                async move { check_upstream(&url, &refs, limit).await },
            ),
        );
    }
    let sms = config.sms.sender.clone();
    add("sms".into(), spawn(limit, check_sms(sms, limit)));
    if let Some(tls) = config.tls.clone() {
        add(
            "tls".into(),
            spawn_blocking(limit, move || check_tls(&tls.cert, &tls.key)),
        );
    }
    let (listen, admin_listen) = (config.listen, config.admin_listen);
    let outcome = check_public_url(&config);
    add(
        "public_base_url".into(),
        spawn(limit, std::future::ready(outcome)),
    );
    add(
        "listen".into(),
        spawn_blocking(limit, move || check_listen(listen)),
    );
    add(
        "admin.listen".into(),
        spawn_blocking(limit, move || check_listen(admin_listen)),
    );
    let token = config.admin_token.clone();
    let dir = config.data_dir.clone();
    add(
        "admin.token".into(),
        spawn_blocking(limit, move || check_admin_token(token.as_deref(), &dir)),
    );

    let mut results = Vec::with_capacity(checks.len());
    for (name, handle) in checks {
        let (status, detail) = match handle.await {
            Ok(Some(outcome)) => outcome,
            Ok(None) => fail(format!("no answer within {} s", limit.as_secs())),
            Err(e) => fail(format!("the check failed unexpectedly: {e}")),
        };
        results.push(Check {
            name,
            status,
            detail,
        });
    }
    report(args.json, &results);
    if results.iter().any(|c| c.status == Status::Fail) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn spawn(
    limit: Duration,
    check: impl Future<Output = Outcome> + Send + 'static,
) -> tokio::task::JoinHandle<Option<Outcome>> {
    tokio::spawn(async move { tokio::time::timeout(limit, check).await.ok() })
}

/// A check that uses the file system or binds sockets: on the blocking pool, so that a hung
/// disk holds one thread and the time limit still ends the check.
fn spawn_blocking(
    limit: Duration,
    check: impl FnOnce() -> Outcome + Send + 'static,
) -> tokio::task::JoinHandle<Option<Outcome>> {
    spawn(limit, async move {
        tokio::task::spawn_blocking(check)
            .await
            .unwrap_or_else(|e| fail(format!("the check failed unexpectedly: {e}")))
    })
}

/// The configuration, and where it came from.
fn load(path: Option<&Path>) -> Result<(Config, String), String> {
    let text = match path {
        Some(p) => {
            Some(std::fs::read_to_string(p).map_err(|e| format!("reading {}: {e}", p.display()))?)
        }
        None => None,
    };
    let config =
        Config::load(text.as_deref(), &moat_server::config::Env).map_err(|e| e.to_string())?;
    let overrides = std::env::vars()
        .filter(|(name, _)| name.starts_with("MOAT_") && name.contains("__"))
        .count();
    let mut source = match path {
        Some(p) => p.display().to_string(),
        None => "embedded defaults".into(),
    };
    if overrides > 0 {
        source += &format!(" + {overrides} MOAT_ variables");
    }
    Ok((config, source))
}

fn report(json: bool, checks: &[Check]) {
    if json {
        let report = Report {
            checks,
            ok: checks.iter().all(|c| c.status != Status::Fail),
        };
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("error: {e}"),
        }
        return;
    }
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for c in checks {
        let detail = c
            .detail
            .replace('\n', &format!("\n{:<w$}", "", w = width + 8));
        println!("{:<4}  {:<width$}  {detail}", c.status.as_str(), c.name,);
    }
    let count = |s| checks.iter().filter(|c| c.status == s).count();
    let warnings = count(Status::Warn);
    println!(
        "{} failed, {warnings} warning{}, {} ok",
        count(Status::Fail),
        if warnings == 1 { "" } else { "s" },
        count(Status::Ok)
    );
}

/// Creates and removes an empty, uniquely named file in `dir`.
fn probe_write(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".moat-doctor-{}", uuid::Uuid::new_v4().simple()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&probe)?;
    std::fs::remove_file(&probe)
}

fn check_data_dir(dir: &Path) -> Outcome {
    let shown = dir.display();
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => fail(format!("{shown} is not a directory")),
        Ok(meta) => {
            if let Err(e) = probe_write(dir) {
                return fail(format!("{shown} is not writable: {e}"));
            }
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 == 0 {
                ok(format!("{shown}: writable, mode {mode:03o}"))
            } else {
                fail(format!(
                    "{shown}: mode {mode:03o} lets group or others in; the server refuses to \
                     start with it (chmod 700 it)"
                ))
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            // The server creates it (and any missing parents): the nearest existing ancestor
            // must be writable.
            let mut ancestor = dir;
            let existing = loop {
                match ancestor.parent() {
                    Some(p) if p.as_os_str().is_empty() => break Path::new("."),
                    Some(p) if p.exists() => break p,
                    Some(p) => ancestor = p,
                    None => break Path::new("/"),
                }
            };
            match probe_write(existing) {
                Ok(()) => ok(format!(
                    "{shown} does not exist yet; the server creates it (0700) on first start"
                )),
                Err(e) => fail(format!(
                    "{shown} does not exist and cannot be created in {}: {e}",
                    existing.display()
                )),
            }
        }
        Err(e) => fail(format!("{shown}: {e}")),
    }
}

/// The secrets file, if it exists: `Err` when it exists but the server would refuse it.
fn read_secrets(dir: &Path) -> Result<Option<(moat_server::secrets::Secrets, u32)>, String> {
    let path = dir.join(moat_server::secrets::FILE);
    let shown = path.display();
    let meta = match std::fs::metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{shown}: {e}")),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{shown}: mode {mode:03o}; the server refuses a secrets file group or others can \
             read (chmod 600 it)"
        ));
    }
    let mut bytes = std::fs::read(&path).map_err(|e| format!("{shown}: {e}"))?;
    let parsed: Result<moat_server::secrets::Secrets, _> = serde_json::from_slice(&bytes);
    bytes.zeroize();
    let secrets = parsed.map_err(|_| {
        format!("{shown} is not a valid secrets file; the server refuses to start with it")
    })?;
    // Empty when `server.data_key` gives the key (PROTOCOL section 11).
    if !secrets.data_key.is_empty()
        && moat_core::b64::url_decode(&secrets.data_key).map(|k| k.len()) != Ok(32)
    {
        return Err(format!(
            "{shown}: data_key is not 32 bytes of base64url; the server refuses to start with it"
        ));
    }
    Ok(Some((secrets, mode)))
}

fn check_secrets_file(dir: &Path) -> Outcome {
    let path = dir.join(moat_server::secrets::FILE);
    match read_secrets(dir) {
        Ok(Some((_, mode))) => ok(format!("{}: valid, mode {mode:03o}", path.display())),
        Ok(None) => ok(format!(
            "{} does not exist yet; the server generates it (0600) on first start",
            path.display()
        )),
        Err(e) => fail(e),
    }
}

/// `server.data_key` (PROTOCOL section 11): it resolves to a 32-byte key; shown by its
/// public id, which every instance of one store must share.
fn check_data_key(reference: &str) -> Outcome {
    match moat_server::configured_data_key(reference) {
        Ok(key) => ok(format!(
            "{reference}: a 32-byte key, id {} (the same on every instance of the store)",
            moat_server::secrets::data_key_id(key.expose())
        )),
        Err(e) => fail(e.to_string()),
    }
}

/// `scheme://host:port/path` of a URL, without credentials, query or fragment.
fn location(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let path = if u.path() == "/" { "" } else { u.path() };
            format!(
                "{}://{}{port}{path}",
                u.scheme(),
                u.host_str().unwrap_or("")
            )
        }
        Err(_) => format!("{}:…", url.split(':').next().unwrap_or("")),
    }
}

/// `text` with the password of `url` (if any) blotted out.
fn redact(text: &str, url: &str) -> String {
    match reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_owned))
    {
        Some(password) if !password.is_empty() => text.replace(&password, "***"),
        _ => text.to_owned(),
    }
}

/// An error and its causes on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out += &format!(": {text}");
        }
        source = s.source();
    }
    out
}

async fn check_store(url: String) -> Outcome {
    let (status, detail) = if url.starts_with("sqlite:") {
        check_sqlite(&url).await
    } else {
        check_postgres(&url).await
    };
    (status, redact(&detail, &url))
}

async fn check_sqlite(url: &str) -> Outcome {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let path = rest.split('?').next().unwrap_or(rest);
    if path == ":memory:" || rest.contains("mode=memory") {
        return warn("in-memory SQLite: nothing survives a restart");
    }
    let file = Path::new(path);
    if !file.exists() {
        return ok(format!(
            "SQLite {path} does not exist yet; the server creates and migrates it on first start"
        ));
    }
    if let Err(e) = std::fs::OpenOptions::new().write(true).open(file) {
        return fail(format!("SQLite {path} is not writable: {e}"));
    }
    match moat_store::schema::migration_status(url, "moat-doctor").await {
        Ok(status) => judge_migrations(&format!("SQLite {path}"), &status),
        Err(StatusError::Url(e)) => fail(format!("store.url: {e}")),
        Err(StatusError::Read(e)) => fail(format!(
            "SQLite {path}: cannot read its migrations: {}",
            chain(e.as_ref())
        )),
        Err(e) => fail(format!(
            "SQLite {path} cannot be opened: {}",
            e.cause().map_or_else(|| e.to_string(), |c| chain(c))
        )),
    }
}

async fn check_postgres(url: &str) -> Outcome {
    let at = location(url);
    match moat_store::schema::migration_status(url, "moat-doctor").await {
        Ok(status) => judge_migrations(&at, &status),
        Err(StatusError::Url(_) | StatusError::Scheme) => {
            fail("store.url is not a valid PostgreSQL URL")
        }
        Err(StatusError::Read(e)) => fail(format!(
            "{at}: cannot read its migrations: {}",
            chain(e.as_ref())
        )),
        Err(e) => fail(format!(
            "{at}: cannot connect: {}",
            e.cause().map_or_else(|| e.to_string(), |c| chain(c))
        )),
    }
}

/// The verdict on a database's migrations: failed or unknown ones fail, pending ones warn.
fn judge_migrations(what: &str, status: &MigrationStatus) -> Outcome {
    // "migration 5 is" or "migrations 4, 5 are".
    let list = |v: &[i64]| {
        let numbers = v
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        if v.len() == 1 {
            format!("migration {numbers} is")
        } else {
            format!("migrations {numbers} are")
        }
    };
    let dirty = status.failed();
    if !dirty.is_empty() {
        return fail(format!(
            "{what}: {} marked failed (it stopped part-way); repair the database before \
             starting the server",
            list(&dirty)
        ));
    }
    let unknown = status.unknown();
    if !unknown.is_empty() {
        return fail(format!(
            "{what}: {} unknown to this moat (the database was used by a newer version)",
            list(&unknown)
        ));
    }
    let pending = status.pending();
    if status.applied.is_empty() {
        ok(format!(
            "{what}: reachable, empty; the server applies {} migrations on first start",
            status.known.len()
        ))
    } else if pending.is_empty() {
        ok(format!(
            "{what}: reachable, all {} migrations applied",
            status.applied.len()
        ))
    } else {
        warn(format!(
            "{what}: reachable, {} pending (the server applies pending migrations when it \
             starts)",
            list(&pending)
        ))
    }
}

async fn check_redis(config: moat_server::cluster::RedisConfig) -> Outcome {
    let at = location(&config.url);
    let redis = match moat_server::cluster::Redis::connect(&config).await {
        Ok(r) => r,
        Err(e) => {
            // The client's error names only its kind; the operating system's is plainer.
            let os = match reqwest::Url::parse(&config.url) {
                Ok(u) => match (u.host_str(), u.port().unwrap_or(6379)) {
                    (Some(host), port) => tokio::net::TcpStream::connect((
                        host.trim_start_matches('[').trim_end_matches(']'),
                        port,
                    ))
                    .await
                    .err()
                    .map(|e| format!(" ({e})")),
                    (None, _) => None,
                },
                Err(_) => None,
            };
            return fail(format!(
                "{at}: {}{}",
                redact(&e, &config.url),
                os.unwrap_or_default()
            ));
        }
    };
    match redis.ping().await {
        Ok(()) => ok(format!("{at}: answers PING")),
        Err(_) => fail(format!("{at}: connected, but PING failed")),
    }
}

fn check_service_account(path: &Path) -> Outcome {
    if let Err(e) = moat_server::firebase::rtdb::ServiceAccount::load(path) {
        return fail(e);
    }
    let mode = std::fs::metadata(path).map_or(0, |m| m.permissions().mode() & 0o777);
    if mode & 0o077 == 0 {
        ok(format!(
            "{}: a service account with an RSA key, mode {mode:03o}",
            path.display()
        ))
    } else {
        warn(format!(
            "{}: parses, but mode {mode:03o} lets group or others read its private key (chmod \
             600 it)",
            path.display()
        ))
    }
}

/// Whether `url` answers HTTP at all (any status): a HEAD request, redirects not followed.
async fn check_http(url: &str, limit: Duration) -> Outcome {
    let at = location(url);
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // A safety net: the check's own time limit ends it first.
        .timeout(limit + Duration::from_secs(1))
        .build()
    {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot make an HTTP client: {e}")),
    };
    match client.head(url).send().await {
        Ok(response) => ok(format!(
            "{at}: answered HTTP {}",
            response.status().as_u16()
        )),
        Err(e) => fail(format!("{at}: {}", chain(&e.without_url()))),
    }
}

/// `host:port` accepts TCP connections.
async fn check_host_port(host_port: &str) -> Outcome {
    let Some((host, port)) = host_port.rsplit_once(':') else {
        return fail(format!("`{host_port}` is not host:port"));
    };
    let Ok(port) = port.parse::<u16>() else {
        return fail(format!("`{host_port}` is not host:port"));
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match tokio::net::TcpStream::connect((host, port)).await {
        Ok(_) => ok(format!("{host_port} accepts connections")),
        Err(e) => fail(format!("{host_port}: {e}")),
    }
}

/// Resolves each `(what, reference)`; the first that fails, by name.
fn resolve_all(refs: &[(String, String)]) -> Result<(), String> {
    for (what, reference) in refs {
        moat_server::secret_ref::resolve(reference).map_err(|e| format!("{what}: {e}"))?;
    }
    Ok(())
}

async fn check_upstream(url: &str, refs: &[(String, String)], limit: Duration) -> Outcome {
    if let Err(e) = resolve_all(refs) {
        return fail(format!("{e} (the server cannot start)"));
    }
    let (status, detail) = check_http(url, limit).await;
    match refs.len() {
        0 => (status, detail),
        n => (status, format!("{detail}; {n} injected secrets resolve")),
    }
}

async fn check_sms(sender: SmsSenderConfig, limit: Duration) -> Outcome {
    let (name, url, refs) = match sender {
        SmsSenderConfig::Twilio {
            base_url,
            auth_token,
            ..
        } => (
            "twilio",
            base_url,
            vec![("sms.twilio.auth_token".to_owned(), auth_token)],
        ),
        SmsSenderConfig::Webhook { url, secret } => (
            "webhook",
            url,
            vec![("sms.webhook.secret".to_owned(), secret)],
        ),
        _ => {
            return ok("outbox sender: messages are kept in the store (development), not sent");
        }
    };
    if let Err(e) = resolve_all(&refs) {
        return fail(format!("{name}: {e} (the server cannot start)"));
    }
    let (status, detail) = check_http(&url, limit).await;
    (status, format!("{name} (its secret resolves): {detail}"))
}

fn check_tls(cert_path: &Path, key_path: &Path) -> Outcome {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let cert_bytes = match std::fs::read(cert_path) {
        Ok(b) => b,
        Err(e) => return fail(format!("{}: {e}", cert_path.display())),
    };
    let certs: Vec<CertificateDer<'static>> =
        match CertificateDer::pem_slice_iter(&cert_bytes).collect::<Result<Vec<_>, _>>() {
            Ok(c) if !c.is_empty() => c,
            _ => return fail(format!("{}: no PEM certificate", cert_path.display())),
        };
    let mut key_bytes = match std::fs::read(key_path) {
        Ok(b) => b,
        Err(e) => return fail(format!("{}: {e}", key_path.display())),
    };
    let key = PrivateKeyDer::from_pem_slice(&key_bytes);
    key_bytes.zeroize();
    let Ok(key) = key else {
        return fail(format!("{}: no PEM private key", key_path.display()));
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let built = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs.clone(), key));
    if let Err(e) = built {
        return fail(format!(
            "{} and {}: {e}",
            cert_path.display(),
            key_path.display()
        ));
    }
    let not_after = match x509_parser::parse_x509_certificate(certs[0].as_ref()) {
        Ok((_, cert)) => (
            cert.validity().not_before.timestamp(),
            cert.validity().not_after.timestamp(),
        ),
        Err(e) => return fail(format!("{}: {e}", cert_path.display())),
    };
    let (not_before, not_after) = not_after;
    let now = moat_client::unix_now();
    let date = moat_server::clock::rfc3339;
    let days = (not_after - now).div_euclid(86_400);
    let key_mode = std::fs::metadata(key_path).map_or(0, |m| m.permissions().mode() & 0o777);
    if not_after <= now {
        fail(format!(
            "{}: expired on {}",
            cert_path.display(),
            date(not_after)
        ))
    } else if not_before > now {
        fail(format!(
            "{}: not valid before {}",
            cert_path.display(),
            date(not_before)
        ))
    } else if days < EXPIRY_WARNING_DAYS {
        warn(format!(
            "{}: expires in {days} days ({}); renew it",
            cert_path.display(),
            date(not_after)
        ))
    } else if key_mode & 0o077 != 0 {
        warn(format!(
            "{}: valid until {}, but the key {} has mode {key_mode:03o} (chmod 600 it)",
            cert_path.display(),
            date(not_after),
            key_path.display()
        ))
    } else {
        ok(format!(
            "{}: valid until {} ({days} days), the key matches",
            cert_path.display(),
            date(not_after)
        ))
    }
}

/// Whether `server.public_base_url` is a URL clients can use to reach this listener. Every
/// DPoP `htu` and signature authority is checked against it, so a mismatch refuses every
/// enrollment while the server looks healthy.
fn check_public_url(config: &moat_server::Config) -> Outcome {
    let url = &config.public_base_url;
    if config.tls.is_some() && config.public_scheme == "http" {
        return fail(format!(
            "{url} is http://, but the public listener speaks TLS: clients call https://, and every enrollment would be refused (`htu does not match`); set server.public_base_url to https://…"
        ));
    }
    if config.tls.is_none() && config.public_scheme == "https" {
        return warn(format!(
            "{url} is https:// and the public listener speaks plain HTTP: right only behind a TLS-terminating proxy"
        ));
    }
    let authority = &config.public_authority;
    let port = authority
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .unwrap_or(if config.public_scheme == "https" {
            443
        } else {
            80
        });
    let host = authority
        .rsplit_once(':')
        .map_or(authority.as_str(), |(h, _)| h);
    let local = matches!(host, "127.0.0.1" | "localhost" | "[::1]");
    if local && port != config.listen.port() {
        return warn(format!(
            "{url} names port {port} on this machine, but server.listen is {}: clients must call exactly public_base_url",
            config.listen
        ));
    }
    ok(format!(
        "clients must call {url} exactly (DPoP htu and signatures are checked against it; an Android emulator reaches the host as 10.0.2.2, which needs public_base_url = \"{}://10.0.2.2:{}\")",
        config.public_scheme,
        config.listen.port()
    ))
}

fn check_listen(addr: SocketAddr) -> Outcome {
    match std::net::TcpListener::bind(addr) {
        Ok(_) => ok(format!("{addr} is free")),
        Err(e) if e.kind() == ErrorKind::AddrInUse => warn(format!(
            "{addr} is in use (a running server? `moat serve` cannot start next to it)"
        )),
        Err(e) => fail(format!("{addr}: cannot bind: {e}")),
    }
}

/// An upper bound on a token's entropy, bits: its length times log2 of the smaller of its
/// character classes' size and the distinct characters it uses.
fn entropy_bits(token: &str) -> f64 {
    let chars: Vec<char> = token.chars().collect();
    let mut classes = 0u32;
    if chars.iter().any(char::is_ascii_lowercase) {
        classes += 26;
    }
    if chars.iter().any(char::is_ascii_uppercase) {
        classes += 26;
    }
    if chars.iter().any(char::is_ascii_digit) {
        classes += 10;
    }
    if chars.iter().any(|c| !c.is_ascii_alphanumeric()) {
        classes += 33;
    }
    let distinct = chars.iter().collect::<std::collections::HashSet<_>>().len() as u32;
    let alphabet = classes.min(distinct).max(1);
    chars.len() as f64 * f64::from(alphabet).log2()
}

fn check_admin_token(configured: Option<&str>, dir: &Path) -> Outcome {
    const STRONG_BITS: f64 = 128.0;
    match configured {
        Some(token) => {
            let bits = entropy_bits(token);
            if bits < STRONG_BITS {
                warn(format!(
                    "admin.token is weak (at most ~{bits:.0} bits); use 32 random bytes, e.g. \
                     `openssl rand -base64 32`"
                ))
            } else {
                ok(format!(
                    "set in the configuration ({} characters, at most ~{bits:.0} bits)",
                    token.chars().count()
                ))
            }
        }
        None => match read_secrets(dir) {
            Ok(Some((secrets, _))) if entropy_bits(&secrets.admin_token) >= STRONG_BITS => {
                ok(format!(
                    "generated into {}",
                    dir.join(moat_server::secrets::FILE).display()
                ))
            }
            Ok(Some(_)) => warn(format!(
                "the admin token in {} is weak; set admin.token to 32 random bytes",
                dir.join(moat_server::secrets::FILE).display()
            )),
            Ok(None) => ok("not set; the server generates a random one on first start"),
            Err(e) => fail(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_estimate_tells_random_from_patterned_tokens() {
        assert!(entropy_bits("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa") < 1.0);
        assert!(entropy_bits("passwordpasswordpasswordpassword") < 128.0);
        assert!(entropy_bits("Jq3v_8ZkPw-2LxN7cRt5Ya9UeHb4Ms6Df1Gz0KoTnVi") >= 128.0);
    }

    #[test]
    fn locations_and_errors_never_carry_the_password() {
        let url = "postgres://moat:s3cret@db.internal:5433/moat?sslmode=require";
        assert_eq!(location(url), "postgres://db.internal:5433/moat");
        assert_eq!(
            redact("password s3cret refused", url),
            "password *** refused"
        );
    }

    #[test]
    fn certificate_expiry_is_checked() {
        let dir = tempfile::tempdir().expect("tmp");
        let write = |not_after: time::OffsetDateTime| {
            let key = rcgen::KeyPair::generate().expect("key");
            let mut params =
                rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
            params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
            params.not_after = not_after;
            let cert = params.self_signed(&key).expect("cert");
            let (c, k) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            std::fs::write(&c, cert.pem()).expect("write");
            std::fs::write(&k, key.serialize_pem()).expect("write");
            std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            (c, k)
        };
        let now = time::OffsetDateTime::now_utc();
        let (c, k) = write(now + time::Duration::days(200));
        assert_eq!(check_tls(&c, &k).0, Status::Ok, "{:?}", check_tls(&c, &k));
        let (c, k) = write(now + time::Duration::days(10));
        let (status, detail) = check_tls(&c, &k);
        assert_eq!(status, Status::Warn);
        assert!(detail.contains("expires in"), "{detail}");
        let (c, k) = write(now - time::Duration::hours(1));
        assert_eq!(check_tls(&c, &k).0, Status::Fail);
        // A key that is not the certificate's.
        let (c, _) = write(now + time::Duration::days(200));
        let stray = dir.path().join("stray.pem");
        let other = rcgen::KeyPair::generate().expect("key");
        std::fs::write(&stray, other.serialize_pem()).expect("write");
        assert_eq!(check_tls(&c, &stray).0, Status::Fail);
    }
}
