//! `moat admin …`: operator commands run against the server's configuration and store.
//!
//! Every command that prints something prints text for people by default and JSON with the
//! global `--json` flag (stdout either way; progress and hints go to stderr).

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;
use moat_server::clock::{SystemClock, rfc3339};
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
    /// transaction (stop the servers first; then point store.url at the new database and copy
    /// the secrets file to every instance).
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

/// Runs an admin command. `config` is the server's configuration file, `json` the output
/// format.
pub async fn run(command: AdminCommand, config: Option<&Path>, json: bool) -> Result<()> {
    // Migrating opens both stores itself; it needs no configuration.
    if let AdminCommand::Migrate { from, to } = &command {
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
    let config = crate::load_config(config)?;
    let state = moat_server::build_state(config, Arc::new(SystemClock)).await?;
    if let Some(ids) = revoke_ids {
        return revoke_many(&state, &ids, json).await;
    }
    execute(command, &state, json).await
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

/// Writes an audit event for a change made from the command line.
async fn audited(state: &moat_server::AppState, kind: &str, subject: String) {
    let event = moat_server::audit::event(moat_client::unix_now(), kind, "cli").subject(subject);
    state.audit.record(event).await;
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

#[allow(clippy::too_many_lines)]
async fn execute(command: AdminCommand, state: &moat_server::AppState, json: bool) -> Result<()> {
    match command {
        AdminCommand::Migrate { .. } => unreachable!("handled before the store is opened"),
        AdminCommand::Cleanup { once } => {
            if !once {
                bail!("the server runs the cleanup job by itself; use --once to run one pass now");
            }
            let removed = moat_server::cleanup::run_once(state).await?;
            let value = json!({
                "mailbox_items": removed.store.mailbox_items,
                "enrollment_otps": removed.store.otps,
                "dormant_devices": removed.store.dormant_devices,
                "revoked_credentials": removed.store.revoked_credentials,
                "expired_revocations": removed.store.expired_revocations,
                "remote_items": removed.remote_items,
                "account_rows": removed.account_rows,
            });
            emit(json, &value, || {
                format!(
                    "removed {} expired mailbox items, {} enrollment codes, {} dormant devices, \
                     {} credentials of dormant revoked devices, {} revocations past their retention, \
                     {} remote mailbox items, {} expired SMS codes, refresh tokens and old SMS",
                    removed.store.mailbox_items,
                    removed.store.otps,
                    removed.store.dormant_devices,
                    removed.store.revoked_credentials,
                    removed.store.expired_revocations,
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
            let limit = limit.clamp(1, moat_store::ops::MAX_AUDIT_PAGE);
            let events = state
                .ops
                .audit(&moat_store::ops::AuditQuery {
                    kind,
                    subject,
                    since: hours.map(|h| moat_client::unix_now() - h.max(0) * 3600),
                    until: None,
                    before_id: before,
                    limit,
                })
                .await?;
            let next = (events.len() == limit as usize)
                .then(|| events.last().map(|e| e.id.clone()))
                .flatten();
            let views: Vec<serde_json::Value> = events
                .iter()
                .map(|e| {
                    json!({
                        "id": e.id,
                        "at": rfc3339(e.event.at),
                        "kind": e.event.kind,
                        "actor": e.event.actor,
                        "subject": e.event.subject,
                        "ip": e.event.ip,
                        "detail": e.event.detail.as_deref().and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok()),
                    })
                })
                .collect();
            emit(json, &json!({"events": views, "next": next}), || {
                let mut out = format!(
                    "{:<20}  {:<22}  {:<24}  {:<36}  IP\n",
                    "AT", "KIND", "ACTOR", "SUBJECT"
                );
                for e in &events {
                    out += &format!(
                        "{:<20}  {:<22}  {:<24}  {:<36}  {}\n",
                        rfc3339(e.event.at),
                        e.event.kind,
                        e.event.actor,
                        e.event.subject.as_deref().unwrap_or("-"),
                        e.event.ip.as_deref().unwrap_or("-"),
                    );
                }
                if let Some(next) = &next {
                    out += &format!("more: --before {next}\n");
                }
                out
            })?;
        }
        AdminCommand::Devices {
            command: DevicesCommand::List { limit, offset },
        } => {
            let devices = state
                .store
                .list_devices(limit.min(moat_store::MAX_PAGE), offset)
                .await?;
            let views: Vec<moat_server::admin::DeviceView> =
                devices.iter().map(Into::into).collect();
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
            if !state
                .store
                .revoke_device(id, moat_client::unix_now())
                .await?
            {
                bail!("no device {id}");
            }
            audited(
                state,
                moat_server::audit::kind::DEVICE_REVOKED,
                id.to_string(),
            )
            .await;
            let device = state.store.device(id).await?.context("device vanished")?;
            let view = moat_server::admin::DeviceView::from(&device);
            emit(json, &serde_json::to_value(&view)?, || {
                format!("revoked {id}")
            })?;
        }
        AdminCommand::Sms {
            command: SmsCommand::Outbox { phone, limit },
        } => {
            let phone = match phone {
                Some(p) => Some(
                    moat_server::accounts::phone::parse(&p)
                        .map_err(|e| anyhow::anyhow!("--phone: {}", e.code()))?
                        .e164,
                ),
                None => None,
            };
            let mut messages = Vec::new();
            for m in state
                .accounts
                .list_sms(phone.as_deref(), limit.min(moat_store::MAX_PAGE))
                .await?
            {
                if m.sender == "outbox" {
                    let body = state.keys.data.open(m.id.as_bytes(), &m.body_sealed)?;
                    messages.push(json!({
                        "to": m.phone,
                        "body": String::from_utf8_lossy(body.expose()),
                        "created_at": rfc3339(m.created_at),
                    }));
                }
            }
            emit(json, &json!({"messages": messages}), || {
                let mut out = format!("{:<20}  {:<16}  BODY\n", "CREATED", "TO");
                for m in &messages {
                    out += &format!(
                        "{:<20}  {:<16}  {}\n",
                        m["created_at"].as_str().unwrap_or(""),
                        m["to"].as_str().unwrap_or(""),
                        m["body"].as_str().unwrap_or("").replace('\n', " "),
                    );
                }
                out
            })?;
        }
        AdminCommand::Keys {
            command: KeysCommand::Rotate,
        } => {
            let kid = state
                .tokens
                .rotate(&*state.accounts, &state.keys, moat_client::unix_now())
                .await
                .map_err(|e| anyhow::anyhow!("rotating keys: {}", e.code()))?;
            audited(state, moat_server::audit::kind::KEYS_ROTATED, kid.clone()).await;
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
            let out = moat_server::admin::register(state, &app_id, &version, &bytes)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {}", e.code(), e.detail()))?;
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
            let releases = state.attest.releases(moat_store::MAX_PAGE).await?;
            let packages: Vec<serde_json::Value> = releases
                .iter()
                .map(|r| {
                    json!({
                        "app_id": r.app_id,
                        "version": r.version,
                        "sha256": moat_core::b64::url_encode(&r.sha256),
                        "size": r.size,
                        "status": r.status,
                        "created_at": rfc3339(r.created_at),
                    })
                })
                .collect();
            emit(json, &json!({"packages": packages}), || {
                releases
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
            if !state.attest.retire_release(&app_id, &version).await? {
                bail!("no package {app_id} {version}");
            }
            emit(
                json,
                &json!({"app_id": app_id, "version": version, "status": "retired"}),
                || format!("retired {app_id} {version}"),
            )?;
        }
        AdminCommand::Integrity {
            command: IntegrityCommand::Rotate,
        } => {
            let kid = state
                .integrity
                .rotate(&*state.attest, &state.keys, moat_client::unix_now())
                .await
                .map_err(|e| anyhow::anyhow!("rotating: {}", e.code()))?;
            audited(
                state,
                moat_server::audit::kind::INTEGRITY_ROTATED,
                kid.clone(),
            )
            .await;
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
            let keys = state.integrity.export();
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

/// Revokes every device in `ids` (duplicates once) with the store call the single form uses,
/// then reports revoked / not found / failed. Fails (exit 1) if any revocation failed.
async fn revoke_many(state: &moat_server::AppState, ids: &[uuid::Uuid], json: bool) -> Result<()> {
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
        match state.store.revoke_device(id, moat_client::unix_now()).await {
            Ok(true) => {
                report.revoked += 1;
                audited(
                    state,
                    moat_server::audit::kind::DEVICE_REVOKED,
                    id.to_string(),
                )
                .await;
            }
            Ok(false) => report.not_found_ids.push(id),
            Err(e) => report.failed_ids.push(FailedRevoke {
                id,
                error: e.to_string(),
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
    let hint = "now set store.url to the new database and copy the secrets file to every instance";
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
