//! `[accounts]`: user tokens and the login lock.

use serde::Deserialize;

use super::errors::Errors;

/// Default `accounts.access_ttl`, seconds (15 minutes).
const DEFAULT_ACCESS_TTL: i64 = 900;
/// Default `accounts.refresh_ttl`, seconds (30 days).
const DEFAULT_REFRESH_TTL: i64 = 30 * 86_400;
/// Default `accounts.login_lock_after`: failed logins before a lock.
const DEFAULT_LOGIN_LOCK_AFTER: i64 = 10;
/// Default `accounts.login_lock_seconds`.
const DEFAULT_LOGIN_LOCK_SECONDS: i64 = 900;
/// Default `accounts.login_per_minute` (at least 1 is kept).
const DEFAULT_LOGIN_PER_MINUTE: u32 = 5;
/// Default `accounts.hash_concurrency`.
const DEFAULT_HASH_CONCURRENCY: usize = 2;
/// Largest `accounts.hash_concurrency`: a larger value is lowered to it.
const MAX_HASH_CONCURRENCY: usize = 64;

/// `[accounts]` as written.
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

/// Validates `[accounts]`.
pub(crate) fn validate(raw: RawAccounts, errors: &mut Errors) -> AccountsConfig {
    AccountsConfig {
        access_ttl: errors.positive(raw.access_ttl, DEFAULT_ACCESS_TTL, "accounts.access_ttl"),
        refresh_ttl: errors.positive(raw.refresh_ttl, DEFAULT_REFRESH_TTL, "accounts.refresh_ttl"),
        login_lock_after: errors.positive(
            raw.login_lock_after,
            DEFAULT_LOGIN_LOCK_AFTER,
            "accounts.login_lock_after",
        ),
        login_lock_seconds: errors.positive(
            raw.login_lock_seconds,
            DEFAULT_LOGIN_LOCK_SECONDS,
            "accounts.login_lock_seconds",
        ),
        login_per_minute: raw
            .login_per_minute
            .unwrap_or(DEFAULT_LOGIN_PER_MINUTE)
            .max(1),
        hash_concurrency: raw
            .hash_concurrency
            .unwrap_or(DEFAULT_HASH_CONCURRENCY)
            .clamp(1, MAX_HASH_CONCURRENCY),
    }
}
