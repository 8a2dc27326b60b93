//! Shared application state.

use std::sync::Arc;

use aws_lc_rs::hmac;
use moat_core::b64;
use moat_core::seal::DataKey;
use moat_core::secret::SecretBytes;
use moat_store::Store;
use moat_store::accounts::AccountStore;

use crate::config::{Config, Mode};
use crate::secrets::Secrets;
use moat_accounts::sms::guard::SmsGuard;
use moat_accounts::sms::sender::SmsSender;
use moat_accounts::tokens::TokenService;
use moat_cluster::ratelimit::RateLimiter;
use moat_cluster::replay::{MemoryReplayCache, RedisReplayCache, ReplayCache};
use moat_core::clock::Clock;
use moat_identity::issuers::Issuers;
use moat_observe::usage::UsageTracker;

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

impl moat_accounts::KeyRing for Keys {
    fn data(&self) -> &DataKey {
        &self.data
    }

    fn pepper(&self) -> &hmac::Key {
        &self.api_key_pepper
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

/// The policy check borrows the keys it uses.
impl moat_policy::KeyRing for Keys {
    fn data(&self) -> &DataKey {
        &self.data
    }

    fn api_key_pepper(&self) -> &hmac::Key {
        &self.api_key_pepper
    }

    fn static_key(&self) -> &SecretBytes {
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
    /// Access and refresh tokens (the account service's, read here on every request).
    pub tokens: Arc<TokenService>,
    /// Users, passwords, SMS codes and the token grants.
    pub account_service: Arc<moat_accounts::Accounts>,
    /// External token issuers.
    pub issuers: Arc<Issuers>,
    /// Enrollments per client IP (`enrollment.per_ip_hour`), shared through Redis when set.
    pub enroll_limiter: Arc<RateLimiter>,
    /// Route rate limits (`[[route]] rate_limit`).
    pub route_limiter: Arc<RateLimiter>,
    /// The gateway (upstream routes).
    pub gateway: Arc<moat_gateway::Gateway>,
    /// Attestation storage (the same backend as `store`).
    pub attest: Arc<dyn moat_store::attest::AttestStore>,
    /// Attestation: challenges, platform verifiers and integrity tokens.
    pub attestation: Arc<moat_attest::Attestation>,
    /// Enrollment, OTP confirmation and the mailbox (with Firebase identity and delivery).
    pub enrollment: Arc<moat_enroll::Enrollment>,
    /// Redis, when instances share one (`redis.url`).
    pub redis: Option<Arc<moat_cluster::redis::Redis>>,
    /// This process's name among instances (holder of leases), random per start.
    pub instance: String,
    /// Audit log and daily counters storage (the same backend as `store`).
    pub ops: Arc<dyn moat_store::ops::OpsStore>,
    /// Prometheus metrics.
    pub metrics: Arc<moat_observe::metrics::Metrics>,
    /// The audit log.
    pub audit: Arc<moat_observe::audit::AuditLog>,
    /// The dashboard's daily counters.
    pub stats: Arc<moat_observe::stats::DailyStats>,
    /// Verified device credentials, for `device_cache_ttl_ms`.
    pub device_cache: Arc<moat_cluster::cache::TtlCache<moat_policy::CachedCredential>>,
    /// The route-policy check of every protected request.
    pub verifier: Arc<moat_policy::Verifier>,
}

/// The attestation service's settings from the configuration, the Play Console keys'
/// secret references resolved.
fn attestation_settings(
    config: &Config,
) -> Result<moat_attest::Settings, crate::error::ServerError> {
    let play_integrity = match &config.play_integrity {
        None => None,
        Some(p) => {
            let resolve = |name: &str, reference: &str| {
                crate::secret_ref::resolve(reference).map_err(|e| {
                    crate::error::ServerError::Setup(format!(
                        "attestation.play_integrity.{name}: {e}"
                    ))
                })
            };
            Some(moat_attest::platform::PlayIntegritySettings {
                decryption_key: resolve("decryption_key", &p.decryption_key)?,
                verification_key: resolve("verification_key", &p.verification_key)?,
                package_name: p.package_name.clone(),
                certificate_digests: p.certificate_digests.clone(),
                device_verdict: p.device_verdict.clone(),
                max_age: p.max_age,
            })
        }
    };
    Ok(moat_attest::Settings {
        issuer: config.public_base_url.clone(),
        integrity_ttl: config.integrity_ttl,
        play_integrity,
        app_attest: config.app_attest.as_ref().map(|a| {
            moat_attest::app_attest::AppAttestSettings {
                team_id: a.team_id.clone(),
                bundle_id: a.bundle_id.clone(),
                environment: a.environment.clone(),
            }
        }),
        app_check: config
            .app_check
            .as_ref()
            .map(|c| moat_attest::platform::AppCheckSettings {
                project_number: c.project_number.clone(),
                app_ids: c.app_ids.clone(),
                jwks_url: c.jwks_url.clone(),
            }),
    })
}

/// The request path's credential cache, as enrollment sees it: a re-enrolled device's old
/// credential is forgotten here at once.
pub struct ForgetCredentials(pub Arc<moat_cluster::cache::TtlCache<moat_policy::CachedCredential>>);

impl moat_enroll::CredentialCache for ForgetCredentials {
    fn forget(&self, d: &moat_store::Device) {
        if let Some(lookup) = &d.credential.key_lookup {
            self.0
                .remove(&moat_policy::CachedCredential::api_key_cache_key(lookup));
        }
        if let Some(client_id) = &d.credential.client_id {
            self.0
                .remove(&moat_policy::CachedCredential::signature_cache_key(
                    client_id,
                ));
        }
    }
}

// What handlers take instead of the whole state (axum `FromRef` sub-states): each service,
// the token keys and the clock.
impl axum::extract::FromRef<AppState> for Arc<moat_attest::Attestation> {
    fn from_ref(state: &AppState) -> Self {
        state.attestation.clone()
    }
}

impl axum::extract::FromRef<AppState> for Arc<moat_enroll::Enrollment> {
    fn from_ref(state: &AppState) -> Self {
        state.enrollment.clone()
    }
}

impl axum::extract::FromRef<AppState> for Arc<moat_accounts::Accounts> {
    fn from_ref(state: &AppState) -> Self {
        state.account_service.clone()
    }
}

impl axum::extract::FromRef<AppState> for Arc<TokenService> {
    fn from_ref(state: &AppState) -> Self {
        state.tokens.clone()
    }
}

impl axum::extract::FromRef<AppState> for Arc<dyn Clock> {
    fn from_ref(state: &AppState) -> Self {
        state.clock.clone()
    }
}

impl axum::extract::FromRef<AppState> for crate::extract::StartedAt {
    fn from_ref(state: &AppState) -> Self {
        Self(state.started_at)
    }
}

impl axum::extract::FromRef<AppState> for crate::extract::TrustedProxies {
    fn from_ref(state: &AppState) -> Self {
        Self(state.config.trusted_proxies.clone())
    }
}

/// The enrollment service's settings, from the configuration.
fn enroll_settings(config: &Config) -> moat_enroll::Settings {
    moat_enroll::Settings {
        mode: config.mode,
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
        redis: Option<Arc<moat_cluster::redis::Redis>>,
    ) -> Result<Self, crate::error::ServerError> {
        let started_at = clock.now();
        let tokens = Arc::new(TokenService::new(
            config.public_base_url.clone(),
            config.accounts.access_ttl,
            config.accounts.refresh_ttl,
        ));
        let issuers = Arc::new(Issuers::new(config.issuers.clone()));
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
            .map_err(crate::error::ServerError::Setup)?,
        );
        let metrics = Arc::new(moat_observe::metrics::Metrics::new());
        if let Some(r) = &redis {
            r.set_latency(metrics.redis_latency.clone());
        }
        let keys = Arc::new(keys);
        let audit = Arc::new(moat_observe::audit::AuditLog::new(
            ops.clone(),
            metrics.clone(),
        ));
        let stats = Arc::new(moat_observe::stats::DailyStats::new(ops.clone()));
        let account_service = Arc::new(
            moat_accounts::Accounts::new(
                moat_accounts::Settings {
                    app_name: config.sms.app_name.clone(),
                    code_ttl: config.sms.code_ttl,
                    login_per_minute: config.accounts.login_per_minute,
                    login_lock_after: config.accounts.login_lock_after,
                    login_lock_seconds: config.accounts.login_lock_seconds,
                    hash_concurrency: config.accounts.hash_concurrency,
                    cost_per_sms: config.sms.cost_per_sms,
                    currency: config.sms.currency.clone(),
                },
                moat_accounts::Parts {
                    store: accounts.clone(),
                    keys: keys.clone(),
                    tokens: tokens.clone(),
                    sender: sms_sender,
                    guard: SmsGuard::new(
                        config.sms.limits.clone(),
                        RateLimiter::new(redis.as_ref(), "sms", 1_000_000),
                    ),
                    login_limiter: RateLimiter::new(redis.as_ref(), "login", 1_000_000),
                    clock: clock.clone(),
                    metrics: metrics.clone(),
                    stats: stats.clone(),
                    audit: audit.clone(),
                },
            )
            .map_err(|e| crate::error::ServerError::Setup(format!("password hasher: {e}")))?,
        );
        let attestation = Arc::new(
            moat_attest::Attestation::new(
                attest.clone(),
                redis.clone(),
                keys.data_key_bytes(),
                attestation_settings(&config)?,
                metrics.clone(),
                stats.clone(),
            )
            .map_err(|e| {
                crate::error::ServerError::Setup(format!("attestation.play_integrity: {e}"))
            })?,
        );
        let enroll_limiter = Arc::new(RateLimiter::new(redis.as_ref(), "enroll", 1_000_000));
        let device_cache = Arc::new(moat_cluster::cache::TtlCache::new(200_000));
        let enrollment = Arc::new(
            moat_enroll::Enrollment::new(
                moat_enroll::Parts {
                    store: store.clone(),
                    replay: replay.clone(),
                    limiter: enroll_limiter.clone(),
                    keys: keys.clone(),
                    credentials: Arc::new(ForgetCredentials(device_cache.clone())),
                    audit: audit.clone(),
                    metrics: metrics.clone(),
                    stats: stats.clone(),
                },
                enroll_settings(&config),
            )
            .map_err(crate::error::ServerError::Setup)?,
        );
        let route_limiter = Arc::new(RateLimiter::new(redis.as_ref(), "route", 1_000_000));
        let usage = Arc::new(UsageTracker::default());
        let verifier = Arc::new(moat_policy::Verifier::new(
            moat_policy::Services {
                store: store.clone(),
                replay: replay.clone(),
                device_cache: device_cache.clone(),
                route_limiter: route_limiter.clone(),
                tokens: tokens.clone(),
                issuers: issuers.clone(),
                attestation: attestation.clone(),
                keys: keys.clone(),
                usage: usage.clone(),
                metrics: metrics.clone(),
            },
            moat_policy::Settings {
                static_mode: config.mode == Mode::Static,
                device_cache_ttl_ms: config.device_cache_ttl_ms,
                public_scheme: config.public_scheme,
                public_authority: config.public_authority.clone(),
                signature_max_skew: config.signature_max_skew,
            },
        ));
        Ok(Self(Arc::new(Shared {
            audit,
            stats,
            ops,
            metrics,
            accounts,
            tokens,
            issuers,
            account_service,
            enroll_limiter,
            route_limiter,
            gateway,
            attest,
            attestation,
            instance: moat_core::random::token(12)?,
            enrollment,
            redis,
            device_cache,
            verifier,
            config: Arc::new(config),
            store,
            replay,
            keys,
            usage,
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
