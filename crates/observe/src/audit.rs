//! The audit log: security events written to the store, queryable through
//! `GET /admin/v1/audit` and `moat admin audit`.
//!
//! Events are written as they happen (one insert, off no lock). The action they record has
//! already happened when the event is written, so a store failure does not undo it: the
//! event is then logged at `warn` with every field and counted in
//! `moat_audit_write_failures_total`, so nothing is lost silently.
//!
//! The one event anyone can cause, an admin call without the right token, is not written
//! once per call: a flood would grow the table without bound. The first call from an address
//! in each [`DENIED_WINDOW`] is written in full (its path and method cut to
//! [`MAX_CLIENT_TEXT`]), the others are counted into one summary event for that address and
//! window, written when the window has ended, and every call is counted in
//! `moat_admin_denied_total`. At most [`DENIED_ADDRESSES`] addresses are told apart at once;
//! calls from further addresses share one summary, so the rows per window are bounded
//! whatever the number of addresses.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

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
    /// A call on the admin API without the right token: the first from an address in a
    /// window in full, the rest of the window as one summary (`detail.repeats`).
    pub const ADMIN_DENIED: &str = "admin.denied";
}

/// How long the unauthenticated admin calls of one address are summarised together, seconds.
pub const DENIED_WINDOW: i64 = 60;
/// Most addresses whose unauthenticated admin calls are summarised apart; calls from others
/// share one summary.
pub const DENIED_ADDRESSES: usize = 256;
/// Longest client-chosen text (path, method) kept in an audit event, bytes.
pub const MAX_CLIENT_TEXT: usize = 128;

/// `text` cut to at most [`MAX_CLIENT_TEXT`] bytes, on a character boundary, marked with `…`
/// when cut.
pub fn client_text(text: &str) -> String {
    if text.len() <= MAX_CLIENT_TEXT {
        return text.to_owned();
    }
    let mut end = MAX_CLIENT_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
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

/// One address's (or, with `None`, the other addresses') unauthenticated admin calls in a
/// window.
#[derive(Clone, Copy)]
struct Window {
    since: i64,
    /// Calls after the first, which was written in full.
    repeats: u64,
}

/// Unauthenticated admin calls being summarised, by client address (see the module).
#[derive(Default)]
struct DeniedCalls(Mutex<HashMap<Option<IpAddr>, Window>>);

/// A summary event due: `repeats` calls from `ip` in the window starting at `since`.
struct Summary {
    ip: Option<IpAddr>,
    since: i64,
    repeats: u64,
}

impl DeniedCalls {
    /// Counts a call from `ip` at `now`. Returns whether to write it in full (it opens a
    /// window), and the summaries of windows that have ended.
    fn note(&self, ip: IpAddr, now: i64) -> (bool, Vec<Summary>) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut ended = Vec::new();
        if !map.contains_key(&Some(ip)) && map.len() >= DENIED_ADDRESSES {
            ended = Self::take_ended(&mut map, now, false);
        }
        let key = (map.contains_key(&Some(ip)) || map.len() < DENIED_ADDRESSES).then_some(ip);
        match map.get_mut(&key) {
            Some(w) if now < w.since.saturating_add(DENIED_WINDOW) => {
                w.repeats += 1;
                (false, ended)
            }
            Some(w) => {
                if w.repeats > 0 {
                    ended.push(Summary {
                        ip: key,
                        since: w.since,
                        repeats: w.repeats,
                    });
                }
                *w = Window {
                    since: now,
                    repeats: 0,
                };
                (true, ended)
            }
            None => {
                map.insert(
                    key,
                    Window {
                        since: now,
                        repeats: 0,
                    },
                );
                (true, ended)
            }
        }
    }

    /// Removes the windows that have ended by `now` (with `all`, every window), returning the
    /// summaries to write.
    fn take_ended(map: &mut HashMap<Option<IpAddr>, Window>, now: i64, all: bool) -> Vec<Summary> {
        let mut ended = Vec::new();
        map.retain(|ip, w| {
            let open = !all && now < w.since.saturating_add(DENIED_WINDOW);
            if !open && w.repeats > 0 {
                ended.push(Summary {
                    ip: *ip,
                    since: w.since,
                    repeats: w.repeats,
                });
            }
            open
        });
        ended
    }
}

/// Writes audit events.
pub struct AuditLog {
    store: Arc<dyn OpsStore>,
    metrics: Arc<Metrics>,
    denied: DeniedCalls,
}

impl AuditLog {
    /// A log writing to `store`.
    pub fn new(store: Arc<dyn OpsStore>, metrics: Arc<Metrics>) -> Self {
        Self {
            store,
            metrics,
            denied: DeniedCalls::default(),
        }
    }

    /// Records an admin call without the right token: counted always, written in full only if
    /// it is the first from `ip` in its window (see the module).
    pub async fn admin_denied(&self, now: i64, ip: IpAddr, method: &str, path: &str) {
        self.metrics.admin_denied.inc();
        let (first, ended) = self.denied.note(ip, now);
        self.write_summaries(ended, now).await;
        if first {
            let detail = serde_json::json!({
                "method": client_text(method),
                "path": client_text(path),
            });
            self.record(
                event(now, kind::ADMIN_DENIED, "unknown")
                    .ip(ip)
                    .detail(&detail),
            )
            .await;
        }
    }

    /// Writes the summaries of unauthenticated admin calls whose window has ended by `now`;
    /// with `all` (at shutdown), of every window, or their counts would be lost. Called
    /// periodically.
    pub async fn flush_denied(&self, now: i64, all: bool) {
        let ended = {
            let mut map = self
                .denied
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            DeniedCalls::take_ended(&mut map, now, all)
        };
        self.write_summaries(ended, now).await;
    }

    async fn write_summaries(&self, ended: Vec<Summary>, now: i64) {
        for s in ended {
            // A window cut short at shutdown ends now.
            let until = s.since.saturating_add(DENIED_WINDOW).min(now);
            let detail =
                serde_json::json!({"repeats": s.repeats, "since": s.since, "until": until});
            let mut e = event(until, kind::ADMIN_DENIED, "unknown").detail(&detail);
            if let Some(ip) = s.ip {
                e = e.ip(ip);
            }
            self.record(e).await;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_per_window_stay_bounded_whatever_the_addresses() {
        let denied = DeniedCalls::default();
        let mut full = 0;
        for i in 0..10_000u32 {
            let (first, ended) = denied.note(IpAddr::from(i.to_be_bytes()), 1_000);
            full += usize::from(first);
            assert!(ended.is_empty());
        }
        // One full event per address told apart, one for the first of all the others.
        assert_eq!(full, DENIED_ADDRESSES + 1);
        let mut map = denied.0.lock().expect("lock");
        let ended = DeniedCalls::take_ended(&mut map, 1_000 + DENIED_WINDOW, false);
        assert_eq!(ended.len(), 1, "one summary for the others");
        assert_eq!(ended[0].ip, None);
        assert_eq!(ended[0].repeats, 10_000 - full as u64);
        assert!(map.is_empty());
    }

    #[test]
    fn a_new_window_writes_the_last_ones_summary() {
        let denied = DeniedCalls::default();
        let ip = IpAddr::from([192, 0, 2, 1]);
        assert!(denied.note(ip, 100).0);
        assert!(!denied.note(ip, 159).0);
        let (first, ended) = denied.note(ip, 160);
        assert!(first);
        assert_eq!(
            ended
                .iter()
                .map(|s| (s.since, s.repeats))
                .collect::<Vec<_>>(),
            [(100, 1)]
        );
    }

    #[test]
    fn client_text_is_cut_on_a_character_boundary() {
        assert_eq!(client_text("/admin/v1/x"), "/admin/v1/x");
        let long = format!("/{}", "é".repeat(200));
        let cut = client_text(&long);
        assert!(cut.len() <= MAX_CLIENT_TEXT + '…'.len_utf8());
        assert!(cut.ends_with('…'));
    }
}
