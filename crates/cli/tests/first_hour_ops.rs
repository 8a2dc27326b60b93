//! The operator's first hour: `moat admin` refuses a store that does not exist (instead of
//! creating an empty one and acting on it), says which configuration and store it opened,
//! needs no secret it does not use, and drives a running server through `--admin-url`.

mod common;

use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use common::{free_port, moat, ok, run};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A `moat serve --config moat.toml` child in `dir`, killed when dropped.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(dir: &Path, env: &[(&str, &str)], port: u16) -> Serve {
    let mut cmd = moat();
    cmd.args(["serve", "--config", "moat.toml"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (name, value) in env {
        cmd.env(name, value);
    }
    let child = Serve(cmd.spawn().expect("spawn moat serve"));
    moat_testkit::wait_for_http_ok(port, "/healthz", Duration::from_secs(30));
    child
}

fn enroll(dir: &Path, base: &str) -> String {
    let enrolled = ok(&run(dir, &["device", "enroll", "--server", base]));
    enrolled["credential"]["device"]
        .as_str()
        .expect("device")
        .to_owned()
}

#[test]
fn admin_in_a_directory_without_a_store_refuses_and_creates_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    for args in [
        &["admin", "devices", "list"][..],
        &["admin", "keys", "rotate"],
        &[
            "admin",
            "devices",
            "revoke",
            "0190b6c2-7c4e-7a3b-9f00-000000000001",
        ],
    ] {
        let out = run(dir.path(), args);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("embedded defaults")
                && err.contains("sqlite://./moat-data/moat.db")
                && err.contains("there is no store")
                && err.contains("--create"),
            "says which configuration and store, and how to proceed: {err}"
        );
        assert!(out.stdout.is_empty(), "no empty table");
        assert!(
            !dir.path().join("moat-data").exists(),
            "{args:?} created a data directory"
        );
    }
    // Told to, it creates the store.
    let created = ok(&run(
        dir.path(),
        &["admin", "devices", "list", "--create", "--json"],
    ));
    assert_eq!(created["devices"], serde_json::json!([]));
    assert!(dir.path().join("moat-data/moat.db").exists());
    assert!(dir.path().join("moat-data/secrets.json").exists());
    // And from then on it exists.
    ok(&run(dir.path(), &["admin", "devices", "list", "--json"]));
}

#[test]
fn admin_revokes_without_the_gateway_and_sms_secrets_it_does_not_use() {
    let dir = tempfile::tempdir().expect("tmp");
    let (port, admin) = (free_port(), free_port());
    std::fs::write(
        dir.path().join("moat.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\npublic_base_url = \"http://127.0.0.1:{port}\"\n\
             [admin]\nlisten = \"127.0.0.1:{admin}\"\n\
             [sms]\nsender = \"twilio\"\n[sms.twilio]\naccount_sid = \"AC123\"\n\
             auth_token = \"env:FIRST_HOUR_TWILIO_TOKEN\"\nfrom = \"+15005550006\"\n\
             [[route]]\nprefix = \"/proxy/maps\"\nupstream = \"http://127.0.0.1:9\"\n\
             inject_headers = {{ \"X-Api-Key\" = \"env:FIRST_HOUR_MAPS_KEY\" }}\nrequire = [\"device\"]\n"
        ),
    )
    .expect("config");
    let server = serve(
        dir.path(),
        &[
            ("FIRST_HOUR_MAPS_KEY", "maps-secret"),
            ("FIRST_HOUR_TWILIO_TOKEN", "twilio-secret"),
        ],
        port,
    );
    let device = enroll(dir.path(), &format!("http://127.0.0.1:{port}"));
    // The admin command's environment has neither secret.
    let out = moat()
        .args([
            "admin",
            "--config",
            "moat.toml",
            "devices",
            "revoke",
            &device,
            "--json",
        ])
        .current_dir(dir.path())
        .env_remove("FIRST_HOUR_MAPS_KEY")
        .env_remove("FIRST_HOUR_TWILIO_TOKEN")
        .output()
        .expect("run");
    let revoked = ok(&out);
    assert_eq!(revoked["status"], "revoked");
    let err = stderr(&out);
    assert!(
        err.contains("configuration moat.toml") && err.contains("moat-data/moat.db"),
        "names the configuration and store it opened: {err}"
    );
    let list = ok(&run(
        dir.path(),
        &[
            "admin",
            "--config",
            "moat.toml",
            "devices",
            "list",
            "--json",
        ],
    ));
    assert_eq!(list["devices"][0]["status"], "revoked");
    drop(server);
}

#[test]
fn admin_url_lists_and_revokes_through_a_running_server() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = common::Server::start(dir.path(), "dynamic");
    let device = enroll(dir.path(), &server.base);
    let secrets: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("moat-data/secrets.json")).expect("secrets"),
    )
    .expect("json");
    let token = secrets["admin_token"].as_str().expect("token").to_owned();
    let url = format!("http://127.0.0.1:{}", server.admin_port);
    // From somewhere else entirely: no store, no configuration.
    let elsewhere = tempfile::tempdir().expect("tmp");
    let admin = |args: &[&str], token: &str| {
        moat()
            .arg("admin")
            .args(["--admin-url", &url])
            .args(args)
            .current_dir(elsewhere.path())
            .env("MOAT_ADMIN_TOKEN", token)
            .output()
            .expect("run")
    };
    let out = admin(&["devices", "list", "--json"], &token);
    let list = ok(&out);
    assert_eq!(list["devices"][0]["id"], device.as_str());
    assert_eq!(list["devices"][0]["status"], "active");
    assert!(stderr(&out).contains(&format!("admin API at {url}")));
    let revoked = ok(&admin(&["devices", "revoke", &device, "--json"], &token));
    assert_eq!(revoked["status"], "revoked");
    // The server revoked it itself: refused at once.
    let after = run(dir.path(), &["device", "call", "GET", "/v1/device"]);
    assert!(String::from_utf8_lossy(&after.stdout).contains("device_revoked"));
    // The same operation as on the store: audited, by the admin API.
    let audit = ok(&admin(
        &["audit", "--kind", "device.revoked", "--json"],
        &token,
    ));
    assert_eq!(audit["events"][0]["subject"], device.as_str());
    assert_eq!(audit["events"][0]["actor"], "admin");
    // A file of ids, through the same call.
    let second = ok(&run(
        dir.path(),
        &[
            "device",
            "--state",
            "second.json",
            "enroll",
            "--server",
            &server.base,
        ],
    ))["credential"]["device"]
        .as_str()
        .expect("device")
        .to_owned();
    std::fs::write(
        elsewhere.path().join("ids.txt"),
        format!("{second}\n0190b6c2-7c4e-7a3b-9f00-000000000002\n"),
    )
    .expect("ids");
    let report = ok(&admin(
        &["devices", "revoke", "--file", "ids.txt", "--json"],
        &token,
    ));
    assert_eq!(
        (report["revoked"].as_u64(), report["not_found"].as_u64()),
        (Some(1), Some(1))
    );
    let unknown = admin(
        &["devices", "revoke", "0190b6c2-7c4e-7a3b-9f00-000000000001"],
        &token,
    );
    assert_eq!(unknown.status.code(), Some(1));
    assert!(stderr(&unknown).contains("no device"));
    // A wrong token: refused, and said so.
    let refused = admin(&["devices", "list"], "not-the-token");
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("refused the token"),
        "{}",
        stderr(&refused)
    );
    // No token at all: a usage error.
    let missing = moat()
        .args(["admin", "--admin-url", &url, "devices", "list"])
        .current_dir(elsewhere.path())
        .env_remove("MOAT_ADMIN_TOKEN")
        .output()
        .expect("run");
    assert_eq!(missing.status.code(), Some(64));
    assert!(!elsewhere.path().join("moat-data").exists());
}

#[test]
fn doctor_checks_the_data_key_reference_without_showing_the_key() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("moat.toml"),
        "[server]\ndata_key = \"env:FIRST_HOUR_DATA_KEY\"\n",
    )
    .expect("config");
    let key = "8J2Q7kHh3n4bXo6yS0m1aZc9fVqLrT5uWpEiKdGjNsA";
    let doctor = |value: Option<&str>| {
        let mut cmd = moat();
        cmd.args(["doctor", "--config", "moat.toml", "--json"])
            .current_dir(dir.path())
            .env("MOAT_SERVER__LISTEN", format!("127.0.0.1:{}", free_port()))
            .env("MOAT_ADMIN__LISTEN", format!("127.0.0.1:{}", free_port()))
            .env_remove("FIRST_HOUR_DATA_KEY");
        if let Some(value) = value {
            cmd.env("FIRST_HOUR_DATA_KEY", value);
        }
        let out = cmd.output().expect("doctor");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let check = report["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .find(|c| c["name"] == "server.data_key")
            .cloned()
            .expect("a server.data_key check");
        (check, String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (unset, _) = doctor(None);
    assert_eq!(unset["status"], "fail", "{unset}");
    assert!(
        unset["detail"]
            .as_str()
            .unwrap_or("")
            .contains("FIRST_HOUR_DATA_KEY")
    );
    let (short, _) = doctor(Some("c2hvcnQ"));
    assert_eq!(short["status"], "fail", "{short}");
    let (good, all) = doctor(Some(key));
    assert_eq!(good["status"], "ok", "{good}");
    assert!(
        good["detail"].as_str().unwrap_or("").contains("dk_"),
        "{good}"
    );
    assert!(!all.contains(key), "the key itself is never shown");
}
