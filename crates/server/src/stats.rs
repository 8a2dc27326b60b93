//! Daily counters behind the admin dashboard: enrollments by mode, attestation results, SMS
//! sent and blocked with their estimated cost, and refusals by device and by IP.
//!
//! Counting is in memory (a map update under a short lock); a task adds the counts to the
//! store every [`FLUSH_EVERY`] with one upsert per counter, so every instance's counts land
//! in the same rows. The admin stats endpoint flushes first, so the dashboard is current.
//! A crash loses at most one interval of counts; these are statistics, the audit log is the
//! record.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moat_store::ops::{OpsStore, StatDelta};

/// How often counts go to the store.
pub const FLUSH_EVERY: Duration = Duration::from_secs(10);

/// Most distinct counters held between flushes: a flood of refusals from many addresses
/// cannot grow memory or the next flush without bound; beyond it new labels wait.
pub const MAX_PENDING: usize = 20_000;

/// Counter names.
pub mod metric {
    /// Label `mode/channel`.
    pub const ENROLL: &str = "enroll";
    /// Label `pass` or `fail`.
    pub const ATTEST: &str = "attest";
    /// Label `sent`, `blocked` or `failed`.
    pub const SMS: &str = "sms";
    /// Estimated spend on sent SMS, in millionths of `sms.currency`; label is the currency.
    pub const SMS_COST_MICROS: &str = "sms_cost_micros";
    /// Refusals (401, 403, 429) by client IP.
    pub const REFUSED_IP: &str = "refused_ip";
    /// Refusals by device uuid, where the request named one.
    pub const REFUSED_DEVICE: &str = "refused_device";
}

type Key = (i64, &'static str, String);

/// Pending counts.
pub struct DailyStats {
    store: Arc<dyn OpsStore>,
    pending: Mutex<HashMap<Key, i64>>,
    flushing: tokio::sync::Mutex<()>,
}

/// The UTC day of a Unix time.
pub fn day_of(unix: i64) -> i64 {
    unix.div_euclid(86_400)
}

impl DailyStats {
    /// Counts for `store`.
    pub fn new(store: Arc<dyn OpsStore>) -> Self {
        Self {
            store,
            pending: Mutex::default(),
            flushing: tokio::sync::Mutex::const_new(()),
        }
    }

    /// Adds `n` to `metric`/`label` for the day of `now`.
    pub fn add(&self, now: i64, metric: &'static str, label: &str, n: i64) {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (day_of(now), metric, label.to_owned());
        if let Some(v) = pending.get_mut(&key) {
            *v += n;
        } else if pending.len() < MAX_PENDING {
            pending.insert(key, n);
        }
    }

    /// Writes pending counts to the store; on failure they are kept for the next flush.
    ///
    /// # Errors
    /// The store's error.
    pub async fn flush(&self) -> Result<(), moat_store::StoreError> {
        // One flush at a time, so counts taken by one are never overtaken by another's.
        let _one = self.flushing.lock().await;
        let batch: Vec<(Key, i64)> = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain()
            .collect();
        for (i, chunk) in batch.chunks(500).enumerate() {
            let deltas: Vec<StatDelta> = chunk
                .iter()
                .map(|((day, metric, label), value)| StatDelta {
                    day: *day,
                    metric: (*metric).to_owned(),
                    label: label.clone(),
                    value: *value,
                })
                .collect();
            if let Err(e) = self.store.add_stats(&deltas).await {
                // This chunk and the ones after it go back.
                let mut pending = self
                    .pending
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for (key, value) in &batch[i * 500..] {
                    *pending.entry(key.clone()).or_insert(0) += value;
                }
                return Err(e);
            }
        }
        Ok(())
    }
}
