//! `moat admin …`: operator commands run against the server's configuration and store, or
//! (with `--admin-url`) through a running instance's admin API. Both paths call the same
//! function of `moat_server::admin` for each operation: each operation is one method of
//! [`ops::Operations`], implemented once for the store and once for the API, so the commands
//! here are written once.
//!
//! Every command that prints something prints text for people by default and JSON with the
//! global `--json` flag (stdout either way; progress and hints go to stderr).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;
use moat_core::clock::SystemClock;
use serde_json::json;

use crate::usage::UsageError;
use migrate::migrate;
use ops::{Api, Local, Operations, Remote, is_not_found};
use output::emit;
use revoke::{read_ids, revoke_many, revoke_one};

mod migrate;
mod ops;
mod output;
mod revoke;

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
    match &connection.admin_url {
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
            dispatch(command, revoke_ids, &Remote(api), json).await
        }
        None => {
            let state = open_store(config, connection.create).await?;
            dispatch(command, revoke_ids, &Local(state), json).await
        }
    }
}

/// Runs `command` (or revokes the devices of its file, `revoke_ids`) with `ops`.
async fn dispatch(
    command: AdminCommand,
    revoke_ids: Option<Vec<uuid::Uuid>>,
    ops: &impl Operations,
    json: bool,
) -> Result<()> {
    if let Some(ids) = revoke_ids {
        return revoke_many(ops, &ids, json).await;
    }
    execute(command, ops, json).await
}

/// Opens the store the configuration names, saying on stderr which configuration and store
/// it is. Refuses (exit 64) when there is no store, unless `create`.
async fn open_store(config: Option<&Path>, create: bool) -> Result<moat_server::AppState> {
    let label = config.map_or_else(
        || "embedded defaults (no --config)".to_owned(),
        |p| p.display().to_string(),
    );
    let loaded = crate::config::load_config(config)?;
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

#[allow(clippy::too_many_lines)]
/// Runs one admin command with `ops`.
async fn execute(command: AdminCommand, ops: &impl Operations, json: bool) -> Result<()> {
    match command {
        AdminCommand::Migrate { .. } => unreachable!("handled before the store is opened"),
        AdminCommand::Cleanup { once } => {
            if !once {
                bail!("the server runs the cleanup job by itself; use --once to run one pass now");
            }
            let removed = ops.cleanup().await?;
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
            let page = ops.audit(filter).await?;
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
            let views = ops.devices(limit, offset).await?;
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
            let Some(view) = revoke_one(ops, id).await? else {
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
            let messages = ops.outbox(phone, limit).await?;
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
            let kid = ops.rotate_signing_key().await?;
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
            let out = ops.register(&app_id, &version, bytes).await?;
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
            let packages = ops.apps().await?;
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
            let out = match ops.retire(&app_id, &version).await {
                Err(e) if is_not_found(&e) => {
                    bail!("no package {app_id} {version}")
                }
                other => other?,
            };
            emit(json, &out, || format!("retired {app_id} {version}"))?;
        }
        AdminCommand::Integrity {
            command: IntegrityCommand::Rotate,
        } => {
            let kid = ops.rotate_integrity_secret().await?;
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
            let keys = ops.integrity_secrets()?;
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
