//! `moat`: the server, its admin commands, and a CLI that plays the app.
//!
//! Exit codes: 0 success, 1 runtime failure, 64 (EX_USAGE) bad configuration or arguments;
//! `moat audit` also exits 3 when it reports findings at or above `--fail-on`; `moat doctor`
//! exits 1 when a check fails.

mod admin;
mod doctor;
mod usage;

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use clap::{CommandFactory as _, Parser, Subcommand, ValueEnum};
use moat_client::{Auth, CallOptions, Client, Credential, DeviceState, Payload, Response};
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
        /// Server base URL, as the app would use it (the server's `public_base_url`, e.g.
        /// `http://127.0.0.1:8080`); without a scheme, `http://` is assumed.
        #[arg(long)]
        server: String,
        /// The app's device id (default: a random one, kept in the state file).
        #[arg(long)]
        device_id: Option<String>,
        /// The platform the device reports at enrollment.
        #[arg(long, value_enum, default_value_t = Platform::Other)]
        platform: Platform,
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
    ///
    /// Prints `HTTP <status>` on standard error and the response body on standard output;
    /// exits 1 when the status is 400 or above.
    Call {
        /// HTTP method (GET, POST, PUT, PATCH, DELETE, ...).
        method: String,
        /// Path and query on the enrolled server, e.g. `/v1/device`.
        path: String,
        /// JSON body: the text itself, `@FILE` to read it from a file, or `@-` from standard
        /// input.
        #[arg(long, short = 'd', conflicts_with = "form")]
        data: Option<String>,
        /// A form field `NAME=VALUE` of an `application/x-www-form-urlencoded` body
        /// (e.g. for `/api/token`); repeatable.
        #[arg(long, value_name = "NAME=VALUE", value_parser = parse_form)]
        form: Vec<(String, String)>,
        /// An extra request header `NAME: VALUE`; repeatable. A signature covers
        /// `Authorization` when it is sent.
        #[arg(long, short = 'H', value_name = "NAME: VALUE", value_parser = parse_header)]
        header: Vec<(String, String)>,
        /// Send the access token of `moat device login` as `Authorization: Bearer`,
        /// refreshing it first when it has expired.
        #[arg(long)]
        user: bool,
        /// Encrypt the body as a JWE with the device's encryption key (otp mode).
        #[arg(long, requires = "data")]
        encrypt: bool,
        /// How the call proves the device: `auto` uses the credential the device holds.
        #[arg(long, value_enum, default_value_t = AuthArg::Auto)]
        auth: AuthArg,
    },
    /// Log a user in (`POST /api/token`, password grant) and keep the session (access and
    /// refresh token) in `<state>.session.json` beside the device state, 0600.
    Login {
        /// The user's phone number, as registered (E.164, e.g. `+14155552671`).
        #[arg(long)]
        phone: String,
        /// The password. Prefer `--password-stdin` or the environment variable: a command
        /// line is visible to other local users.
        #[arg(
            long,
            env = "MOAT_PASSWORD",
            hide_env_values = true,
            conflicts_with = "password_stdin"
        )]
        password: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Forget the user session of `moat device login` (the server-side refresh token stays
    /// valid until it expires or is used).
    Logout,
    /// Show the saved state (no secrets).
    Show,
}

#[derive(Clone, Copy, ValueEnum)]
enum AuthArg {
    /// The credential the device holds: HMAC signature (otp mode), else the API key.
    Auto,
    /// The API key in `Moat-Device-Key`.
    Key,
    /// An RFC 9421 HMAC signature with the client credential (otp mode).
    Hmac,
    /// An RFC 9421 ECDSA signature with the installation key.
    Installation,
    /// No device credential.
    None,
}

#[derive(Clone, Copy, ValueEnum)]
enum Platform {
    /// An Android app.
    Android,
    /// An iOS app.
    Ios,
    /// Anything else (a script, a desktop app).
    Other,
}

impl Platform {
    fn as_str(self) -> &'static str {
        match self {
            Self::Android => "android",
            Self::Ios => "ios",
            Self::Other => "other",
        }
    }
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("`{s}` is not `NAME: VALUE`"))?;
    let name = name.trim();
    http::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("`{name}` is not a header name"))?;
    let value = value.trim();
    http::HeaderValue::from_str(value)
        .map_err(|_| format!("the value of `{name}` is not a header value"))?;
    Ok((name.to_owned(), value.to_owned()))
}

fn parse_form(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not `NAME=VALUE`"))?;
    Ok((name.to_owned(), value.to_owned()))
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

fn load_config(path: Option<&Path>) -> Result<Config> {
    let text = match path {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| {
            // A configuration problem (exit 64), said plainly.
            moat_server::config::ConfigError(vec![format!(
                "--config {}: cannot read the file ({e})",
                p.display()
            )])
        })?),
        None => None,
    };
    Ok(Config::load(text.as_deref(), &moat_server::config::Env)?)
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
            let config = load_config(config.as_deref())?;
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
    save_private(path, &serde_json::to_vec_pretty(state)?)
}

/// Writes `text` to `path`, 0600, replacing it atomically.
fn save_private(path: &Path, text: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(text)?;
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

/// `--server` as the SDK takes it: a bare `host:port` (what a listen address looks like)
/// means plain HTTP, which is what `moat serve` speaks without `[server.tls]`.
fn server_url(server: &str) -> String {
    if server.contains("://") {
        server.to_owned()
    } else {
        let url = format!("http://{server}");
        eprintln!("--server has no scheme: using {url}");
        url
    }
}

fn load_device(path: &Path) -> Result<DeviceState> {
    load(path)?.with_context(|| {
        format!(
            "no device state at {}; run `moat device enroll` first",
            path.display()
        )
    })
}

/// `--data`: the text itself, `@FILE`, or `@-` for standard input (as curl takes it).
fn read_data(text: &str) -> Result<Vec<u8>> {
    match text.strip_prefix('@') {
        Some("-") => {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
                .context("reading --data from standard input")?;
            Ok(bytes)
        }
        Some(file) => std::fs::read(file).with_context(|| format!("reading --data from {file}")),
        None => Ok(text.as_bytes().to_vec()),
    }
}

/// The user session `moat device login` keeps beside the device state.
#[derive(serde::Serialize, serde::Deserialize)]
struct Session {
    access_token: String,
    refresh_token: String,
    /// Unix time the access token expires.
    expires_at: i64,
}

/// `moat-device.json` → `moat-device.session.json`: beside the device whose credential the
/// tokens are bound to (`cnf`), so another `--state` never sends them.
fn session_path(state: &Path) -> PathBuf {
    let stem = state.file_stem().map_or_else(
        || "moat-device".to_owned(),
        |s| s.to_string_lossy().into_owned(),
    );
    state.with_file_name(format!("{stem}.session.json"))
}

fn load_session(path: &Path) -> Result<Option<Session>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                format!("{} is not a session file", path.display())
            })?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// A session from a token response (RFC 6749 section 5.1); `previous` keeps the refresh
/// token when the server did not rotate it.
fn session_from(response: &Response, previous: Option<&Session>) -> Result<Session> {
    if response.status != 200 {
        bail!(
            "the server answered {}: {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        );
    }
    let v = response.json()?;
    let access_token = v["access_token"]
        .as_str()
        .context("the token response has no access_token")?
        .to_owned();
    let refresh_token = match (v["refresh_token"].as_str(), previous) {
        (Some(r), _) => r.to_owned(),
        (None, Some(p)) => p.refresh_token.clone(),
        (None, None) => bail!("the token response has no refresh_token"),
    };
    let expires_in = v["expires_in"].as_i64().unwrap_or(0);
    Ok(Session {
        access_token,
        refresh_token,
        expires_at: moat_client::unix_now() + expires_in,
    })
}

/// Trades the refresh token for new tokens and saves them at once: the old refresh token is
/// spent, and presenting it again would revoke the whole family.
async fn refresh(client: &Client, session: &mut Session, path: &Path) -> Result<()> {
    let response = client
        .call_form(
            "/api/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &session.refresh_token),
            ],
            CallOptions::default(),
        )
        .await?;
    let renewed = session_from(&response, Some(session))
        .context("refreshing the user session (run `moat device login` again)")?;
    save_private(path, &serde_json::to_vec_pretty(&renewed)?)?;
    eprintln!("refreshed the user session");
    *session = renewed;
    Ok(())
}

#[allow(clippy::too_many_arguments)] // one call's parts, sent twice at most
async fn send(
    client: &Client,
    method: &http::Method,
    target: &str,
    payload: Payload<'_>,
    headers: &[(String, String)],
    session: Option<&Session>,
    auth: Auth,
    encrypt: bool,
) -> Result<Response> {
    let mut headers = headers.to_vec();
    if let Some(session) = session {
        headers.push((
            "authorization".to_owned(),
            format!("Bearer {}", session.access_token),
        ));
    }
    Ok(client
        .call_payload(
            method.clone(),
            target,
            payload,
            CallOptions {
                auth,
                encrypt,
                headers,
            },
        )
        .await?)
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
            let server = server_url(&server);
            let platform = platform.as_str();
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
                    .enroll_and_fetch_firebase(&app, &user, &device_id, Some(platform))
                    .await?;
                save(path, &client.state())?;
                let mut shown = describe(&client);
                shown["identity"] = format!("fb:{}", user.uid).into();
                println!("{}", serde_json::to_string_pretty(&shown)?);
                return Ok(());
            }
            client.enroll_and_fetch(&device_id, Some(platform)).await?;
            save(path, &client.state())?;
            println!("{}", serde_json::to_string_pretty(&describe(&client))?);
        }
        DeviceCommand::Call {
            method,
            path: target,
            data,
            form,
            header,
            user,
            encrypt,
            auth,
        } => {
            let client = Client::from_state(&load_device(path)?)?;
            let method = http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                .context("invalid method")?;
            let body = match data {
                Some(text) => Some(
                    serde_json::from_slice::<serde_json::Value>(&read_data(&text)?)
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
            let form: Vec<(&str, &str)> =
                form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let payload = match &body {
                Some(v) => Payload::Json(v),
                None if !form.is_empty() => Payload::Form(&form),
                None => Payload::None,
            };
            let session_path = session_path(path);
            let mut session = if user {
                let mut session = load_session(&session_path)?.with_context(|| {
                    format!(
                        "no user session at {}; run `moat device login` first",
                        session_path.display()
                    )
                })?;
                if session.expires_at <= moat_client::unix_now() + 10 {
                    refresh(&client, &mut session, &session_path).await?;
                }
                Some(session)
            } else {
                None
            };
            let mut response = send(
                &client,
                &method,
                &target,
                payload,
                &header,
                session.as_ref(),
                auth,
                encrypt,
            )
            .await?;
            // Expired early (a clock ahead of ours, or a shorter lifetime than it said):
            // refresh once and send again; a 401 means the server did nothing with the call.
            if let Some(session) = session.as_mut()
                && response.status == 401
                && response
                    .problem_code()
                    .is_some_and(|c| c == "token_expired")
            {
                refresh(&client, session, &session_path).await?;
                response = send(
                    &client,
                    &method,
                    &target,
                    payload,
                    &header,
                    Some(session),
                    auth,
                    encrypt,
                )
                .await?;
            }
            eprintln!("HTTP {}", response.status);
            // The body as it came (it need not be text), and a reader that stops early
            // (`| head`) is not an error.
            let mut stdout = std::io::stdout().lock();
            match stdout
                .write_all(&response.body)
                .and_then(|()| stdout.write_all(b"\n"))
                .and_then(|()| stdout.flush())
            {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    return Err(e).context("writing the response");
                }
                _ => {}
            }
            if response.status >= 400 {
                bail!("the server answered {}", response.status);
            }
        }
        DeviceCommand::Login {
            phone,
            password,
            password_stdin,
        } => {
            let client = Client::from_state(&load_device(path)?)?;
            let password = match password {
                Some(p) if !password_stdin => zeroize::Zeroizing::new(p),
                _ if password_stdin => {
                    let mut line = zeroize::Zeroizing::new(String::new());
                    std::io::stdin()
                        .read_line(&mut line)
                        .context("reading the password from standard input")?;
                    zeroize::Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_owned())
                }
                _ => bail!("give the password with --password-stdin or MOAT_PASSWORD"),
            };
            let response = client
                .call_form(
                    "/api/token",
                    &[
                        ("grant_type", "password"),
                        ("username", &phone),
                        ("password", &password),
                    ],
                    CallOptions::default(),
                )
                .await?;
            let session = session_from(&response, None)?;
            let session_path = session_path(path);
            save_private(&session_path, &serde_json::to_vec_pretty(&session)?)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "logged_in": phone,
                    "session": session_path.display().to_string(),
                    "expires_in": session.expires_at - moat_client::unix_now(),
                }))?
            );
        }
        DeviceCommand::Logout => {
            let session_path = session_path(path);
            match std::fs::remove_file(&session_path) {
                Ok(()) => eprintln!("removed {}", session_path.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    eprintln!("no session at {}", session_path.display());
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("removing {}", session_path.display()));
                }
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
