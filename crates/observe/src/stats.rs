//! Daily counters behind the admin dashboard: enrollments by mode, attestation results, SMS
//! sent and blocked with their estimated cost, refusals by device, by IP and by reason (problem
//! code), and per route: requests, refusals and latency.
//!
//! Days are UTC days. Labels on the request path are bounded and allocation-free: route
//! templates (interned by [`crate::metrics::Metrics::route`]) and problem codes are
//! `&'static str`, so counting a request is one short lock and a map update.
//!
//! Counting is in memory (a map update under a short lock); a task adds the counts to the
//! store every [`FLUSH_EVERY`] with one upsert per counter, so every instance's counts land
//! in the same rows. The admin stats endpoint flushes first, so the dashboard is current.
//! A crash loses at most one interval of counts; these are statistics, the audit log is the
//! record.

use std::borrow::Cow;
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
    /// Refusals (401, 403, 429) by problem code: `device_revoked`, `signature_invalid`,
    /// `replay_detected`, `rate_limited`, `sms_blocked`, …
    pub const REFUSED_CODE: &str = "refused_code";
    /// Public requests by route template (`/v1/device`, `/events/{*rest}`, `unmatched`).
    pub const ROUTE_REQUESTS: &str = "route_requests";
    /// Refusals (401, 403, 429) by route template.
    pub const ROUTE_REFUSED: &str = "route_refused";
    /// Summed response time in microseconds (to the response head) by route template.
    pub const ROUTE_LATENCY_US: &str = "route_latency_us";
}

/// Response-time buckets per route, in milliseconds (upper bounds; the last is unbounded):
/// each request counts in exactly one, under the metric name beside its bound.
pub const LATENCY_BUCKETS_MS: [(u64, &str); 12] = [
    (1, "route_ms_le_1"),
    (2, "route_ms_le_2"),
    (5, "route_ms_le_5"),
    (10, "route_ms_le_10"),
    (25, "route_ms_le_25"),
    (50, "route_ms_le_50"),
    (100, "route_ms_le_100"),
    (250, "route_ms_le_250"),
    (500, "route_ms_le_500"),
    (1000, "route_ms_le_1000"),
    (2500, "route_ms_le_2500"),
    (u64::MAX, "route_ms_le_inf"),
];

/// Refusals by problem code within one UTC hour of the day: the metric of hour `h` is
/// `HOURLY_REFUSALS[h]`, its label the code, its day the UTC day. The dashboard's last 24
/// hours come from these.
pub const HOURLY_REFUSALS: [&str; 24] = [
    "refused_h00",
    "refused_h01",
    "refused_h02",
    "refused_h03",
    "refused_h04",
    "refused_h05",
    "refused_h06",
    "refused_h07",
    "refused_h08",
    "refused_h09",
    "refused_h10",
    "refused_h11",
    "refused_h12",
    "refused_h13",
    "refused_h14",
    "refused_h15",
    "refused_h16",
    "refused_h17",
    "refused_h18",
    "refused_h19",
    "refused_h20",
    "refused_h21",
    "refused_h22",
    "refused_h23",
];

/// The metric counting refusals in the UTC hour of `unix`.
pub fn hourly_refusals(unix: i64) -> &'static str {
    let hour = usize::try_from(unix.rem_euclid(86_400) / 3_600).unwrap_or(0);
    HOURLY_REFUSALS[hour % 24]
}

/// The bucket metric for a response time.
pub fn latency_bucket(micros: u64) -> &'static str {
    LATENCY_BUCKETS_MS
        .iter()
        .find(|(ms, _)| micros <= ms.saturating_mul(1000))
        .map_or("route_ms_le_inf", |(_, name)| name)
}

/// What the dashboard calls a refusal: the request was turned away for who sent it or how
/// (401, 403, 429), not for a typo in it.
pub fn is_refusal(status: u16) -> bool {
    matches!(status, 401 | 403 | 429)
}

type Key = (i64, &'static str, Cow<'static, str>);

/// Pending counts.
pub struct DailyStats {
    store: Arc<dyn OpsStore>,
    pending: Mutex<HashMap<Key, i64>>,
    flushing: tokio::sync::Mutex<()>,
}

/// Adds `n` under `key`; a new key only while fewer than [`MAX_PENDING`] are held.
fn bump(pending: &mut HashMap<Key, i64>, key: Key, n: i64) {
    if let Some(v) = pending.get_mut(&key) {
        *v = v.saturating_add(n);
    } else if pending.len() < MAX_PENDING {
        pending.insert(key, n);
    }
}

/// Adds `n` under a key whose label is one of a bounded set (a route pattern, a problem
/// code): always kept, so a flood of refusals from many addresses filling [`MAX_PENDING`]
/// with IP labels cannot hide the per-route and per-reason counts of that very flood.
fn bump_bounded(pending: &mut HashMap<Key, i64>, key: Key, n: i64) {
    let v = pending.entry(key).or_insert(0);
    *v = v.saturating_add(n);
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
        bump(
            &mut pending,
            (day_of(now), metric, Cow::Owned(label.to_owned())),
            n,
        );
    }

    /// Counts one public response of `route`: the request, its time in one latency bucket and
    /// in the route's sum, and if it was refused, the refusal by route and by `code`. One lock,
    /// and no allocation once the day's keys exist.
    pub fn request(
        &self,
        now: i64,
        route: &'static str,
        micros: u64,
        refused: Option<&'static str>,
    ) {
        let day = day_of(now);
        let route = Cow::Borrowed(route);
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let micros = i64::try_from(micros).unwrap_or(i64::MAX);
        bump_bounded(
            &mut pending,
            (day, metric::ROUTE_REQUESTS, route.clone()),
            1,
        );
        bump_bounded(
            &mut pending,
            (day, metric::ROUTE_LATENCY_US, route.clone()),
            micros,
        );
        bump_bounded(
            &mut pending,
            (day, latency_bucket(micros.unsigned_abs()), route.clone()),
            1,
        );
        if let Some(code) = refused {
            bump_bounded(&mut pending, (day, metric::ROUTE_REFUSED, route), 1);
            bump_bounded(
                &mut pending,
                (day, metric::REFUSED_CODE, Cow::Borrowed(code)),
                1,
            );
            bump_bounded(
                &mut pending,
                (day, hourly_refusals(now), Cow::Borrowed(code)),
                1,
            );
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
                    label: label.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_time_falls_in_one_bucket_by_its_upper_bound() {
        assert_eq!(latency_bucket(0), "route_ms_le_1");
        assert_eq!(latency_bucket(1_000), "route_ms_le_1");
        assert_eq!(latency_bucket(1_001), "route_ms_le_2");
        assert_eq!(latency_bucket(30_000), "route_ms_le_50");
        assert_eq!(latency_bucket(2_500_000), "route_ms_le_2500");
        assert_eq!(latency_bucket(2_500_001), "route_ms_le_inf");
        assert_eq!(latency_bucket(u64::MAX), "route_ms_le_inf");
    }

    #[test]
    fn each_utc_hour_has_its_metric() {
        assert_eq!(hourly_refusals(0), "refused_h00");
        assert_eq!(hourly_refusals(3_599), "refused_h00");
        assert_eq!(hourly_refusals(3_600), "refused_h01");
        assert_eq!(hourly_refusals(86_399), "refused_h23");
        assert_eq!(hourly_refusals(-1), "refused_h23");
    }

    #[tokio::test]
    async fn route_and_reason_counts_survive_a_full_pending_map_and_reach_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}/stats.db", dir.path().display());
        let opened = moat_store::open(&url, &moat_store::PoolOptions::default())
            .await
            .expect("store");
        let stats = DailyStats::new(opened.ops.clone());
        let now = 86_400 * 20_000 + 3_600 * 5 + 10;
        // A flood of refusals from as many addresses as the map holds.
        for i in 0..MAX_PENDING {
            stats.add(
                now,
                metric::REFUSED_IP,
                &format!("10.0.{}.{}", i / 256, i % 256),
                1,
            );
        }
        stats.add(now, metric::REFUSED_IP, "192.0.2.1", 1);
        stats.request(now, "/v1/device", 1_500, Some("device_revoked"));
        stats.request(now, "/v1/device", 30_000, None);
        stats.flush().await.expect("flush");
        let day = day_of(now);
        let rows = |m: &'static str| {
            let ops = opened.ops.clone();
            async move {
                ops.stats(m, day, day)
                    .await
                    .expect("rows")
                    .into_iter()
                    .map(|r| (r.label, r.value))
                    .collect::<Vec<_>>()
            }
        };
        let device = || vec![("/v1/device".to_owned(), 2)];
        assert_eq!(rows(metric::ROUTE_REQUESTS).await, device());
        assert_eq!(
            rows(metric::ROUTE_REFUSED).await,
            vec![("/v1/device".to_owned(), 1)]
        );
        assert_eq!(
            rows(metric::ROUTE_LATENCY_US).await,
            vec![("/v1/device".to_owned(), 31_500)]
        );
        assert_eq!(
            rows("route_ms_le_2").await,
            vec![("/v1/device".to_owned(), 1)]
        );
        assert_eq!(
            rows("route_ms_le_50").await,
            vec![("/v1/device".to_owned(), 1)]
        );
        let code = || vec![("device_revoked".to_owned(), 1)];
        assert_eq!(rows(metric::REFUSED_CODE).await, code());
        assert_eq!(rows("refused_h05").await, code());
        // The one address past the bound waited (the store answers the top labels only).
        let top = opened
            .ops
            .top_stats(metric::REFUSED_IP, day, day, 100_000)
            .await
            .expect("top");
        assert!(!top.iter().any(|(ip, _)| ip == "192.0.2.1"));
    }

    #[test]
    fn refusals_are_401_403_and_429() {
        for status in [401, 403, 429] {
            assert!(is_refusal(status));
        }
        for status in [200, 400, 404, 422, 500, 503] {
            assert!(!is_refusal(status));
        }
    }
}
