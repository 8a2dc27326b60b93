//! `[audit]`: how long the audit log is kept.

use serde::Deserialize;

use super::errors::Errors;

/// Default `audit.retention_days`.
pub const DEFAULT_AUDIT_RETENTION_DAYS: i64 = 90;

/// `[audit]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawAudit {
    pub retention_days: Option<i64>,
}

/// Validates `[audit]`: the days the audit log and the dashboard's daily counters are kept.
pub(crate) fn validate(raw: RawAudit, errors: &mut Errors) -> i64 {
    errors.positive(
        raw.retention_days,
        DEFAULT_AUDIT_RETENTION_DAYS,
        "audit.retention_days",
    )
}
