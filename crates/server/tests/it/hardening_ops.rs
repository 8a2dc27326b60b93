//! Hardening II: files at rest, revocations that outlive the cleanup, unauthenticated admin
//! floods, and attestation challenges that do not tell registered apps from others.

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;

use moat_core::clock::ManualClock;
use moat_server::Config;

use super::support::*;

fn mode_of(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn config_for(data: &std::path::Path) -> Config {
    let toml = format!(
        "[server]\npublic_base_url = \"http://127.0.0.1:1\"\ndata_dir = \"{}\"\n\
         [admin]\ntoken = \"{ADMIN_TOKEN}\"\n[enrollment]\nmode = \"dynamic\"\n",
        data.display()
    );
    Config::load(Some(&toml), &Vec::new()).expect("config")
}

#[tokio::test]
async fn a_data_directory_others_can_reach_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let Err(err) = moat_server::build_state(config_for(&data), Arc::new(ManualClock::new())).await
    else {
        panic!("started with a 0755 data directory");
    };
    let message = err.to_string();
    assert!(
        message.contains(&data.display().to_string())
            && message.contains("755")
            && message.contains("chmod 700"),
        "names the directory, its mode and the fix: {message}"
    );
    // Nothing was written into it.
    assert_eq!(std::fs::read_dir(&data).expect("list").count(), 0);
    // 0750 lets the group in: refused too.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o750)).expect("chmod");
    assert!(
        moat_server::build_state(config_for(&data), Arc::new(ManualClock::new()))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn the_data_directory_and_every_file_in_it_are_private() {
    let server = TestServer::start("dynamic").await;
    let data = server.data_dir();
    let mode = mode_of(&data);
    assert_eq!(mode, 0o700, "created 0700, not {mode:03o}");
    // Writes: enrollments and their audit events, through the WAL.
    for i in 0..3 {
        server.enrolled(&format!("files-{i}")).await;
    }
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&data).expect("list") {
        let path = entry.expect("entry").path();
        seen.push(
            path.file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned(),
        );
        let mode = mode_of(&path);
        assert_eq!(mode, 0o600, "{} is {mode:03o}", path.display());
    }
    seen.sort();
    for name in ["moat.db", "moat.db-shm", "moat.db-wal", "secrets.json"] {
        assert!(seen.iter().any(|s| s == name), "{name} in {seen:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_revoked_device_stays_revoked_after_the_dormancy_cleanup() {
    let server = TestServer::start("dynamic").await;
    let mut c = server.enrolled("tomb-1").await;
    let device = device_of(&c);
    assert_eq!(
        admin_post(&server, &format!("/admin/v1/devices/{device}/revoke")).await,
        200
    );
    // Past the dormancy period (90 days), then one cleanup pass.
    server.advance((moat_server::config::DEFAULT_DORMANT_DAYS + 1) * 86_400);
    c.set_clock_offset(server.clock.offset());
    let removed = moat_server::cleanup::run_once(&server.state)
        .await
        .expect("cleanup");
    // The same installation and device id cannot enroll again.
    let err = c
        .enroll("tomb-1", Some("android"))
        .await
        .expect_err("re-enrollment after the cleanup refused");
    assert!(
        matches!(&err, moat_client::Error::Problem { status: 403, code, .. } if code == "device_revoked"),
        "{err}"
    );
    // The row stayed, without its credential.
    assert_eq!(removed.store.dormant_devices, 0);
    assert_eq!(removed.store.revoked_credentials, 1);
    // Its old key opens nothing.
    let r = c
        .call(http::Method::GET, "/v1/device", None, opts())
        .await
        .expect("call");
    assert!(r.status == 401 || r.status == 403, "{}", r.status);
    server.stop().await;
}

/// The `admin.denied` events, newest first.
async fn denied_events(server: &TestServer) -> Vec<serde_json::Value> {
    admin_get(server, "/admin/v1/audit?kind=admin.denied&limit=500").await["events"]
        .as_array()
        .expect("events")
        .clone()
}

#[tokio::test]
async fn a_flood_of_unauthenticated_admin_calls_writes_a_bounded_audit_trail() {
    let server = TestServer::start("dynamic").await;
    // 300 at once, each with a long client-chosen path.
    let long_id = "x".repeat(4000);
    // One client (building one loads the root certificates: 300 would take seconds).
    let client = http();
    let calls = (0..300).map(|i| {
        let url = format!("{}/admin/v1/devices/{long_id}{i}/revoke", server.admin);
        let client = client.clone();
        async move {
            client
                .post(url)
                .bearer_auth("not-the-token")
                .send()
                .await
                .expect("send")
                .status()
        }
    });
    let statuses = futures::future::join_all(calls).await;
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");

    // One address, one window: the first call in full, the others only counted so far.
    let events = denied_events(&server).await;
    assert_eq!(events.len(), 1, "admin.denied rows after the flood");
    let first = &events[0];
    assert_eq!(first["ip"], "127.0.0.1");
    assert_eq!(first["detail"]["method"], "POST");
    let path = first["detail"]["path"].as_str().expect("path");
    assert!(
        path.starts_with("/admin/v1/devices/xxx") && path.len() <= 128 + '…'.len_utf8(),
        "the client-chosen path is cut: {} bytes",
        path.len()
    );

    // Once the window has ended, one summary row counts the rest.
    server.advance(moat_observe::audit::DENIED_WINDOW + 1);
    moat_server::cleanup::run_once(&server.state)
        .await
        .expect("cleanup");
    let events = denied_events(&server).await;
    assert_eq!(
        events.len(),
        2,
        "admin.denied rows once the window has ended"
    );
    assert_eq!(events[0]["detail"]["repeats"], 299);
    assert_eq!(events[0]["ip"], "127.0.0.1");

    // Every call is counted.
    let metrics = http()
        .get(format!("{}/metrics", server.admin))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.lines().any(|l| l == "moat_admin_denied_total 300"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("admin_denied"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    server.stop().await;
}

/// `(offset, length)` ranges of one challenge for `app` / `version`.
async fn challenge_ranges(c: &moat_client::Client, app: &str, version: &str) -> Vec<(u64, u64)> {
    let r = c
        .call(
            http::Method::POST,
            "/v1/attest/challenge",
            Some(&serde_json::json!({"app_id": app, "version": version})),
            opts(),
        )
        .await
        .expect("challenge");
    assert_eq!(r.status, 200);
    let body: serde_json::Value = r.json().expect("json");
    let keys: Vec<&String> = body.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["challenge_id", "expires_in", "nonce", "ranges"]);
    body["ranges"]
        .as_array()
        .expect("ranges")
        .iter()
        .map(|r| {
            (
                r[0].as_u64().expect("offset"),
                r[1].as_u64().expect("length"),
            )
        })
        .collect()
}

/// The attacker's statistic: the largest offset + length over challenges, which approaches
/// the package size.
fn reach(challenges: &[Vec<(u64, u64)>]) -> u64 {
    challenges
        .iter()
        .flatten()
        .map(|(o, l)| o + l)
        .max()
        .expect("ranges")
}

#[tokio::test]
async fn challenge_ranges_do_not_tell_registered_apps_from_others() {
    let server = TestServer::start("dynamic").await;
    // Two registered packages an order of magnitude apart.
    const SIZES: [u64; 2] = [300_000, 3_000_000];
    for (app, size) in [
        ("com.example.small", SIZES[0]),
        ("com.example.large", SIZES[1]),
    ] {
        let package: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let r = http()
            .put(format!("{}/admin/v1/apps/{app}/2.0.0", server.admin))
            .bearer_auth(ADMIN_TOKEN)
            .body(package)
            .send()
            .await
            .expect("register");
        assert_eq!(r.status(), 200);
    }
    let c = server.enrolled("probe").await;

    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for _ in 0..30 {
        known.push(challenge_ranges(&c, "com.example.small", "2.0.0").await);
        unknown.push(challenge_ranges(&c, "com.example.unregistered", "2.0.0").await);
    }
    // Same shape: eight ranges of one length, for both.
    for ranges in known.iter().chain(&unknown) {
        assert_eq!(ranges.len(), 8);
        assert!(ranges.iter().all(|(_, l)| *l == 4096), "{ranges:?}");
    }
    let real = reach(&known);
    assert!(real <= SIZES[0] && real > SIZES[0] * 9 / 10, "{real}");
    // The statistic does not separate them: the decoy's reach is within a factor of two of
    // a registered package's size (before, it was 24 MiB whatever was registered).
    let decoy = reach(&unknown);
    assert!(
        SIZES.iter().any(|n| (n / 2..=n * 2).contains(&decoy)),
        "registered {SIZES:?}, unregistered reaches {decoy}"
    );
    // Repeated challenges for the unknown app are consistent with one fixed size: each one
    // reaches past an eighth of the largest reach (eight uniform ranges all fall below an
    // eighth of a fixed size once in 16 million), which sizes drawn anew per challenge from
    // the two registered ones, an order of magnitude apart, would break.
    for ranges in &unknown {
        let own = reach(std::slice::from_ref(ranges));
        assert!(own > decoy / 8, "{own} against {decoy}: {ranges:?}");
    }
    // And the two halves reach the same size within 10 %.
    let (first, second) = (reach(&unknown[..15]), reach(&unknown[15..]));
    assert!(
        first.abs_diff(second) * 10 <= first.max(second),
        "{first} vs {second}"
    );
    server.stop().await;
}
