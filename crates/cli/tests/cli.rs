//! The `moat` binary end to end: `serve` on embedded defaults plus environment overrides,
//! `device enroll/call` playing the app, `admin` commands, graceful shutdown on SIGTERM.

mod common;

use std::time::Duration;

use common::{Server, moat, mode_of, ok, run, server_base_port};

#[test]
fn otp_mode_through_the_cli() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = Server::start(dir.path(), "otp");
    let enrolled = ok(&run(
        dir.path(),
        &[
            "device",
            "enroll",
            "--server",
            &server.base,
            "--device-id",
            "cli-1",
            "--platform",
            "android",
        ],
    ));
    assert_eq!(enrolled["credential"]["kind"], "client_credential");
    let device = enrolled["credential"]["device"]
        .as_str()
        .expect("device")
        .to_owned();
    assert_eq!(mode_of(&dir.path().join("moat-device.json")), 0o600);
    assert_eq!(mode_of(&dir.path().join("moat-data/secrets.json")), 0o600);
    assert_eq!(mode_of(&dir.path().join("moat-data")), 0o700);
    let state = std::fs::read_to_string(dir.path().join("moat-device.json")).expect("state");
    let printed = String::from_utf8_lossy(&run(dir.path(), &["device", "show"]).stdout).to_string();
    assert!(
        state.contains("hmac_secret") && !printed.contains("hmac_secret"),
        "show prints no secret"
    );

    let info = ok(&run(dir.path(), &["device", "call", "GET", "/v1/device"]));
    assert_eq!(info["device"], device.as_str());
    let echo = ok(&run(
        dir.path(),
        &[
            "device",
            "call",
            "POST",
            "/v1/device/echo",
            "--data",
            r#"{"a":[1,2]}"#,
            "--encrypt",
        ],
    ));
    assert_eq!(echo["body"], serde_json::json!({"a": [1, 2]}));
    let signed = ok(&run(
        dir.path(),
        &[
            "device",
            "call",
            "GET",
            "/v1/device",
            "--auth",
            "installation",
        ],
    ));
    assert_eq!(signed["device"], device.as_str());
    let refused = run(
        dir.path(),
        &["device", "call", "GET", "/v1/device", "--auth", "none"],
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stdout).contains("credential_invalid"));

    // Admin commands work next to the running server (SQLite WAL).
    let list = ok(&run(dir.path(), &["admin", "devices", "list", "--json"]));
    assert_eq!(list["devices"][0]["id"], device.as_str());
    let cleaned = ok(&run(dir.path(), &["admin", "cleanup", "--once", "--json"]));
    assert_eq!(
        cleaned["enrollment_otps"], 1,
        "the used enrollment code is removed"
    );
    let out = run(dir.path(), &["admin", "devices", "revoke", &device]);
    assert!(out.status.success());
    // Revoked from another process: the running server sees it within its device cache bound
    // (cache.device_ttl_ms, 1 s by default).
    std::thread::sleep(Duration::from_millis(1100));
    let after = run(dir.path(), &["device", "call", "GET", "/v1/device"]);
    assert!(String::from_utf8_lossy(&after.stdout).contains("device_revoked"));

    let out = server.terminate();
    assert!(out.status.success(), "graceful exit: {out:?}");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        !log.contains("hmac_secret") && !log.contains("moat_sk_") && !log.contains("moat_dk_"),
        "no secret in logs"
    );
}

#[test]
fn dynamic_mode_is_the_default_and_bad_config_exits_64() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = Server::start(dir.path(), "dynamic");
    let enrolled = ok(&run(
        dir.path(),
        &["device", "enroll", "--server", &server.base],
    ));
    assert_eq!(enrolled["credential"]["kind"], "api_key");
    let info = ok(&run(dir.path(), &["device", "call", "GET", "/v1/device"]));
    assert_eq!(info["mode"], "dynamic");

    // The account endpoints through the CLI, the SMS code read from the outbox.
    let register = r#"{"phone":"+14155552671","password":"correct horse battery"}"#;
    let accepted = ok(&run(
        dir.path(),
        &[
            "device",
            "call",
            "POST",
            "/api/register",
            "--data",
            register,
        ],
    ));
    assert_eq!(accepted["status"], "accepted");
    let outbox = ok(&run(
        dir.path(),
        &[
            "admin",
            "sms",
            "outbox",
            "--phone",
            "+14155552671",
            "--json",
        ],
    ));
    let body = outbox["messages"][0]["body"]
        .as_str()
        .expect("sms body")
        .to_owned();
    let code: String = body
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .expect("code")
        .to_owned();
    let confirm = format!(r#"{{"phone":"+14155552671","otp":"{code}"}}"#);
    let created = ok(&run(
        dir.path(),
        &[
            "device",
            "call",
            "POST",
            "/api/register/confirm",
            "--data",
            &confirm,
        ],
    ));
    assert!(created["user_id"].is_string());
    std::fs::write(dir.path().join("app.apk"), vec![7u8; 100_000]).expect("package");
    let registered = ok(&run(
        dir.path(),
        &[
            "admin",
            "app",
            "register",
            "--app-id",
            "com.example.events",
            "--version",
            "1.0",
            "--file",
            "app.apk",
            "--json",
        ],
    ));
    assert_eq!(registered["size"], 100_000);
    let listed = run(dir.path(), &["admin", "app", "list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("com.example.events"));
    let secrets = ok(&run(dir.path(), &["admin", "integrity", "show", "--json"]));
    assert_eq!(secrets["alg"], "HS256");
    assert_eq!(secrets["keys"][0]["current"], true);
    let rotated = ok(&run(dir.path(), &["admin", "keys", "rotate", "--json"]));
    assert!(rotated["kid"].as_str().expect("kid").starts_with("ak_"));
    assert!(server.terminate().status.success());

    // Restart on the same data dir: secrets are reused, so the credential still works.
    let secrets = std::fs::read(dir.path().join("moat-data/secrets.json")).expect("secrets");
    let server = Server::start_on(dir.path(), "dynamic", &server_base_port(&enrolled));
    assert_eq!(
        std::fs::read(dir.path().join("moat-data/secrets.json")).expect("secrets"),
        secrets
    );
    let again = ok(&run(dir.path(), &["device", "call", "GET", "/v1/device"]));
    assert_eq!(again["device"], info["device"]);
    assert!(server.terminate().status.success());

    let bad = moat()
        .arg("serve")
        .current_dir(dir.path())
        .env("MOAT_ENROLLMENT__MODE", "magic")
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("enrollment.mode"));
}
