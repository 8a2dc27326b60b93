//! Operator commands: `moat doctor`, bulk `admin devices revoke --file`, `--json` on admin
//! commands, and `moat completions`.

mod common;

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::{Server, free_port, moat, ok, run};
use serde_json::Value;

/// `moat doctor` in `dir` with the listeners on `listen` and `admin` (free ports unless a
/// test wants them taken).
fn doctor(dir: &Path, listen: u16, admin: u16, args: &[&str]) -> Output {
    moat()
        .arg("doctor")
        .args(args)
        .current_dir(dir)
        .env("MOAT_SERVER__LISTEN", format!("127.0.0.1:{listen}"))
        .env("MOAT_ADMIN__LISTEN", format!("127.0.0.1:{admin}"))
        .output()
        .expect("run moat doctor")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The check named `name` in `moat doctor --json` output.
#[track_caller]
fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {report:#}"))
}

/// Serves HTTP `204` to every request on a free port, for the reachable upstream.
fn http_stub() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    port
}

#[test]
fn doctor_passes_on_embedded_defaults_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let (listen, admin) = (free_port(), free_port());

    let out = doctor(dir.path(), listen, admin, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let human = text(&out.stdout);
    for name in [
        "config",
        "data_dir",
        "secrets",
        "store",
        "sms",
        "listen",
        "admin.listen",
        "admin.token",
    ] {
        assert!(
            human
                .lines()
                .any(|l| l.starts_with("ok ") && l.split_whitespace().nth(1) == Some(name)),
            "no ok line for {name}:\n{human}"
        );
    }
    assert!(human.contains("0 failed, 0 warnings"), "{human}");
    assert!(
        human.contains(&format!("127.0.0.1:{listen} is free")),
        "{human}"
    );

    let out = doctor(dir.path(), listen, admin, &["--json"]);
    assert_eq!(out.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&out.stdout).expect("doctor --json is JSON");
    assert_eq!(report["ok"], true);
    let checks = report["checks"].as_array().expect("checks");
    let mut names: Vec<&str> = checks
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "admin.listen",
            "admin.token",
            "config",
            "data_dir",
            "listen",
            "public_base_url",
            "secrets",
            "sms",
            "store"
        ],
        "only what the configuration names is checked (no Redis, Firebase, TLS or upstreams)"
    );
    for c in checks {
        assert_eq!(c["status"], "ok", "{c}");
        assert!(!c["detail"].as_str().expect("detail").is_empty(), "{c}");
    }
    assert!(
        check(&report, "store")["detail"]
            .as_str()
            .expect("detail")
            .contains("does not exist yet"),
        "{report:#}"
    );
    // Looked at, not created: the server makes the data directory on first start.
    assert!(
        !dir.path().join("moat-data").exists(),
        "doctor created the data directory"
    );
}

#[test]
fn doctor_fails_naming_an_unreachable_redis_and_upstream() {
    let dir = tempfile::tempdir().expect("tmp");
    let (redis_port, dead_upstream) = (free_port(), free_port());
    let live_upstream = http_stub();
    std::fs::write(
        dir.path().join("moat.toml"),
        format!(
            r#"
[redis]
url = "redis://:hunter2-redis-password@127.0.0.1:{redis_port}/0"

[[route]]
prefix = "/proxy/dead"
upstream = "http://127.0.0.1:{dead_upstream}"
require = ["device"]

[[route]]
prefix = "/proxy/live"
upstream = "http://127.0.0.1:{live_upstream}/v2"
require = ["device"]
"#
        ),
    )
    .expect("config");
    let (listen, admin) = (free_port(), free_port());

    let out = doctor(
        dir.path(),
        listen,
        admin,
        &["--config", "moat.toml", "--json"],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        !text(&out.stdout).contains("hunter2"),
        "the Redis password is never printed"
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["ok"], false);
    let redis = check(&report, "redis");
    assert_eq!(redis["status"], "fail", "{redis}");
    assert!(
        redis["detail"]
            .as_str()
            .expect("detail")
            .contains(&format!("127.0.0.1:{redis_port}")),
        "{redis}"
    );
    assert_eq!(check(&report, "upstream /proxy/dead")["status"], "fail");
    let live = check(&report, "upstream /proxy/live");
    assert_eq!(live["status"], "ok", "{live}");
    assert!(
        live["detail"]
            .as_str()
            .expect("detail")
            .contains("HTTP 204"),
        "{live}"
    );
    // The rest of the configuration is fine.
    for name in ["config", "store", "listen", "admin.listen"] {
        assert_eq!(check(&report, name)["status"], "ok", "{name}: {report:#}");
    }

    // The same in text: one line per check, the failing ones named.
    let out = doctor(dir.path(), listen, admin, &["--config", "moat.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let human = text(&out.stdout);
    for name in ["redis", "upstream /proxy/dead"] {
        assert!(
            human
                .lines()
                .any(|l| l.starts_with("fail") && l.contains(name)),
            "{name} not failed:\n{human}"
        );
    }
    assert!(human.contains("2 failed"), "{human}");
}

#[test]
fn doctor_checks_run_concurrently_each_within_its_time_limit() {
    let dir = tempfile::tempdir().expect("tmp");
    // Accepts connections (the kernel completes them) but never answers a request.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let routes: String = (0..3)
        .map(|i| {
            format!(
                "[[route]]\nprefix = \"/proxy/silent{i}\"\nupstream = \"http://127.0.0.1:{port}\"\n\
                 require = [\"device\"]\n"
            )
        })
        .collect();
    std::fs::write(dir.path().join("moat.toml"), routes).expect("config");
    let (listen, admin) = (free_port(), free_port());
    let started = std::time::Instant::now();
    let out = doctor(
        dir.path(),
        listen,
        admin,
        &["--config", "moat.toml", "--timeout", "1", "--json"],
    );
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    for i in 0..3 {
        let c = check(&report, &format!("upstream /proxy/silent{i}"));
        assert_eq!(c["status"], "fail", "{c}");
        assert_eq!(c["detail"], "no answer within 1 s", "{c}");
    }
    // One after the other, three silent upstreams would take 3 s.
    assert!(took < Duration::from_millis(2800), "took {took:?}");
    drop(silent);
}

#[test]
fn doctor_exits_64_on_a_bad_configuration() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("bad.toml"),
        "[enrollment]\nmode = \"magic\"\n",
    )
    .expect("config");
    let (listen, admin) = (free_port(), free_port());
    let out = doctor(
        dir.path(),
        listen,
        admin,
        &["--config", "bad.toml", "--json"],
    );
    assert_eq!(out.status.code(), Some(64));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["ok"], false);
    assert_eq!(report["checks"].as_array().expect("checks").len(), 1);
    let config = check(&report, "config");
    assert_eq!(config["status"], "fail");
    assert!(
        config["detail"]
            .as_str()
            .expect("detail")
            .contains("enrollment.mode"),
        "{config}"
    );
    let missing = doctor(dir.path(), listen, admin, &["--config", "nowhere.toml"]);
    assert_eq!(missing.status.code(), Some(64));
    assert!(text(&missing.stdout).contains("nowhere.toml"));
}

fn enroll(dir: &Path, server: &Server, state: &str) -> String {
    let enrolled = ok(&run(
        dir,
        &[
            "device",
            "--state",
            state,
            "enroll",
            "--server",
            &server.base,
        ],
    ));
    enrolled["credential"]["device"]
        .as_str()
        .expect("device")
        .to_owned()
}

fn statuses(dir: &Path) -> Value {
    let list = ok(&run(dir, &["admin", "devices", "list", "--json"]));
    let mut out = serde_json::Map::new();
    for d in list["devices"].as_array().expect("devices") {
        out.insert(
            d["id"].as_str().expect("id").to_owned(),
            d["status"].clone(),
        );
    }
    Value::Object(out)
}

#[test]
fn bulk_revoke_checks_the_whole_file_then_revokes_exactly_its_devices() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = Server::start(dir.path(), "dynamic");
    let ids: Vec<String> = (0..4)
        .map(|i| enroll(dir.path(), &server, &format!("d{i}.json")))
        .collect();
    let unknown = "0190b6c2-7c4e-7a3b-9f00-000000000001";

    // A bad line: exit 64 naming it, and nothing revoked (not even the lines before it).
    std::fs::write(
        dir.path().join("bad.txt"),
        format!("{}\n{}\nnot-a-uuid\n{}\n", ids[0], ids[1], ids[2]),
    )
    .expect("file");
    let out = run(
        dir.path(),
        &["admin", "devices", "revoke", "--file", "bad.txt"],
    );
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("line 3"),
        "{}",
        text(&out.stderr)
    );
    let before = statuses(dir.path());
    for id in &ids {
        assert_eq!(before[id], "active", "{before}");
    }

    // Three enrolled devices and one unknown id; the fourth device is not in the file.
    std::fs::write(
        dir.path().join("ids.txt"),
        format!(
            "# compromised installs\n{}\n{}\n\n{}\n{unknown}\n",
            ids[0], ids[1], ids[2]
        ),
    )
    .expect("file");
    let report = ok(&run(
        dir.path(),
        &["admin", "devices", "revoke", "--file", "ids.txt", "--json"],
    ));
    assert_eq!(report["revoked"], 3, "{report}");
    assert_eq!(report["not_found"], 1, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(report["not_found_ids"], serde_json::json!([unknown]));

    // Each revocation is in the audit log, made by the CLI; the server logged the enrollments.
    let audit = ok(&run(
        dir.path(),
        &["admin", "audit", "--kind", "device.revoked", "--json"],
    ));
    let mut subjects: Vec<&str> = audit["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            assert_eq!(e["actor"], "cli", "{e}");
            e["subject"].as_str().expect("subject")
        })
        .collect();
    subjects.sort_unstable();
    let mut expected: Vec<&str> = ids[..3].iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(subjects, expected);
    let enrolled = ok(&run(
        dir.path(),
        &[
            "admin",
            "audit",
            "--kind",
            "device.enrolled",
            "--limit",
            "3",
            "--json",
        ],
    ));
    assert_eq!(enrolled["events"].as_array().expect("events").len(), 3);
    let rest = ok(&run(
        dir.path(),
        &[
            "admin",
            "audit",
            "--kind",
            "device.enrolled",
            "--before",
            enrolled["next"].as_str().expect("next page"),
            "--json",
        ],
    ));
    assert_eq!(rest["events"].as_array().expect("events").len(), 1);
    assert_eq!(rest["next"], Value::Null);
    let table = text(&run(dir.path(), &["admin", "audit", "--kind", "device.revoked"]).stdout);
    assert!(
        table.starts_with("AT") && table.contains(ids[0].as_str()),
        "{table}"
    );

    let after = statuses(dir.path());
    for id in &ids[..3] {
        assert_eq!(after[id], "revoked", "{after}");
    }
    assert_eq!(
        after[&ids[3]], "active",
        "a device not in the file stays active"
    );

    // The running server refuses the revoked devices (within its 1 s device cache) and
    // still serves the other one.
    std::thread::sleep(Duration::from_millis(1100));
    for i in 0..3 {
        let call = run(
            dir.path(),
            &[
                "device",
                "--state",
                &format!("d{i}.json"),
                "call",
                "GET",
                "/v1/device",
            ],
        );
        assert!(!call.status.success());
        assert!(
            text(&call.stdout).contains("device_revoked"),
            "{}",
            text(&call.stdout)
        );
    }
    let kept = ok(&run(
        dir.path(),
        &["device", "--state", "d3.json", "call", "GET", "/v1/device"],
    ));
    assert_eq!(kept["device"], ids[3].as_str());

    // Text output: the counts, and the unknown id named.
    let out = run(
        dir.path(),
        &["admin", "devices", "revoke", "--file", "ids.txt"],
    );
    assert!(out.status.success());
    let human = text(&out.stdout);
    assert!(human.contains("not found 1, failed 0"), "{human}");
    assert!(human.contains(&format!("not found: {unknown}")), "{human}");

    // The single-id form still works, and an unknown id is an error.
    let single = ok(&run(
        dir.path(),
        &["admin", "devices", "revoke", &ids[3], "--json"],
    ));
    assert_eq!(single["id"], ids[3].as_str());
    assert_eq!(single["status"], "revoked");
    let out = run(dir.path(), &["admin", "devices", "revoke", unknown]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no device"));
    // An id and a file at once, or neither: a usage error.
    let both = run(
        dir.path(),
        &["admin", "devices", "revoke", unknown, "--file", "ids.txt"],
    );
    assert_eq!(both.status.code(), Some(64));
    assert_eq!(
        run(dir.path(), &["admin", "devices", "revoke"])
            .status
            .code(),
        Some(64)
    );

    // Doctor next to the running server: its ports are taken (a warning, not a failure), and
    // the store it created is fully migrated.
    let out = doctor(dir.path(), server.port, server.admin_port, &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(check(&report, "listen")["status"], "warn");
    assert_eq!(check(&report, "admin.listen")["status"], "warn");
    let store = check(&report, "store");
    assert_eq!(store["status"], "ok", "{store}");
    assert!(
        store["detail"]
            .as_str()
            .expect("detail")
            .contains("migrations applied"),
        "{store}"
    );
    assert_eq!(check(&report, "secrets")["status"], "ok");
    assert!(server.terminate().status.success());
}

#[test]
fn admin_commands_print_json_with_the_flag_and_text_without() {
    let dir = tempfile::tempdir().expect("tmp");

    // No store here yet: created on purpose.
    let rotated = ok(&run(
        dir.path(),
        &["admin", "keys", "rotate", "--create", "--json"],
    ));
    let kid = rotated["kid"].as_str().expect("kid");
    assert!(kid.starts_with("ak_"), "{rotated}");
    let out = run(dir.path(), &["admin", "keys", "rotate"]);
    assert!(out.status.success());
    let human = text(&out.stdout);
    assert!(
        serde_json::from_str::<Value>(&human).is_err(),
        "text by default: {human}"
    );
    assert!(
        human.contains("ak_") && !human.contains(kid),
        "a new key: {human}"
    );

    // --json is global: it may come before the subcommand too.
    let integrity = ok(&run(
        dir.path(),
        &["admin", "--json", "integrity", "rotate"],
    ));
    let ik = integrity["kid"].as_str().expect("kid");
    let shown = ok(&run(dir.path(), &["admin", "integrity", "show", "--json"]));
    assert_eq!(shown["alg"], "HS256");
    let keys = shown["keys"].as_array().expect("keys");
    assert!(
        keys.iter().any(|k| k["kid"] == ik && k["current"] == true),
        "{shown}"
    );
    assert!(
        keys.len() >= 2,
        "the previous secret still verifies: {shown}"
    );

    let cleaned = ok(&run(dir.path(), &["admin", "cleanup", "--once", "--json"]));
    for key in [
        "mailbox_items",
        "enrollment_otps",
        "dormant_devices",
        "remote_items",
    ] {
        assert!(cleaned[key].is_u64(), "{key} in {cleaned}");
    }
    let outbox = ok(&run(dir.path(), &["admin", "sms", "outbox", "--json"]));
    assert_eq!(outbox["messages"], serde_json::json!([]));

    std::fs::write(dir.path().join("app.apk"), vec![1u8; 4096]).expect("package");
    let out = run(
        dir.path(),
        &[
            "admin",
            "app",
            "register",
            "--app-id",
            "com.example.a",
            "--version",
            "2.0",
            "--file",
            "app.apk",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("registered com.example.a 2.0: 4096 bytes, sha256 "),
        "{}",
        text(&out.stdout)
    );
    let apps = ok(&run(dir.path(), &["admin", "app", "list", "--json"]));
    assert_eq!(apps["packages"][0]["app_id"], "com.example.a");
    assert_eq!(apps["packages"][0]["size"], 4096);
    assert_eq!(apps["packages"][0]["status"], "active");
    let retired = ok(&run(
        dir.path(),
        &[
            "admin",
            "app",
            "retire",
            "--app-id",
            "com.example.a",
            "--version",
            "2.0",
            "--json",
        ],
    ));
    assert_eq!(retired["status"], "retired");
    let apps = ok(&run(dir.path(), &["admin", "app", "list", "--json"]));
    assert_eq!(apps["packages"][0]["status"], "retired");

    let devices = ok(&run(dir.path(), &["admin", "devices", "list", "--json"]));
    assert_eq!(devices["devices"], serde_json::json!([]));
}

#[test]
fn completions_cover_the_subcommands() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = run(dir.path(), &["completions", "bash"]);
    assert!(out.status.success());
    let script = text(&out.stdout);
    assert!(script.contains("_moat()"), "a bash completion function");
    assert!(script.contains("complete -F _moat"), "registered for moat");
    for word in [
        "doctor",
        "completions",
        "admin",
        "devices",
        "revoke",
        "serve",
        "--json",
    ] {
        assert!(
            script.contains(word),
            "{word} missing from the bash completions"
        );
    }
    let zsh = text(&run(dir.path(), &["completions", "zsh"]).stdout);
    assert!(
        zsh.starts_with("#compdef moat"),
        "{}",
        &zsh[..zsh.len().min(80)]
    );
    let fish = text(&run(dir.path(), &["completions", "fish"]).stdout);
    assert!(fish.contains("complete -c moat"), "fish completions");
    let bad = run(dir.path(), &["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(64));
}

fn psql(url: &str, sql: &str) {
    let out = std::process::Command::new("psql")
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-c", sql, url])
        .output()
        .expect("run psql");
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn doctor_reads_the_postgres_migration_state() {
    let pg = moat_testkit::Postgres::start();
    let url = pg.database();
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("moat.toml"),
        format!("[store]\nurl = \"{url}\"\n"),
    )
    .expect("config");
    let (listen, admin) = (free_port(), free_port());
    let store = || {
        let out = doctor(
            dir.path(),
            listen,
            admin,
            &["--config", "moat.toml", "--json"],
        );
        let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        (out.status.code(), check(&report, "store").clone())
    };
    let detail = |c: &Value| c["detail"].as_str().expect("detail").to_owned();

    let (code, empty) = store();
    assert_eq!(
        (code, &empty["status"]),
        (Some(0), &Value::from("ok")),
        "{empty}"
    );
    assert!(detail(&empty).contains("empty"), "{empty}");
    assert!(
        detail(&empty).starts_with("postgres://127.0.0.1:"),
        "{empty}"
    );

    // An admin command refuses a store that was never set up, unless told to create it;
    // creating it migrates it.
    assert_eq!(
        run_with_config(dir.path(), &["admin", "keys", "rotate", "--json"])
            .status
            .code(),
        Some(64)
    );
    ok(&run_with_config(
        dir.path(),
        &["admin", "keys", "rotate", "--create", "--json"],
    ));
    let (code, migrated) = store();
    assert_eq!(code, Some(0));
    assert_eq!(migrated["status"], "ok", "{migrated}");
    assert!(detail(&migrated).contains("all"), "{migrated}");
    let applied: u32 = detail(&migrated)
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .expect("a count");
    assert!(applied >= 5, "{migrated}");

    // The newest migration missing: pending (the server would apply it), a warning.
    psql(
        &url,
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)",
    );
    let (code, pending) = store();
    assert_eq!(
        (code, &pending["status"]),
        (Some(0), &Value::from("warn")),
        "{pending}"
    );
    assert!(
        detail(&pending).contains(&format!("migration {applied} is pending")),
        "{pending}"
    );

    // A migration this binary does not know: the database is newer, a failure.
    psql(
        &url,
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'future', true, '\\x00', 0)",
    );
    let (code, newer) = store();
    assert_eq!(
        (code, &newer["status"]),
        (Some(1), &Value::from("fail")),
        "{newer}"
    );
    assert!(
        detail(&newer).contains("migration 9999 is unknown"),
        "{newer}"
    );

    // A migration that stopped part-way.
    psql(
        &url,
        "UPDATE _sqlx_migrations SET success = false WHERE version = 1",
    );
    let (code, dirty) = store();
    assert_eq!(
        (code, &dirty["status"]),
        (Some(1), &Value::from("fail")),
        "{dirty}"
    );
    assert!(
        detail(&dirty).contains("migration 1 is marked failed"),
        "{dirty}"
    );

    // A database that does not exist.
    std::fs::write(
        dir.path().join("moat.toml"),
        format!("[store]\nurl = \"{}\"\n", pg.url("no_such_db")),
    )
    .expect("config");
    let (code, missing) = store();
    assert_eq!(
        (code, &missing["status"]),
        (Some(1), &Value::from("fail")),
        "{missing}"
    );
    assert!(detail(&missing).contains("cannot connect"), "{missing}");
    assert!(detail(&missing).contains("does not exist"), "{missing}");
}

fn run_with_config(dir: &Path, args: &[&str]) -> Output {
    moat()
        .args(args)
        .args(["--config", "moat.toml"])
        .current_dir(dir)
        .output()
        .expect("run moat")
}

/// `moat doctor` flags a `public_base_url` clients cannot use: `http://` with TLS on the
/// listener (every enrollment would fail `htu does not match`), or a local URL on another
/// port than the listener's; on defaults it names the URL clients must call.
#[test]
fn doctor_flags_a_public_base_url_that_does_not_match_the_listener() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (listen, admin) = (moat_testkit::free_port(), moat_testkit::free_port());
    let config = dir.path().join("moat.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\npublic_base_url = \"http://127.0.0.1:{listen}\"\n[server.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n"
        ),
    )
    .expect("write");
    let out = doctor(
        dir.path(),
        listen,
        admin,
        &["--json", "--config", "moat.toml"],
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    let c = check(&report, "public_base_url");
    assert_eq!(c["status"], "fail", "{c}");
    assert!(
        c["detail"].as_str().expect("detail").contains("https://"),
        "{c}"
    );

    std::fs::write(
        &config,
        "[server]\npublic_base_url = \"http://127.0.0.1:1\"\n",
    )
    .expect("write");
    let out = doctor(
        dir.path(),
        listen,
        admin,
        &["--json", "--config", "moat.toml"],
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(check(&report, "public_base_url")["status"], "warn");

    let out = doctor(dir.path(), listen, admin, &["--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    let c = check(&report, "public_base_url");
    assert_eq!(c["status"], "ok", "{c}");
    assert!(
        c["detail"]
            .as_str()
            .expect("detail")
            .contains(&format!("http://127.0.0.1:{listen}")),
        "{c}"
    );
}

/// A `--config` file that cannot be read is a configuration error (exit 64), said plainly.
#[test]
fn a_missing_config_file_exits_64() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = moat()
        .args(["serve", "--config", "nowhere.toml"])
        .current_dir(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--config nowhere.toml"),
        "{}",
        text(&out.stderr)
    );
}
