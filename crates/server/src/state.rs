//! Shared application state.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::hmac;
use moat_core::b64;
use moat_core::seal::DataKey;
use moat_core::secret::SecretBytes;
use moat_store::Store;

use crate::clock::Clock;
use crate::config::{Config, Mode};
use crate::replay::{MemoryReplayCache, ReplayCache};
use crate::rsa_pool::RsaPool;
use crate::secrets::Secrets;
use crate::usage::UsageTracker;

/// Live entries the in-memory replay cache holds at most.
pub const REPLAY_CAPACITY: usize = 4_000_000;

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
}

impl Keys {
    /// Builds the keys from the secrets file and configuration overrides.
    ///
    /// # Errors
    /// If the data key is not 32 bytes.
    pub fn new(secrets: &Secrets, config: &Config) -> Result<Self, moat_core::Error> {
        let data_key = b64::url_decode(&secrets.data_key)?;
        // A separate key for API-key hashing, derived from the data key so there is one
        // secret to back up: HMAC(data_key, label).
        let pepper_bytes = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &data_key),
            b"moat api key pepper v1",
        );
        Ok(Self {
            data: DataKey::new(&data_key)?,
            api_key_pepper: hmac::Key::new(hmac::HMAC_SHA256, pepper_bytes.as_ref()),
            static_key: SecretBytes::new(
                config.static_key.clone().unwrap_or_else(|| secrets.static_key.clone()).into_bytes(),
            ),
            admin_token: SecretBytes::new(
                config.admin_token.clone().unwrap_or_else(|| secrets.admin_token.clone()).into_bytes(),
            ),
        })
    }
}

/// Everything handlers and middleware share.
#[derive(Clone)]
pub struct AppState {
    /// Validated configuration.
    pub config: Arc<Config>,
    /// Persistent state.
    pub store: Arc<dyn Store>,
    /// DPoP `jti` and signature `nonce` cache.
    pub replay: Arc<dyn ReplayCache>,
    /// Keys.
    pub keys: Arc<Keys>,
    /// Pre-generated RSA keys (otp mode only).
    pub rsa_pool: Option<Arc<RsaPool>>,
    /// Batched last-use times.
    pub usage: Arc<UsageTracker>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// When this process started (shown as `created_at` for the shared static key).
    pub started_at: i64,
}

impl AppState {
    /// Assembles state from its parts, starting the RSA pool in otp mode.
    pub fn new(config: Config, store: Arc<dyn Store>, keys: Keys, clock: Arc<dyn Clock>) -> Self {
        let rsa_pool = (config.mode == Mode::Otp)
            .then(|| Arc::new(RsaPool::start(config.rsa_pool_size, Duration::from_secs(2))));
        let started_at = clock.now();
        Self {
            config: Arc::new(config),
            store,
            replay: Arc::new(MemoryReplayCache::new(REPLAY_CAPACITY)),
            keys: Arc::new(keys),
            rsa_pool,
            usage: Arc::new(UsageTracker::default()),
            clock,
            started_at,
        }
    }

    /// Now, Unix seconds.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }
}
