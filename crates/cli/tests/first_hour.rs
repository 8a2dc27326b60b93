//! What a new user meets in their first hour, through the real `moat` binary: `device call`
//! with headers, forms and bodies from files or standard input, a user session from
//! `device login`, completions into a closed pipe, errors said once, logs without colour
//! codes that name the store, and the shipped example configuration passing `doctor`.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Output, Stdio};

use common::{Server, free_port, moat, ok, run};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `moat` with `args` in `dir`, `input` on its standard input.
fn run_with_stdin(dir: &Path, args: &[&str], input: &str) -> Output {
    let mut child = moat()
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run moat");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

#[test]
fn device_call_sends_headers_forms_and_files_and_a_logged_in_users_token() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = Server::start(dir.path(), "dynamic");
    // A listen address, as `moat serve` prints it, is accepted as the server URL.
    let bare = format!("127.0.0.1:{}", server.port);
    let out = run(
        dir.path(),
        &[
            "device",
            "enroll",
            "--server",
            &bare,
            "--platform",
            "android",
        ],
    );
    let enrolled = ok(&out);
    assert_eq!(enrolled["server"], server.base.as_str());
    assert!(text(&out.stderr).contains("no scheme"), "the guess is said");
    let bad = run(
        dir.path(),
        &[
            "device",
            "enroll",
            "--server",
            &bare,
            "--platform",
            "windows",
        ],
    );
    assert_eq!(bad.status.code(), Some(64));
    assert!(
        text(&bad.stderr).contains("android, ios, other"),
        "the values are listed: {}",
        text(&bad.stderr)
    );

    // --data @FILE and @-.
    std::fs::write(dir.path().join("body.json"), r#"{"from":"file"}"#).expect("write");
    let echo = ok(&run(
        dir.path(),
        &[
            "device",
            "call",
            "POST",
            "/v1/device/echo",
            "--data",
            "@body.json",
        ],
    ));
    assert_eq!(echo["body"], serde_json::json!({"from": "file"}));
    let echo = ok(&run_with_stdin(
        dir.path(),
        &["device", "call", "POST", "/v1/device/echo", "-d", "@-"],
        r#"{"from":"stdin"}"#,
    ));
    assert_eq!(echo["body"], serde_json::json!({"from": "stdin"}));

    // A user: register, confirm with the code from the outbox, log in.
    let phone = "+14155552671";
    let password = "correct horse battery";
    let register = format!(r#"{{"phone":"{phone}","password":"{password}"}}"#);
    ok(&run(
        dir.path(),
        &[
            "device",
            "call",
            "POST",
            "/api/register",
            "--data",
            &register,
        ],
    ));
    let outbox = ok(&run(
        dir.path(),
        &["admin", "sms", "outbox", "--phone", phone, "--json"],
    ));
    let body = outbox["messages"][0]["body"].as_str().expect("sms");
    let code = body
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .expect("code");
    let confirm = format!(r#"{{"phone":"{phone}","otp":"{code}"}}"#);
    ok(&run(
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

    // --form: the token endpoint takes a form (RFC 6749).
    let password_field = format!("password={password}");
    let username_field = format!("username={phone}");
    let token = ok(&run(
        dir.path(),
        &[
            "device",
            "call",
            "POST",
            "/api/token",
            "--form",
            "grant_type=password",
            "--form",
            &username_field,
            "--form",
            &password_field,
        ],
    ));
    let access = token["access_token"].as_str().expect("access token");

    // -H: the header goes out (and is covered by nothing it should not be).
    let bearer = format!("Authorization: Bearer {access}");
    let me = ok(&run(
        dir.path(),
        &["device", "call", "GET", "/api/me", "-H", &bearer],
    ));
    assert_eq!(me["phone"], phone);
    let refused = run(
        dir.path(),
        &[
            "device",
            "call",
            "GET",
            "/api/me",
            "--header",
            "Authorization: Bearer forged",
        ],
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused.stderr).contains("HTTP 401"));

    // login keeps the session beside the device state (0600); --user sends it.
    let login = ok(&run_with_stdin(
        dir.path(),
        &["device", "login", "--phone", phone, "--password-stdin"],
        &format!("{password}\n"),
    ));
    assert_eq!(login["logged_in"], phone);
    let session = dir.path().join("moat-device.session.json");
    assert_eq!(common::mode_of(&session), 0o600);
    let me = ok(&run(
        dir.path(),
        &["device", "call", "GET", "/api/me", "--user"],
    ));
    assert_eq!(me["phone"], phone);

    // An expired access token is refreshed first, and the new session saved.
    let mut saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&session).expect("read")).expect("json");
    let old_refresh = saved["refresh_token"].clone();
    saved["expires_at"] = 0.into();
    std::fs::write(&session, saved.to_string()).expect("write");
    let out = run(dir.path(), &["device", "call", "GET", "/api/me", "--user"]);
    assert_eq!(ok(&out)["phone"], phone);
    assert!(text(&out.stderr).contains("refreshed the user session"));
    let renewed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&session).expect("read")).expect("json");
    assert_ne!(renewed["refresh_token"], old_refresh, "rotated and saved");
    assert!(renewed["expires_at"].as_i64().expect("expiry") > 0);

    // A wrong password is the server's refusal, and no session is written.
    let wrong = run_with_stdin(
        dir.path(),
        &[
            "device",
            "--state",
            "moat-device.json",
            "login",
            "--phone",
            phone,
            "--password-stdin",
        ],
        "not the password\n",
    );
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        text(&wrong.stderr).contains("400"),
        "{}",
        text(&wrong.stderr)
    );

    let out = run(dir.path(), &["device", "logout"]);
    assert!(out.status.success());
    assert!(!session.exists());
    let out = run(dir.path(), &["device", "call", "GET", "/api/me", "--user"]);
    assert!(text(&out.stderr).contains("run `moat device login` first"));
}

#[test]
fn a_server_that_is_not_there_is_said_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let url = format!("http://127.0.0.1:{}", free_port());
    let out = run(dir.path(), &["device", "enroll", "--server", &url]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(
        stderr.matches("Connection refused").count(),
        1,
        "once: {stderr}"
    );
    assert_eq!(
        stderr.matches("error sending request").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("is `moat serve` running"), "{stderr}");
}

#[test]
fn completions_into_a_closed_pipe_do_not_panic() {
    // The reader is gone before moat writes: every write meets EPIPE.
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(r#"set -o pipefail; (sleep 0.3; exec "$0" completions bash) | true"#)
        .arg(env!("CARGO_BIN_EXE_moat"))
        .output()
        .expect("bash");
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{out:?}");
    // And `| head -1` gets its line.
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(r#"set -o pipefail; "$0" completions bash | head -1"#)
        .arg(env!("CARGO_BIN_EXE_moat"))
        .output()
        .expect("bash");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout), "_moat() {\n");
}

#[test]
fn logs_to_a_pipe_have_no_colour_codes_and_name_the_store() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = Server::start(dir.path(), "dynamic");
    let out = server.terminate();
    let log = text(&out.stderr);
    assert!(!log.contains('\x1b'), "no escape codes: {log:?}");
    let line = log
        .lines()
        .find(|l| l.contains("opening the store"))
        .expect("the store is named at start");
    assert!(
        line.contains("store=sqlite://./moat-data/moat.db"),
        "{line}"
    );
    assert!(line.contains("moat-data"), "{line}");

    // A PostgreSQL password never reaches the log, even when the store cannot be reached.
    let dir = tempfile::tempdir().expect("tmp");
    let out = moat()
        .arg("serve")
        .current_dir(dir.path())
        .env(
            "MOAT_STORE__URL",
            format!(
                "postgres://moat:hunter2-secret@127.0.0.1:{}/moat",
                free_port()
            ),
        )
        .env("MOAT_STORE__TIMEOUT_MS", "500")
        .env("MOAT_SERVER__LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("MOAT_ADMIN__LISTEN", format!("127.0.0.1:{}", free_port()))
        .output()
        .expect("run moat serve");
    assert!(!out.status.success());
    let log = text(&out.stderr);
    assert!(!log.contains("hunter2-secret"), "{log}");
    assert!(
        log.contains("store=postgres://moat:***@127.0.0.1:"),
        "{log}"
    );
    assert!(!log.contains('\x1b'), "{log:?}");
}

#[test]
fn the_example_configuration_passes_doctor() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../moat.example.toml");
    let dir = tempfile::tempdir().expect("tmp");
    let example = example.to_str().expect("utf-8 path");
    let out = run(dir.path(), &["doctor", "--config", example]);
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // Every section the example names is commented, so a reader knows what it is for.
    let example = std::fs::read_to_string(example).expect("read");
    let lines: Vec<&str> = example.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start_matches('#').trim();
        if t.starts_with('[') && t.ends_with(']') && !t.contains('=') {
            assert!(
                i > 0 && lines[i - 1].trim_start().starts_with('#'),
                "section {t} has a comment above it"
            );
        }
    }
}

/// The README's commands are what CI runs (scripts/readme-check.sh runs the blocks marked
/// `<!-- ci: … -->`): every `cargo run` names the binary (the workspace has several), the
/// quick start is the two marked commands, and no command block of the quick start or the
/// walkthrough escapes the check.
#[test]
fn the_readme_commands_name_the_binary_and_are_all_checked() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    for line in readme.lines().filter(|l| l.contains("cargo run")) {
        assert!(
            line.contains("--bin ") || line.contains(" -p "),
            "`cargo run` cannot tell which binary: {line}"
        );
    }
    let start = readme.find("## Quick start").expect("a quick start");
    let end = readme
        .find("## Tests, fuzzing and benchmarks")
        .expect("a tests section after the walkthrough");
    let checked = &readme[start..end];
    let lines: Vec<&str> = checked.lines().collect();
    let mut marks = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("```sh") {
            let above = lines[..i]
                .iter()
                .rev()
                .take_while(|l| l.starts_with("<!-- ci:"))
                .last()
                .unwrap_or_else(|| panic!("unchecked block in the walkthrough: {}", lines[i + 1]));
            marks.push(*above);
        }
    }
    let quick_start = &checked[..checked.find("## Walkthrough").expect("walkthrough")];
    assert_eq!(
        quick_start.matches("```sh").count(),
        2,
        "the quick start is two commands"
    );
    assert_eq!(marks[0], "<!-- ci: serve -->");
    assert_eq!(marks[1], "<!-- ci: test -->");
    let ci = std::fs::read_to_string(root.join(".ci/run")).expect(".ci/run");
    assert!(ci.contains("cargo test --workspace --locked"));
    assert!(quick_start.contains("\ncargo test --workspace --locked\n"));
    assert!(
        ci.contains("scripts/readme-check.sh"),
        ".ci/run runs the check"
    );
    let gitignore = std::fs::read_to_string(root.join(".gitignore")).expect(".gitignore");
    for written in [
        "/moat-data",
        "/moat-device.json",
        "/moat-device.session.json",
    ] {
        assert!(gitignore.lines().any(|l| l == written), "{written} ignored");
    }
}
