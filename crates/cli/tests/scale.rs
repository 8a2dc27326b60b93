//! Several `moat serve` processes sharing one PostgreSQL and one Redis, as behind a load
//! balancer: what one instance sees, the others honour.
//!
//! Every instance listens on the same port on its own loopback address (127.0.0.1, .2, .3)
//! and all share `public_base_url = http://moat.test:<port>`, as instances behind one load
//! balancer do; a test picks the instance a request goes to by resolving `moat.test` to that
//! address. Each test owns its PostgreSQL cluster and Redis server, so it may stop and restart
//! them.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Method;
use moat_client::{CallOptions, Client, Credential};
use moat_testkit::{Postgres, Redis, free_port};

const ADMIN_TOKEN: &str = "scale-admin-token-0123456789abcdef";
const HOST: &str = "moat.test";

struct Instance {
    child: Child,
    ip: String,
    admin: u16,
}

struct Cluster {
    instances: Vec<Instance>,
    port: u16,
    pg: Postgres,
    redis: Redis,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in &mut self.instances {
            let _ = i.child.kill();
            let _ = i.child.wait();
        }
        if std::thread::panicking() {
            for n in 0..self.instances.len() {
                let log =
                    std::fs::read_to_string(self._dir.path().join(format!("instance-{n}.log")))
                        .unwrap_or_default();
                eprintln!(
                    "--- instance {n} log (last 4 KiB) ---\n{}",
                    &log[log.len().saturating_sub(4096)..]
                );
            }
        }
    }
}

/// Whether `GET /readyz` on the admin listener answers 200 (plain HTTP/1.1 over a socket:
/// this runs before the async client is needed).
fn ready(admin: u16) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", admin)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET /readyz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.ends_with(b" 200")
}

/// Starts `moat serve` with `dir/moat.toml` on `ip:port` and waits until it is ready.
fn spawn(dir: &Path, ip: &str, port: u16, i: usize) -> Instance {
    let admin = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["serve", "--config"])
        .arg(dir.join("moat.toml"))
        .env("MOAT_SERVER__LISTEN", format!("{ip}:{port}"))
        .env("MOAT_ADMIN__LISTEN", format!("127.0.0.1:{admin}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("instance-{i}.log"))).expect("log file"))
        .spawn()
        .expect("spawn moat serve");
    let mut instance = Instance {
        child,
        ip: ip.to_owned(),
        admin,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready(admin) {
        if let Ok(Some(status)) = instance.child.try_wait() {
            let log =
                std::fs::read_to_string(dir.join(format!("instance-{i}.log"))).unwrap_or_default();
            panic!("instance {i} exited ({status}): {log}");
        }
        assert!(Instant::now() < deadline, "instance {i} not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    instance
}

fn write_config(dir: &Path, pg: &str, redis: &str, port: u16, mode: &str, extra: &str) {
    let config = format!(
        "[server]\npublic_base_url = \"http://{HOST}:{port}\"\ndata_dir = \"{data}\"\n\
         [admin]\ntoken = \"{ADMIN_TOKEN}\"\n[store]\nurl = \"{pg}\"\ntimeout_ms = 1000\n\
         [redis]\nurl = \"{redis}\"\ntimeout_ms = 500\n[enrollment]\nmode = \"{mode}\"\nrsa_pool_size = 2\n{extra}",
        data = dir.join("data").display(),
    );
    std::fs::write(dir.join("moat.toml"), config).expect("write config");
}

impl Cluster {
    /// PostgreSQL, Redis and `n` instances sharing them (and one secrets file, as copies of
    /// it would be on separate machines).
    fn start(n: usize, mode: &str, extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let pg = Postgres::start();
        let redis = Redis::start();
        let port = free_port();
        write_config(dir.path(), &pg.database(), &redis.url(), port, mode, extra);
        let mut cluster = Self {
            instances: Vec::new(),
            port,
            pg,
            redis,
            _dir: dir,
        };
        for i in 0..n {
            let ip = format!("127.0.0.{}", i + 1);
            let instance = spawn(cluster._dir.path(), &ip, port, i);
            cluster.instances.push(instance);
        }
        cluster
    }

    /// An HTTP client whose requests for the public host go to instance `i`.
    fn via(&self, i: usize) -> reqwest::Client {
        let addr = format!("{}:{}", self.instances[i].ip, self.port)
            .parse()
            .expect("addr");
        reqwest::Client::builder()
            .resolve(HOST, addr)
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client")
    }

    fn base(&self) -> String {
        format!("http://{HOST}:{}", self.port)
    }

    fn device(&self, i: usize) -> Client {
        let mut c = Client::generate(&self.base()).expect("client");
        c.set_http_client(self.via(i));
        c
    }

    async fn admin(&self, i: usize, method: Method, path: &str) -> reqwest::Response {
        reqwest::Client::new()
            .request(
                method,
                format!("http://127.0.0.1:{}{path}", self.instances[i].admin),
            )
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("admin call")
    }

    async fn readyz(&self, i: usize) -> u16 {
        self.via(i)
            .get(format!("{}/readyz", self.base()))
            .send()
            .await
            .map_or(0, |r| r.status().as_u16())
    }
}

fn device_uuid(c: &Client) -> String {
    match c.credential() {
        Some(Credential::ClientCredential { device, .. }) => device.clone(),
        Some(Credential::ApiKey {
            device: Some(device),
            ..
        }) => device.clone(),
        other => panic!("unexpected credential {other:?}"),
    }
}

async fn get_device(c: &Client) -> u16 {
    c.call(Method::GET, "/v1/device", None, CallOptions::default())
        .await
        .map_or(0, |r| r.status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_on_a_confirmed_on_b_and_a_nonce_used_on_a_is_refused_on_b() {
    let cluster = Cluster::start(3, "otp", "");
    // Enroll on A, read the code on B, confirm on C, fetch the credential on A.
    let mut c = cluster.device(0);
    c.enroll("phone-1", Some("android"))
        .await
        .expect("enroll on A");
    c.set_http_client(cluster.via(1));
    let mut code = None;
    for _ in 0..40 {
        if let Some(item) = c
            .mailbox()
            .await
            .expect("mailbox on B")
            .into_iter()
            .find(|i| i["kind"] == "enrollment_otp")
        {
            code = item["code"].as_str().map(str::to_owned);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let code = code.expect("the code enrolled on A is in the mailbox read on B");
    c.set_http_client(cluster.via(2));
    c.confirm("phone-1", &code).await.expect("confirm on C");
    c.set_http_client(cluster.via(0));
    let mut credential = None;
    for _ in 0..40 {
        credential = c
            .mailbox()
            .await
            .expect("mailbox on A")
            .into_iter()
            .find(|i| i["kind"] == "client_credential");
        if credential.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let credential: Credential =
        serde_json::from_value(credential.expect("credential")).expect("credential item");
    c.set_credential(Some(credential)).expect("set");

    // One signed request (unique nonce), sent to A, then replayed to B and C.
    let body = serde_json::json!({"transfer": 100});
    let (url, headers, bytes) = c
        .prepare(
            &Method::POST,
            "/v1/device/echo",
            Some(&body),
            &CallOptions::default(),
        )
        .expect("prepare");
    let send = |i: usize| {
        let req = cluster
            .via(i)
            .post(url.clone())
            .headers(headers.clone())
            .body(bytes.clone().unwrap_or_default());
        async move { req.send().await.expect("send") }
    };
    assert_eq!(send(0).await.status(), 200, "first use on A");
    for i in [1, 2] {
        let replay = send(i).await;
        assert_eq!(replay.status(), 401, "replay on instance {i}");
        let problem: serde_json::Value = replay.json().await.expect("problem");
        assert_eq!(problem["code"], "replay_detected");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_is_shared_by_all_instances() {
    let cluster = Cluster::start(
        2,
        "dynamic",
        "[[route]]\npath = \"/v1/device\"\nrequire = [\"device\"]\n\
         rate_limit = { key = \"device\", per_second = 0.01, burst = 6 }\n",
    );
    let mut c = cluster.device(0);
    c.enroll_and_fetch("phone-1", None).await.expect("enroll");
    // Alternate between the instances: six pass in all, not six on each.
    let mut statuses = Vec::new();
    for n in 0..10 {
        c.set_http_client(cluster.via(n % 2));
        statuses.push(get_device(&c).await);
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 200, 200, 429, 429, 429, 429],
        "one budget across instances"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_and_key_rotation_through_a_take_effect_on_b_within_the_bound() {
    let cluster = Cluster::start(2, "dynamic", "");
    let mut c = cluster.device(1);
    c.enroll_and_fetch("phone-1", None).await.expect("enroll");
    // B has the credential in its verification cache.
    assert_eq!(get_device(&c).await, 200);
    assert_eq!(get_device(&c).await, 200);
    let revoked = cluster
        .admin(
            0,
            Method::POST,
            &format!("/admin/v1/devices/{}/revoke", device_uuid(&c)),
        )
        .await;
    assert_eq!(revoked.status(), 200);
    let start = Instant::now();
    loop {
        match get_device(&c).await {
            200 => assert!(
                start.elapsed() < Duration::from_millis(1_500),
                "B still accepts the revoked device after {:?} (bound: 1 s cache)",
                start.elapsed()
            ),
            403 => break,
            other => panic!("unexpected status {other}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("revocation took effect on B after {:?}", start.elapsed());

    // A signing-key rotation made through A is published (and used) by B within the 1 s
    // reload period.
    let rotated = cluster
        .admin(0, Method::POST, "/admin/v1/keys/rotate")
        .await;
    assert_eq!(rotated.status(), 200);
    let kid = rotated.json::<serde_json::Value>().await.expect("json")["kid"]
        .as_str()
        .expect("kid")
        .to_owned();
    let start = Instant::now();
    loop {
        let jwks: serde_json::Value = cluster
            .via(1)
            .get(format!("{}/.well-known/jwks.json", cluster.base()))
            .send()
            .await
            .expect("jwks")
            .json()
            .await
            .expect("json");
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .filter_map(|k| k["kid"].as_str())
            .collect();
        if kids.contains(&kid.as_str()) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_millis(1_500),
            "B does not know the key rotated on A after {:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Hammers a protected endpoint from several tasks and counts outcomes by status.
async fn hammer(c: Arc<Client>, for_: Duration) -> std::collections::BTreeMap<u16, u32> {
    let deadline = Instant::now() + for_;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = std::collections::BTreeMap::new();
            while Instant::now() < deadline {
                *seen.entry(get_device(&c).await).or_insert(0) += 1;
            }
            seen
        }));
    }
    let mut all = std::collections::BTreeMap::new();
    for t in tasks {
        for (k, v) in t.await.expect("task") {
            *all.entry(k).or_insert(0) += v;
        }
    }
    all
}

/// Hammers for 2 s and asserts that every answer was 503: nothing let through, nothing hung.
async fn assert_only_503(c: &Arc<Client>, what: &str) {
    let seen = hammer(c.clone(), Duration::from_secs(2)).await;
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        [503],
        "only 503 while {what} is down: {seen:?}"
    );
}

/// Waits until requests pass again after `what` came back; returns how long it took.
async fn wait_until_resumed(c: &Client, what: &str) -> Duration {
    let start = Instant::now();
    loop {
        let status = get_device(c).await;
        if status == 200 {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "service did not resume after {what} came back (last status {status})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_closed_and_service_resumes() {
    let cluster = Cluster::start(2, "otp", "");
    let mut c = cluster.device(0);
    c.enroll_and_fetch("phone-1", None).await.expect("enroll");
    let c = Arc::new(c);
    assert_eq!(get_device(&c).await, 200);
    cluster.redis.stop();
    // Signed requests need the shared replay cache: not one may pass without it.
    assert_only_503(&c, "Redis").await;
    assert_eq!(cluster.readyz(0).await, 503);
    assert_eq!(cluster.readyz(1).await, 503);
    cluster.redis.resume();
    let took = wait_until_resumed(&c, "Redis").await;
    assert_eq!(cluster.readyz(0).await, 200);
    assert_eq!(cluster.readyz(1).await, 200);
    eprintln!("resumed {took:?} after Redis restarted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_fails_closed_and_service_resumes() {
    let cluster = Cluster::start(2, "dynamic", "");
    let mut c = cluster.device(0);
    c.enroll_and_fetch("phone-1", None).await.expect("enroll");
    let c = Arc::new(c);
    assert_eq!(get_device(&c).await, 200);
    cluster.pg.stop();
    // Past the 1 s verification cache, every request needs the store: none may pass.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_only_503(&c, "PostgreSQL").await;
    assert_eq!(cluster.readyz(0).await, 503);
    // A new enrollment cannot half-happen either.
    let mut other = cluster.device(1);
    let err = other
        .enroll("phone-2", None)
        .await
        .expect_err("no enrollment without the store");
    assert!(
        matches!(&err, moat_client::Error::Problem { status: 503, .. }),
        "{err}"
    );
    cluster.pg.resume();
    let took = wait_until_resumed(&c, "PostgreSQL").await;
    assert_eq!(cluster.readyz(1).await, 200);
    eprintln!("resumed {took:?} after PostgreSQL restarted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_deployment_moves_to_postgres_and_its_devices_keep_working() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let data = dir.path().join("data");
    let base = format!(
        "[server]\npublic_base_url = \"http://{HOST}:{port}\"\ndata_dir = \"{}\"\n\
         [admin]\ntoken = \"{ADMIN_TOKEN}\"\n[enrollment]\nmode = \"otp\"\nrsa_pool_size = 2\n",
        data.display()
    );
    std::fs::write(dir.path().join("moat.toml"), &base).expect("config");
    let mut single = spawn(dir.path(), "127.0.0.1", port, 0);
    let via = |_: usize| {
        reqwest::Client::builder()
            .resolve(HOST, format!("127.0.0.1:{port}").parse().expect("addr"))
            .build()
            .expect("client")
    };
    let mut c = Client::generate(&format!("http://{HOST}:{port}")).expect("client");
    c.set_http_client(via(0));
    c.enroll_and_fetch("phone-1", Some("android"))
        .await
        .expect("enroll on SQLite");
    assert_eq!(get_device(&c).await, 200);
    let _ = single.child.kill();
    let _ = single.child.wait();

    let pg = Postgres::start();
    let target = pg.database();
    let from = format!("sqlite://{}/moat.db", data.display());
    let out = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args([
            "admin", "migrate", "--from", &from, "--to", &target, "--json",
        ])
        .output()
        .expect("run migrate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["tables"]["devices"], 1, "{report}");
    assert!(
        report["tables"]["integrity_keys"].as_u64() >= Some(1),
        "{report}"
    );
    // A second run would mix two deployments: refused, nothing written.
    let again = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["admin", "migrate", "--from", &from, "--to", &target])
        .output()
        .expect("run migrate");
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already holds Moat data"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // The same deployment on PostgreSQL: the device's sealed HMAC secret still opens, and its
    // signed requests pass.
    std::fs::write(
        dir.path().join("moat.toml"),
        format!("{base}[store]\nurl = \"{target}\"\n"),
    )
    .expect("config");
    let mut moved = spawn(dir.path(), "127.0.0.1", port, 1);
    assert_eq!(get_device(&c).await, 200, "the device works after the move");
    let echoed = c
        .call(
            Method::POST,
            "/v1/device/echo",
            Some(&serde_json::json!({"after": "migration"})),
            CallOptions::default(),
        )
        .await
        .expect("echo");
    assert_eq!(echoed.status, 200);
    let _ = moved.child.kill();
    let _ = moved.child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn challenges_and_sms_budgets_are_shared_by_all_instances() {
    let cluster = Cluster::start(
        2,
        "dynamic",
        "[sms]\nglobal_hour = 3\n[[route]]\npath = \"/v1/device\"\nrequire = [\"device\", \"integrity\"]\n",
    );
    let package: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let registered = reqwest::Client::new()
        .put(format!(
            "http://127.0.0.1:{}/admin/v1/apps/app/1",
            cluster.instances[0].admin
        ))
        .bearer_auth(ADMIN_TOKEN)
        .body(package.clone())
        .send()
        .await
        .expect("register");
    assert_eq!(registered.status(), 200);
    let mut c = cluster.device(0);
    c.enroll_and_fetch("phone-1", None).await.expect("enroll");

    // A challenge issued by A is answered on B, once.
    let challenge: serde_json::Value = c
        .call(
            Method::POST,
            "/v1/attest/challenge",
            Some(&serde_json::json!({"app_id": "app", "version": "1"})),
            CallOptions::default(),
        )
        .await
        .expect("challenge")
        .json()
        .expect("json");
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(
        &moat_core::b64::url_decode(challenge["nonce"].as_str().expect("nonce")).expect("b64"),
    );
    for r in challenge["ranges"].as_array().expect("ranges") {
        let (o, l) = (
            usize::try_from(r[0].as_u64().expect("o")).expect("o"),
            usize::try_from(r[1].as_u64().expect("l")).expect("l"),
        );
        ctx.update(&package[o..o + l]);
    }
    let answer = serde_json::json!({
        "challenge_id": challenge["challenge_id"],
        "measurement": moat_core::b64::url_encode(ctx.finish().as_ref()),
    });
    c.set_http_client(cluster.via(1));
    let token = |r: moat_client::Response| {
        r.json().expect("json")["integrity_token"]
            .as_str()
            .expect("token")
            .to_owned()
    };
    let first = token(
        c.call(
            Method::POST,
            "/v1/attest",
            Some(&answer),
            CallOptions::default(),
        )
        .await
        .expect("attest on B"),
    );
    let again = token(
        c.call(
            Method::POST,
            "/v1/attest",
            Some(&answer),
            CallOptions::default(),
        )
        .await
        .expect("attest again"),
    );
    let with = |t: &str| CallOptions {
        headers: vec![("moat-integrity".into(), t.into())],
        ..CallOptions::default()
    };
    c.set_http_client(cluster.via(0));
    let status = |r: moat_client::Result<moat_client::Response>| r.expect("call").status;
    assert_eq!(
        status(c.call(Method::GET, "/v1/device", None, with(&first)).await),
        200,
        "the token B issued opens the route on A"
    );
    assert_eq!(
        status(c.call(Method::GET, "/v1/device", None, with(&again)).await),
        401,
        "the challenge was used once, across instances"
    );

    // The global SMS budget (3 an hour) is one budget: the fourth SMS is refused whichever
    // instance it asks.
    let mut statuses = Vec::new();
    for n in 0..4 {
        c.set_http_client(cluster.via(n % 2));
        let r = c
            .call(
                Method::POST,
                "/api/register",
                Some(&serde_json::json!({
                    "phone": format!("+1415555267{n}"),
                    "password": "correct horse battery staple",
                })),
                CallOptions::default(),
            )
            .await
            .expect("register");
        statuses.push((r.status, r.problem_code()));
    }
    assert_eq!(
        statuses,
        [
            (202, None),
            (202, None),
            (202, None),
            (429, Some("sms_blocked".to_owned()))
        ]
    );
}
