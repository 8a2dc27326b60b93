//! `moat`: the server, its admin commands, and a CLI that plays the app.
//!
//! Exit codes: 0 success, 1 runtime failure, 64 (EX_USAGE) bad configuration or arguments;
//! `moat audit` also exits 3 when it reports findings at or above `--fail-on`; `moat doctor`
//! exits 1 when a check fails.

mod admin;
mod args;
mod config;
mod device;
mod doctor;
mod usage;

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use args::{AuditArgs, AuditFormat, Cli, Command, FailOn, FirebaseCommand, LogFormat, TlsCommand};
use clap::{CommandFactory as _, Parser as _};
use moat_core::clock::SystemClock;

const EX_USAGE: u8 = 64;
/// `moat audit`: findings at or above `--fail-on` (distinct from 1, "could not audit").
const EX_FINDINGS: u8 = 3;

// The request path allocates many small, short-lived buffers (headers, bodies, futures);
// glibc malloc/free were ~17% of the server's CPU samples under load, mimalloc is cheaper
// there (bench/perf.sh measures the difference).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if let Command::Completions { shell } = cli.command {
        // Written whole and by hand: `moat completions bash | head -1` closes the pipe early,
        // and a reader that has seen enough is not an error (print! would panic on it).
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "moat", &mut script);
        return match std::io::stdout().write_all(&script) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                eprintln!("error: writing the completion script: {e}");
                ExitCode::from(1)
            }
            _ => ExitCode::SUCCESS,
        };
    }
    // The audit is CPU-bound (rayon); it needs no async runtime.
    if let Command::Audit(args) = &cli.command {
        return match audit(args) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    if let Command::Doctor(args) = cli.command {
        let code = runtime.block_on(doctor::run(args));
        // A check that ran out of time may still hold a thread (a hung disk or DNS lookup).
        runtime.shutdown_background();
        return code;
    }
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            if e.downcast_ref::<moat_server::config::ConfigError>()
                .is_some()
                || e.downcast_ref::<usage::UsageError>().is_some()
            {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// The error and its causes on one line, each message once: the SDK's and reqwest's errors
/// repeat their source in their own text, so `{:#}` said "connection refused" three times.
/// A failed connection gets a hint, because that is nearly always a server not running.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    let connect = e.chain().any(|c| {
        c.downcast_ref::<reqwest::Error>()
            .is_some_and(reqwest::Error::is_connect)
    });
    if connect {
        text.push_str("\n(is `moat serve` running, and is --server the URL it listens on?)");
    }
    text
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal: escape codes in a journal, a file or a pipe
    // are noise (and NO_COLOR asks for none anywhere).
    use std::io::IsTerminal as _;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

async fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve { config, log_format } => {
            init_tracing(log_format);
            let config = config::load_config(config.as_deref())?;
            // Which store this is, first: an operator looking for their data (or wondering
            // why it is empty) should not have to work out the defaults.
            tracing::info!(
                store = %moat_store::shown_url(&config.store_url),
                data_dir = %std::path::absolute(&config.data_dir)
                    .unwrap_or_else(|_| config.data_dir.clone())
                    .display(),
                "opening the store"
            );
            let public = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("binding {}", config.listen))?;
            let admin = tokio::net::TcpListener::bind(config.admin_listen)
                .await
                .with_context(|| format!("binding {}", config.admin_listen))?;
            let state = moat_server::build_state(config, Arc::new(SystemClock)).await?;
            moat_server::run(state, public, admin, shutdown_signal()).await?;
            Ok(())
        }
        Command::Admin {
            command,
            config,
            json,
            connection,
        } => admin::run(command, config.as_deref(), json, &connection).await,
        Command::Device { command, state } => device::device(command, &state).await,
        Command::Firebase {
            command: FirebaseCommand::Rules { root },
        } => {
            if !root.trim_matches('/').split('/').all(|s| {
                !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            }) {
                bail!("--root: path segments of letters, digits, _ and -");
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&moat_enroll::firebase::rules(&root))?
            );
            Ok(())
        }
        Command::Audit(_) | Command::Completions { .. } | Command::Doctor(_) => {
            unreachable!("handled before dispatch")
        }
        Command::Tls {
            command: TlsCommand::SelfSigned { out, hosts },
        } => self_signed(&out, hosts),
    }
}

fn audit(args: &AuditArgs) -> Result<ExitCode> {
    use std::io::IsTerminal as _;
    let mut options = moat_audit::Options::default();
    // A progress bar only for people watching, and only when there is something to wait for.
    let size = std::fs::metadata(&args.package).map_or(0, |m| m.len());
    let bar = if std::io::stderr().is_terminal() && size > 16 << 20 {
        let bar = indicatif::ProgressBar::new(size);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} scanning {bytes}/{total_bytes} compressed [{bar:30}] {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let handle = bar.clone();
        options.progress = Some(std::sync::Arc::new(move |p: moat_audit::Progress| {
            handle.set_length(p.total.max(1));
            handle.set_position(p.done);
        }));
        Some(bar)
    } else {
        None
    };
    let report = moat_audit::scan_path(&args.package, &options);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = report?;
    let text = match args.format {
        AuditFormat::Table => moat_audit::report::table(&report, args.min_confidence),
        AuditFormat::Json => {
            serde_json::to_string_pretty(&moat_audit::report::json(&report, args.min_confidence))?
                + "\n"
        }
        AuditFormat::Sarif => {
            serde_json::to_string_pretty(&moat_audit::report::sarif(&report, args.min_confidence))?
                + "\n"
        }
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => std::io::stdout().write_all(text.as_bytes())?,
    }
    let threshold = match args.fail_on {
        FailOn::Critical => Some(moat_audit::Severity::Critical),
        FailOn::High => Some(moat_audit::Severity::High),
        FailOn::Medium => Some(moat_audit::Severity::Medium),
        FailOn::Low => Some(moat_audit::Severity::Low),
        FailOn::Info => Some(moat_audit::Severity::Info),
        FailOn::Never => None,
    };
    let failing = threshold.is_some_and(|t| {
        report
            .filtered(args.min_confidence)
            .iter()
            .any(|f| f.severity >= t)
    });
    Ok(if failing {
        ExitCode::from(EX_FINDINGS)
    } else {
        ExitCode::SUCCESS
    })
}

fn self_signed(out: &Path, hosts: Vec<String>) -> Result<()> {
    use rcgen::PublicKeyData as _;
    let certified =
        rcgen::generate_simple_self_signed(hosts.clone()).context("generating the certificate")?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let cert_path = out.join("cert.pem");
    let key_path = out.join("key.pem");
    std::fs::write(&cert_path, certified.cert.pem())
        .with_context(|| format!("writing {}", cert_path.display()))?;
    let _ = std::fs::remove_file(&key_path);
    let mut key = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key_path)?;
    key.write_all(certified.signing_key.serialize_pem().as_bytes())?;
    let pin = moat_client::pin::spki_pin(&certified.signing_key.subject_public_key_info());
    let b64 = pin.trim_start_matches("sha256/");
    println!(
        "certificate: {} (valid for {})",
        cert_path.display(),
        hosts.join(", ")
    );
    println!("private key: {} (0600)", key_path.display());
    println!();
    println!("pin (SHA-256 of the SubjectPublicKeyInfo): {pin}");
    println!("Android network_security_config.xml:  <pin digest=\"SHA-256\">{b64}</pin>");
    println!("OkHttp CertificatePinner:             .add(\"<host>\", \"{pin}\")");
    println!("iOS (TrustKit kTSKPublicKeyHashes):   @[@\"{b64}\"]");
    println!("moat CLI:                             moat device enroll --pin {pin} ...");
    println!();
    println!(
        "Serve it with:\n  [server.tls]\n  cert = \"{}\"\n  key = \"{}\"",
        cert_path.display(),
        key_path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every argument and command says what it is for in `--help` (clap lists the values
    /// of enumerated ones, such as `--platform`).
    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(format!("{path} {} (the command)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "moat", &mut missing);
        assert!(missing.is_empty(), "without help text: {missing:?}");
    }

    #[test]
    fn store_urls_are_logged_without_their_password() {
        assert_eq!(
            moat_store::shown_url("postgres://moat:s3cret@db:5432/moat?sslmode=require"),
            "postgres://moat:***@db:5432/moat?sslmode=require"
        );
        assert_eq!(
            moat_store::shown_url("sqlite://./moat-data/moat.db"),
            "sqlite://./moat-data/moat.db"
        );
        assert!(!moat_store::shown_url("postgres://moat:s3c%ret@@db/moat").contains("s3c"));
    }
}
