//! `moat`: the server, its admin commands, and a CLI that plays the app.
//!
//! Exit codes: 0 success, 1 runtime failure, 64 (EX_USAGE) bad configuration or arguments;
//! `moat audit` also exits 3 when it reports findings at or above `--fail-on`; `moat doctor`
//! exits 1 when a check fails.

mod admin;
mod doctor;

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use clap::{CommandFactory as _, Parser, Subcommand, ValueEnum};
use moat_client::{Auth, CallOptions, Client, Credential, DeviceState};
use moat_server::Config;
use moat_server::clock::SystemClock;

const EX_USAGE: u8 = 64;
/// `moat audit`: findings at or above `--fail-on` (distinct from 1, "could not audit").
const EX_FINDINGS: u8 = 3;

// The request path allocates many small, short-lived buffers (headers, bodies, futures);
// glibc malloc/free were ~17% of the server's CPU samples under load, mimalloc is cheaper
// there (bench/perf.sh measures the difference).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "moat",
    version,
    about = "Keeps scripts, bots and cloned apps off a mobile app's API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (embedded defaults without --config).
    Serve {
        /// TOML configuration file; MOAT_<SECTION>__<KEY> variables override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Log format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "MOAT_LOG_FORMAT")]
        log_format: LogFormat,
    },
    /// Check the configuration and every dependency it names.
    ///
    /// Data directory and secrets file, store and its migrations, Redis, Firebase, gateway
    /// upstreams, SMS sender, TLS files, listen addresses and admin token, concurrently; one
    /// line each: ok, warn or fail. Exits 0 when nothing failed, 1 when a check failed, 64
    /// when the configuration does not load.
    Doctor(doctor::Args),
    /// Operator commands, run against the server's configuration and store.
    Admin {
        #[command(subcommand)]
        command: admin::AdminCommand,
        /// TOML configuration file of the server.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        /// Print JSON instead of text (on standard output, as the text would be).
        #[arg(long, global = true)]
        json: bool,
        /// The store (refused if missing, unless --create) or a server's admin API.
        #[command(flatten)]
        connection: admin::Connection,
    },
    /// Firebase helpers.
    Firebase {
        #[command(subcommand)]
        command: FirebaseCommand,
    },
    /// TLS helpers.
    Tls {
        #[command(subcommand)]
        command: TlsCommand,
    },
    /// Find the secrets and insecure settings an app package (APK, AAB, IPA) gives away, and
    /// print the Moat routes that keep third-party credentials on the server.
    Audit(AuditArgs),
    /// Play the app: enroll a device and call protected endpoints.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
        /// Where the device keeps its installation key and credential (written 0600).
        #[arg(
            long,
            global = true,
            default_value = "moat-device.json",
            env = "MOAT_DEVICE_STATE"
        )]
        state: PathBuf,
    },
    /// Print a shell completion script, e.g. `moat completions bash > /etc/bash_completion.d/moat`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(clap::Args)]
struct AuditArgs {
    /// The package: APK, AAB, IPA (or any zip), or a single DEX, Mach-O, ELF or plist file.
    package: PathBuf,
    /// Report format.
    #[arg(long, value_enum, default_value_t = AuditFormat::Table)]
    format: AuditFormat,
    /// Exit 3 when a finding has this severity or a higher one.
    #[arg(long, value_enum, default_value_t = FailOn::High)]
    fail_on: FailOn,
    /// Report only findings at least this sure (0.0-1.0); 0 shows every candidate.
    #[arg(long, default_value_t = 0.5, value_parser = parse_confidence)]
    min_confidence: f32,
    /// Write the report here instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum AuditFormat {
    Table,
    Json,
    Sarif,
}

#[derive(Clone, Copy, ValueEnum)]
enum FailOn {
    Critical,
    High,
    Medium,
    Low,
    Info,
    Never,
}

fn parse_confidence(s: &str) -> Result<f32, String> {
    let v: f32 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err("must be between 0 and 1".into())
    }
}

#[derive(Subcommand)]
enum FirebaseCommand {
    /// Print `database.rules.json` for the Realtime Database: each uid reads only its own
    /// mailbox node, no client writes anywhere. Deploy it with `firebase deploy --only database`.
    Rules {
        /// The server's `firebase.mailbox_root`.
        #[arg(long, default_value = "moat/mailbox")]
        root: String,
    },
}

#[derive(Subcommand)]
enum TlsCommand {
    /// Write a self-signed development certificate and key (P-256) and print the key's pin
    /// in the forms Android and iOS pinning take.
    SelfSigned {
        /// Directory for cert.pem and key.pem.
        #[arg(long, default_value = "moat-tls")]
        out: PathBuf,
        /// Names and addresses the certificate is valid for.
        #[arg(long = "host", default_values_t = ["localhost".to_owned(), "127.0.0.1".to_owned()])]
        hosts: Vec<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Enroll: make (or reuse) the installation key, enroll, read the mailbox, confirm the
    /// code in otp mode, and save the credential.
    Enroll {
        /// Server base URL, as the app would use it.
        #[arg(long)]
        server: String,
        /// The app's device id (default: a random one, kept in the state file).
        #[arg(long)]
        device_id: Option<String>,
        #[arg(long, default_value = "other")]
        platform: String,
        /// Trust only a server whose key has this pin (`sha256/<base64>`, as printed by
        /// `moat tls self-signed`); repeatable.
        #[arg(long = "pin")]
        pins: Vec<String>,
        /// Use the Firebase identity (seed 000): sign in anonymously, enroll with the ID
        /// token, read the credential from the Realtime Database.
        #[arg(long, requires_all = ["firebase_api_key", "firebase_database_url"])]
        firebase: bool,
        /// The app's Firebase Web API key.
        #[arg(long)]
        firebase_api_key: Option<String>,
        /// Firebase Auth REST base (the emulator's is
        /// `http://127.0.0.1:9099/identitytoolkit.googleapis.com`).
        #[arg(long, default_value = moat_client::firebase::FirebaseApp::AUTH_URL)]
        firebase_auth_url: String,
        /// Realtime Database URL.
        #[arg(long)]
        firebase_database_url: Option<String>,
        /// The server's `firebase.mailbox_root`.
        #[arg(long, default_value = "moat/mailbox")]
        firebase_mailbox_root: String,
    },
    /// Call a protected endpoint with the saved credential.
    Call {
        method: String,
        path: String,
        /// JSON body.
        #[arg(long)]
        data: Option<String>,
        /// Encrypt the body as a JWE with the device's encryption key (otp mode).
        #[arg(long)]
        encrypt: bool,
        #[arg(long, value_enum, default_value_t = AuthArg::Auto)]
        auth: AuthArg,
    },
    /// Show the saved state (no secrets).
    Show,
}

#[derive(Clone, Copy, ValueEnum)]
enum AuthArg {
    Auto,
    Key,
    Hmac,
    Installation,
    None,
}

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
        clap_complete::generate(shell, &mut Cli::command(), "moat", &mut std::io::stdout());
        return ExitCode::SUCCESS;
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
            eprintln!("error: {e:#}");
            if e.downcast_ref::<moat_server::config::ConfigError>()
                .is_some()
                || e.downcast_ref::<admin::UsageError>().is_some()
            {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn load_config(path: Option<&Path>) -> Result<Config> {
    let text = match path {
        Some(p) => {
            Some(std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
        }
        None => None,
    };
    Ok(Config::load(text.as_deref(), &moat_server::config::Env)?)
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
            let config = load_config(config.as_deref())?;
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
        Command::Device { command, state } => device(command, &state).await,
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
                serde_json::to_string_pretty(&moat_server::firebase::rules(&root))?
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

fn save(path: &Path, state: &DeviceState) -> Result<()> {
    let text = serde_json::to_vec_pretty(state)?;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(&text)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn load(path: &Path) -> Result<Option<DeviceState>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
            format!("{} is not a device state file", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn describe(c: &Client) -> serde_json::Value {
    let credential = match c.credential() {
        Some(Credential::ApiKey { device, .. }) => {
            serde_json::json!({"kind": "api_key", "device": device})
        }
        Some(Credential::ClientCredential {
            device, client_id, ..
        }) => {
            serde_json::json!({"kind": "client_credential", "device": device, "client_id": client_id})
        }
        Some(_) => serde_json::json!({"kind": "other"}),
        None => serde_json::Value::Null,
    };
    serde_json::json!({
        "server": c.state().server,
        "device_id": c.state().device_id,
        "identity": format!("inst:{}", c.thumbprint()),
        "credential": credential,
    })
}

async fn device(command: DeviceCommand, path: &Path) -> Result<()> {
    match command {
        DeviceCommand::Enroll {
            server,
            device_id,
            platform,
            pins,
            firebase,
            firebase_api_key,
            firebase_auth_url,
            firebase_database_url,
            firebase_mailbox_root,
        } => {
            let mut client = match load(path)? {
                Some(mut state)
                    if state.server.trim_end_matches('/') == server.trim_end_matches('/') =>
                {
                    if !pins.is_empty() {
                        state.pins = pins;
                    }
                    Client::from_state(&state)?
                }
                _ if !pins.is_empty() => Client::generate_pinned(&server, &pins)?,
                _ => Client::generate(&server)?,
            };
            let device_id = device_id
                .or_else(|| client.state().device_id)
                .unwrap_or_else(|| format!("cli-{}", uuid::Uuid::new_v4()));
            if firebase {
                let app = moat_client::firebase::FirebaseApp {
                    api_key: firebase_api_key.unwrap_or_default(),
                    auth_url: firebase_auth_url,
                    database_url: firebase_database_url.unwrap_or_default(),
                    mailbox_root: firebase_mailbox_root,
                };
                let http = reqwest::Client::new();
                let user = app
                    .sign_in_anonymously(&http)
                    .await
                    .context("signing in to Firebase")?;
                eprintln!("signed in to Firebase as uid {}", user.uid);
                client
                    .enroll_and_fetch_firebase(&app, &user, &device_id, Some(&platform))
                    .await?;
                save(path, &client.state())?;
                let mut shown = describe(&client);
                shown["identity"] = format!("fb:{}", user.uid).into();
                println!("{}", serde_json::to_string_pretty(&shown)?);
                return Ok(());
            }
            client.enroll_and_fetch(&device_id, Some(&platform)).await?;
            save(path, &client.state())?;
            println!("{}", serde_json::to_string_pretty(&describe(&client))?);
        }
        DeviceCommand::Call {
            method,
            path: target,
            data,
            encrypt,
            auth,
        } => {
            let state = load(path)?.with_context(|| {
                format!(
                    "no device state at {}; run `moat device enroll` first",
                    path.display()
                )
            })?;
            let client = Client::from_state(&state)?;
            let method = http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                .context("invalid method")?;
            let body = match data {
                Some(text) => Some(
                    serde_json::from_str::<serde_json::Value>(&text)
                        .context("--data is not JSON")?,
                ),
                None => None,
            };
            let auth = match auth {
                AuthArg::Auto => Auth::Auto,
                AuthArg::Key => Auth::ApiKey,
                AuthArg::Hmac => Auth::HmacSignature,
                AuthArg::Installation => Auth::InstallationSignature,
                AuthArg::None => Auth::None,
            };
            let response = client
                .call(
                    method,
                    &target,
                    body.as_ref(),
                    CallOptions {
                        auth,
                        encrypt,
                        ..CallOptions::default()
                    },
                )
                .await?;
            eprintln!("HTTP {}", response.status);
            println!("{}", String::from_utf8_lossy(&response.body));
            if response.status >= 400 {
                bail!("the server answered {}", response.status);
            }
        }
        DeviceCommand::Show => {
            let state =
                load(path)?.with_context(|| format!("no device state at {}", path.display()))?;
            println!(
                "{}",
                serde_json::to_string_pretty(&describe(&Client::from_state(&state)?))?
            );
        }
    }
    Ok(())
}
