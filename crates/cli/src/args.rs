//! The command line: commands, their arguments and their help text.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::{admin, doctor};

#[derive(Parser)]
#[command(
    name = "moat",
    version,
    about = "Keeps scripts, bots and cloned apps off a mobile app's API"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
pub struct AuditArgs {
    /// The package: APK, AAB, IPA (or any zip), or a single DEX, Mach-O, ELF or plist file.
    pub package: PathBuf,
    /// Report format.
    #[arg(long, value_enum, default_value_t = AuditFormat::Table)]
    pub format: AuditFormat,
    /// Exit 3 when a finding has this severity or a higher one.
    #[arg(long, value_enum, default_value_t = FailOn::High)]
    pub fail_on: FailOn,
    /// Report only findings at least this sure (0.0-1.0); 0 shows every candidate.
    #[arg(long, default_value_t = 0.5, value_parser = parse_confidence)]
    pub min_confidence: f32,
    /// Write the report here instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum AuditFormat {
    Table,
    Json,
    Sarif,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum FailOn {
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
pub enum FirebaseCommand {
    /// Print `database.rules.json` for the Realtime Database: each uid reads only its own
    /// mailbox node, no client writes anywhere. Deploy it with `firebase deploy --only database`.
    Rules {
        /// The server's `firebase.mailbox_root`.
        #[arg(long, default_value = "moat/mailbox")]
        root: String,
    },
}

#[derive(Subcommand)]
pub enum TlsCommand {
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
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum DeviceCommand {
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
pub enum AuthArg {
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
pub enum Platform {
    /// An Android app.
    Android,
    /// An iOS app.
    Ios,
    /// Anything else (a script, a desktop app).
    Other,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
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
