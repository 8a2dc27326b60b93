//! `moat doctor`: loads the configuration the way `moat serve` does, then checks everything
//! it names, concurrently and each within a time limit, and prints one line per check.
//!
//! Nothing is changed: the data directory and store are only looked at (a write probe is a
//! uniquely named empty file, removed at once), listen addresses are bound and released, and
//! secret values are never printed (references and locations are).

use moat_server::Config;
use serde::Serialize;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use local::{
    check_admin_token, check_data_dir, check_data_key, check_listen, check_public_url,
    check_secrets_file, check_tls,
};
use outcome::{Outcome, Status, fail, ok};
use services::{
    check_host_port, check_http, check_redis, check_service_account, check_sms, check_upstream,
};
use store::check_store;

mod local;
mod outcome;
mod services;
mod store;

const EX_USAGE: u8 = 64;

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
