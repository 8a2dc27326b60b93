//! Operator surface: Prometheus metrics (parsed by the Prometheus project's own parsers),
//! request ids, the audit log, and the dashboard's statistics.

use http::Method;
use serde_json::{Value, json};

use super::support::*;

/// The value of the sample `name` whose labels include all of `labels` (summed if several).
fn sample(samples: &Value, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .as_array()
        .expect("samples")
        .iter()
        .filter(|s| s[0] == name)
        .filter(|s| labels.iter().all(|(k, v)| s[1][*k] == *v))
        .map(|s| s[2].as_f64().expect("value"))
        .sum()
}

#[tokio::test]
async fn metrics_count_requests_refusals_enrollments_and_latency() {
    let server = TestServer::start("dynamic").await;
    let a = server.enrolled("metrics-a").await;
    let _b = server.enrolled("metrics-b").await;
    for _ in 0..3 {
        let r = a
            .call(Method::GET, "/v1/device", None, opts())
            .await
            .expect("call");
        assert_eq!(r.status, 200);
    }
    // Two refusals: no credential, and a made-up key.
    let r = http()
        .get(format!("{}/v1/device", server.base))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    let r = http()
        .get(format!("{}/v1/device", server.base))
        .header("moat-device-key", "mk_nope_nope")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);

    let url = format!("{}/metrics", server.admin);
    let out = tokio::task::spawn_blocking(move || run_python("metrics.py", &[&url]))
        .await
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Value = serde_json::from_slice(&out.stdout).expect("json");
    for (format, counter) in [
        ("text", "moat_http_requests_total"),
        ("openmetrics", "moat_http_requests_total"),
    ] {
        let s = &parsed[format];
        assert_eq!(
            sample(s, counter, &[("route", "/v1/device"), ("status", "200")]),
            3.0,
            "{format}"
        );
        assert_eq!(
            sample(s, counter, &[("route", "/v1/device"), ("status", "401")]),
            2.0,
            "{format}"
        );
        assert_eq!(
            sample(s, "moat_http_requests_total", &[("route", "/v1/enroll")]),
            2.0,
            "{format}"
        );
        assert_eq!(
            sample(s, "moat_refusals_total", &[("code", "credential_invalid")]),
            2.0,
            "{format}"
        );
        assert_eq!(
            sample(
                s,
                "moat_enrollments_total",
                &[("mode", "dynamic"), ("channel", "builtin")]
            ),
            2.0,
            "{format}"
        );
        // Every protected request is timed, admitted or refused.
        assert_eq!(
            sample(s, "moat_verification_duration_seconds_count", &[]),
            5.0,
            "{format}"
        );
        assert_eq!(
            sample(
                s,
                "moat_verification_duration_seconds_bucket",
                &[("le", "+Inf")]
            ),
            5.0,
            "{format}"
        );
        // Both devices read their mailbox: nothing waits.
        assert_eq!(sample(s, "moat_mailbox_backlog", &[]), 0.0, "{format}");
        assert!(sample(s, "moat_store_latency_seconds_count", &[]) >= 1.0);
        assert_eq!(sample(s, "moat_audit_events_total", &[]), 2.0, "{format}");
    }
    server.stop().await;
}

#[tokio::test]
async fn request_ids_are_returned_and_a_clients_own_is_kept() {
    let server = TestServer::start("dynamic").await;
    let r = http()
        .get(format!("{}/v1/device", server.base))
        .send()
        .await
        .expect("send");
    let first = r.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let r = http()
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .expect("send");
    let second = r.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(!first.is_empty());
    assert_ne!(first, second, "each request gets its own id");
    let r = http()
        .get(format!("{}/healthz", server.base))
        .header("x-request-id", "client-chosen-42")
        .send()
        .await
        .expect("send");
    assert_eq!(r.headers()["x-request-id"], "client-chosen-42");
    server.stop().await;
}

#[tokio::test]
async fn security_events_are_in_the_audit_log_and_can_be_filtered_and_paged() {
    let server = TestServer::start("dynamic").await;
    let c = server.enrolled("audit-1").await;
    let device = device_of(&c);
    // An admin call with a wrong token, then a revocation with the right one.
    let r = http()
        .post(format!("{}/admin/v1/devices/{device}/revoke", server.admin))
        .bearer_auth("not-the-token")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    let revoke = format!("/admin/v1/devices/{device}/revoke");
    assert_eq!(admin_post(&server, &revoke).await, 200);
    assert_eq!(admin_post(&server, "/admin/v1/keys/rotate").await, 200);

    let all = admin_get(&server, "/admin/v1/audit").await;
    let kinds: Vec<&str> = all["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["kind"].as_str().expect("kind"))
        .collect();
    // Newest first; the admin calls appear both as what they did and as calls.
    assert_eq!(
        kinds,
        [
            "admin.call",
            "keys.rotated",
            "admin.call",
            "device.revoked",
            "admin.denied",
            "device.enrolled"
        ]
    );
    let events = all["events"].as_array().expect("events");
    let enrolled = &events[5];
    assert_eq!(enrolled["subject"], json!(device));
    assert_eq!(enrolled["ip"], "127.0.0.1");
    assert_eq!(enrolled["detail"]["mode"], "dynamic");
    assert_eq!(enrolled["detail"]["device_id"], "audit-1");
    assert_eq!(events[4]["ip"], "127.0.0.1");
    assert_eq!(
        events[4]["detail"]["path"],
        format!("/admin/v1/devices/{device}/revoke")
    );
    assert_eq!(events[3]["actor"], "admin");
    assert_eq!(events[2]["detail"]["status"], 200);
    // Nothing secret is ever in an event.
    let text = all.to_string();
    assert!(!text.contains("not-the-token") && !text.contains(ADMIN_TOKEN));

    let revoked = admin_get(&server, "/admin/v1/audit?kind=device.revoked").await;
    assert_eq!(revoked["events"].as_array().expect("events").len(), 1);
    let about = admin_get(&server, &format!("/admin/v1/audit?subject={device}")).await;
    assert_eq!(about["events"].as_array().expect("events").len(), 2);
    // Paging: two by two, no event twice, none missed.
    let mut seen = Vec::new();
    let mut path = "/admin/v1/audit?limit=2".to_owned();
    loop {
        let page = admin_get(&server, &path).await;
        for e in page["events"].as_array().expect("events") {
            seen.push(e["id"].as_str().expect("id").to_owned());
        }
        match page["next"].as_str() {
            Some(next) => path = format!("/admin/v1/audit?limit=2&before={next}"),
            None => break,
        }
    }
    let ids: Vec<&str> = events
        .iter()
        .map(|e| e["id"].as_str().expect("id"))
        .collect();
    assert_eq!(seen, ids);
    // Bad limits are refused, not clamped silently.
    let r = http()
        .get(format!("{}/admin/v1/audit?limit=5000", server.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 422);
    server.stop().await;
}

#[tokio::test]
async fn dashboard_stats_count_enrollments_attestations_sms_and_refusals() {
    let server = TestServer::start("dynamic").await;
    let a = server.enrolled("stats-a").await;
    let b = server.enrolled("stats-b").await;
    let device_b = device_of(&b);
    // A failed attestation, an SMS sent and one blocked, and device b revoked then refused 3
    // times: refusals of a proven device.
    dashboard_traffic(&server, &a, &b, 3).await;
    // A made-up key names no device: it counts against the IP only.
    let r = http()
        .get(format!("{}/v1/device", server.base))
        .header("moat-device-key", "mk_nope_nope")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);

    let stats = admin_get(&server, "/admin/v1/stats?days=7").await;
    let t = &stats["totals"];
    assert_eq!(t["enrollments"], 2, "{stats}");
    assert_eq!(t["attestation_fail"], 1, "{stats}");
    assert_eq!(t["attestation_pass"], 0, "{stats}");
    assert_eq!(t["attestation_pass_rate"], 0.0, "{stats}");
    assert_eq!(t["sms_sent"], 1, "{stats}");
    assert_eq!(t["sms_blocked"], 1, "{stats}");
    assert_eq!(t["sms_estimated_spend"], 0.05, "{stats}");
    assert_eq!(t["currency"], "USD");
    assert_eq!(stats["dates"].as_array().expect("dates").len(), 7);
    let today = stats["to"].as_str().expect("to");
    assert_eq!(
        stats["enrollments"],
        json!([{"date": today, "label": "dynamic/builtin", "value": 2}])
    );
    assert_eq!(
        stats["top_refused_devices"],
        json!([{"key": device_b, "count": 3}])
    );
    // 3 revoked + 1 unknown key + 1 SMS cooldown, all from loopback.
    assert_eq!(
        stats["top_refused_ips"],
        json!([{"key": "127.0.0.1", "count": 5}])
    );
    // Refusals by reason, and per route.
    assert_eq!(t["refusals"], 5, "{stats}");
    let mut reasons: Vec<(String, i64)> = stats["refusals"]
        .as_array()
        .expect("refusals")
        .iter()
        .map(|p| {
            assert_eq!(p["date"], today);
            (
                p["label"].as_str().expect("label").to_owned(),
                p["value"].as_i64().expect("value"),
            )
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            ("credential_invalid".to_owned(), 1),
            ("device_revoked".to_owned(), 3),
            ("sms_blocked".to_owned(), 1)
        ]
    );
    // The same refusals in the last 24 hours by hour (in the current one, unless the test
    // ran across an hour's end).
    let hours = stats["hours"].as_array().expect("hours");
    assert_eq!(hours.len(), 24);
    assert!(
        hours
            .iter()
            .all(|h| h.as_str().is_some_and(|h| h.ends_with(":00Z")))
    );
    let hourly: i64 = stats["refusals_hourly"]
        .as_array()
        .expect("hourly")
        .iter()
        .inspect(|p| assert!(hours.contains(&p["date"]), "{p}"))
        .map(|p| p["value"].as_i64().expect("value"))
        .sum();
    assert_eq!(hourly, 5, "{stats}");
    let route = |name: &str| {
        stats["routes"]
            .as_array()
            .expect("routes")
            .iter()
            .find(|r| r["route"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {stats}"))
    };
    let device = route("/v1/device");
    assert_eq!(
        (&device["kind"], &device["requests"], &device["refused"]),
        (&json!("api"), &json!(4), &json!(4)),
        "{stats}"
    );
    assert!(device["mean_ms"].as_f64().is_some_and(|m| m >= 0.0));
    assert!(device["p95_ms_at_most"].as_u64().is_some(), "{stats}");
    assert_eq!(route("/api/register")["refused"], 1);
    assert_eq!(route("/v1/attest")["refused"], 0);
    // The counters are in the store: another flush adds nothing twice.
    let again = admin_get(&server, "/admin/v1/stats?days=7").await;
    assert_eq!(again["totals"], stats["totals"]);
    assert_eq!(again["refusals"], stats["refusals"]);
    server.stop().await;
}

#[tokio::test]
async fn the_dashboard_page_is_served_with_a_strict_policy() {
    let server = TestServer::start("dynamic").await;
    let r = http()
        .get(format!("{}/admin/", server.admin))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("unsafe-inline"));
    let page = r.text().await.expect("text");
    assert!(page.contains("/admin/dashboard.js"));
    // The page holds no data; the API behind it still needs the token.
    let r = http()
        .get(format!("{}/admin/v1/stats", server.admin))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    server.stop().await;
}
