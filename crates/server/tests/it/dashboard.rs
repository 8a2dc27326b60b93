//! The admin dashboard end to end in headless Chromium (Debian's `chromium`, driven by
//! Playwright from `tests/dashboard/drive.mjs`): sign-in, figures and charts drawn from real
//! traffic (refusals by reason, traffic and latency per route and upstream), search and
//! revoke, and a screenshot that is decoded and checked.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderMap, Method};
use moat_client::{Auth, CallOptions, Client};
use serde_json::{Value, json};

use super::support::*;

fn titles_of(seen: &Value) -> Vec<&str> {
    seen["bar_titles"]
        .as_array()
        .expect("titles")
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `tests/dashboard/node_modules` from its lockfile, installed on first use.
fn playwright() -> PathBuf {
    let dir = repo().join("tests/dashboard");
    if !dir.join("node_modules/playwright-core").exists() {
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
            .current_dir(&dir)
            .status()
            .expect("npm");
        assert!(status.success(), "npm ci in tests/dashboard failed");
    }
    dir.join("drive.mjs")
}

/// Pixels of exactly this colour in an RGBA/RGB PNG, and the image's size.
fn count_colour(png_path: &Path, rgb: [u8; 3]) -> (u32, u32, usize, usize) {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png_path).expect("screenshot"),
    ));
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("png frame");
    let channels = info.color_type.samples();
    let pixels = &buf[..info.buffer_size()];
    let mut matching = 0;
    let mut distinct = std::collections::HashSet::new();
    for px in pixels.chunks(channels) {
        if px[..3] == rgb {
            matching += 1;
        }
        if distinct.len() < 10_000 {
            distinct.insert([px[0], px[1], px[2]]);
        }
    }
    (info.width, info.height, matching, distinct.len())
}

/// An upstream that answers every request after 30 ms.
async fn slow_upstream() -> String {
    let app = axum::Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_millis(30)).await;
        axum::Json(json!({"ok": true}))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    format!("http://{addr}")
}

async fn send(method: Method, url: &str, headers: &HeaderMap, body: Option<Vec<u8>>) -> u16 {
    let mut req = http().request(method, url).headers(headers.clone());
    if let Some(b) = body {
        req = req.body(b);
    }
    req.send().await.expect("send").status().as_u16()
}

/// Refusals with known codes beyond [`dashboard_traffic`]'s, and gateway traffic: two calls
/// with a made-up key (`credential_invalid`), one signature over another query
/// (`signature_invalid`), one signed request sent twice (`replay_detected`), and three calls
/// to the rate-limited `/events` upstream route (burst 2: the third is `rate_limited`).
async fn refusal_traffic(server: &TestServer, a: &Client) {
    for _ in 0..2 {
        let r = http()
            .get(format!("{}/v1/device", server.base))
            .header("moat-device-key", "mk_nope_nope")
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 401);
    }
    let signed = CallOptions {
        auth: Auth::InstallationSignature,
        ..opts()
    };
    let (_, headers, _) = a
        .prepare(&Method::GET, "/v1/device?page=1", None, &signed)
        .expect("prepare");
    let url = format!("{}/v1/device", server.base);
    assert_eq!(send(Method::GET, &url, &headers, None).await, 401);
    let (url, headers, body) = a
        .prepare(
            &Method::POST,
            "/v1/device/echo",
            Some(&json!({"n": 1})),
            &signed,
        )
        .expect("prepare");
    assert_eq!(
        send(Method::POST, url.as_str(), &headers, body.clone()).await,
        200
    );
    assert_eq!(send(Method::POST, url.as_str(), &headers, body).await, 401);
    for expected in [200, 200, 429] {
        let r = a
            .call(Method::GET, "/events/today", None, opts())
            .await
            .expect("gateway");
        assert_eq!(r.status, expected, "{}", String::from_utf8_lossy(&r.body));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_real_traffic_and_revokes_in_chromium() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "headless Chromium is needed at {chromium} (Debian package `chromium`; .ci/run installs it)"
    );
    let script = tokio::task::spawn_blocking(playwright).await.expect("npm");
    let up = slow_upstream().await;
    let server = TestServer::start_with(
        "dynamic",
        &format!(
            "[[route]]\nprefix = \"/events\"\nupstream = \"{up}/base\"\nrequire = [\"device\"]\n\
             rate_limit = {{ key = \"device\", per_second = 1, burst = 2 }}\n\
             [[route]]\nprefix = \"/quiet\"\nupstream = \"{up}/quiet\"\nrequire = [\"device\"]\n"
        ),
    )
    .await;
    let a = server.enrolled("dash-a").await;
    let b = server.enrolled("dash-b").await;
    let target = server.enrolled("dash-target").await;
    let (id_b, id_target) = (device_of(&b), device_of(&target));
    // A failed attestation, an SMS sent and one blocked by the cooldown; device b revoked
    // through the API, then still calling: the most refused device.
    dashboard_traffic(&server, &a, &b, 4).await;
    refusal_traffic(&server, &a).await;
    let id_a = device_of(&a);

    // What the API says, to compare with what the page shows.
    let stats = admin_get(&server, "/admin/v1/stats?days=14").await;
    assert_eq!(stats["time_zone"], "UTC");
    assert_eq!(stats["totals"]["refusals"], 10, "{stats}");
    let routes = stats["routes"].as_array().expect("routes");
    let events = routes
        .iter()
        .find(|r| r["route"] == "/events")
        .expect("the upstream route, its three patterns in one row");
    assert_eq!(events["kind"], "upstream");
    assert_eq!(
        events["upstream"],
        up.as_str(),
        "the upstream's origin, no path"
    );
    assert!(
        !routes.iter().any(|r| r["route"] == "/events/{*rest}"),
        "{stats}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let shot = dir.path().join("dashboard.png");
    let (admin, target_id, shot_arg) = (
        server.admin.clone(),
        id_target.clone(),
        shot.display().to_string(),
    );
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(script)
            .args([&admin, ADMIN_TOKEN, &target_id, &shot_arg])
            .env("CHROMIUM", chromium)
            .output()
            .expect("node")
    })
    .await
    .expect("drive");
    assert!(
        out.status.success(),
        "drive.mjs failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).expect("json");

    // No script error and no CSP violation on the page.
    assert_eq!(seen["page_errors"], json!([]), "{seen}");
    let console: Vec<&str> = seen["console_errors"]
        .as_array()
        .expect("console")
        .iter()
        .filter_map(Value::as_str)
        // The wrong-token attempt is a 401 fetch, which Chromium reports on the console.
        .filter(|m| !m.contains("401"))
        .collect();
    assert!(console.is_empty(), "{console:?}");
    assert_eq!(seen["login_visible"], true);
    assert_eq!(seen["wrong_token_message"], "The token was refused.");
    assert_eq!(seen["app_visible_after_wrong_token"], false);
    assert_eq!(
        seen["tiles"],
        json!({"enrollments": "3", "pass_rate": "0.0%", "sms_sent": "1", "sms_blocked": "1", "spend": "0.05 USD", "refused": "10"}),
        "{seen}"
    );
    // Refusals by reason: every refusal the traffic made, under its code, with its count.
    assert_eq!(
        seen["reasons"],
        json!({
            "device_revoked": "4", "credential_invalid": "2", "sms_blocked": "1",
            "signature_invalid": "1", "replay_detected": "1", "rate_limited": "1",
        }),
        "{seen}"
    );
    assert_eq!(seen["reason_names"]["device_revoked"], "Revoked device");
    assert_eq!(seen["reason_names"]["replay_detected"], "Replay");
    // Today's refusal bars: one segment per reason.
    assert_eq!(seen["refusal_bars"], 6, "{seen}");
    assert!(
        titles_of(&seen)
            .iter()
            .any(|t| t.ends_with("device_revoked: 4")),
        "{seen}"
    );
    // The last 24 hours by hour: the same refusals, each code's segments adding up to its
    // count (all in the current hour, unless the test ran across an hour's end), and the
    // last bar is the current hour.
    let mut by_code: std::collections::BTreeMap<String, i64> = Default::default();
    for title in seen["hourly_titles"].as_array().expect("titles") {
        let (_, label) = title
            .as_str()
            .expect("title")
            .split_once(' ')
            .expect("hour label");
        let (code, n) = label.rsplit_once(": ").expect("code: n");
        *by_code.entry(code.to_owned()).or_default() += n.parse::<i64>().expect("n");
    }
    assert_eq!(
        serde_json::to_value(&by_code).expect("json"),
        json!({
            "device_revoked": 4, "credential_invalid": 2, "sms_blocked": 1,
            "signature_invalid": 1, "replay_detected": 1, "rate_limited": 1,
        }),
        "{seen}"
    );
    assert!(
        seen["hourly_bars"].as_u64().is_some_and(|n| n >= 6),
        "{seen}"
    );
    let hour = stats["hours"][23].as_str().expect("hour");
    assert_eq!(
        seen["hourly_ticks"].as_array().expect("ticks").last(),
        Some(&json!(hour[11..16])),
        "{seen}"
    );
    // Per route: requests, refusals and a latency figure; the upstream route in one row,
    // named with its upstream, and slower than the upstream's 30 ms on the calls it passed.
    let route = |r: &str| seen["routes"][r].clone();
    assert_eq!(route("/events")["requests"], "3", "{seen}");
    assert_eq!(route("/events")["refused"], "1", "{seen}");
    assert_eq!(route("/events")["upstream"], up.as_str(), "{seen}");
    let mean: f64 = route("/events")["mean"]
        .as_str()
        .and_then(|m| m.strip_suffix(" ms"))
        .and_then(|m| m.parse().ok())
        .expect("a mean latency in ms");
    assert!(
        mean >= 20.0,
        "two of three calls waited 30 ms upstream: {mean}"
    );
    assert!(
        route("/events")["p95"]
            .as_str()
            .is_some_and(|p| p.starts_with("≤ ") || p == "> 2.5 s"),
        "{seen}"
    );
    assert_eq!(route("/v1/device/echo")["requests"], "2", "{seen}");
    assert_eq!(route("/v1/device/echo")["refused"], "1", "{seen}");
    assert_eq!(route("/v1/device/echo")["upstream"], "Moat", "{seen}");
    assert_eq!(route("/api/register")["refused"], "1", "{seen}");
    assert_eq!(route("/v1/device")["refused"], "7", "{seen}");
    // A gateway route nobody called is listed, without a latency.
    assert_eq!(
        route("/quiet"),
        json!({"upstream": up, "requests": "0", "refused": "0", "share": "–", "mean": "–", "p95": "–"}),
        "{seen}"
    );
    for (name, r) in seen["routes"].as_object().expect("routes") {
        if name != "/quiet" {
            assert!(
                r["mean"].as_str().is_some_and(|m| m.ends_with(" ms")),
                "{seen}"
            );
        }
    }
    // One time zone, stated, and every time on the page written in it.
    assert_eq!(seen["time_zone"], "All times UTC");
    assert!(
        seen["status_line"]
            .as_str()
            .is_some_and(|s| s.contains("(UTC days)") && s.ends_with(" UTC")),
        "{seen}"
    );
    for when in seen["audit_times"].as_array().expect("times") {
        let when = when.as_str().expect("text");
        assert!(
            when.len() == 19 && when.as_bytes()[10] == b' ' && !when.contains('T'),
            "{when}"
        );
    }
    // Today's bars: one enrollment series, one attestation series, SMS sent and blocked.
    assert_eq!(
        seen["bars"],
        json!({"enroll": 1, "attest": 1, "sms": 2}),
        "{seen}"
    );
    let titles = titles_of(&seen);
    assert!(
        titles.iter().any(|t| t.ends_with("dynamic/builtin: 3")),
        "{titles:?}"
    );
    assert!(titles.iter().any(|t| t.ends_with("fail: 1")), "{titles:?}");
    // b kept calling after its revocation; a was refused a replay and a rate limit.
    assert_eq!(seen["top_devices"], json!([id_b, id_a]), "{seen}");
    assert_eq!(seen["top_ips"], json!(["127.0.0.1"]), "{seen}");
    let kinds = seen["audit_kinds"].as_array().expect("kinds");
    assert!(kinds.contains(&json!("device.revoked")), "{seen}");
    assert!(kinds.contains(&json!("admin.denied")), "{seen}");
    assert_eq!(seen["search_rows"], 1);
    assert_eq!(seen["armed_label"], "Confirm revoke");
    assert_eq!(seen["status_after_revoke"], "revoked");
    assert_eq!(seen["login_visible_after_signout"], true);
    assert_eq!(seen["token_kept"], 0);

    // The revocation made in the browser is real: the device is refused from now on.
    let r = target
        .call(Method::GET, "/v1/device", None, opts())
        .await
        .expect("call");
    assert_problem(&r, 403, "device_revoked");

    // The screenshot: the viewport's size, and the bars drawn in their colours (used nowhere
    // else on the page): the failed attestation in red, the blocked SMS in amber.
    let (width, height, red, distinct) = count_colour(&shot, [0xc0, 0x39, 0x2b]);
    let (_, _, amber, _) = count_colour(&shot, [0xe0, 0xa1, 0x00]);
    // The whole page, so the refusal and route panels below the fold are in it too.
    assert_eq!(width, 1280);
    assert!(height > 1000, "{height}");
    // The revoked device's refusals in their colour (used for nothing else).
    let (_, _, purple, _) = count_colour(&shot, [0x6c, 0x34, 0x83]);
    assert!(
        purple > 500,
        "refusal bar not in the screenshot ({purple} pixels)"
    );
    assert!(
        red > 500,
        "attestation bar not in the screenshot ({red} pixels)"
    );
    assert!(
        amber > 500,
        "SMS bar not in the screenshot ({amber} pixels)"
    );
    assert!(distinct > 20, "screenshot looks blank ({distinct} colours)");
    // MOAT_DASHBOARD_SCREENSHOT=path keeps a copy (docs/operations.md shows one).
    if let Ok(keep) = std::env::var("MOAT_DASHBOARD_SCREENSHOT") {
        std::fs::copy(&shot, keep).expect("keep screenshot");
    }
    server.stop().await;
}
