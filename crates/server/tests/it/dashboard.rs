//! The admin dashboard end to end in headless Chromium (Debian's `chromium`, driven by
//! Playwright from `tests/dashboard/drive.mjs`): sign-in, figures and charts drawn from real
//! traffic, search and revoke, and a screenshot that is decoded and checked.

use std::path::{Path, PathBuf};

use http::Method;
use serde_json::{Value, json};

use super::support::*;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_real_traffic_and_revokes_in_chromium() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "headless Chromium is needed at {chromium} (Debian package `chromium`; .ci/run installs it)"
    );
    let script = tokio::task::spawn_blocking(playwright).await.expect("npm");
    let server = TestServer::start("dynamic").await;
    let a = server.enrolled("dash-a").await;
    let b = server.enrolled("dash-b").await;
    let target = server.enrolled("dash-target").await;
    let (id_b, id_target) = (device_of(&b), device_of(&target));
    // A failed attestation, an SMS sent and one blocked by the cooldown; device b revoked
    // through the API, then still calling: the most refused device.
    dashboard_traffic(&server, &a, &b, 4).await;

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
        json!({"enrollments": "3", "pass_rate": "0.0%", "sms_sent": "1", "sms_blocked": "1", "spend": "0.05 USD"}),
        "{seen}"
    );
    // Today's bars: one enrollment series, one attestation series, SMS sent and blocked.
    assert_eq!(
        seen["bars"],
        json!({"enroll": 1, "attest": 1, "sms": 2}),
        "{seen}"
    );
    let titles: Vec<&str> = seen["bar_titles"]
        .as_array()
        .expect("titles")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        titles.iter().any(|t| t.ends_with("dynamic/builtin: 3")),
        "{titles:?}"
    );
    assert!(titles.iter().any(|t| t.ends_with("fail: 1")), "{titles:?}");
    assert_eq!(seen["top_devices"], json!([id_b]), "{seen}");
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
    assert_eq!((width, height), (1280, 1000));
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
