//! Configuration: TOML file, then `MOAT_<SECTION>__<KEY>` environment variables, validated
//! into [`Config`] in one pass that reports every problem at once.
//!
//! Phase one ([`RawConfig`]) is plain serde over the merged TOML, with unknown keys refused so
//! a typo is an error rather than a silently ignored setting. Phase two ([`Config::from_raw`])
//! turns strings into typed values (socket addresses, URLs, durations, enums) and checks the
//! combinations.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Default public listener.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default admin listener.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9091";
/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "./moat-data";
/// Default largest request body, bytes.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
/// Default lifetime of mailbox items and enrollment codes, seconds.
pub const DEFAULT_MAILBOX_TTL: i64 = 600;
/// Accepted skew of RFC 9421 `created`, seconds (PROTOCOL section 4).
pub const DEFAULT_SIGNATURE_SKEW: i64 = 300;
/// Accepted skew of DPoP `iat`, seconds (PROTOCOL section 2).
pub const DEFAULT_DPOP_SKEW: i64 = 60;
/// Default cleanup interval, seconds.
pub const DEFAULT_CLEANUP_INTERVAL: u64 = 300;
/// Default dormancy before a device is removed, days.
pub const DEFAULT_DORMANT_DAYS: i64 = 90;
/// Enrollments one client IP may make per hour. High enough for a carrier-grade NAT's
/// installs at a busy hour (enrollment happens once per install), low enough that one host
/// cannot mint the thousands of devices (each with a fresh per-device SMS budget) a pumping
/// run wants.
pub const DEFAULT_ENROLL_PER_IP_HOUR: i64 = 120;
/// Default `cleanup.revocation_retention_days`: how long a revoked device's tombstone keeps
/// refusing its re-enrollment.
pub const DEFAULT_REVOCATION_RETENTION_DAYS: i64 = 365;
/// Default `audit.retention_days`.
pub const DEFAULT_AUDIT_RETENTION_DAYS: i64 = 90;
/// Default number of pre-generated RSA keys.
pub const DEFAULT_RSA_POOL: usize = 32;

/// Where configuration values come from besides the file: a list of `(name, value)` pairs,
/// normally `std::env::vars()`, a plain vector in tests.
pub trait Source {
    /// All variables.
    fn vars(&self) -> Vec<(String, String)>;
}

/// The process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Env;

impl Source for Env {
    fn vars(&self) -> Vec<(String, String)> {
        std::env::vars().collect()
    }
}

impl Source for Vec<(String, String)> {
    fn vars(&self) -> Vec<(String, String)> {
        self.clone()
    }
}

/// The configuration as written, before validation.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub redis: RawRedis,
    #[serde(default)]
    pub enrollment: RawEnrollment,
    #[serde(default)]
    pub delivery: RawDelivery,
    #[serde(default)]
    pub firebase: Option<RawFirebase>,
    #[serde(default)]
    pub integrity: RawIntegrity,
    #[serde(default)]
    pub sms: RawSms,
    #[serde(default)]
    pub cleanup: RawCleanup,
    #[serde(default)]
    pub signature: RawSignature,
    #[serde(default, rename = "route")]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub accounts: RawAccounts,
    #[serde(default, rename = "issuer")]
    pub issuers: Vec<RawIssuer>,
    #[serde(default)]
    pub attestation: RawAttestation,
    #[serde(default)]
    pub cache: RawCache,
    #[serde(default)]
    pub audit: RawAudit,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawAudit {
    pub retention_days: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawCache {
    pub device_ttl_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawAttestation {
    pub enabled: Option<bool>,
    pub play_integrity: Option<PlayIntegrityConfig>,
    pub app_attest: Option<AppAttestConfig>,
    pub firebase_app_check: Option<AppCheckConfig>,
}

/// `[attestation.play_integrity]`: keys from the Play Console (as `env:`/`file:` references
/// to their base64 text), the package and what its verdict must say.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlayIntegrityConfig {
    /// Reference to the base64 AES-256 decryption key.
    pub decryption_key: String,
    /// Reference to the base64 DER EC public verification key.
    pub verification_key: String,
    /// Package name.
    pub package_name: String,
    /// Accepted signing-certificate SHA-256 digests (base64url); empty accepts any.
    #[serde(default)]
    pub certificate_digests: Vec<String>,
    /// Required device verdict.
    #[serde(default = "default_device_verdict")]
    pub device_verdict: String,
    /// Oldest acceptable token, seconds.
    #[serde(default = "default_play_max_age")]
    pub max_age: i64,
}

fn default_device_verdict() -> String {
    "MEETS_DEVICE_INTEGRITY".into()
}

fn default_play_max_age() -> i64 {
    300
}

/// `[attestation.app_attest]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppAttestConfig {
    /// Apple team id.
    pub team_id: String,
    /// Bundle id.
    pub bundle_id: String,
    /// `production`, `development` or `any`.
    #[serde(default = "default_environment")]
    pub environment: String,
}

fn default_environment() -> String {
    "production".into()
}

/// `[attestation.firebase_app_check]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppCheckConfig {
    /// Firebase project number.
    pub project_number: String,
    /// Accepted Firebase app ids (`sub`); empty accepts any app of the project.
    #[serde(default)]
    pub app_ids: Vec<String>,
    /// App Check JWKS.
    #[serde(default = "default_app_check_jwks")]
    pub jwks_url: String,
}

fn default_app_check_jwks() -> String {
    "https://firebaseappcheck.googleapis.com/v1/jwks".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawAccounts {
    pub access_ttl: Option<i64>,
    pub refresh_ttl: Option<i64>,
    pub login_lock_after: Option<i64>,
    pub login_lock_seconds: Option<i64>,
    pub login_per_minute: Option<u32>,
    pub hash_concurrency: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawIssuer {
    pub issuer: String,
    pub jwks_url: String,
    pub audience: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawTwilio {
    pub account_sid: Option<String>,
    pub auth_token: Option<String>,
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
    pub status_callback: Option<String>,
    pub base_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawWebhook {
    pub url: Option<String>,
    pub secret: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawServer {
    pub trusted_proxies: Option<Vec<String>>,
    pub listen: Option<String>,
    pub public_base_url: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub max_body_bytes: Option<usize>,
    pub request_timeout: Option<u64>,
    pub header_timeout: Option<u64>,
    pub tls: Option<toml::Table>,
    /// Secret reference (`env:`/`file:`) of the data key (PROTOCOL section 11).
    pub data_key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawAdmin {
    pub listen: Option<String>,
    pub token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawStore {
    pub url: Option<String>,
    pub max_connections: Option<u32>,
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawRedis {
    pub url: Option<String>,
    pub timeout_ms: Option<u64>,
    pub prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawEnrollment {
    pub mode: Option<String>,
    pub static_key: Option<String>,
    pub identity: Option<Vec<String>>,
    pub otp_ttl: Option<i64>,
    pub mailbox_ttl: Option<i64>,
    pub otp_max_attempts: Option<i64>,
    pub rsa_pool_size: Option<usize>,
    pub per_ip_hour: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawFirebase {
    pub project_id: Option<String>,
    pub database_url: Option<String>,
    pub service_account: Option<PathBuf>,
    pub auth_emulator_host: Option<String>,
    pub mailbox_root: Option<String>,
    pub certs_url: Option<String>,
    pub database_emulator: Option<bool>,
}

/// Whether `url` is plain HTTP to this machine (allowed for emulators and tests only).
fn loopback(url: &str) -> bool {
    [
        "http://127.0.0.1:",
        "http://127.0.0.1/",
        "http://localhost:",
        "http://[::1]:",
    ]
    .iter()
    .any(|p| url.starts_with(p))
}

/// Google's x509 certificates for Firebase ID tokens.
pub const FIREBASE_CERTS_URL: &str =
    "https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com";

/// `[firebase]`: Firebase identity and Realtime Database delivery (seed 000).
#[derive(Clone, Debug)]
pub struct FirebaseConfig {
    /// Firebase project id: the `aud` of ID tokens, and part of their `iss`.
    pub project_id: String,
    /// Realtime Database URL (`https://<db>.firebaseio.com`), for `delivery.channel = "firebase"`.
    pub database_url: Option<String>,
    /// Service-account JSON file: the database writes are authorised with OAuth2 access tokens
    /// minted from it.
    pub service_account: Option<PathBuf>,
    /// Set only with the Auth emulator: its unsigned ID tokens are then accepted.
    pub auth_emulator_host: Option<String>,
    /// Node under which each uid's mailbox lives.
    pub mailbox_root: String,
    /// Where the ID-token certificates are fetched (Google's, unless testing).
    pub certs_url: String,
    /// The database is an emulator: write with its owner credential (`Bearer owner`).
    pub database_emulator: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawDelivery {
    pub channel: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawIntegrity {
    pub secret: Option<String>,
    pub ttl: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawSms {
    pub sender: Option<String>,
    pub app_name: Option<String>,
    pub code_ttl: Option<i64>,
    pub cooldown: Option<u64>,
    pub per_phone_hour: Option<u32>,
    pub per_device_hour: Option<u32>,
    pub per_ip_hour: Option<u32>,
    pub per_country_hour: Option<u32>,
    pub global_hour: Option<u32>,
    pub allowed_countries: Option<Vec<String>>,
    pub cost_per_sms: Option<f64>,
    pub currency: Option<String>,
    #[serde(default)]
    pub twilio: RawTwilio,
    #[serde(default)]
    pub webhook: RawWebhook,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawCleanup {
    pub interval: Option<u64>,
    pub dormant_days: Option<i64>,
    pub revocation_retention_days: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawSignature {
    pub max_skew: Option<i64>,
    pub dpop_max_skew: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawRoute {
    pub path: Option<String>,
    pub prefix: Option<String>,
    pub upstream: Option<String>,
    pub require: Option<Vec<String>>,
    pub methods: Option<Vec<String>>,
    pub inject_headers: Option<toml::Table>,
    pub inject_query: Option<toml::Table>,
    pub rate_limit: Option<toml::Table>,
    pub timeout: Option<u64>,
    pub forward_credentials: Option<bool>,
    pub sign_upstream: Option<bool>,
    pub max_body_bytes: Option<usize>,
    pub pass_server_header: Option<bool>,
}

/// Enrollment mode (seed 000 sections 3.1-3.3).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One operator-chosen key for every device (teaching and migration only).
    Static,
    /// A new API key per device.
    Dynamic,
    /// An enrollment code, then an HMAC client credential and an RSA encryption key.
    Otp,
}

impl Mode {
    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Static => "static",
            Self::Dynamic => "dynamic",
            Self::Otp => "otp",
        }
    }
}

pub use moat_policy::Requirement;

/// The SMS sender and its settings.
#[non_exhaustive]
#[derive(Clone, Debug)]
pub enum SmsSenderConfig {
    /// Kept in the store (development).
    Outbox,
    /// Twilio's Messages API.
    Twilio {
        /// API base URL.
        base_url: String,
        /// Account SID.
        account_sid: String,
        /// Secret reference of the auth token (`env:`/`file:`).
        auth_token: String,
        /// Sender number.
        from: Option<String>,
        /// Messaging service.
        messaging_service_sid: Option<String>,
        /// Delivery status callback URL.
        status_callback: Option<String>,
    },
    /// Signed JSON POST.
    Webhook {
        /// Receiver URL.
        url: String,
        /// Secret reference of the signing secret.
        secret: String,
    },
}

/// SMS settings.
#[derive(Clone, Debug)]
pub struct SmsConfig {
    /// Sender.
    pub sender: SmsSenderConfig,
    /// Name in the message text.
    pub app_name: String,
    /// Code lifetime, seconds.
    pub code_ttl: i64,
    /// Pumping budgets.
    pub limits: crate::sms::guard::Limits,
    /// Estimated cost of one SMS (for reporting).
    pub cost_per_sms: f64,
    /// ISO 4217 currency of `cost_per_sms`.
    pub currency: String,
}

/// Accounts settings.
#[derive(Clone, Debug)]
pub struct AccountsConfig {
    /// Access token lifetime, seconds.
    pub access_ttl: i64,
    /// Refresh token lifetime, seconds.
    pub refresh_ttl: i64,
    /// Failed logins before a lock.
    pub login_lock_after: i64,
    /// Lock duration, seconds.
    pub login_lock_seconds: i64,
    /// Login attempts per phone per minute (before hashing).
    pub login_per_minute: u32,
    /// Password hashes at once.
    pub hash_concurrency: usize,
}

/// A built-in endpoint's policy set by a `[[route]]` entry.
#[derive(Clone, Debug)]
pub struct RoutePolicy {
    /// Exact path.
    pub path: String,
    /// Requirements, all of which must hold.
    pub require: Vec<Requirement>,
    /// Rate limit.
    pub rate_limit: Option<crate::gateway::RateLimit>,
}

/// TLS termination files.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Public listener.
    pub listen: SocketAddr,
    /// Base URL as clients see it (scheme, host, port, no trailing slash).
    pub public_base_url: String,
    /// The scheme of `public_base_url`: what RFC 9421 `@scheme` and `X-Forwarded-Proto` say,
    /// whatever the client's request claims.
    pub public_scheme: &'static str,
    /// The authority (host and port) of `public_base_url`: what signatures' `@authority`
    /// is checked against and what upstreams are told the host is, never the client's `Host`.
    pub public_authority: String,
    /// Data directory (secrets, SQLite file).
    pub data_dir: PathBuf,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Longest time a request may take.
    pub request_timeout: Duration,
    /// Longest time a client may take to send request headers, which is also how long an
    /// idle keep-alive connection is kept.
    pub header_timeout: Duration,
    /// Admin listener.
    pub admin_listen: SocketAddr,
    /// Admin bearer token, if set in configuration (else generated into the data dir).
    pub admin_token: Option<String>,
    /// `server.data_key`: secret reference (`env:`/`file:`) of the data key shared by every
    /// instance; when absent the data dir's secrets file holds it.
    pub data_key: Option<String>,
    /// Store URL.
    pub store_url: String,
    /// Installation identity (DPoP) accepted.
    pub identity_installation: bool,
    /// Firebase identity (ID token) accepted.
    pub identity_firebase: bool,
    /// Credentials of Firebase identities are delivered to the Realtime Database.
    pub delivery_firebase: bool,
    /// `[firebase]`.
    pub firebase: Option<FirebaseConfig>,
    /// Store pool size and timeout.
    pub store_pool: moat_store::PoolOptions,
    /// Redis, shared by instances (optional).
    pub redis: Option<crate::cluster::RedisConfig>,
    /// Enrollment mode.
    pub mode: Mode,
    /// Static key, if set in configuration (else generated into the data dir).
    pub static_key: Option<String>,
    /// Lifetime of enrollment codes, seconds.
    pub otp_ttl: i64,
    /// Lifetime of mailbox items, seconds.
    pub mailbox_ttl: i64,
    /// Wrong enrollment-code attempts before the enrollment locks.
    pub otp_max_attempts: i64,
    /// Enrollments (`POST /v1/enroll`) one client IP may make per hour.
    pub enroll_per_ip_hour: u32,
    /// Pre-generated RSA keys kept ready (otp mode).
    pub rsa_pool_size: usize,
    /// Integrity secret, if set in configuration (else generated into the data dir).
    pub integrity_secret: Option<Vec<u8>>,
    /// Integrity token lifetime, seconds.
    pub integrity_ttl: i64,
    /// Cleanup interval.
    pub cleanup_interval: Duration,
    /// Days without use before a device is removed.
    pub dormant_days: i64,
    /// Days a revoked device's row is kept after its revocation (and its dormancy), refusing
    /// re-enrollment of its identity and device id.
    pub revocation_retention_days: i64,
    /// Days the audit log and the dashboard's daily counters are kept.
    pub audit_retention_days: i64,
    /// Accepted skew of signature `created`, seconds.
    pub signature_max_skew: i64,
    /// Accepted skew of DPoP `iat`, seconds.
    pub dpop_max_skew: i64,
    /// Policies of built-in endpoints set in configuration.
    pub routes: Vec<RoutePolicy>,
    /// Routes with an upstream (the gateway).
    pub upstreams: Vec<crate::gateway::UpstreamConfig>,
    /// TLS termination on the public listener.
    pub tls: Option<TlsConfig>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// SMS.
    pub sms: SmsConfig,
    /// Accounts.
    pub accounts: AccountsConfig,
    /// External token issuers.
    pub issuers: Vec<crate::issuers::IssuerConfig>,
    /// `attestation.enabled`: the account endpoints' default policy adds `integrity`
    /// (PROTOCOL section 6).
    pub attestation_enabled: bool,
    /// Platform attestation settings.
    pub play_integrity: Option<PlayIntegrityConfig>,
    /// App Attest settings.
    pub app_attest: Option<AppAttestConfig>,
    /// Firebase App Check settings.
    pub app_check: Option<AppCheckConfig>,
    /// How long a verified device credential is reused before it is looked up again
    /// (milliseconds; 0 disables). The bound on how late a revocation made elsewhere is seen.
    pub device_cache_ttl_ms: u64,
}

/// Every problem found in a configuration.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

/// Built-in endpoints whose policy a `[[route]]` entry may set. All default to `["device"]`
/// except `/api/me`, which defaults to `["user"]`.
pub const PROTECTED_ENDPOINTS: &[&str] = &[
    "/v1/device",
    "/v1/device/echo",
    "/api/register",
    "/api/register/confirm",
    "/api/resend_otp",
    "/api/password/reset",
    "/api/password/reset/confirm",
    "/api/token",
    "/api/me",
    "/v1/attest/challenge",
    "/v1/attest",
];

impl Config {
    /// Reads `file` (if any) and the environment, then validates.
    ///
    /// # Errors
    /// [`ConfigError`] listing every problem.
    pub fn load(file: Option<&str>, env: &dyn Source) -> Result<Self, ConfigError> {
        let mut table = match file {
            Some(text) => toml::from_str::<toml::Table>(text)
                .map_err(|e| ConfigError(vec![format!("config file: {e}")]))?,
            None => toml::Table::new(),
        };
        let mut errors = match overlay_env(&mut table, env) {
            Ok(()) => Vec::new(),
            Err(ConfigError(e)) => e,
        };
        let raw = match deserialize_all(table, &mut errors) {
            Some(raw) => raw,
            None => return Err(ConfigError(errors)),
        };
        // Every problem at once: those of the file's shape (each offending key set aside so
        // the rest can be checked), then those of its values.
        match Self::from_raw(raw) {
            Ok(config) if errors.is_empty() => Ok(config),
            Ok(_) => Err(ConfigError(errors)),
            Err(ConfigError(more)) => {
                errors.extend(more);
                Err(ConfigError(errors))
            }
        }
    }

    /// Validates a raw configuration.
    ///
    /// # Errors
    /// [`ConfigError`] listing every problem.
    pub fn from_raw(raw: RawConfig) -> Result<Self, ConfigError> {
        let mut errors = Vec::new();
        let mut addr = |value: Option<String>, default: &str, key: &str| {
            let text = value.unwrap_or_else(|| default.to_owned());
            text.parse::<SocketAddr>().unwrap_or_else(|_| {
                errors.push(format!("{key}: `{text}` is not an address:port"));
                SocketAddr::from(([127, 0, 0, 1], 0))
            })
        };
        let listen = addr(raw.server.listen, DEFAULT_LISTEN, "server.listen");
        let admin_listen = addr(raw.admin.listen, DEFAULT_ADMIN_LISTEN, "admin.listen");

        if listen == admin_listen {
            errors.push(format!(
                "admin.listen: `{admin_listen}` is server.listen's address too; the admin listener needs an address of its own"
            ));
        }
        // With TLS on the public listener, clients call https://: a default of http:// would
        // make every DPoP `htu` and signature authority check fail.
        let default_scheme = if raw.server.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let public_base_url = raw
            .server
            .public_base_url
            .unwrap_or_else(|| format!("{default_scheme}://{listen}"))
            .trim_end_matches('/')
            .to_owned();
        if !(public_base_url.starts_with("http://") || public_base_url.starts_with("https://"))
            || public_base_url.contains(['?', '#'])
        {
            errors.push(format!(
                "server.public_base_url: `{public_base_url}` must be an http(s) URL without query"
            ));
        }
        let data_dir = raw
            .server
            .data_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let store_url = raw
            .store
            .url
            .unwrap_or_else(|| format!("sqlite://{}/moat.db", data_dir.display()));
        if !(store_url.starts_with("sqlite:")
            || store_url.starts_with("postgres://")
            || store_url.starts_with("postgresql://"))
        {
            // Only the scheme is echoed: the URL may carry a password.
            errors.push(format!(
                "store.url: must be sqlite://…, postgres://… or postgresql://… (got `{}:…`)",
                store_url.split(':').next().unwrap_or("")
            ));
        }
        // Several instances (PROTOCOL section 11): the data key as a secret reference.
        if let Some(reference) = &raw.server.data_key
            && !(reference.starts_with("env:") || reference.starts_with("file:"))
        {
            errors.push(
                "server.data_key: must be a reference (env:NAME or file:PATH), not the key".into(),
            );
        }
        let store_pool = moat_store::PoolOptions {
            max_connections: raw.store.max_connections.unwrap_or(8),
            timeout: Duration::from_millis(raw.store.timeout_ms.unwrap_or(3000)),
        };
        if !(1..=1000).contains(&store_pool.max_connections) {
            errors.push("store.max_connections: must be 1 to 1000".into());
        }
        if !(50..=60_000).contains(&store_pool.timeout.as_millis()) {
            errors.push("store.timeout_ms: must be 50 to 60000".into());
        }
        let redis = match raw.redis.url {
            None => None,
            Some(url) => {
                if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                    errors.push(format!(
                        "redis.url: must be redis://… or rediss://… (got `{}:…`)",
                        url.split(':').next().unwrap_or("")
                    ));
                }
                let timeout = Duration::from_millis(raw.redis.timeout_ms.unwrap_or(1000));
                if !(10..=60_000).contains(&timeout.as_millis()) {
                    errors.push("redis.timeout_ms: must be 10 to 60000".into());
                }
                Some(crate::cluster::RedisConfig {
                    url,
                    timeout,
                    prefix: raw.redis.prefix.unwrap_or_else(|| "moat:".into()),
                })
            }
        };
        let tls = match &raw.server.tls {
            None => None,
            Some(t) => match (
                t.get("cert").and_then(|v| v.as_str()),
                t.get("key").and_then(|v| v.as_str()),
            ) {
                (Some(cert), Some(key)) if t.len() == 2 => Some(TlsConfig {
                    cert: cert.into(),
                    key: key.into(),
                }),
                _ => {
                    errors
                        .push("server.tls: needs exactly `cert` and `key` (PEM file paths)".into());
                    None
                }
            },
        };
        let twilio = &raw.sms.twilio;
        let webhook = &raw.sms.webhook;
        let sender = match raw.sms.sender.as_deref() {
            None | Some("outbox") => SmsSenderConfig::Outbox,
            Some("twilio") => {
                let (Some(sid), Some(token)) =
                    (twilio.account_sid.clone(), twilio.auth_token.clone())
                else {
                    errors.push("sms.twilio: account_sid and auth_token (env:NAME or file:PATH) are required".into());
                    return Err(ConfigError(errors));
                };
                if twilio.from.is_none() && twilio.messaging_service_sid.is_none() {
                    errors.push("sms.twilio: set `from` or `messaging_service_sid`".into());
                }
                SmsSenderConfig::Twilio {
                    base_url: twilio
                        .base_url
                        .clone()
                        .unwrap_or_else(|| "https://api.twilio.com".into()),
                    account_sid: sid,
                    auth_token: token,
                    from: twilio.from.clone(),
                    messaging_service_sid: twilio.messaging_service_sid.clone(),
                    status_callback: twilio.status_callback.clone(),
                }
            }
            Some("webhook") => match (webhook.url.clone(), webhook.secret.clone()) {
                (Some(url), Some(secret)) => SmsSenderConfig::Webhook { url, secret },
                _ => {
                    errors.push(
                        "sms.webhook: url and secret (env:NAME or file:PATH) are required".into(),
                    );
                    SmsSenderConfig::Outbox
                }
            },
            Some(other) => {
                errors.push(format!(
                    "sms.sender: `{other}` is not outbox, twilio or webhook"
                ));
                SmsSenderConfig::Outbox
            }
        };
        for reference in [twilio.auth_token.as_deref(), webhook.secret.as_deref()]
            .into_iter()
            .flatten()
        {
            if !(reference.starts_with("env:") || reference.starts_with("file:")) {
                errors.push(
                    "sms: secrets must be references (env:NAME or file:PATH), not values".into(),
                );
            }
        }
        let defaults = crate::sms::guard::Limits::default();
        let limits = crate::sms::guard::Limits {
            cooldown: raw.sms.cooldown.unwrap_or(defaults.cooldown),
            per_phone_hour: raw.sms.per_phone_hour.unwrap_or(defaults.per_phone_hour),
            per_device_hour: raw.sms.per_device_hour.unwrap_or(defaults.per_device_hour),
            per_ip_hour: raw.sms.per_ip_hour.unwrap_or(defaults.per_ip_hour),
            per_country_hour: raw
                .sms
                .per_country_hour
                .unwrap_or(defaults.per_country_hour),
            global_hour: raw.sms.global_hour.unwrap_or(defaults.global_hour),
            allowed_countries: raw.sms.allowed_countries.clone().unwrap_or_default(),
        };
        for code in &limits.allowed_countries {
            // ISO 3166 alpha-2, as phone numbers are attributed: `USA` or `us` would refuse
            // every number of the country meant.
            if code.len() != 2
                || !code.bytes().all(|b| b.is_ascii_uppercase())
                || phonenumber::metadata::DATABASE
                    .by_id(code.as_str())
                    .is_none()
            {
                errors.push(format!(
                    "sms.allowed_countries: `{code}` is not an ISO 3166 two-letter country code (like \"US\", \"GB\")"
                ));
            }
        }
        for (name, v) in [
            ("per_phone_hour", limits.per_phone_hour),
            ("per_device_hour", limits.per_device_hour),
            ("per_ip_hour", limits.per_ip_hour),
            ("per_country_hour", limits.per_country_hour),
            ("global_hour", limits.global_hour),
        ] {
            if v == 0 {
                errors.push(format!("sms.{name}: must be positive"));
            }
        }
        let mut trusted_proxies = Vec::new();
        for p in raw.server.trusted_proxies.clone().unwrap_or_default() {
            match p.parse() {
                Ok(ip) => trusted_proxies.push(ip),
                Err(_) => errors.push(format!(
                    "server.trusted_proxies: `{p}` is not an IP address"
                )),
            }
        }
        let mut identity_installation = raw.enrollment.identity.is_none();
        let mut identity_firebase = false;
        for id in raw.enrollment.identity.as_deref().unwrap_or(&[]) {
            match id.as_str() {
                "installation" => identity_installation = true,
                "firebase" => identity_firebase = true,
                other => errors.push(format!(
                    "enrollment.identity: `{other}` is not installation or firebase"
                )),
            }
        }
        if !identity_installation && !identity_firebase {
            errors.push("enrollment.identity: enable installation, firebase or both".into());
        }
        let delivery_firebase = match raw.delivery.channel.as_deref() {
            None | Some("builtin") => false,
            Some("firebase") => true,
            Some(other) => {
                errors.push(format!(
                    "delivery.channel: `{other}` is not builtin or firebase"
                ));
                false
            }
        };
        if identity_firebase && !delivery_firebase {
            errors.push(
                "enrollment.identity: a Firebase identity reads its mailbox in the Realtime Database; set delivery.channel = \"firebase\"".into(),
            );
        }
        let firebase = match raw.firebase {
            None => {
                if identity_firebase || delivery_firebase {
                    errors.push(
                        "firebase: the Firebase identity or delivery needs a [firebase] section with project_id"
                            .into(),
                    );
                }
                None
            }
            Some(f) => {
                let project_id = f.project_id.unwrap_or_default();
                if project_id.is_empty()
                    || project_id.len() > 128
                    || !project_id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                {
                    errors.push("firebase.project_id: required, letters, digits and -".into());
                }
                let mailbox_root = f
                    .mailbox_root
                    .unwrap_or_else(|| "moat/mailbox".into())
                    .trim_matches('/')
                    .to_owned();
                let segment_ok = |seg: &str| {
                    !seg.is_empty()
                        && seg
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
                };
                if !mailbox_root.split('/').all(segment_ok) {
                    errors.push(
                        "firebase.mailbox_root: path segments of letters, digits, _ and -".into(),
                    );
                }
                let database_emulator = f.database_emulator.unwrap_or(false);
                if delivery_firebase {
                    match &f.database_url {
                        Some(url) if url.starts_with("https://") || ((database_emulator || loopback(url)) && url.starts_with("http://")) => {}
                        Some(_) => errors.push(
                            "firebase.database_url: must be https:// (http:// only on loopback or with database_emulator = true)".into(),
                        ),
                        None => errors.push(
                            "firebase.database_url: required with delivery.channel = \"firebase\"".into(),
                        ),
                    }
                    if f.service_account.is_none() && !database_emulator {
                        errors.push(
                            "firebase.service_account: required with delivery.channel = \"firebase\" (or database_emulator = true)".into(),
                        );
                    }
                    if !identity_firebase {
                        errors.push(
                            "delivery.channel: firebase delivers to Firebase uids; add \"firebase\" to enrollment.identity".into(),
                        );
                    }
                }
                let certs_url = f.certs_url.unwrap_or_else(|| FIREBASE_CERTS_URL.into());
                if !(certs_url.starts_with("https://") || certs_url.starts_with("http://127.0.0.1"))
                {
                    errors.push(
                        "firebase.certs_url: must be https:// (or loopback http for tests)".into(),
                    );
                }
                Some(FirebaseConfig {
                    project_id,
                    database_url: f.database_url.map(|u| u.trim_end_matches('/').to_owned()),
                    service_account: f.service_account,
                    auth_emulator_host: f.auth_emulator_host,
                    mailbox_root,
                    certs_url,
                    database_emulator,
                })
            }
        };
        let mode = match raw.enrollment.mode.as_deref().unwrap_or("dynamic") {
            "static" => Mode::Static,
            "dynamic" => Mode::Dynamic,
            "otp" => Mode::Otp,
            other => {
                errors.push(format!(
                    "enrollment.mode: `{other}` is not static, dynamic or otp"
                ));
                Mode::Dynamic
            }
        };
        if let Some(key) = &raw.enrollment.static_key
            && key.len() < 32
        {
            errors.push("enrollment.static_key: must be at least 32 characters".into());
        }
        if let Some(token) = &raw.admin.token
            && token.len() < 32
        {
            errors.push("admin.token: must be at least 32 characters".into());
        }
        let integrity_secret =
            raw.integrity
                .secret
                .as_deref()
                .and_then(|s| match moat_core::b64::url_decode(s) {
                    Ok(bytes) if bytes.len() >= 32 => Some(bytes),
                    _ => {
                        errors.push(
                            "integrity.secret: must be base64url of at least 32 bytes".into(),
                        );
                        None
                    }
                });
        let currency = raw.sms.currency.clone().unwrap_or_else(|| "USD".into());
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            errors.push("sms.currency: must be an ISO 4217 code such as USD".into());
        }
        if raw
            .sms
            .cost_per_sms
            .is_some_and(|c| !(0.0..=100.0).contains(&c))
        {
            errors.push("sms.cost_per_sms: must be between 0 and 100".into());
        }
        let mut positive = |value: Option<i64>, default: i64, key: &str| {
            let v = value.unwrap_or(default);
            if v <= 0 {
                errors.push(format!("{key}: must be positive"));
            }
            v
        };
        let otp_ttl = positive(
            raw.enrollment.otp_ttl,
            DEFAULT_MAILBOX_TTL,
            "enrollment.otp_ttl",
        );
        let mailbox_ttl = positive(
            raw.enrollment.mailbox_ttl,
            DEFAULT_MAILBOX_TTL,
            "enrollment.mailbox_ttl",
        );
        let otp_max_attempts = positive(
            raw.enrollment.otp_max_attempts,
            5,
            "enrollment.otp_max_attempts",
        );
        let enroll_per_ip_hour = u32::try_from(positive(
            raw.enrollment.per_ip_hour,
            DEFAULT_ENROLL_PER_IP_HOUR,
            "enrollment.per_ip_hour",
        ))
        .unwrap_or(u32::MAX);
        let integrity_ttl = positive(raw.integrity.ttl, 300, "integrity.ttl");
        let dormant_days = positive(
            raw.cleanup.dormant_days,
            DEFAULT_DORMANT_DAYS,
            "cleanup.dormant_days",
        );
        let revocation_retention_days = positive(
            raw.cleanup.revocation_retention_days,
            DEFAULT_REVOCATION_RETENTION_DAYS,
            "cleanup.revocation_retention_days",
        );
        let audit_retention_days = positive(
            raw.audit.retention_days,
            DEFAULT_AUDIT_RETENTION_DAYS,
            "audit.retention_days",
        );
        let signature_max_skew = positive(
            raw.signature.max_skew,
            DEFAULT_SIGNATURE_SKEW,
            "signature.max_skew",
        );
        let dpop_max_skew = positive(
            raw.signature.dpop_max_skew,
            DEFAULT_DPOP_SKEW,
            "signature.dpop_max_skew",
        );
        let code_ttl = positive(raw.sms.code_ttl, 600, "sms.code_ttl");
        let access_ttl = positive(raw.accounts.access_ttl, 900, "accounts.access_ttl");
        let refresh_ttl = positive(
            raw.accounts.refresh_ttl,
            30 * 86_400,
            "accounts.refresh_ttl",
        );
        let login_lock_after = positive(
            raw.accounts.login_lock_after,
            10,
            "accounts.login_lock_after",
        );
        let login_lock_seconds = positive(
            raw.accounts.login_lock_seconds,
            900,
            "accounts.login_lock_seconds",
        );
        let cleanup_interval = raw.cleanup.interval.unwrap_or(DEFAULT_CLEANUP_INTERVAL);
        if cleanup_interval == 0 {
            errors.push("cleanup.interval: must be positive".into());
        }
        let max_body_bytes = raw.server.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY);
        if max_body_bytes == 0 || max_body_bytes > 64 * 1024 * 1024 {
            errors.push("server.max_body_bytes: must be between 1 and 64 MiB".into());
        }
        let request_timeout = Duration::from_secs(raw.server.request_timeout.unwrap_or(30).max(1));
        let header_timeout = Duration::from_secs(raw.server.header_timeout.unwrap_or(30));
        if !(1..=600).contains(&header_timeout.as_secs()) {
            errors.push("server.header_timeout: must be 1 to 600 seconds".into());
        }
        let rsa_pool_size = raw
            .enrollment
            .rsa_pool_size
            .unwrap_or(DEFAULT_RSA_POOL)
            .clamp(1, 4096);

        let mut routes = Vec::new();
        let mut upstreams = Vec::new();
        for (i, r) in raw.routes.into_iter().enumerate() {
            let mut require = Vec::new();
            for name in r.require.clone().unwrap_or_default() {
                match name.as_str() {
                    "device" => require.push(Requirement::Device),
                    "signature" => require.push(Requirement::Signature),
                    "user" => require.push(Requirement::User),
                    "integrity" => require.push(Requirement::Integrity),
                    other => errors.push(format!("route[{i}]: unknown requirement `{other}`")),
                }
            }
            let rate_limit = match r.rate_limit.as_ref().map(parse_rate_limit).transpose() {
                Ok(rl) => rl,
                Err(e) => {
                    errors.push(format!("route[{i}].rate_limit: {e}"));
                    None
                }
            };
            match (r.path, r.prefix, r.upstream) {
                (Some(path), None, None) => {
                    if r.inject_headers.is_some() || r.inject_query.is_some() || r.methods.is_some() || r.timeout.is_some()
                        || r.max_body_bytes.is_some() || r.pass_server_header.is_some()
                    {
                        errors.push(format!("route[{i}]: inject_*, methods, timeout, max_body_bytes and pass_server_header need an upstream route"));
                    }
                    if !PROTECTED_ENDPOINTS.contains(&path.as_str()) {
                        errors.push(format!(
                            "route[{i}]: `{path}` is not a built-in endpoint whose policy can be set ({})",
                            PROTECTED_ENDPOINTS.join(", ")
                        ));
                        continue;
                    }
                    if require.is_empty() {
                        errors.push(format!("route[{i}]: `require` must name at least one requirement"));
                    }
                    routes.push(RoutePolicy { path, require, rate_limit });
                }
                (None, Some(prefix), Some(upstream)) => {
                    if r.max_body_bytes.is_some_and(|n| n == 0 || n > 64 * 1024 * 1024) {
                        errors.push(format!("route[{i}].max_body_bytes: must be between 1 and 64 MiB"));
                    }
                    match parse_upstream(i, prefix, &upstream, require, rate_limit, r.methods, r.inject_headers, r.inject_query, r.timeout, r.forward_credentials, r.sign_upstream) {
                        Ok(mut u) => {
                            u.max_body_bytes = r.max_body_bytes;
                            u.pass_server_header = r.pass_server_header.unwrap_or(false);
                            upstreams.push(u);
                        }
                        Err(mut e) => errors.append(&mut e),
                    }
                }
                _ => errors.push(format!("route[{i}]: needs either `path` (a built-in endpoint) or `prefix` and `upstream`")),
            }
        }
        let mut prefixes: Vec<&str> = upstreams
            .iter()
            .map(|u: &crate::gateway::UpstreamConfig| u.prefix.as_str())
            .collect();
        prefixes.sort_unstable();
        if prefixes.windows(2).any(|w| w[0] == w[1]) {
            errors.push("route: two upstream routes have the same prefix".into());
        }

        let issuers = raw
            .issuers
            .into_iter()
            .map(|i| crate::issuers::IssuerConfig {
                issuer: i.issuer,
                jwks_url: i.jwks_url,
                audience: i.audience,
            })
            .collect();

        if !errors.is_empty() {
            return Err(ConfigError(errors));
        }
        if let Some(a) = &raw.attestation.app_attest
            && !["production", "development", "any"].contains(&a.environment.as_str())
        {
            errors
                .push("attestation.app_attest.environment: production, development or any".into());
        }
        if !errors.is_empty() {
            return Err(ConfigError(errors));
        }
        Ok(Self {
            device_cache_ttl_ms: raw.cache.device_ttl_ms.unwrap_or(1000).min(60_000),
            attestation_enabled: raw.attestation.enabled.unwrap_or(false),
            play_integrity: raw.attestation.play_integrity,
            app_attest: raw.attestation.app_attest,
            app_check: raw.attestation.firebase_app_check,
            upstreams,
            tls,
            trusted_proxies,
            sms: SmsConfig {
                sender,
                app_name: raw.sms.app_name.unwrap_or_else(|| "Moat".into()),
                code_ttl,
                limits,
                cost_per_sms: raw.sms.cost_per_sms.unwrap_or(0.05),
                currency,
            },
            accounts: AccountsConfig {
                access_ttl,
                refresh_ttl,
                login_lock_after,
                login_lock_seconds,
                login_per_minute: raw.accounts.login_per_minute.unwrap_or(5).max(1),
                hash_concurrency: raw.accounts.hash_concurrency.unwrap_or(2).clamp(1, 64),
            },
            issuers,
            listen,
            public_scheme: if public_base_url.starts_with("https://") {
                "https"
            } else {
                "http"
            },
            public_authority: authority_of(&public_base_url),
            public_base_url,
            data_dir,
            max_body_bytes,
            request_timeout,
            header_timeout,
            admin_listen,
            admin_token: raw.admin.token,
            data_key: raw.server.data_key,
            store_url,
            identity_installation,
            identity_firebase,
            delivery_firebase,
            firebase,
            store_pool,
            redis,
            mode,
            static_key: raw.enrollment.static_key,
            otp_ttl,
            mailbox_ttl,
            otp_max_attempts,
            enroll_per_ip_hour,
            rsa_pool_size,
            integrity_secret,
            integrity_ttl,
            cleanup_interval: Duration::from_secs(cleanup_interval),
            dormant_days,
            revocation_retention_days,
            audit_retention_days,
            signature_max_skew,
            dpop_max_skew,
            routes,
        })
    }

    /// The rate limit of a built-in endpoint, if configured.
    pub fn rate_limit(&self, path: &str) -> Option<crate::gateway::RateLimit> {
        self.routes
            .iter()
            .find(|r| r.path == path)
            .and_then(|r| r.rate_limit)
    }

    /// The policy of a built-in protected endpoint: its `[[route]] path` entry, else the
    /// default (PROTOCOL section 6): `user` for `/api/me`; `device` elsewhere, plus
    /// `integrity` on the account endpoints when `attestation.enabled`.
    pub fn policy(&self, path: &str) -> Vec<Requirement> {
        self.routes.iter().find(|r| r.path == path).map_or_else(
            || {
                if path == "/api/me" {
                    vec![Requirement::User]
                } else if self.attestation_enabled && path.starts_with("/api/") {
                    vec![Requirement::Device, Requirement::Integrity]
                } else {
                    vec![Requirement::Device]
                }
            },
            |r| r.require.clone(),
        )
    }
}

fn parse_rate_limit(t: &toml::Table) -> Result<crate::gateway::RateLimit, String> {
    use crate::gateway::{RateKey, RateLimit};
    let key = match t.get("key").and_then(|v| v.as_str()).unwrap_or("device") {
        "device" => RateKey::Device,
        "user" => RateKey::User,
        "ip" => RateKey::Ip,
        "route" => RateKey::Route,
        other => return Err(format!("key `{other}` is not device, user, ip or route")),
    };
    let per_second = match t.get("per_second") {
        Some(toml::Value::Integer(n)) => *n as f64,
        Some(toml::Value::Float(f)) => *f,
        _ => return Err("per_second is required".into()),
    };
    let burst = t
        .get("burst")
        .and_then(toml::Value::as_integer)
        .unwrap_or(per_second.ceil() as i64);
    if !(per_second > 0.0 && per_second <= 1_000_000.0 && (1..=1_000_000).contains(&burst)) {
        return Err("per_second and burst must be positive".into());
    }
    if t.keys()
        .any(|k| !["key", "per_second", "burst"].contains(&k.as_str()))
    {
        return Err("only key, per_second and burst are allowed".into());
    }
    Ok(RateLimit {
        key,
        per_second,
        burst: u32::try_from(burst).unwrap_or(1),
    })
}

/// Path prefixes an upstream route may not take: Moat's own endpoints.
const RESERVED_PREFIXES: [&str; 7] = [
    "/v1",
    "/api",
    "/admin",
    "/.well-known",
    "/healthz",
    "/readyz",
    "/openapi.json",
];

#[allow(clippy::too_many_arguments)]
fn parse_upstream(
    i: usize,
    prefix: String,
    upstream: &str,
    require: Vec<Requirement>,
    rate_limit: Option<crate::gateway::RateLimit>,
    methods: Option<Vec<String>>,
    inject_headers: Option<toml::Table>,
    inject_query: Option<toml::Table>,
    timeout: Option<u64>,
    forward_credentials: Option<bool>,
    sign: Option<bool>,
) -> Result<crate::gateway::UpstreamConfig, Vec<String>> {
    let mut errors = Vec::new();
    let prefix_ok = prefix.starts_with('/')
        && prefix.len() > 1
        && !prefix.ends_with('/')
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b))
        && crate::gateway::path::check_rest(&prefix).is_ok();
    if !prefix_ok {
        errors.push(format!("route[{i}]: prefix `{prefix}` must start with /, not end with /, and use plain path characters"));
    }
    if RESERVED_PREFIXES
        .iter()
        .any(|r| prefix == *r || prefix.starts_with(&format!("{r}/")))
    {
        errors.push(format!(
            "route[{i}]: prefix `{prefix}` is reserved for Moat's own endpoints"
        ));
    }
    let url = match reqwest::Url::parse(upstream) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some()
                && u.query().is_none()
                && u.fragment().is_none()
                && u.username().is_empty()
                && u.password().is_none() =>
        {
            Some(u)
        }
        _ => {
            errors.push(format!(
                "route[{i}]: upstream must be an http(s) URL without credentials, query or fragment"
            ));
            None
        }
    };
    if require.is_empty() {
        errors.push(format!("route[{i}]: `require` must name at least one requirement (the gateway is not an open proxy)"));
    }
    let methods = methods.map(|list| {
        list.iter()
            .filter_map(|m| {
                match axum::http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                    Ok(m) => Some(m),
                    Err(_) => {
                        errors.push(format!("route[{i}]: `{m}` is not a method"));
                        None
                    }
                }
            })
            .collect()
    });
    let mut headers = Vec::new();
    for (name, value) in inject_headers.unwrap_or_default() {
        match (axum::http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()), value.as_str()) {
            (Ok(n), Some(v)) if v.starts_with("env:") || v.starts_with("file:") => headers.push((n, v.to_owned())),
            _ => errors.push(format!("route[{i}]: inject_headers.{name} must be a header name = \"env:NAME\" or \"file:PATH\"")),
        }
    }
    let mut query = Vec::new();
    for (name, value) in inject_query.unwrap_or_default() {
        match value.as_str() {
            Some(v) if v.starts_with("env:") || v.starts_with("file:") => {
                query.push((name, v.to_owned()))
            }
            _ => errors.push(format!(
                "route[{i}]: inject_query.{name} must be \"env:NAME\" or \"file:PATH\""
            )),
        }
    }
    match (url, errors.is_empty()) {
        (Some(upstream), true) => Ok(crate::gateway::UpstreamConfig {
            prefix,
            upstream,
            require,
            methods,
            inject_headers: headers,
            inject_query: query,
            rate_limit,
            timeout: Duration::from_secs(timeout.unwrap_or(30).clamp(1, 300)),
            forward_credentials: forward_credentials.unwrap_or(false),
            sign: sign.unwrap_or(false),
            max_body_bytes: None,
            pass_server_header: false,
        }),
        _ => Err(errors),
    }
}

/// Deserializes `table`, collecting every type error instead of stopping at the first: the
/// key an error names is removed (its default then applies) and the rest tried again. Each
/// error is said in words a user knows, not Rust type names. `None` if an error names no key.
fn deserialize_all(mut table: toml::Table, errors: &mut Vec<String>) -> Option<RawConfig> {
    // Bounded: each round removes one key, and a file has finitely many.
    for _ in 0..256 {
        let e = match toml::Value::Table(table.clone()).try_into::<RawConfig>() {
            Ok(raw) => return Some(raw),
            Err(e) => e,
        };
        let text = e.to_string();
        let key = text
            .rsplit_once("in `")
            .and_then(|(_, k)| k.split('`').next())
            .map(str::to_owned);
        let message = text.lines().next().unwrap_or("").trim();
        // An unknown key is reported against its section: set aside the key, not the section.
        let key = match message
            .strip_prefix("unknown field `")
            .and_then(|r| r.split('`').next())
        {
            Some(field) => key
                .map(|k| format!("{k}.{field}"))
                .or(Some(field.to_owned())),
            None => key,
        };
        let located = key.as_deref().and_then(|k| locate(&table, k, &text));
        match located {
            Some((shown, path)) if remove_path(&mut table, &path) => {
                errors.push(format!("{shown}: {}", humanize(&shown, message)));
            }
            _ => {
                errors.push(humanize("", message));
                return None;
            }
        }
    }
    errors.push("too many errors in the configuration".into());
    None
}

/// The authority of a base URL as clients put it in `@authority` and `htu`: lower case, and
/// without the scheme's default port (`https://h:443` is `h`, as URL parsers write it).
fn authority_of(base: &str) -> String {
    let Some((scheme, rest)) = base.split_once("://") else {
        return String::new();
    };
    let authority = rest.split('/').next().unwrap_or(rest).to_ascii_lowercase();
    let default = if scheme.eq_ignore_ascii_case("https") {
        ":443"
    } else {
        ":80"
    };
    match authority.strip_suffix(default) {
        Some(host) if !host.is_empty() => host.to_owned(),
        _ => authority,
    }
}

/// One step of a key's path: a table key or an array index.
#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

/// The path of the value the deserializer's error `text` is about, from its dotted `key`,
/// and that key as a user writes it (`route[1].timeout`). The deserializer names an array of
/// tables without the index (`route.timeout`), so for an array each element is tried: the
/// one whose removal changes the error is the one at fault.
fn locate(table: &toml::Table, key: &str, text: &str) -> Option<(String, Vec<Step>)> {
    fn walk<'a>(table: &'a toml::Table, path: &[Step]) -> Option<&'a toml::Value> {
        let mut value: Option<&toml::Value> = None;
        for step in path {
            value = match (value, step) {
                (None, Step::Key(k)) => table.get(k),
                (Some(toml::Value::Table(t)), Step::Key(k)) => t.get(k),
                (Some(toml::Value::Array(a)), Step::Index(i)) => a.get(*i),
                _ => None,
            };
            value?;
        }
        value
    }
    let mut path = Vec::new();
    let mut shown = String::new();
    for part in key.split('.') {
        if let Some(toml::Value::Array(items)) = walk(table, &path)
            && part.parse::<usize>().is_err()
        {
            let index = (0..items.len()).find(|&i| {
                let mut trial = path.clone();
                trial.push(Step::Index(i));
                trial.push(Step::Key(part.to_owned()));
                let mut copy = table.clone();
                remove_path(&mut copy, &trial)
                    && toml::Value::Table(copy)
                        .try_into::<RawConfig>()
                        .map_or_else(|e| e.to_string() != text, |_| true)
            })?;
            path.push(Step::Index(index));
            shown.push_str(&format!("[{index}]"));
        }
        if !shown.is_empty() {
            shown.push('.');
        }
        shown.push_str(part);
        path.push(Step::Key(part.to_owned()));
    }
    Some((shown, path))
}

/// Removes the value at `path` from `table`. Whether it was there.
fn remove_path(table: &mut toml::Table, path: &[Step]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut value: Option<&mut toml::Value> = None;
    for step in parents {
        let next = match (value, step) {
            (None, Step::Key(k)) => table.get_mut(k),
            (Some(toml::Value::Table(t)), Step::Key(k)) => t.get_mut(k),
            (Some(toml::Value::Array(a)), Step::Index(i)) => a.get_mut(*i),
            _ => None,
        };
        match next {
            Some(v) => value = Some(v),
            None => return false,
        }
    }
    match (value, last) {
        (None, Step::Key(k)) => table.remove(k).is_some(),
        (Some(toml::Value::Table(t)), Step::Key(k)) => t.remove(k).is_some(),
        _ => false,
    }
}

/// A deserializer's message in a user's words: "expected u64" becomes "expected a whole
/// number of seconds", with the unit read from the key's name.
fn humanize(key: &str, message: &str) -> String {
    let unit = if key.ends_with("_bytes") {
        " of bytes"
    } else if key.ends_with("_ms") {
        " of milliseconds"
    } else if key.ends_with("_days") {
        " of days"
    } else if key.ends_with("_hour") {
        " (per hour)"
    } else if [
        "timeout",
        "ttl",
        "cooldown",
        "interval",
        "window",
        "block_for",
        "_seconds",
    ]
    .iter()
    .any(|s| key.ends_with(s))
    {
        " of seconds"
    } else {
        ""
    };
    let whole = format!("a whole number{unit}");
    let mut out = message.to_owned();
    for (rust, words) in [
        ("expected usize", format!("expected {whole}")),
        ("expected u64", format!("expected {whole}")),
        ("expected u32", format!("expected {whole}")),
        ("expected u16", format!("expected {whole}")),
        ("expected i64", format!("expected {whole}")),
        ("expected i32", format!("expected {whole}")),
        ("expected f64", "expected a number".to_owned()),
        ("expected a boolean", "expected true or false".to_owned()),
        (
            "expected a sequence",
            "expected a list, like [\"a\", \"b\"]".to_owned(),
        ),
        ("expected a string", "expected text in quotes".to_owned()),
    ] {
        if let Some(at) = out.find(rust) {
            out.replace_range(at..at + rust.len(), &words);
        }
    }
    // "invalid type: string \"1MB\", expected …" → "expected …, got the text \"1MB\"".
    if let Some(rest) = out.strip_prefix("invalid type: ")
        && let Some((got, expected)) = rest.split_once(", ")
    {
        let got = got
            .replacen("string ", "the text ", 1)
            .replacen("integer ", "the number ", 1)
            .replacen("floating point ", "the number ", 1)
            .replacen("boolean ", "", 1)
            .replace("sequence", "a list")
            .replace("map", "a table");
        return format!("{expected}, got {got}");
    }
    if let Some(rest) = out.strip_prefix("invalid value: ")
        && let Some((got, expected)) = rest.split_once(", ")
    {
        return format!("{expected}, got {}", got.replacen("integer ", "", 1));
    }
    out.replace("unknown field", "unknown key")
}

fn overlay_env(table: &mut toml::Table, env: &dyn Source) -> Result<(), ConfigError> {
    let mut errors = Vec::new();
    for (name, value) in env.vars() {
        let Some(rest) = name.strip_prefix("MOAT_") else {
            continue;
        };
        let Some((section, key)) = rest.split_once("__") else {
            continue;
        };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        // A value that parses as a TOML value (number, bool, array) is taken as such;
        // anything else is a string.
        let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(value));
        match table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            toml::Value::Table(t) => {
                t.insert(key, parsed);
            }
            _ => errors.push(format!("{name}: `{section}` is not a section")),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigError(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_run_on_one_machine() {
        let c = Config::load(None, &env(&[])).expect("defaults");
        assert_eq!(c.mode, Mode::Dynamic);
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.public_base_url, "http://127.0.0.1:8080");
        assert_eq!(c.store_url, "sqlite://./moat-data/moat.db");
        assert_eq!(c.policy("/v1/device"), vec![Requirement::Device]);
    }

    #[test]
    fn env_overrides_file() {
        let file = "[enrollment]\nmode = \"static\"\n[[route]]\npath = \"/v1/device\"\nrequire = [\"signature\"]\n";
        let c = Config::load(
            Some(file),
            &env(&[
                ("MOAT_ENROLLMENT__MODE", "otp"),
                ("MOAT_SERVER__MAX_BODY_BYTES", "2048"),
            ]),
        )
        .expect("config");
        assert_eq!(c.mode, Mode::Otp);
        assert_eq!(c.max_body_bytes, 2048);
        assert_eq!(c.policy("/v1/device"), vec![Requirement::Signature]);
        assert_eq!(c.policy("/v1/device/echo"), vec![Requirement::Device]);
    }

    #[test]
    fn all_errors_reported_at_once() {
        let file = "[server]\nlisten = \"nope\"\n[enrollment]\nmode = \"magic\"\n[[route]]\npath = \"/x\"\nrequire = [\"device\"]\n";
        let err = Config::load(Some(file), &env(&[])).expect_err("invalid");
        assert_eq!(err.0.len(), 3, "{err}");
        let typo = Config::load(Some("[server]\nlisen = \"x\"\n"), &env(&[])).expect_err("typo");
        assert!(typo.to_string().contains("lisen"), "{typo}");
    }

    /// Type errors of the file and the environment are all reported, with value errors, in
    /// words a user knows; before, the first type error stopped everything, as `expected
    /// usize`.
    #[test]
    fn type_errors_of_file_and_environment_are_reported_together_in_words() {
        let file = "[server]\nmax_body_bytes = \"1MB\"\nlisten = 5\nbogus = 1\n\
                    [[route]]\npath = \"/v1/device\"\nrequire = [\"device\"]\n\
                    [[route]]\nprefix = \"/x\"\nupstream = \"http://a\"\nrequire = [\"device\"]\ntimeout = \"slow\"\n\
                    [sms]\nallowed_countries = [\"USA\", \"us\", \"GB\"]\n[enrollment]\nmode = \"magic\"\n";
        let err = Config::load(
            Some(file),
            &env(&[("MOAT_SERVER__HEADER_TIMEOUT", "\"soon\"")]),
        )
        .expect_err("invalid");
        let all = err.to_string();
        for expected in [
            "server.max_body_bytes: expected a whole number of bytes, got the text \"1MB\"",
            "server.listen: expected text in quotes, got the number `5`",
            "server.bogus: unknown key `bogus`",
            "route[1].timeout: expected a whole number of seconds, got the text \"slow\"",
            "server.header_timeout: expected a whole number of seconds, got the text \"soon\"",
            "sms.allowed_countries: `USA` is not an ISO 3166 two-letter country code",
            "sms.allowed_countries: `us` is not an ISO 3166 two-letter country code",
            "enrollment.mode",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
        assert!(!all.contains("`GB`"), "{all}");
        assert!(!all.contains("usize") && !all.contains("u64"), "{all}");
        assert_eq!(err.0.len(), 8, "{all}");
    }

    #[test]
    fn admin_listen_must_differ_and_tls_defaults_to_https() {
        let err = Config::load(
            Some("[server]\nlisten = \"127.0.0.1:9000\"\n[admin]\nlisten = \"127.0.0.1:9000\"\n"),
            &env(&[]),
        )
        .expect_err("same address");
        assert!(err.to_string().contains("admin.listen"), "{err}");
        let c = Config::load(
            Some("[server]\nlisten = \"127.0.0.1:8443\"\n[server.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n"),
            &env(&[]),
        )
        .expect("tls");
        assert_eq!(c.public_base_url, "https://127.0.0.1:8443");
        assert_eq!(
            (c.public_scheme, c.public_authority.as_str()),
            ("https", "127.0.0.1:8443")
        );
    }

    #[test]
    fn firebase_settings_are_checked_together() {
        let err = |file: &str| {
            Config::load(Some(file), &env(&[]))
                .expect_err("invalid")
                .to_string()
        };
        let e = err("[enrollment]\nidentity = [\"firebase\"]\n");
        assert!(
            e.contains("delivery.channel") && e.contains("[firebase]"),
            "{e}"
        );
        let e = err(
            "[enrollment]\nidentity = [\"firebase\"]\n[delivery]\nchannel = \"firebase\"\n\
             [firebase]\nproject_id = \"p\"\ndatabase_url = \"http://db.example\"\n",
        );
        assert!(
            e.contains("firebase.database_url") && e.contains("service_account"),
            "{e}"
        );
        let e = err("[firebase]\nproject_id = \"p\"\nmailbox_root = \"a/../b\"\n");
        assert!(e.contains("mailbox_root"), "{e}");
        let ok = Config::load(
            Some(
                "[enrollment]\nidentity = [\"installation\", \"firebase\"]\n[delivery]\nchannel = \"firebase\"\n\
                 [firebase]\nproject_id = \"demo-moat\"\ndatabase_url = \"http://127.0.0.1:9000?ns=demo-moat\"\n\
                 database_emulator = true\nauth_emulator_host = \"127.0.0.1:9099\"\n",
            ),
            &env(&[]),
        )
        .expect("emulator setup");
        assert!(ok.identity_installation && ok.identity_firebase && ok.delivery_firebase);
        let f = ok.firebase.expect("firebase");
        assert_eq!(f.mailbox_root, "moat/mailbox");
        assert_eq!(f.certs_url, FIREBASE_CERTS_URL);
    }
}
