//! Shared application state.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::hmac;
use moat_core::b64;
use moat_core::seal::DataKey;
use moat_core::secret::SecretBytes;
use moat_store::Store;
use moat_store::accounts::AccountStore;
use tokio::sync::Notify;

use crate::accounts::password::Hasher;
use crate::clock::Clock;
use crate::config::{Config, Mode};
use crate::issuers::Issuers;
use crate::ratelimit::RateLimiter;
use crate::replay::{MemoryReplayCache, RedisReplayCache, ReplayCache};
use crate::secrets::Secrets;
use crate::sms::guard::SmsGuard;
use crate::sms::sender::SmsSender;
use crate::tokens::TokenService;
use crate::usage::UsageTracker;

/// Live entries the in-memory replay cache holds at most (20 bytes each, plus the maps'
/// overhead: about 250 MB when full).
pub const REPLAY_CAPACITY: usize = 8_000_000;

/// Keys derived from the secrets at start.
pub struct Keys {
    /// Seals secrets at rest.
    pub data: DataKey,
    /// Keyed hash of API keys.
    pub api_key_pepper: hmac::Key,
    /// The static-mode key.
    pub static_key: SecretBytes,
    /// Admin bearer token.
    pub admin_token: SecretBytes,
    /// The raw data key, for deriving other keys at start.
    data_key_raw: SecretBytes,
    /// The first integrity secret (configuration, else the secrets file).
    pub initial_integrity_secret: SecretBytes,
}

impl Keys {
    /// Builds the keys from the data key (`server.data_key` or the secrets file), the
    /// secrets file and configuration overrides.
    ///
    /// # Errors
    /// If the data key is not 32 bytes.
    pub fn new(
        data_key: &SecretBytes,
        secrets: &Secrets,
        config: &Config,
    ) -> Result<Self, moat_core::Error> {
        let data_key = data_key.expose().to_vec();
        // A separate key for API-key hashing, derived from the data key so there is one
        // secret to back up: HMAC(data_key, label).
        let pepper_bytes = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &data_key),
            b"moat api key pepper v1",
        );
        let integrity = match &config.integrity_secret {
            Some(bytes) => bytes.clone(),
            None => b64::url_decode(&secrets.integrity_secret)?,
        };
        Ok(Self {
            initial_integrity_secret: SecretBytes::new(integrity),
            data_key_raw: SecretBytes::new(data_key.clone()),
            data: DataKey::new(&data_key)?,
            api_key_pepper: hmac::Key::new(hmac::HMAC_SHA256, pepper_bytes.as_ref()),
            static_key: SecretBytes::new(
                config
                    .static_key
                    .clone()
                    .unwrap_or_else(|| secrets.static_key.clone())
                    .into_bytes(),
            ),
            admin_token: SecretBytes::new(
                config
                    .admin_token
                    .clone()
                    .unwrap_or_else(|| secrets.admin_token.clone())
                    .into_bytes(),
            ),
        })
    }
}

impl Keys {
    /// The raw data key (to derive the gateway signing key).
    pub fn data_key_bytes(&self) -> &[u8] {
        self.data_key_raw.expose()
    }
}

/// Enrollment borrows the keys it uses.
impl moat_enroll::KeyRing for Keys {
    fn data(&self) -> &moat_core::seal::DataKey {
        &self.data
    }

    fn api_key_pepper(&self) -> &aws_lc_rs::hmac::Key {
        &self.api_key_pepper
    }

    fn static_key(&self) -> &moat_core::secret::SecretBytes {
        &self.static_key
    }
}

/// Everything handlers and middleware share. Cloned for every request by extractors and
/// middleware, so it is one `Arc` (a clone is one atomic increment) around [`Shared`].
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The shared state's fields.
pub struct Shared {
    /// Validated configuration.
    pub config: Arc<Config>,
    /// Persistent state.
    pub store: Arc<dyn Store>,
    /// DPoP `jti` and signature `nonce` cache.
    pub replay: Arc<dyn ReplayCache>,
    /// Keys.
    pub keys: Arc<Keys>,
    /// Batched last-use times.
    pub usage: Arc<UsageTracker>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// When this process started (shown as `created_at` for the shared static key).
    pub started_at: i64,
    /// Accounts storage (the same backend as `store`).
    pub accounts: Arc<dyn AccountStore>,
    /// Access and refresh tokens.
    pub tokens: Arc<TokenService>,
    /// External token issuers.
    pub issuers: Arc<Issuers>,
    /// Password hashing, bounded.
    pub hasher: Arc<Hasher>,
    /// SMS-pumping guard.
    pub sms_guard: Arc<SmsGuard>,
    /// The SMS sender.
    pub sms_sender: Arc<dyn SmsSender>,
    /// Wakes the SMS worker when a message is queued.
    pub sms_notify: Arc<Notify>,
    /// Account-flow work run after its answer ([`crate::sms::Detached`]).
    pub sms_flows: Arc<crate::sms::Detached>,
    /// Login attempts, per phone and per IP, checked before any password hash.
    pub login_limiter: Arc<RateLimiter>,
    /// Enrollments per client IP (`enrollment.per_ip_hour`), shared through Redis when set.
    pub enroll_limiter: Arc<RateLimiter>,
    /// Route rate limits (`[[route]] rate_limit`).
    pub route_limiter: Arc<RateLimiter>,
    /// The gateway (upstream routes).
    pub gateway: Arc<crate::gateway::Gateway>,
    /// Attestation storage (the same backend as `store`).
    pub attest: Arc<dyn moat_store::attest::AttestStore>,
    /// Integrity tokens.
    pub integrity: Arc<crate::attest::integrity::IntegrityService>,
    /// Pending attestation challenges.
    pub challenges: Arc<crate::attest::challenge::Challenges>,
    /// Made-up package sizes for challenges of unregistered apps.
    pub decoys: Arc<crate::attest::challenge::DecoySizes>,
    /// Platform attestation verifiers.
    pub platforms: Arc<crate::attest::platform::Platforms>,
    /// Enrollment, OTP confirmation and the mailbox (with Firebase identity and delivery).
    pub enrollment: Arc<moat_enroll::Enrollment>,
    /// Redis, when instances share one (`redis.url`).
    pub redis: Option<Arc<crate::cluster::Redis>>,
    /// This process's name among instances (holder of leases), random per start.
    pub instance: String,
    /// Audit log and daily counters storage (the same backend as `store`).
    pub ops: Arc<dyn moat_store::ops::OpsStore>,
    /// Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The audit log.
    pub audit: Arc<crate::audit::AuditLog>,
    /// The dashboard's daily counters.
    pub stats: Arc<crate::stats::DailyStats>,
    /// Verified device credentials, for `device_cache_ttl_ms`.
    pub device_cache: Arc<crate::cache::TtlCache<crate::middleware::protect::CachedCredential>>,
}

/// The enrollment service's settings, from the configuration.
fn enroll_settings(config: &Config) -> moat_enroll::Settings {
    moat_enroll::Settings {
        mode: match config.mode {
            Mode::Static => moat_enroll::Mode::Static,
            Mode::Dynamic => moat_enroll::Mode::Dynamic,
            Mode::Otp => moat_enroll::Mode::Otp,
        },
        public_base_url: config.public_base_url.clone(),
        dpop_max_skew: config.dpop_max_skew,
        identity_installation: config.identity_installation,
        identity_firebase: config.identity_firebase,
        delivery_firebase: config.delivery_firebase,
        firebase: config
            .firebase
            .as_ref()
            .map(|f| moat_enroll::firebase::Settings {
                project_id: f.project_id.clone(),
                database_url: f.database_url.clone(),
                service_account: f.service_account.clone(),
                auth_emulator_host: f.auth_emulator_host.clone(),
                mailbox_root: f.mailbox_root.clone(),
                certs_url: f.certs_url.clone(),
            }),
        mailbox_ttl: config.mailbox_ttl,
        otp_ttl: config.otp_ttl,
        otp_max_attempts: config.otp_max_attempts,
        per_ip_hour: config.enroll_per_ip_hour,
        rsa_pool_size: config.rsa_pool_size,
    }
}

impl AppState {
    /// Assembles state from its parts, starting the RSA pool in otp mode.
    ///
    /// # Errors
    /// If a part named in the configuration cannot start (password hasher, Firebase, upstreams, attestation platforms).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Config,
        store: Arc<dyn Store>,
        accounts: Arc<dyn AccountStore>,
        attest: Arc<dyn moat_store::attest::AttestStore>,
        ops: Arc<dyn moat_store::ops::OpsStore>,
        sms_sender: Arc<dyn SmsSender>,
        keys: Keys,
        clock: Arc<dyn Clock>,
        redis: Option<Arc<crate::cluster::Redis>>,
    ) -> Result<Self, crate::ServerError> {
        let started_at = clock.now();
        let tokens = Arc::new(TokenService::new(
            config.public_base_url.clone(),
            config.accounts.access_ttl,
            config.accounts.refresh_ttl,
        ));
        let hasher = Arc::new(
            Hasher::new(config.accounts.hash_concurrency, Duration::from_secs(2)).map_err(|e| {
                crate::ServerError::Setup(format!("password hasher: {}", e.detail()))
            })?,
        );
        let issuers = Arc::new(Issuers::new(config.issuers.clone()));
        let sms_guard = Arc::new(SmsGuard::new(
            config.sms.limits.clone(),
            RateLimiter::new(redis.as_ref(), "sms", 1_000_000),
        ));
        let replay: Arc<dyn ReplayCache> = match &redis {
            Some(r) => Arc::new(RedisReplayCache(r.clone())),
            None => Arc::new(MemoryReplayCache::new(REPLAY_CAPACITY, clock.now())),
        };
        let gateway = Arc::new(
            moat_gateway::Gateway::new(
                &config.upstreams,
                keys.data_key_bytes(),
                moat_gateway::Settings {
                    public_scheme: config.public_scheme,
                    public_authority: config.public_authority.clone(),
                    max_body_bytes: config.max_body_bytes,
                },
                &crate::secret_ref::resolve,
            )
            .map_err(crate::ServerError::Setup)?,
        );
        let metrics = Arc::new(crate::metrics::Metrics::new());
        if let Some(r) = &redis {
            r.set_latency(metrics.redis_latency.clone());
        }
        let keys = Arc::new(keys);
        let audit = Arc::new(crate::audit::AuditLog::new(ops.clone(), metrics.clone()));
        let stats = Arc::new(crate::stats::DailyStats::new(ops.clone()));
        let enroll_limiter = Arc::new(RateLimiter::new(redis.as_ref(), "enroll", 1_000_000));
        let device_cache = Arc::new(crate::cache::TtlCache::new(200_000));
        let enrollment = Arc::new(
            moat_enroll::Enrollment::new(
                moat_enroll::Parts {
                    store: store.clone(),
                    replay: replay.clone(),
                    limiter: enroll_limiter.clone(),
                    keys: keys.clone(),
                    credentials: Arc::new(crate::middleware::protect::ForgetCredentials(
                        device_cache.clone(),
                    )),
                    audit: audit.clone(),
                    metrics: metrics.clone(),
                    stats: stats.clone(),
                },
                enroll_settings(&config),
            )
            .map_err(crate::ServerError::Setup)?,
        );
        Ok(Self(Arc::new(Shared {
            audit,
            stats,
            ops,
            metrics,
            accounts,
            tokens,
            issuers,
            hasher,
            sms_guard,
            sms_sender,
            sms_notify: Arc::new(Notify::new()),
            sms_flows: Arc::default(),
            login_limiter: Arc::new(RateLimiter::new(redis.as_ref(), "login", 1_000_000)),
            enroll_limiter,
            route_limiter: Arc::new(RateLimiter::new(redis.as_ref(), "route", 1_000_000)),
            gateway,
            attest,
            integrity: Arc::new(crate::attest::integrity::IntegrityService::new(
                config.public_base_url.clone(),
                config.integrity_ttl,
            )),
            challenges: Arc::new(crate::attest::challenge::Challenges::new(redis.clone())),
            decoys: Arc::new(crate::attest::challenge::DecoySizes::new(
                keys.data_key_bytes(),
            )),
            instance: moat_core::random::token(12)?,
            enrollment,
            redis,
            device_cache,
            platforms: Arc::new(
                crate::attest::platform::Platforms::new(&config)
                    .map_err(|e| crate::ServerError::Setup(e))?,
            ),
            config: Arc::new(config),
            store,
            replay,
            keys,
            usage: Arc::new(UsageTracker::default()),
            clock,
            started_at,
        })))
    }

    /// Now, Unix seconds.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Now, Unix milliseconds (second resolution from the injected clock, plus the
    /// sub-second part of the monotonic clock, for rate limits of several per second).
    pub fn now_ms(&self) -> i64 {
        let sub = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::from(d.subsec_millis()));
        self.clock.now().saturating_mul(1000) + sub
    }
}
