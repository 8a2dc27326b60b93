//! The shared test server (`moat_testkit::server`), devices made for it, and request helpers.

use std::sync::Arc;

use http::Method;
use moat_client::{CallOptions, Client, Response};
use serde_json::{Value, json};

pub use moat_testkit::server::{ADMIN_TOKEN, TestServer};

/// The devices of a [`TestServer`], made with the client SDK.
#[allow(async_fn_in_trait)] // used only in this test binary, where Send bounds do not matter
pub trait Devices {
    /// A device whose clock agrees with the server's.
    fn device(&self) -> Client;

    /// A device enrolled as `device_id` (platform `android`), its credential fetched.
    async fn enrolled(&self, device_id: &str) -> Client;
}

impl Devices for TestServer {
    fn device(&self) -> Client {
        let mut c = Client::generate(&self.base).expect("client");
        c.set_clock_offset(self.clock.offset());
        c
    }

    async fn enrolled(&self, device_id: &str) -> Client {
        let mut c = self.device();
        c.enroll_and_fetch(device_id, Some("android"))
            .await
            .expect("enroll");
        c
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::new()
}

pub fn opts() -> CallOptions {
    CallOptions::default()
}

#[track_caller]
pub fn assert_problem(r: &moat_client::Response, status: u16, code: &str) {
    assert_eq!(
        r.status,
        status,
        "body: {}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    assert_eq!(
        r.problem_code().as_deref(),
        Some(code),
        "body: {}",
        String::from_utf8_lossy(&r.body)
    );
}

pub async fn read(r: reqwest::Response) -> moat_client::Response {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.bytes().await.expect("body").to_vec();
    moat_client::Response {
        status,
        headers,
        body,
    }
}

/// The Python that runs the third-party peers (`http-message-signatures`, PyJWT, jwcrypto):
/// `MOAT_TEST_PYTHON` if set, else the repository's `.venv`, created on first use from
/// `tests/requirements.txt` so that `cargo test --workspace` alone runs every test.
pub fn python() -> &'static str {
    static PYTHON: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PYTHON.get_or_init(|| {
        if let Ok(p) = std::env::var("MOAT_TEST_PYTHON") {
            return p;
        }
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let venv = repo.join(".venv");
        let python = venv.join("bin/python");
        let ready = || {
            std::process::Command::new(&python)
                .args([
                    "-c",
                    "import http_message_signatures, requests, jwt, jwcrypto, prometheus_client",
                ])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !ready() {
            let status = std::process::Command::new("python3")
                .arg("-m")
                .arg("venv")
                .arg(&venv)
                .status()
                .expect("python3 -m venv");
            assert!(
                status.success(),
                "creating .venv failed (Debian needs python3-venv)"
            );
            let status = std::process::Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                ])
                .arg(repo.join("tests/requirements.txt"))
                .status()
                .expect("pip");
            assert!(
                status.success() && ready(),
                "installing the Python test peers failed"
            );
        }
        python.display().to_string()
    })
}

/// Runs `tests/interop/<script>` with `args`.
pub fn run_python(script: &str, args: &[&str]) -> std::process::Output {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(script);
    std::process::Command::new(python())
        .arg(path)
        .args(args)
        .output()
        .expect("run python")
}

/// The device uuid of an enrolled dynamic-mode client.
pub fn device_of(c: &Client) -> String {
    match c.credential() {
        Some(moat_client::Credential::ApiKey {
            device: Some(id), ..
        }) => id.clone(),
        other => panic!("no device id in {other:?}"),
    }
}

/// `GET` on the admin listener with the token; asserts 200 and returns the JSON.
pub async fn admin_get(server: &TestServer, path: &str) -> serde_json::Value {
    let r = http()
        .get(format!("{}{path}", server.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("admin get");
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.expect("json")
}

/// `POST` on the admin listener with the token; the status.
pub async fn admin_post(server: &TestServer, path: &str) -> u16 {
    http()
        .post(format!("{}{path}", server.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("admin post")
        .status()
        .as_u16()
}

/// Traffic the dashboard counts. From `a`: one attestation that fails (an unknown challenge,
/// answered like a pass) and two sign-ups of one phone (the first SMS is sent, the second is
/// refused by the cooldown). `revoked` is revoked through the admin API, then calls
/// `refusals` times and is refused each time. Returns once the SMS worker has sent the SMS.
pub async fn dashboard_traffic(server: &TestServer, a: &Client, revoked: &Client, refusals: usize) {
    let r = a
        .call(
            http::Method::POST,
            "/v1/attest",
            Some(&serde_json::json!({"challenge_id": "ch_unknown", "measurement": "AAAA"})),
            opts(),
        )
        .await
        .expect("attest");
    assert_eq!(r.status, 200);
    for expected in [202, 429] {
        let r = a
            .call(
                http::Method::POST,
                "/api/register",
                Some(&serde_json::json!({"phone": "+14155552671", "password": "a long passphrase here"})),
                opts(),
            )
            .await
            .expect("register");
        assert_eq!(r.status, expected, "{}", String::from_utf8_lossy(&r.body));
    }
    let id = device_of(revoked);
    assert_eq!(
        admin_post(server, &format!("/admin/v1/devices/{id}/revoke")).await,
        200
    );
    for _ in 0..refusals {
        let r = revoked
            .call(http::Method::GET, "/v1/device", None, opts())
            .await
            .expect("call");
        assert_eq!(r.status, 403);
    }
    // The SMS worker sends off the request path.
    for _ in 0..50 {
        if admin_get(server, "/admin/v1/stats?days=1").await["totals"]["sms_sent"] == 1 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the SMS was not sent within 5 s");
}

/// Requests in one burst: at least this many, all sent at the same moment.
pub const BURST: usize = 300;

/// An HTTP client for bursts of `n` requests to `base`: it opens `n` connections ahead of time
/// (each answers `GET /healthz` once, all at once), so that the burst reuses them and its
/// requests leave together rather than one connection setup after another.
pub async fn burst_client(base: &str, n: usize) -> reqwest::Client {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(n)
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .expect("client");
    let warm: Vec<reqwest::Request> = (0..n)
        .map(|_| {
            http.get(format!("{base}/healthz"))
                .build()
                .expect("request")
        })
        .collect();
    for r in burst(&http, warm).await {
        assert_eq!(r.status, 200, "warm-up");
    }
    http
}

/// Sends every request at once (each from its own task, released together by a barrier) and
/// returns the responses in the order of `requests`.
pub async fn burst(
    http: &reqwest::Client,
    requests: Vec<reqwest::Request>,
) -> Vec<moat_client::Response> {
    let barrier = Arc::new(tokio::sync::Barrier::new(requests.len()));
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|request| {
            let (http, barrier) = (http.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                read(http.execute(request).await.expect("send")).await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}

/// A protected request prepared by `c` (signed, with its nonce, if `c` signs), ready to send.
pub fn prepared(
    http: &reqwest::Client,
    c: &Client,
    method: http::Method,
    path: &str,
    body: Option<&serde_json::Value>,
    options: &CallOptions,
) -> reqwest::Request {
    let (url, headers, body) = c.prepare(&method, path, body, options).expect("prepare");
    let mut request = http.request(method, url).headers(headers);
    if let Some(body) = body {
        request = request.body(body);
    }
    request.build().expect("request")
}

/// How many responses had each status.
pub fn statuses(responses: &[moat_client::Response]) -> std::collections::BTreeMap<u16, usize> {
    let mut out = std::collections::BTreeMap::new();
    for r in responses {
        *out.entry(r.status).or_insert(0) += 1;
    }
    out
}

/// Asserts that exactly `ok` responses have status `ok_status` and that every other one is the
/// refusal `(status, code)`.
#[track_caller]
pub fn assert_exactly(
    responses: &[moat_client::Response],
    ok_status: u16,
    ok: usize,
    refused: (u16, &str),
) {
    let seen = statuses(responses);
    assert_eq!(
        seen.get(&ok_status).copied().unwrap_or(0),
        ok,
        "{ok} of {} must pass: {seen:?}",
        responses.len()
    );
    for r in responses.iter().filter(|r| r.status != ok_status) {
        assert_problem(r, refused.0, refused.1);
    }
}

/// A `POST` of JSON by the device.
pub async fn post(c: &Client, path: &str, body: Value) -> Response {
    c.call(Method::POST, path, Some(&body), opts())
        .await
        .expect("call")
}

/// Call options with a bearer token.
pub fn bearer(token: &str) -> CallOptions {
    CallOptions {
        headers: vec![("authorization".into(), format!("Bearer {token}"))],
        ..opts()
    }
}

/// The outbox sender's messages to `phone`, newest first.
pub async fn outbox(server: &TestServer, phone: &str) -> Vec<Value> {
    let r = http()
        .get(format!(
            "{}/admin/v1/sms/outbox?phone={}",
            server.admin,
            phone.replace('+', "%2B")
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("outbox");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    v["messages"].as_array().expect("messages").clone()
}

/// The 6-digit code of the newest SMS to `phone`.
pub async fn latest_code(server: &TestServer, phone: &str) -> String {
    let messages = outbox(server, phone).await;
    let body = messages.first().expect("an SMS")["body"]
        .as_str()
        .expect("body")
        .to_owned();
    body.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .expect("6-digit code")
        .to_owned()
}

/// Registers `phone` from device `c` (code read from the outbox); the new user's id.
pub async fn register(server: &TestServer, c: &Client, phone: &str, password: &str) -> String {
    let r = post(
        c,
        "/api/register",
        json!({"phone": phone, "password": password}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let code = latest_code(server, phone).await;
    let r = post(
        c,
        "/api/register/confirm",
        json!({"phone": phone, "otp": code}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json().expect("json")["user_id"]
        .as_str()
        .expect("user id")
        .to_owned()
}
