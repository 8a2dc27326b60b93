//! The audit log: security events written to the store, queryable through
//! `GET /admin/v1/audit` and `moat admin audit`.
//!
//! Events are written as they happen (one insert, off no lock). The action they record has
//! already happened when the event is written, so a store failure does not undo it: the
//! event is then logged at `warn` with every field and counted in
//! `moat_audit_write_failures_total`, so nothing is lost silently.

use std::sync::Arc;

use moat_store::ops::{NewAuditEvent, OpsStore};

use crate::metrics::Metrics;

/// Event kinds (stable: operators filter on them).
pub mod kind {
    /// A credential was issued (or rotated) by enrollment.
    pub const DEVICE_ENROLLED: &str = "device.enrolled";
    /// The shared static key was sent to an identity (static mode: there is no device row).
    pub const STATIC_KEY_SENT: &str = "static_key.sent";
    /// An otp-mode enrollment was confirmed with its code.
    pub const DEVICE_CONFIRMED: &str = "device.confirmed";
    /// An enrollment code was locked after too many wrong attempts.
    pub const ENROLLMENT_LOCKED: &str = "enrollment.otp_locked";
    /// A device was revoked.
    pub const DEVICE_REVOKED: &str = "device.revoked";
    /// A user's logins were locked after repeated failures.
    pub const USER_LOCKED: &str = "user.locked";
    /// A refresh token was reused: its family was revoked.
    pub const REFRESH_REUSED: &str = "user.refresh_reused";
    /// The access-token signing key was rotated.
    pub const KEYS_ROTATED: &str = "keys.rotated";
    /// The integrity-token secret was rotated.
    pub const INTEGRITY_ROTATED: &str = "integrity.rotated";
    /// A mutating call on the admin API.
    pub const ADMIN_CALL: &str = "admin.call";
    /// A call on the admin API without the right token.
    pub const ADMIN_DENIED: &str = "admin.denied";
}

/// Starts an event; add what it concerns with [`Event`]'s methods.
pub fn event(at: i64, kind: &str, actor: impl Into<String>) -> Event {
    Event(NewAuditEvent {
        at,
        kind: kind.to_owned(),
        actor: actor.into(),
        subject: None,
        ip: None,
        detail: None,
    })
}

/// An event being built.
#[must_use]
pub struct Event(NewAuditEvent);

impl Event {
    /// What it was done to.
    pub fn subject(mut self, subject: impl ToString) -> Self {
        self.0.subject = Some(subject.to_string());
        self
    }

    /// The client address of the request it came from.
    pub fn ip(mut self, ip: impl ToString) -> Self {
        self.0.ip = Some(ip.to_string());
        self
    }

    /// More, as a JSON object (never a secret).
    pub fn detail(mut self, detail: &serde_json::Value) -> Self {
        self.0.detail = Some(detail.to_string());
        self
    }
}

/// Writes audit events.
pub struct AuditLog {
    store: Arc<dyn OpsStore>,
    metrics: Arc<Metrics>,
}

impl AuditLog {
    /// A log writing to `store`.
    pub fn new(store: Arc<dyn OpsStore>, metrics: Arc<Metrics>) -> Self {
        Self { store, metrics }
    }

    /// Records an event; a failure is logged and counted, never returned (see the module).
    pub async fn record(&self, Event(event): Event) {
        match self.store.append_audit(std::slice::from_ref(&event)).await {
            Ok(()) => {
                self.metrics.audit_events.inc();
            }
            Err(e) => {
                self.metrics.audit_failures.inc();
                tracing::warn!(
                    error = %e,
                    kind = %event.kind,
                    actor = %event.actor,
                    subject = ?event.subject,
                    ip = ?event.ip,
                    detail = ?event.detail,
                    at = event.at,
                    "could not write audit event"
                );
            }
        }
    }
}
