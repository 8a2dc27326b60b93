//! Seed 000's Firebase path with real Firebase pieces: the Firebase Auth emulator
//! (`firebase-tools`), the Firebase JS SDK signing in anonymously, `firebase-server` (a
//! third-party implementation of the Realtime Database REST API) as the database, and
//! `targaryen` (a Realtime Database rules evaluator) judging the rules `moat firebase rules`
//! prints. The npm packages are installed on first use by `tests/firebase/setup.sh` (pinned
//! in its lockfiles); see `tests/firebase/README.md`.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use http::Method;
use moat_client::firebase::{FirebaseApp, FirebaseUser};
use moat_client::{CallOptions, Client, Credential};
use moat_testkit::free_port;
use serde_json::{Value, json};

const PROJECT: &str = "demo-moat";

fn peers() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/firebase")
}

/// Installs the npm peers once per test process.
fn setup() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let out = Command::new("bash")
            .arg(peers().join("setup.sh"))
            .output()
            .expect("run tests/firebase/setup.sh");
        assert!(
            out.status.success(),
            "tests/firebase/setup.sh failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// A node process that prints `READY <port>` when it serves; killed on drop. Its stdout stays
/// open for its lifetime (a closed pipe would kill it at its next write).
struct Peer(
    Child,
    #[allow(dead_code)] BufReader<std::process::ChildStdout>,
);

impl Peer {
    fn start(dir: &str, script: &str, args: &[&str]) -> Self {
        setup();
        let mut child = Command::new("node")
            .arg(script)
            .args(args)
            .current_dir(peers().join(dir))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("node {script}: {e}"));
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read READY");
        assert!(
            line.starts_with("READY "),
            "{script} did not start: {line:?}"
        );
        Self(child, stdout)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // SIGTERM lets the launcher stop the emulator's whole process group.
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        for _ in 0..100 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn moat() -> Command {
    Command::new(env!("CARGO_BIN_EXE_moat"))
}

#[track_caller]
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn rules_check(rules: &Path, root: &str) -> (bool, Value) {
    setup();
    let out = Command::new("node")
        .arg("rules-test.js")
        .arg("--rules")
        .arg(rules)
        .args(["--root", root])
        .current_dir(peers().join("rtdb"))
        .output()
        .expect("node rules-test.js");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.success(), report)
}

#[test]
fn the_printed_rules_let_only_the_owner_read_and_no_client_write() {
    let dir = tempfile::tempdir().expect("tmp");
    for root in ["moat/mailbox", "apps/moat/inbox"] {
        let rules = ok(&moat()
            .args(["firebase", "rules", "--root", root])
            .output()
            .expect("moat firebase rules"));
        let path = dir.path().join("database.rules.json");
        std::fs::write(&path, &rules).expect("write rules");
        let (passed, report) = rules_check(&path, root);
        assert!(passed, "{root}: {report}");
        assert_eq!(report["failed"], 0, "{report}");
        assert!(report["passed"].as_u64() >= Some(10), "{report}");
    }
    // The oracle can fail: the seed's intent with a readable root is refused.
    let leaky = json!({"rules": {".read": "auth != null", ".write": false,
        "moat": {"mailbox": {"$uid": {".read": "auth != null && auth.uid === $uid"}}}}});
    let path = dir.path().join("leaky.json");
    std::fs::write(&path, leaky.to_string()).expect("write");
    let (passed, report) = rules_check(&path, "moat/mailbox");
    assert!(
        !passed,
        "a rule letting any user read everything must fail: {report}"
    );
}

struct Emulated {
    _auth: Peer,
    _db: Peer,
    server: Child,
    auth_port: u16,
    db_url: String,
    base: String,
    dir: tempfile::TempDir,
}

impl Drop for Emulated {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// One emulator at a time: two firebase-tools emulators on one machine interfere (they share
/// the emulator hub's discovery files), so the tests that start one take turns.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn emulated(mode: &str) -> Emulated {
    let auth_port = free_port();
    let auth = Peer::start(
        "auth",
        "start-emulator.js",
        &["--port", &auth_port.to_string(), "--project", PROJECT],
    );
    let db_port = free_port();
    let db = Peer::start("rtdb", "serve.js", &["--port", &db_port.to_string()]);
    let db_url = format!("http://127.0.0.1:{db_port}");
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let admin = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\npublic_base_url = \"{base}\"\ndata_dir = \"{}\"\n\
         [admin]\nlisten = \"127.0.0.1:{admin}\"\n\
         [enrollment]\nmode = \"{mode}\"\nrsa_pool_size = 2\nidentity = [\"installation\", \"firebase\"]\n\
         [delivery]\nchannel = \"firebase\"\n\
         [firebase]\nproject_id = \"{PROJECT}\"\nauth_emulator_host = \"127.0.0.1:{auth_port}\"\n\
         database_url = \"{db_url}\"\ndatabase_emulator = true\n",
        dir.path().join("data").display()
    );
    std::fs::write(dir.path().join("moat.toml"), config).expect("config");
    let server = moat()
        .args(["serve", "--config"])
        .arg(dir.path().join("moat.toml"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("server.log")).expect("log"))
        .spawn()
        .expect("moat serve");
    moat_testkit::wait_for_http_ok(port, "/healthz", Duration::from_secs(30));
    Emulated {
        _auth: auth,
        _db: db,
        server,
        auth_port,
        db_url,
        base,
        dir,
    }
}

impl Emulated {
    /// Signs in anonymously with the Firebase JS SDK against the emulator.
    fn js_sign_in(&self) -> FirebaseUser {
        let out = Command::new("node")
            .args(["sign-in.mjs", "--port", &self.auth_port.to_string()])
            .args(["--project", PROJECT])
            .current_dir(peers().join("auth"))
            .output()
            .expect("node sign-in.mjs");
        let v: Value = serde_json::from_str(&ok(&out)).expect("json");
        FirebaseUser {
            uid: v["uid"].as_str().expect("uid").to_owned(),
            id_token: v["idToken"].as_str().expect("idToken").to_owned(),
        }
    }

    fn app(&self) -> FirebaseApp {
        FirebaseApp {
            api_key: "demo-key".into(),
            auth_url: format!(
                "http://127.0.0.1:{}/identitytoolkit.googleapis.com",
                self.auth_port
            ),
            database_url: self.db_url.clone(),
            mailbox_root: "moat/mailbox".into(),
        }
    }

    async fn enroll_raw(&self, token: &str) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/enroll", self.base))
            .json(&json!({"device_id": "phone-raw", "firebase_id_token": token}))
            .send()
            .await
            .expect("enroll");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// The emulator's unsigned token with its claims edited.
fn edited(token: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut parts = token.split('.');
    let head = parts.next().expect("header");
    let mut claims: Value = serde_json::from_slice(
        &moat_core::b64::url_decode(parts.next().expect("claims")).expect("b64"),
    )
    .expect("claims json");
    edit(&mut claims);
    format!(
        "{head}.{}.",
        moat_core::b64::url_encode(claims.to_string().as_bytes())
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)] // the guard only orders tests; nothing else takes it
async fn js_sdk_sign_in_enroll_and_read_the_credential_from_the_database() {
    let _turn = serial();
    for mode in ["dynamic", "otp"] {
        let e = emulated(mode);
        // The Firebase JS SDK signs in anonymously; its ID token is the identity.
        let user = e.js_sign_in();
        let header: Value = serde_json::from_slice(
            &moat_core::b64::url_decode(user.id_token.split('.').next().expect("h")).expect("b64"),
        )
        .expect("header");
        assert_eq!(header["alg"], "none", "the emulator's tokens are unsigned");

        let mut c = Client::generate(&e.base).expect("client");
        let credential = c
            .enroll_and_fetch_firebase(&e.app(), &user, "phone-1", Some("android"))
            .await
            .unwrap_or_else(|err| {
                panic!(
                    "{mode}: {err}\n{}",
                    std::fs::read_to_string(e.dir.path().join("server.log")).unwrap_or_default()
                )
            });
        match (mode, &credential) {
            ("dynamic", Credential::ApiKey { .. })
            | ("otp", Credential::ClientCredential { .. }) => {}
            other => panic!("unexpected credential {other:?}"),
        }
        let r = c
            .call(Method::GET, "/v1/device", None, CallOptions::default())
            .await
            .expect("call");
        assert_eq!(
            r.status,
            200,
            "{mode}: {}",
            String::from_utf8_lossy(&r.body)
        );

        // The items sit in the uid's node of the database, as the REST API serves them.
        let node: Value = reqwest::get(format!("{}/moat/mailbox/{}.json", e.db_url, user.uid))
            .await
            .expect("read node")
            .json()
            .await
            .expect("json");
        let kinds: Vec<&str> = node
            .as_object()
            .expect("items")
            .values()
            .filter_map(|i| i["kind"].as_str())
            .collect();
        let expected: &[&str] = if mode == "otp" {
            &["client_credential", "enrollment_otp"]
        } else {
            &["api_key"]
        };
        let mut sorted = kinds.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, expected, "{node}");
        for (id, item) in node.as_object().expect("items") {
            assert_eq!(item["id"], *id, "stored under its id");
        }

        // Tokens the server must refuse.
        let other = edited(&user.id_token, |c| {
            c["aud"] = "demo-other".into();
            c["iss"] = "https://securetoken.google.com/demo-other".into();
        });
        let expired = edited(&user.id_token, |c| c["exp"] = json!(1_000));
        let tampered = format!("{}c2lnbmF0dXJl", user.id_token);
        for (name, token) in [
            ("another project", other),
            ("expired", expired),
            ("tampered", tampered),
        ] {
            let (status, body) = e.enroll_raw(&token).await;
            assert_eq!(
                (name, status, body["code"].as_str()),
                (name, 401, Some("identity_invalid")),
                "{body}"
            );
        }
    }
}

#[test]
fn the_cli_plays_the_firebase_app() {
    let _turn = serial();
    let e = emulated("dynamic");
    let state = e.dir.path().join("device.json");
    let out = moat()
        .args(["device", "--state"])
        .arg(&state)
        .args(["enroll", "--server", &e.base, "--firebase"])
        .args(["--firebase-api-key", "demo-key"])
        .args([
            "--firebase-auth-url",
            &format!(
                "http://127.0.0.1:{}/identitytoolkit.googleapis.com",
                e.auth_port
            ),
        ])
        .args(["--firebase-database-url", &e.db_url])
        .output()
        .expect("enroll");
    let enrolled: Value = serde_json::from_str(&ok(&out)).expect("json");
    assert_eq!(enrolled["credential"]["kind"], "api_key", "{enrolled}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("signed in to Firebase as uid"),
        "signed in through the Auth REST API"
    );
    let called = moat()
        .args(["device", "--state"])
        .arg(&state)
        .args(["call", "GET", "/v1/device"])
        .output()
        .expect("call");
    let answer: Value = serde_json::from_str(&ok(&called)).expect("json");
    assert_eq!(
        answer["device"], enrolled["credential"]["device"],
        "{answer}"
    );
    assert!(
        enrolled["identity"]
            .as_str()
            .is_some_and(|i| i.starts_with("fb:")),
        "{enrolled}"
    );
}
