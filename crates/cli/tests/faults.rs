//! Faults, against the real binary: a crash (`kill -9`) under enrollment load leaves no
//! half-enrollment behind, a signature or DPoP proof captured before a restart is refused after
//! it, and SIGTERM drains the requests in flight before the process exits.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Method;
use moat_client::{CallOptions, Client, Credential};
use moat_testkit::{free_port, wait_for_http_ok};
use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "faults-admin-token-0123456789abcdefgh";

struct Server {
    child: Child,
    base: String,
    admin: String,
}

impl Server {
    /// `moat serve` in `dir` (its data directory persists across restarts) on `port`.
    fn start(dir: &Path, port: u16, mode: &str, extra: &str) -> Self {
        let admin = free_port();
        std::fs::write(
            dir.join("moat.toml"),
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\npublic_base_url = \"http://127.0.0.1:{port}\"\n\
                 data_dir = \"{}\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\ntoken = \"{ADMIN_TOKEN}\"\n\
                 [enrollment]\nmode = \"{mode}\"\nrsa_pool_size = 4\n{extra}",
                dir.join("data").display()
            ),
        )
        .expect("config");
        let child = Command::new(env!("CARGO_BIN_EXE_moat"))
            .args(["serve", "--config"])
            .arg(dir.join("moat.toml"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moat serve");
        wait_for_http_ok(port, "/healthz", Duration::from_secs(30));
        wait_for_http_ok(admin, "/healthz", Duration::from_secs(30));
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            admin: format!("http://127.0.0.1:{admin}"),
        }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Every device, page by page.
    async fn devices(&self) -> Vec<Value> {
        let mut all = Vec::new();
        loop {
            let v: Value = reqwest::Client::new()
                .get(format!(
                    "{}/admin/v1/devices?limit=500&offset={}",
                    self.admin,
                    all.len()
                ))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .expect("devices")
                .json()
                .await
                .expect("json");
            let page = v["devices"].as_array().cloned().unwrap_or_default();
            let done = page.len() < 500;
            all.extend(page);
            if done {
                return all;
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_enrollment_load_leaves_no_half_enrollment() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let mut server = Server::start(dir.path(), port, "dynamic", "");
    // 32 devices enroll over and over (each a new installation key, so a new identity);
    // the server is killed in the middle of it.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let base = server.base.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut enrolled = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut c = Client::generate(&base).expect("client");
                match c.enroll("phone", Some("android")).await {
                    Ok(_) => enrolled.push((c, true)),
                    // In flight when the server died: it may or may not have been written.
                    Err(_) => {
                        enrolled.push((c, false));
                        break;
                    }
                }
            }
            enrolled
        }));
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    server.kill9();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut clients = Vec::new();
    for t in tasks {
        clients.extend(t.await.expect("task"));
    }
    let answered = clients.iter().filter(|(_, ok)| *ok).count();
    assert!(
        answered >= 32,
        "the load ran: {answered} enrollments answered"
    );

    let server = Server::start(dir.path(), port, "dynamic", "");
    let devices = server.devices().await;
    let mut with_item = 0;
    for (c, answered) in &clients {
        let identity = format!("inst:{}", c.thumbprint());
        let device = devices.iter().find(|d| d["identity"] == identity.as_str());
        let items = c.mailbox().await.expect("mailbox after restart");
        let key = items.iter().find(|i| i["kind"] == "api_key");
        // The device row and its credential in the mailbox exist together or not at all.
        assert_eq!(
            device.is_some(),
            key.is_some(),
            "identity {identity}: device {device:?}, mailbox {items:?}"
        );
        if *answered {
            assert!(
                device.is_some(),
                "an enrollment answered 200 survived the crash"
            );
        }
        if let (Some(device), Some(key)) = (device, key) {
            assert_eq!(key["device"], device["id"], "the item names its device");
            with_item += 1;
        }
    }
    assert_eq!(
        with_item,
        devices.len(),
        "no device without a delivered credential"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_or_proof_from_before_a_restart_is_refused_after_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let mut server = Server::start(dir.path(), port, "otp", "");
    let mut c = Client::generate(&server.base).expect("client");
    c.enroll_and_fetch("phone-r", None).await.expect("enroll");
    assert!(matches!(
        c.credential(),
        Some(Credential::ClientCredential { .. })
    ));
    let http = reqwest::Client::new();
    let body = json!({"transfer": 100});
    let (url, headers, bytes) = c
        .prepare(
            &Method::POST,
            "/v1/device/echo",
            Some(&body),
            &CallOptions::default(),
        )
        .expect("prepare");
    let send = || {
        http.post(url.clone())
            .headers(headers.clone())
            .body(bytes.clone().unwrap_or_default())
            .send()
    };
    assert_eq!(send().await.expect("send").status(), 200);
    let replay: Value = send().await.expect("send").json().await.expect("json");
    assert_eq!(replay["code"], "replay_detected");
    // A DPoP proof, used once.
    let proof = c.dpop(&Method::GET, "/v1/mailbox").expect("proof");
    let mailbox_url = format!("{}/v1/mailbox", server.base);
    let read = |proof: String| http.get(mailbox_url.clone()).header("dpop", proof).send();
    assert_eq!(read(proof.clone()).await.expect("read").status(), 200);

    // The process dies and comes back: its in-memory replay cache is empty, yet neither the
    // signature nor the proof is accepted again.
    server.kill9();
    // Into the next second, so the new process's start is strictly after `created`.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let server = Server::start(dir.path(), port, "otp", "");
    let r = send().await.expect("send");
    assert_eq!(r.status(), 401);
    let problem: Value = r.json().await.expect("json");
    assert_eq!(problem["code"], "signature_expired", "{problem}");
    let r = read(proof).await.expect("read");
    assert_eq!(r.status(), 401);
    let problem: Value = r.json().await.expect("json");
    assert_eq!(problem["code"], "identity_invalid", "{problem}");
    // A request signed now passes: only what predates the restart is refused.
    let fresh = c
        .call(
            Method::POST,
            "/v1/device/echo",
            Some(&body),
            CallOptions::default(),
        )
        .await
        .expect("call");
    assert_eq!(fresh.status, 200);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_requests_in_flight_finish() {
    // An upstream that takes 1.5 s to answer.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let upstream = format!("http://{}", listener.local_addr().expect("addr"));
    let app = axum::Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        "slow answer"
    });
    tokio::spawn(async move { axum::serve(listener, app).await.expect("upstream") });

    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let mut server = Server::start(
        dir.path(),
        port,
        "dynamic",
        &format!(
            "[[route]]\nprefix = \"/slow\"\nupstream = \"{upstream}\"\nrequire = [\"device\"]\n"
        ),
    );
    let mut c = Client::generate(&server.base).expect("client");
    c.enroll_and_fetch("phone-s", None).await.expect("enroll");
    let c = Arc::new(c);
    let in_flight = {
        let c = c.clone();
        tokio::spawn(async move {
            c.call(Method::GET, "/slow/x", None, CallOptions::default())
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let r = in_flight
        .await
        .expect("task")
        .expect("the request in flight was answered");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"slow answer");
    // New connections are refused while draining or after; the process exits on its own.
    let exited = loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(10),
            "did not exit after draining"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exited.success(), "{exited}");
}

fn run(cmd: &[&str]) -> bool {
    Command::new(cmd[0])
        .args(&cmd[1..])
        .status()
        .is_ok_and(|s| s.success())
}

/// A small tmpfs mounted on a directory, unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_gives_clear_503s_and_no_corruption() {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        eprintln!("skipped: mounting a small filesystem for the data directory needs root");
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    let data_str = data.to_str().expect("utf-8");
    assert!(
        run(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            "size=600k,mode=0700",
            "tmpfs",
            data_str
        ]),
        "mount tmpfs"
    );
    let _disk = SmallDisk(data.clone());
    let port = free_port();
    let mut server = Server::start(dir.path(), port, "dynamic", "");
    // Enroll until the disk is full.
    let mut enrolled = Vec::new();
    let mut refusal = None;
    for _ in 0..5_000 {
        let mut c = Client::generate(&server.base).expect("client");
        match c.enroll("phone", None).await {
            Ok(_) => enrolled.push(c),
            Err(moat_client::Error::Problem { status, code, .. }) => {
                refusal = Some((status, code));
                break;
            }
            Err(e) => panic!("not a clean refusal: {e}"),
        }
    }
    assert_eq!(
        refusal,
        Some((503, "unavailable".to_owned())),
        "a full disk is a clear 503 (after {} enrollments)",
        enrolled.len()
    );
    assert!(!enrolled.is_empty(), "some enrollments fit");
    let health = reqwest::get(format!("{}/healthz", server.base))
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200, "the server stays up");
    // Room again: service resumes without a restart.
    assert!(
        run(&["mount", "-o", "remount,size=16m", data_str]),
        "grow the tmpfs"
    );
    let mut c = Client::generate(&server.base).expect("client");
    c.enroll("phone", None)
        .await
        .expect("enrollment works once there is room");
    enrolled.push(c);
    server.kill9();

    // Nothing is corrupt: SQLite's own check passes, and every answered enrollment is there,
    // with its credential.
    let url = format!("sqlite://{}/moat.db", data.display());
    let store =
        moat_store::sqlite::SqliteStore::open(&url, &moat_store::sqlite::SqliteOptions::default())
            .await
            .expect("open the store");
    assert_eq!(store.integrity_check().await.expect("check"), "ok");
    drop(store);
    let server = Server::start(dir.path(), port, "dynamic", "");
    let devices = server.devices().await;
    for c in &enrolled {
        let identity = format!("inst:{}", c.thumbprint());
        assert!(
            devices.iter().any(|d| d["identity"] == identity.as_str()),
            "{identity} survived"
        );
        let items = c.mailbox().await.expect("mailbox");
        assert!(items.iter().any(|i| i["kind"] == "api_key"), "{identity}");
    }
}
