//! The enrollment service: what it holds and how it is built.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::hmac;
use moat_cluster::ratelimit::RateLimiter;
use moat_cluster::replay::ReplayCache;
use moat_core::seal::DataKey;
use moat_core::secret::SecretBytes;
use moat_observe::audit::AuditLog;
use moat_observe::metrics::Metrics;
use moat_observe::stats::DailyStats;
use moat_store::{Device, Store};

use crate::firebase::Firebase;
use crate::rsa_pool::RsaPool;
use crate::settings::{Mode, Settings};

/// How long a confirmation waits for an RSA key when the pool is empty.
const RSA_WAIT: Duration = Duration::from_secs(2);

/// The server keys enrollment uses; they stay with their owner, which lends them.
pub trait KeyRing: Send + Sync {
    /// Seals secrets at rest (mailbox items, codes, credentials).
    fn data(&self) -> &DataKey;
    /// Keyed hash of API keys.
    fn api_key_pepper(&self) -> &hmac::Key;
    /// The static-mode key.
    fn static_key(&self) -> &SecretBytes;
}

/// The request path's cache of verified credentials: a re-enrollment rotates a device's
/// credential, and the old one must stop working here at once.
pub trait CredentialCache: Send + Sync {
    /// Forgets whatever is cached of `device`'s current credential on this instance (others
    /// forget it within their cache TTL).
    fn forget(&self, device: &Device);
}

/// What the service is built from, besides its settings.
pub struct Parts {
    /// Devices, codes and mailbox items.
    pub store: Arc<dyn Store>,
    /// DPoP `jti` memory.
    pub replay: Arc<dyn ReplayCache>,
    /// Enrollments per client address (`enrollment.per_ip_hour`).
    pub limiter: Arc<RateLimiter>,
    /// The keys.
    pub keys: Arc<dyn KeyRing>,
    /// The request path's credential cache.
    pub credentials: Arc<dyn CredentialCache>,
    /// The audit log.
    pub audit: Arc<AuditLog>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// The dashboard's daily counters.
    pub stats: Arc<DailyStats>,
}

/// Seed 000's enrollment: identity proofs, credentials of the configured mode, OTP
/// confirmation, the built-in mailbox and the Realtime Database side channel.
pub struct Enrollment {
    pub(crate) settings: Settings,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) replay: Arc<dyn ReplayCache>,
    pub(crate) limiter: Arc<RateLimiter>,
    pub(crate) keys: Arc<dyn KeyRing>,
    pub(crate) credentials: Arc<dyn CredentialCache>,
    pub(crate) audit: Arc<AuditLog>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) stats: Arc<DailyStats>,
    /// Firebase identity and delivery, when `[firebase]` is set and either is enabled.
    pub(crate) firebase: Option<Firebase>,
    /// Pre-generated RSA keys (otp mode only).
    pub(crate) rsa_pool: Option<RsaPool>,
}

impl Enrollment {
    /// Builds the service: sets up Firebase when configured and used, and starts the RSA key
    /// pool in otp mode.
    ///
    /// # Errors
    /// A message naming the problem if Firebase cannot be set up (e.g. an unreadable service
    /// account).
    pub fn new(parts: Parts, settings: Settings) -> Result<Self, String> {
        let firebase = match &settings.firebase {
            Some(f) if settings.identity_firebase || settings.delivery_firebase => {
                Some(Firebase::new(f, settings.delivery_firebase)?)
            }
            _ => None,
        };
        let rsa_pool =
            (settings.mode == Mode::Otp).then(|| RsaPool::start(settings.rsa_pool_size, RSA_WAIT));
        Ok(Self {
            store: parts.store,
            replay: parts.replay,
            limiter: parts.limiter,
            keys: parts.keys,
            credentials: parts.credentials,
            audit: parts.audit,
            metrics: parts.metrics,
            stats: parts.stats,
            firebase,
            rsa_pool,
            settings,
        })
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The Firebase side, if set up.
    pub fn firebase(&self) -> Option<&Firebase> {
        self.firebase.as_ref()
    }

    /// The Realtime Database mailbox, when items go there (for the cleanup job).
    pub fn rtdb(&self) -> Option<&crate::firebase::rtdb::Rtdb> {
        self.firebase.as_ref().and_then(|f| f.rtdb.as_ref())
    }
}
