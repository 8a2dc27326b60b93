//! The verifier service: everything the policy check reads, held once and shared by every
//! protected route.

use std::sync::Arc;

use aws_lc_rs::hmac;
use http::HeaderValue;
use moat_accounts::tokens::TokenService;
use moat_attest::Attestation;
use moat_cluster::cache::TtlCache;
use moat_cluster::ratelimit::RateLimiter;
use moat_cluster::replay::ReplayCache;
use moat_core::seal::DataKey;
use moat_core::secret::SecretBytes;
use moat_identity::issuers::Issuers;
use moat_observe::metrics::Metrics;
use moat_observe::usage::UsageTracker;
use moat_store::Store;

use crate::{CachedCredential, Principal};

/// The keys the policy check borrows from the server's key ring.
pub trait KeyRing: Send + Sync {
    /// Opens sealed device secrets (HMAC secrets, RSA private keys).
    fn data(&self) -> &DataKey;
    /// Hashes API keys for comparison with the stored hash.
    fn api_key_pepper(&self) -> &hmac::Key;
    /// The shared static key (static mode).
    fn static_key(&self) -> &SecretBytes;
}

/// The verifier's settings, plain values from the configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `enrollment.mode = "static"`: the shared static key is accepted as `Moat-Device-Key`.
    pub static_mode: bool,
    /// How long a looked-up device credential is kept, milliseconds (0: not at all).
    pub device_cache_ttl_ms: u64,
    /// The deployment's scheme (`server.public_base_url`), signed as `@scheme`.
    pub public_scheme: &'static str,
    /// The deployment's authority (`server.public_base_url`), signed as `@authority`.
    pub public_authority: String,
    /// Largest accepted clock skew of a signature's `created`/`expires`, seconds.
    pub signature_max_skew: i64,
}

/// What the verifier uses, built once by the server.
pub struct Services {
    /// Devices.
    pub store: Arc<dyn Store>,
    /// Signature nonces.
    pub replay: Arc<dyn ReplayCache>,
    /// Looked-up device credentials (`device_cache_ttl_ms`).
    pub device_cache: Arc<TtlCache<CachedCredential>>,
    /// Route rate limits (`[[route]] rate_limit`).
    pub route_limiter: Arc<RateLimiter>,
    /// The server's own access tokens.
    pub tokens: Arc<TokenService>,
    /// External token issuers.
    pub issuers: Arc<Issuers>,
    /// Integrity tokens.
    pub attestation: Arc<Attestation>,
    /// Sealing key, API-key pepper and static key.
    pub keys: Arc<dyn KeyRing>,
    /// Batched last-use times of devices.
    pub usage: Arc<UsageTracker>,
    /// Store latency.
    pub metrics: Arc<Metrics>,
}

/// The current time of one request, read once when its checks start.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    /// Unix seconds (signature windows, tokens, nonces).
    pub secs: i64,
    /// Unix milliseconds (the credential cache, rate limits of several per second).
    pub millis: i64,
}

/// An admitted request: who it comes from, its body (decrypted when it was a JWE), and the
/// route's `RateLimit` header values.
#[derive(Debug)]
pub struct Verified {
    /// The verified caller.
    pub principal: Principal,
    /// The body to pass on: as sent, or the plaintext of a JWE body.
    pub body: bytes::Bytes,
    /// The body was a JWE and is now its JSON plaintext (`Content-Type` and
    /// `Content-Length` must say so).
    pub decrypted: bool,
    /// The route's `RateLimit-Policy` and `RateLimit` values, when it has a rate limit.
    pub rate_limit: Option<RateLimitHeaders>,
}

/// The `RateLimit-Policy` and `RateLimit` values of an admitted request.
#[derive(Clone, Debug)]
pub struct RateLimitHeaders {
    /// `RateLimit-Policy`: the route's quota.
    pub policy: HeaderValue,
    /// `RateLimit`: what is left of it.
    pub remaining: HeaderValue,
}

/// Checks requests against their route's policy (see the crate documentation for the order
/// of the checks).
pub struct Verifier {
    pub(crate) services: Services,
    pub(crate) settings: Settings,
    /// `device_cache_ttl_ms` as the cache counts it (0: no caching).
    pub(crate) cache_ttl: i64,
}

impl Verifier {
    /// The verifier over `services`, configured by `settings`.
    pub fn new(services: Services, settings: Settings) -> Self {
        let cache_ttl = i64::try_from(settings.device_cache_ttl_ms).unwrap_or(0);
        Self {
            services,
            settings,
            cache_ttl,
        }
    }

    /// A store call on the request path, timed into `moat_store_latency_seconds`.
    pub(crate) async fn timed<T>(&self, call: impl std::future::Future<Output = T>) -> T {
        moat_observe::metrics::timed(&self.services.metrics.store_latency, call).await
    }
}
