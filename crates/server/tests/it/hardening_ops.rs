//! Hardening II: files at rest, revocations that outlive the cleanup, unauthenticated admin
//! floods, and attestation challenges that do not tell registered apps from others.

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;

use moat_server::Config;
use moat_server::clock::ManualClock;

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
    let data = server._dir.path().join("data");
    let mode = mode_of(&data);
    assert_eq!(mode, 0o700, "created 0700, not {mode:03o}");
    // Writes: enrollments and their audit events, through the WAL.
    for i in 0..3 {
        server.enrolled(&format!("files-{i}")).await;
    }
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&data).expect("list") {
        let path = entry.expect("entry").path();
        seen.push(path.file_name().expect("name").to_string_lossy().into_owned());
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
