//! `[cleanup]`: how often expired rows are purged and how long dormant or revoked devices
//! are kept.

use std::time::Duration;

use serde::Deserialize;

use super::errors::Errors;

/// Default cleanup interval, seconds.
pub const DEFAULT_CLEANUP_INTERVAL: u64 = 300;
/// Default dormancy before a device is removed, days.
pub const DEFAULT_DORMANT_DAYS: i64 = 90;
/// Default `cleanup.revocation_retention_days`: how long a revoked device's tombstone keeps
/// refusing its re-enrollment.
pub const DEFAULT_REVOCATION_RETENTION_DAYS: i64 = 365;

/// `[cleanup]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawCleanup {
    pub interval: Option<u64>,
    pub dormant_days: Option<i64>,
    pub revocation_retention_days: Option<i64>,
}

/// `[cleanup]` validated; its fields are `Config`'s of the same names.
pub(crate) struct Cleanup {
    pub(crate) interval: Duration,
    pub(crate) dormant_days: i64,
    pub(crate) revocation_retention_days: i64,
}

/// Validates `[cleanup]`.
pub(crate) fn validate(raw: RawCleanup, errors: &mut Errors) -> Cleanup {
    let dormant_days = errors.positive(
        raw.dormant_days,
        DEFAULT_DORMANT_DAYS,
        "cleanup.dormant_days",
    );
    let revocation_retention_days = errors.positive(
        raw.revocation_retention_days,
        DEFAULT_REVOCATION_RETENTION_DAYS,
        "cleanup.revocation_retention_days",
    );
    let interval = raw.interval.unwrap_or(DEFAULT_CLEANUP_INTERVAL);
    if interval == 0 {
        errors.push("cleanup.interval: must be positive");
    }
    Cleanup {
        interval: Duration::from_secs(interval),
        dormant_days,
        revocation_retention_days,
    }
}
