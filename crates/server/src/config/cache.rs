//! `[cache]`: how long a verified device credential is reused.

use serde::Deserialize;

/// Default `cache.device_ttl_ms`.
const DEFAULT_DEVICE_TTL_MS: u64 = 1000;
/// Largest `cache.device_ttl_ms`: a larger value is lowered to it, as it bounds how late a
/// revocation made on another instance is seen.
const MAX_DEVICE_TTL_MS: u64 = 60_000;

/// `[cache]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawCache {
    pub device_ttl_ms: Option<u64>,
}

/// Validates `[cache]`: `Config::device_cache_ttl_ms`. Nothing to refuse.
pub(crate) fn validate(raw: RawCache) -> u64 {
    raw.device_ttl_ms
        .unwrap_or(DEFAULT_DEVICE_TTL_MS)
        .min(MAX_DEVICE_TTL_MS)
}
