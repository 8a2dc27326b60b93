//! Prometheus metrics, served at `GET /metrics` on the admin listener.
//!
//! One [`Metrics`] per server (in the server's state), so servers in one process
//! (tests) count separately. Counters are atomics; a labelled family is a read-locked hash
//! map whose label sets are all small and fixed (routes are the router's patterns, codes are
//! Moat's problem codes), so nothing on the request path allocates once a label set exists.
//!
//! Rendering: the Prometheus text format (0.0.4) by default, OpenMetrics 1.0 when the scraper
//! asks for it in `Accept`.

use std::collections::HashSet;
use std::sync::RwLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `route`, `status`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The matched route pattern (`/v1/device`, `/events/{*rest}`), or `unmatched`.
    pub route: &'static str,
    /// The response status.
    pub status: u16,
}

/// `code`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    /// Moat's problem code.
    pub code: &'static str,
}

/// `mode`, `channel`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EnrollLabels {
    /// `static`, `dynamic` or `otp`.
    pub mode: &'static str,
    /// `builtin` or `firebase`.
    pub channel: &'static str,
}

/// `platform`, `result`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttestLabels {
    /// `package`, `play_integrity`, `app_attest`, `app_check`.
    pub platform: &'static str,
    /// `pass` or `fail`.
    pub result: &'static str,
}

/// `outcome`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// What happened.
    pub outcome: &'static str,
}

/// `kind`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// What was removed.
    pub kind: &'static str,
}

/// `currency`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CurrencyLabels {
    /// ISO 4217 code from `sms.currency`.
    pub currency: String,
}

/// Every metric Moat exports.
pub struct Metrics {
    registry: Registry,
    routes: RwLock<HashSet<&'static str>>,
    /// Requests by route and status (public listener).
    pub requests: Family<RequestLabels, Counter>,
    /// Refusals by problem code (every 4xx/5xx Moat answered with a problem document).
    pub refusals: Family<CodeLabels, Counter>,
    /// Time spent on a protected route's checks, before the handler or upstream.
    pub verification: Histogram,
    /// Credentials issued, by mode and delivery channel.
    pub enrollments: Family<EnrollLabels, Counter>,
    /// Attestation results.
    pub attestations: Family<AttestLabels, Counter>,
    /// SMS by outcome: `sent`, `blocked` (SMS-pumping guard), `failed`.
    pub sms: Family<OutcomeLabels, Counter>,
    /// Estimated spend on sent SMS (`sms.estimated_cost` each).
    pub sms_cost: Family<CurrencyLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    /// Built-in mailbox items waiting to be read (sampled when scraped).
    pub mailbox_backlog: Gauge,
    /// Rows the cleanup job removed, by kind.
    pub cleanup_removed: Family<KindLabels, Counter>,
    /// Store round trips (a probe every few seconds, and device lookups on the request path).
    pub store_latency: Histogram,
    /// Redis round trips (every call).
    pub redis_latency: Histogram,
    /// Audit events written.
    pub audit_events: Counter,
    /// Audit events that could not be written (also logged).
    pub audit_failures: Counter,
    /// Admin API calls without the right token, every one (the audit log summarises them).
    pub admin_denied: Counter,
}

/// Buckets from 10 µs to about 5 s.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.000_01, 2.5, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("moat");
        let m = Self {
            registry: Registry::default(),
            routes: RwLock::default(),
            requests: Family::default(),
            refusals: Family::default(),
            verification: latency(),
            enrollments: Family::default(),
            attestations: Family::default(),
            sms: Family::default(),
            sms_cost: Family::default(),
            mailbox_backlog: Gauge::default(),
            cleanup_removed: Family::default(),
            store_latency: latency(),
            redis_latency: latency(),
            audit_events: Counter::default(),
            audit_failures: Counter::default(),
            admin_denied: Counter::default(),
        };
        registry.register(
            "http_requests",
            "Requests on the public listener by route pattern and status",
            m.requests.clone(),
        );
        registry.register(
            "refusals",
            "Problem responses by Moat problem code",
            m.refusals.clone(),
        );
        registry.register_with_unit(
            "verification_duration",
            "Time spent checking a protected request before it reaches its handler or upstream",
            prometheus_client::registry::Unit::Seconds,
            m.verification.clone(),
        );
        registry.register(
            "enrollments",
            "Credentials issued by enrollment mode and delivery channel",
            m.enrollments.clone(),
        );
        registry.register(
            "attestations",
            "Attestation results by platform",
            m.attestations.clone(),
        );
        registry.register(
            "sms",
            "SMS by outcome: sent, blocked by the SMS-pumping guard, failed",
            m.sms.clone(),
        );
        registry.register(
            "sms_estimated_cost",
            "Estimated spend on sent SMS (sms.estimated_cost each)",
            m.sms_cost.clone(),
        );
        registry.register(
            "mailbox_backlog",
            "Built-in mailbox items not yet read",
            m.mailbox_backlog.clone(),
        );
        registry.register(
            "cleanup_removed",
            "Rows removed by the cleanup job, by kind",
            m.cleanup_removed.clone(),
        );
        registry.register_with_unit(
            "store_latency",
            "Store round trips",
            prometheus_client::registry::Unit::Seconds,
            m.store_latency.clone(),
        );
        registry.register_with_unit(
            "redis_latency",
            "Redis round trips",
            prometheus_client::registry::Unit::Seconds,
            m.redis_latency.clone(),
        );
        registry.register(
            "audit_events",
            "Audit events written to the store",
            m.audit_events.clone(),
        );
        registry.register(
            "audit_write_failures",
            "Audit events the store did not take (each is also logged)",
            m.audit_failures.clone(),
        );
        registry.register(
            "admin_denied",
            "Admin API calls without the right token (the audit log keeps one in full per address and minute)",
            m.admin_denied.clone(),
        );
        Self { registry, ..m }
    }

    /// The route label for a matched path: the pattern itself, kept once for the process
    /// (router patterns are a fixed, small set).
    pub fn route(&self, pattern: Option<&str>) -> &'static str {
        let Some(pattern) = pattern else {
            return "unmatched";
        };
        if let Some(known) = self
            .routes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(pattern)
        {
            return known;
        }
        let mut routes = self
            .routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(known) = routes.get(pattern) {
            return known;
        }
        // Patterns come from the router only (never from a request), so this set is bounded
        // by the configuration; the bound below is a backstop.
        if routes.len() >= 1024 {
            return "other";
        }
        let leaked: &'static str = Box::leak(pattern.to_owned().into_boxed_str());
        routes.insert(leaked);
        leaked
    }

    /// Records a response of the public listener.
    pub fn request(&self, route: &'static str, status: u16, code: Option<&'static str>) {
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
        if let Some(code) = code {
            self.refusals.get_or_create(&CodeLabels { code }).inc();
        }
    }

    /// Records one attestation result.
    pub fn attestation(&self, platform: &'static str, pass: bool) {
        let result = if pass { "pass" } else { "fail" };
        self.attestations
            .get_or_create(&AttestLabels { platform, result })
            .inc();
    }

    /// The exposition: OpenMetrics 1.0 if `openmetrics`, else the Prometheus text format.
    pub fn render(&self, openmetrics: bool) -> String {
        let mut out = String::with_capacity(8192);
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            return String::new();
        }
        if openmetrics {
            out
        } else {
            to_prometheus_text(&out)
        }
    }
}

/// Awaits `call` and records how long it took in `histogram`, whatever its outcome.
pub async fn timed<T>(histogram: &Histogram, call: impl std::future::Future<Output = T>) -> T {
    let started = std::time::Instant::now();
    let out = call.await;
    histogram.observe(started.elapsed().as_secs_f64());
    out
}

/// `Content-Type` of [`Metrics::render`]'s two forms.
pub const OPENMETRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The Prometheus text format's `Content-Type`.
pub const PROMETHEUS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// OpenMetrics → Prometheus text 0.0.4: a counter family `x` is named by its samples'
/// `x_total` in `# HELP`/`# TYPE`, and the `# UNIT` and `# EOF` lines go (0.0.4 has neither).
/// Every other line is the same in both formats.
fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let name = if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_owned()
            };
            if let Some(h) = help.take() {
                let text = h.split_once(' ').map_or("", |(_, t)| t);
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_by_their_samples_in_the_prometheus_form() {
        let m = Metrics::new();
        m.request("/v1/device", 401, Some("credential_invalid"));
        m.request("/v1/device", 200, None);
        m.verification.observe(0.0002);
        let text = m.render(false);
        assert!(
            text.contains("# TYPE moat_http_requests_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("moat_http_requests_total{route=\"/v1/device\",status=\"401\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("moat_refusals_total{code=\"credential_invalid\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE moat_verification_duration_seconds histogram\n"),
            "{text}"
        );
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
        let om = m.render(true);
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(om.contains("# TYPE moat_http_requests counter\n"), "{om}");
    }

    #[test]
    fn route_labels_are_interned() {
        let m = Metrics::new();
        let a = m.route(Some("/v1/device"));
        let b = m.route(Some("/v1/device"));
        assert!(std::ptr::eq(a, b));
        assert_eq!(m.route(None), "unmatched");
    }
}
