//! `[redis]`: the Redis shared by several instances (optional).

use std::time::Duration;

use serde::Deserialize;

use super::errors::Errors;

/// Default `redis.timeout_ms`.
const DEFAULT_TIMEOUT_MS: u64 = 1000;
/// Default `redis.prefix` of every key Moat writes.
const DEFAULT_PREFIX: &str = "moat:";

/// `[redis]` as written. No `Debug`: the URL may carry a password.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawRedis {
    pub url: Option<String>,
    pub timeout_ms: Option<u64>,
    pub prefix: Option<String>,
}

/// Validates `[redis]`: `None` without a URL (one instance, nothing shared).
pub(crate) fn validate(
    raw: RawRedis,
    errors: &mut Errors,
) -> Option<moat_cluster::redis::RedisConfig> {
    let url = raw.url?;
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        errors.push(format!(
            "redis.url: must be redis://… or rediss://… (got `{}:…`)",
            url.split(':').next().unwrap_or("")
        ));
    }
    let timeout = Duration::from_millis(raw.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS));
    if !(10..=60_000).contains(&timeout.as_millis()) {
        errors.push("redis.timeout_ms: must be 10 to 60000");
    }
    Some(moat_cluster::redis::RedisConfig {
        url,
        timeout,
        prefix: raw.prefix.unwrap_or_else(|| DEFAULT_PREFIX.into()),
    })
}
