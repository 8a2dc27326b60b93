//! Operational records: the audit log of security events, and the daily counters behind the
//! admin dashboard.

use async_trait::async_trait;

use crate::Result;

/// Most audit events one query returns.
pub const MAX_AUDIT_PAGE: u32 = 1000;

/// A security event to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAuditEvent {
    /// When, Unix seconds.
    pub at: i64,
    /// What happened: `device.enrolled`, `device.revoked`, `user.locked`, `admin.call`, …
    pub kind: String,
    /// Who did it: `device:<uuid>`, `admin`, `system`, `ip:<addr>`, …
    pub actor: String,
    /// What it was done to (a device uuid, a user id, a key id), if anything.
    pub subject: Option<String>,
    /// The client address, when the event came from a request.
    pub ip: Option<String>,
    /// More, as a JSON object (never a secret).
    pub detail: Option<String>,
}

/// A recorded security event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// UUIDv7: unique, and in time order.
    pub id: String,
    /// The event.
    pub event: NewAuditEvent,
}

/// Which events to list, newest first. Every filter is optional.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    /// Exactly this kind.
    pub kind: Option<String>,
    /// Exactly this subject.
    pub subject: Option<String>,
    /// At or after, Unix seconds.
    pub since: Option<i64>,
    /// Before, Unix seconds.
    pub until: Option<i64>,
    /// Only events older than this id (the last id of the previous page).
    pub before_id: Option<String>,
    /// Most events (capped at [`MAX_AUDIT_PAGE`]).
    pub limit: u32,
}

/// An amount to add to one daily counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatDelta {
    /// Days since the Unix epoch (UTC).
    pub day: i64,
    /// Counter name: `enroll`, `attest`, `sms`, `sms_cost_micros`, `refused_ip`, …
    pub metric: String,
    /// The counter's label within the metric (`otp/builtin`, `pass`, an IP address, …).
    pub label: String,
    /// How much to add.
    pub value: i64,
}

/// A daily counter's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatRow {
    /// Days since the Unix epoch.
    pub day: i64,
    /// Counter name.
    pub metric: String,
    /// Label.
    pub label: String,
    /// Value.
    pub value: i64,
}

/// Storage of the audit log and daily counters.
#[async_trait]
pub trait OpsStore: Send + Sync + 'static {
    /// Records events, all or none.
    async fn append_audit(&self, events: &[NewAuditEvent]) -> Result<()>;

    /// Lists events matching `query`, newest first.
    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>>;

    /// Adds to daily counters, all or none.
    async fn add_stats(&self, deltas: &[StatDelta]) -> Result<()>;

    /// Every counter of `metric` from `from_day` to `to_day` inclusive, by day and label.
    async fn stats(&self, metric: &str, from_day: i64, to_day: i64) -> Result<Vec<StatRow>>;

    /// The `limit` labels of `metric` with the highest totals over the days, highest first.
    async fn top_stats(
        &self,
        metric: &str,
        from_day: i64,
        to_day: i64,
        limit: u32,
    ) -> Result<Vec<(String, i64)>>;

    /// Built-in mailbox items not yet taken.
    async fn mailbox_backlog(&self) -> Result<i64>;

    /// Removes events before `audit_before` (Unix seconds) and counters before
    /// `stats_before_day`; returns how many rows went.
    async fn purge_ops(&self, audit_before: i64, stats_before_day: i64) -> Result<u64>;
}
