//! Configuration: TOML file, then `MOAT_<SECTION>__<KEY>` environment variables, validated
//! into [`Config`] in one pass that reports every problem at once.
//!
//! Phase one ([`RawConfig`]) is plain serde over the merged TOML, with unknown keys refused so
//! a typo is an error rather than a silently ignored setting, and every type error of the
//! file and the environment is reported, not just the first. Phase two
//! ([`Config::from_raw`]) turns strings into typed values (socket addresses, URLs,
//! durations, enums) and checks the combinations.
//!
//! Each TOML section has its own module: its raw type, its validated type, its defaults and
//! its check, which adds every problem to one collector and carries on, so a file's problems
//! are all reported together. The few checks that span sections take the other section's
//! validated value as an argument.

mod accounts;
mod admin;
mod attestation;
mod audit;
mod cache;
mod cleanup;
mod delivery;
mod enrollment;
mod errors;
mod firebase;
mod integrity;
mod issuer;
mod load;
mod redis;
mod route;
mod server;
mod signature;
mod sms;
mod store;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use accounts::{AccountsConfig, RawAccounts};
pub use admin::{DEFAULT_ADMIN_LISTEN, RawAdmin};
pub use attestation::{AppAttestConfig, AppCheckConfig, PlayIntegrityConfig, RawAttestation};
pub use audit::{DEFAULT_AUDIT_RETENTION_DAYS, RawAudit};
pub use cache::RawCache;
pub use cleanup::{
    DEFAULT_CLEANUP_INTERVAL, DEFAULT_DORMANT_DAYS, DEFAULT_REVOCATION_RETENTION_DAYS, RawCleanup,
};
pub use delivery::RawDelivery;
pub use enrollment::{
    DEFAULT_ENROLL_PER_IP_HOUR, DEFAULT_MAILBOX_TTL, DEFAULT_RSA_POOL, Mode, RawEnrollment,
};
pub use errors::ConfigError;
pub use firebase::{FIREBASE_CERTS_URL, FirebaseConfig, RawFirebase};
pub use integrity::RawIntegrity;
pub use issuer::RawIssuer;
pub use load::{Env, Source};
pub use redis::RawRedis;
pub use route::{RawRoute, Requirement, RoutePolicy};
pub use server::{DEFAULT_DATA_DIR, DEFAULT_LISTEN, DEFAULT_MAX_BODY, RawServer, TlsConfig};
pub use signature::{DEFAULT_DPOP_SKEW, DEFAULT_SIGNATURE_SKEW, RawSignature};
pub use sms::{RawSms, RawTwilio, RawWebhook, SmsConfig, SmsSenderConfig};
pub use store::RawStore;

use errors::Errors;

/// The configuration as written, before validation. No `Debug`: it holds secrets.
#[derive(Default, Deserialize)]
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

/// Validated configuration. Its `Debug` is written by hand: it holds the admin token, the
/// static key and the integrity secret, and the store and Redis URLs may carry passwords.
#[derive(Clone)]
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
    pub redis: Option<moat_cluster::redis::RedisConfig>,
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
    pub upstreams: Vec<moat_gateway::UpstreamConfig>,
    /// TLS termination on the public listener.
    pub tls: Option<TlsConfig>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpAddr>,
    /// SMS.
    pub sms: SmsConfig,
    /// Accounts.
    pub accounts: AccountsConfig,
    /// External token issuers.
    pub issuers: Vec<moat_identity::issuers::IssuerConfig>,
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

impl Config {
    /// Reads `file` (if any) and the environment, then validates.
    ///
    /// # Errors
    /// [`ConfigError`] listing every problem.
    pub fn load(file: Option<&str>, env: &dyn Source) -> Result<Self, ConfigError> {
        // A file that is not TOML has no keys to check: its syntax error is the one problem.
        let mut table = match file {
            Some(text) => toml::from_str::<toml::Table>(text)
                .map_err(|e| ConfigError(vec![format!("config file: {e}")]))?,
            None => toml::Table::new(),
        };
        let mut errors = Errors::default();
        load::overlay_env(&mut table, env, &mut errors);
        // Every problem at once: those of the file's shape (each offending key set aside so
        // the rest can be checked), then those of its values. Only an error that names no key
        // leaves nothing to check the values of.
        let Some(raw) = load::deserialize_all::<RawConfig>(table, &mut errors) else {
            return Err(errors.into_error());
        };
        let config = Self::validate(raw, &mut errors);
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors.into_error())
        }
    }

    /// Validates a raw configuration.
    ///
    /// # Errors
    /// [`ConfigError`] listing every problem.
    pub fn from_raw(raw: RawConfig) -> Result<Self, ConfigError> {
        let mut errors = Errors::default();
        let config = Self::validate(raw, &mut errors);
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors.into_error())
        }
    }

    /// Phase two: every section checked in turn, its problems added to `errors`. The value
    /// returned is meaningful only if none were.
    fn validate(raw: RawConfig, errors: &mut Errors) -> Self {
        let server = server::validate(raw.server, errors);
        let admin = admin::validate(raw.admin, server.listen, errors);
        let store = store::validate(raw.store, &server.data_dir, errors);
        let redis = redis::validate(raw.redis, errors);
        let enrollment = enrollment::validate(raw.enrollment, errors);
        let delivery_firebase =
            delivery::validate(raw.delivery, enrollment.identity_firebase, errors);
        let firebase = firebase::validate(
            raw.firebase,
            enrollment.identity_firebase,
            delivery_firebase,
            errors,
        );
        let integrity = integrity::validate(raw.integrity, errors);
        let sms = sms::validate(raw.sms, errors);
        let accounts = accounts::validate(raw.accounts, errors);
        let cleanup = cleanup::validate(raw.cleanup, errors);
        let audit_retention_days = audit::validate(raw.audit, errors);
        let signature = signature::validate(raw.signature, errors);
        let routes = route::validate(raw.routes, errors);
        let attestation = attestation::validate(raw.attestation, errors);
        Self {
            listen: server.listen,
            public_base_url: server.public_base_url,
            public_scheme: server.public_scheme,
            public_authority: server.public_authority,
            data_dir: server.data_dir,
            max_body_bytes: server.max_body_bytes,
            request_timeout: server.request_timeout,
            header_timeout: server.header_timeout,
            tls: server.tls,
            trusted_proxies: server.trusted_proxies,
            data_key: server.data_key,
            admin_listen: admin.listen,
            admin_token: admin.token,
            store_url: store.url,
            store_pool: store.pool,
            redis,
            mode: enrollment.mode,
            static_key: enrollment.static_key,
            identity_installation: enrollment.identity_installation,
            identity_firebase: enrollment.identity_firebase,
            otp_ttl: enrollment.otp_ttl,
            mailbox_ttl: enrollment.mailbox_ttl,
            otp_max_attempts: enrollment.otp_max_attempts,
            enroll_per_ip_hour: enrollment.per_ip_hour,
            rsa_pool_size: enrollment.rsa_pool_size,
            delivery_firebase,
            firebase,
            integrity_secret: integrity.secret,
            integrity_ttl: integrity.ttl,
            sms,
            accounts,
            cleanup_interval: cleanup.interval,
            dormant_days: cleanup.dormant_days,
            revocation_retention_days: cleanup.revocation_retention_days,
            audit_retention_days,
            signature_max_skew: signature.max_skew,
            dpop_max_skew: signature.dpop_max_skew,
            routes: routes.policies,
            upstreams: routes.upstreams,
            issuers: issuer::validate(raw.issuers),
            attestation_enabled: attestation.enabled,
            play_integrity: attestation.play_integrity,
            app_attest: attestation.app_attest,
            app_check: attestation.app_check,
            device_cache_ttl_ms: cache::validate(raw.cache),
        }
    }

    /// The rate limit of a built-in endpoint, if configured.
    pub fn rate_limit(&self, path: &str) -> Option<moat_gateway::RateLimit> {
        self.routes
            .iter()
            .find(|r| r.path == path)
            .and_then(|r| r.rate_limit)
    }

    /// The policy of a built-in protected endpoint: its `[[route]] path` entry, else the
    /// route table's default ([`crate::routes::default_policy`], PROTOCOL section 6).
    pub fn policy(&self, path: &str) -> Vec<Requirement> {
        self.routes.iter().find(|r| r.path == path).map_or_else(
            || {
                crate::routes::default_policy(path, self.attestation_enabled)
                    .unwrap_or_else(|| vec![Requirement::Device])
            },
            |r| r.require.clone(),
        )
    }
}

/// Shown in place of a secret.
const REDACTED: &str = "<redacted>";

/// By hand, so that no secret reaches a log line or a panic message: the admin token, the
/// static key and the integrity secret are shown only as set or not, the store URL only by
/// its scheme, Redis only as configured or not.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |set: bool| if set { Some(REDACTED) } else { None };
        let store_scheme = self.store_url.split(':').next().unwrap_or("");
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("public_base_url", &self.public_base_url)
            .field("public_scheme", &self.public_scheme)
            .field("public_authority", &self.public_authority)
            .field("data_dir", &self.data_dir)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("request_timeout", &self.request_timeout)
            .field("header_timeout", &self.header_timeout)
            .field("admin_listen", &self.admin_listen)
            .field("admin_token", &redacted(self.admin_token.is_some()))
            .field("data_key", &self.data_key)
            .field("store_url", &format_args!("{store_scheme}:{REDACTED}"))
            .field("identity_installation", &self.identity_installation)
            .field("identity_firebase", &self.identity_firebase)
            .field("delivery_firebase", &self.delivery_firebase)
            .field("firebase", &self.firebase)
            .field("store_pool", &self.store_pool)
            .field("redis", &redacted(self.redis.is_some()))
            .field("mode", &self.mode)
            .field("static_key", &redacted(self.static_key.is_some()))
            .field("otp_ttl", &self.otp_ttl)
            .field("mailbox_ttl", &self.mailbox_ttl)
            .field("otp_max_attempts", &self.otp_max_attempts)
            .field("enroll_per_ip_hour", &self.enroll_per_ip_hour)
            .field("rsa_pool_size", &self.rsa_pool_size)
            .field(
                "integrity_secret",
                &redacted(self.integrity_secret.is_some()),
            )
            .field("integrity_ttl", &self.integrity_ttl)
            .field("cleanup_interval", &self.cleanup_interval)
            .field("dormant_days", &self.dormant_days)
            .field("revocation_retention_days", &self.revocation_retention_days)
            .field("audit_retention_days", &self.audit_retention_days)
            .field("signature_max_skew", &self.signature_max_skew)
            .field("dpop_max_skew", &self.dpop_max_skew)
            .field("routes", &self.routes)
            .field("upstreams", &self.upstreams)
            .field("tls", &self.tls)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("sms", &self.sms)
            .field("accounts", &self.accounts)
            .field("issuers", &self.issuers)
            .field("attestation_enabled", &self.attestation_enabled)
            .field("play_integrity", &self.play_integrity)
            .field("app_attest", &self.app_attest)
            .field("app_check", &self.app_check)
            .field("device_cache_ttl_ms", &self.device_cache_ttl_ms)
            .finish()
    }
}
