//! `[store]`: the database URL and its connection pool.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::errors::Errors;

/// Default `store.max_connections`.
const DEFAULT_MAX_CONNECTIONS: u32 = 8;
/// Default `store.timeout_ms`.
const DEFAULT_TIMEOUT_MS: u64 = 3000;

/// `[store]` as written. No `Debug`: the URL may carry a password.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawStore {
    pub url: Option<String>,
    pub max_connections: Option<u32>,
    pub timeout_ms: Option<u64>,
}

/// `[store]` validated. No `Debug`: the URL may carry a password.
pub(crate) struct Store {
    pub(crate) url: String,
    pub(crate) pool: moat_store::PoolOptions,
}

/// Validates `[store]`; the default URL is a SQLite file in `data_dir`.
pub(crate) fn validate(raw: RawStore, data_dir: &Path, errors: &mut Errors) -> Store {
    let url = raw
        .url
        .unwrap_or_else(|| format!("sqlite://{}/moat.db", data_dir.display()));
    if !(url.starts_with("sqlite:")
        || url.starts_with("postgres://")
        || url.starts_with("postgresql://"))
    {
        // Only the scheme is echoed: the URL may carry a password.
        errors.push(format!(
            "store.url: must be sqlite://…, postgres://… or postgresql://… (got `{}:…`)",
            url.split(':').next().unwrap_or("")
        ));
    }
    let pool = moat_store::PoolOptions {
        max_connections: raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
        timeout: Duration::from_millis(raw.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)),
    };
    if !(1..=1000).contains(&pool.max_connections) {
        errors.push("store.max_connections: must be 1 to 1000");
    }
    if !(50..=60_000).contains(&pool.timeout.as_millis()) {
        errors.push("store.timeout_ms: must be 50 to 60000");
    }
    Store { url, pool }
}
