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
    /// The instances' store URL.
    store_url: String,
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

/// Deadlines of the store and Redis calls, milliseconds: short, so that the fault tests see
/// an outage quickly.
const TIMEOUTS: (u64, u64) = (1000, 500);
/// Deadlines for the burst test: hundreds of requests in flight on a shared 2-core machine
/// can keep a call waiting longer than [`TIMEOUTS`] allow, which would be a `503`, not a limit
/// giving way.
const BURST_TIMEOUTS: (u64, u64) = (10_000, 10_000);

fn write_config(
    dir: &Path,
    (pg, redis): (&str, &str),
    port: u16,
    mode: &str,
    extra: &str,
    (store_ms, redis_ms): (u64, u64),
) {
    let config = format!(
        "[server]\npublic_base_url = \"http://{HOST}:{port}\"\ndata_dir = \"{data}\"\n\
         [admin]\ntoken = \"{ADMIN_TOKEN}\"\n[store]\nurl = \"{pg}\"\ntimeout_ms = {store_ms}\n\
         [redis]\nurl = \"{redis}\"\ntimeout_ms = {redis_ms}\n[enrollment]\nmode = \"{mode}\"\nrsa_pool_size = 2\n{extra}",
        data = dir.join("data").display(),
    );
    std::fs::write(dir.join("moat.toml"), config).expect("write config");
}

impl Cluster {
    /// PostgreSQL, Redis and `n` instances sharing them (and one secrets file, as copies of
    /// it would be on separate machines).
    fn start(n: usize, mode: &str, extra: &str) -> Self {
        Self::start_timed(n, mode, extra, TIMEOUTS)
    }

    /// As [`Self::start`], with these `(store, redis)` call deadlines.
    fn start_timed(n: usize, mode: &str, extra: &str, timeouts: (u64, u64)) -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let pg = Postgres::start();
        let redis = Redis::start();
        let port = free_port();
        let store_url = pg.database();
        write_config(
            dir.path(),
            (&store_url, &redis.url()),
            port,
            mode,
            extra,
            timeouts,
        );
        let mut cluster = Self {
            instances: Vec::new(),
            port,
            store_url,
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

/// Requests in one burst, split evenly over the instances.
const BURST: usize = 300;

impl Cluster {
    /// One HTTP client per instance, each with `BURST` connections opened ahead (warmed on
    /// `/healthz`), so a burst's requests leave together.
    async fn burst_clients(&self) -> Vec<reqwest::Client> {
        let mut clients = Vec::new();
        for i in 0..self.instances.len() {
            let addr = format!("{}:{}", self.instances[i].ip, self.port)
                .parse()
                .expect("addr");
            let http = reqwest::Client::builder()
                .resolve(HOST, addr)
                .pool_max_idle_per_host(BURST)
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client");
            let warm = (0..BURST)
                .map(|_| {
                    http.get(format!("{}/healthz", self.base()))
                        .build()
                        .expect("request")
                })
                .collect();
            for r in burst(std::slice::from_ref(&http), warm).await {
                assert_eq!(r.status, 200, "warm-up");
            }
            clients.push(http);
        }
        clients
    }
}

/// Sends every request at once (released together by a barrier), request `k` to instance
/// `k % clients.len()`; the responses in order.
async fn burst(
    clients: &[reqwest::Client],
    requests: Vec<reqwest::Request>,
) -> Vec<moat_client::Response> {
    let barrier = Arc::new(tokio::sync::Barrier::new(requests.len()));
    let tasks: Vec<_> = requests
        .into_iter()
        .enumerate()
        .map(|(k, request)| {
            let http = clients[k % clients.len()].clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let r = http.execute(request).await.expect("send");
                moat_client::Response {
                    status: r.status().as_u16(),
                    headers: r.headers().clone(),
                    body: r.bytes().await.expect("body").to_vec(),
                }
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}

/// A protected request prepared by `c` (signed, with its nonce, if `c` signs).
fn prepared(
    c: &Client,
    method: Method,
    path: &str,
    payload: moat_client::Payload<'_>,
    options: &CallOptions,
) -> reqwest::Request {
    let (url, headers, body) = c
        .prepare_payload(&method, path, payload, options)
        .expect("prepare");
    let mut request = reqwest::Request::new(method, url);
    *request.headers_mut() = headers;
    *request.body_mut() = body.map(reqwest::Body::from);
    request
}

fn json_of(v: &serde_json::Value) -> moat_client::Payload<'_> {
    moat_client::Payload::Json(v)
}

/// Asserts that exactly `ok` responses have status `ok_status` and that every other one is
/// the problem `code`.
#[track_caller]
fn assert_exactly(responses: &[moat_client::Response], ok_status: u16, ok: usize, code: &str) {
    let mut seen = std::collections::BTreeMap::new();
    for r in responses {
        *seen.entry(r.status).or_insert(0) += 1;
    }
    assert_eq!(
        responses.iter().filter(|r| r.status == ok_status).count(),
        ok,
        "{ok} of {} must pass: {seen:?}",
        responses.len()
    );
    for r in responses.iter().filter(|r| r.status != ok_status) {
        assert_eq!(
            r.problem_code().as_deref(),
            Some(code),
            "{seen:?}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
}

fn token_field(r: &moat_client::Response, name: &str) -> String {
    r.json().expect("json")[name]
        .as_str()
        .expect(name)
        .to_owned()
}

/// An App Attest assertion by `key` with `counter` over `challenge`'s nonce: the CBOR map
/// `{"signature", "authenticatorData"}`, written by hand.
fn assertion(
    key: &aws_lc_rs::signature::EcdsaKeyPair,
    app_id: &str,
    counter: u32,
    challenge: &serde_json::Value,
) -> Vec<u8> {
    use aws_lc_rs::digest::{SHA256, digest};
    let nonce =
        moat_core::b64::url_decode(challenge["nonce"].as_str().expect("nonce")).expect("b64");
    let mut auth = digest(&SHA256, app_id.as_bytes()).as_ref().to_vec();
    auth.push(0x01);
    auth.extend_from_slice(&counter.to_be_bytes());
    let mut signed = auth.clone();
    signed.extend_from_slice(digest(&SHA256, &nonce).as_ref());
    let signature = key
        .sign(
            &aws_lc_rs::rand::SystemRandom::new(),
            digest(&SHA256, &signed).as_ref(),
        )
        .expect("sign");
    let mut out = vec![0xa2];
    for (name, bytes) in [
        ("signature", signature.as_ref()),
        ("authenticatorData", auth.as_slice()),
    ] {
        out.push(0x60 | u8::try_from(name.len()).expect("short"));
        out.extend_from_slice(name.as_bytes());
        out.push(0x58);
        out.push(u8::try_from(bytes.len()).expect("short"));
        out.extend_from_slice(bytes);
    }
    out
}

/// Every shared once-only or counted state, under bursts of `BURST` requests split over two
/// instances: the limit holds exactly for the pair as it does for one. (One cluster for all:
/// starting one costs more than the bursts.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_only_and_counted_states_hold_exactly_across_two_instances_under_bursts() {
    let (team, bundle) = ("ABCDE12345", "com.example.burst");
    let cluster = Cluster::start_timed(
        2,
        "dynamic",
        &format!(
            "per_ip_hour = 100000\n[accounts]\nlogin_per_minute = 1000\nlogin_lock_after = 10\n\
             [sms]\nper_device_hour = 1000\nper_ip_hour = 1000\nper_country_hour = 1000\nglobal_hour = 10\n\
             [attestation.app_attest]\nteam_id = \"{team}\"\nbundle_id = \"{bundle}\"\nenvironment = \"any\"\n\
             [[route]]\npath = \"/v1/device\"\nrequire = [\"device\", \"integrity\"]\n\
             [[route]]\npath = \"/v1/device/echo\"\nrequire = [\"device\"]\n\
             rate_limit = {{ key = \"device\", per_second = 0.001, burst = 7 }}\n"
        ),
        BURST_TIMEOUTS,
    );
    let started = Instant::now();
    let http = cluster.burst_clients().await;
    let none = CallOptions::default();
    let mut c = cluster.device(0);
    c.enroll_and_fetch("phone-1", None).await.expect("enroll");

    // Signature nonce: one request signed with the installation key, sent BURST times.
    let installation = CallOptions {
        auth: moat_client::Auth::InstallationSignature,
        ..CallOptions::default()
    };
    let body = serde_json::json!({"transfer": 100});
    let one = prepared(
        &c,
        Method::POST,
        "/v1/device/echo",
        json_of(&body),
        &installation,
    );
    let requests = (0..BURST)
        .map(|_| one.try_clone().expect("clone"))
        .collect();
    assert_exactly(&burst(&http, requests).await, 200, 1, "replay_detected");

    // Route rate limit (7 per device, refilling one per 1000 s), from a fresh device.
    let mut d = cluster.device(1);
    d.enroll_and_fetch("phone-2", None).await.expect("enroll");
    let requests = (0..BURST)
        .map(|_| prepared(&d, Method::POST, "/v1/device/echo", json_of(&body), &none))
        .collect();
    assert_exactly(&burst(&http, requests).await, 200, 7, "rate_limited");

    // DPoP jti: one proof, BURST enrollments: one happens.
    let mut e = cluster.device(0);
    let proof = e.dpop(&Method::POST, "/v1/enroll").expect("proof");
    let requests = (0..BURST)
        .map(|i| {
            let mut r = reqwest::Request::new(
                Method::POST,
                format!("{}/v1/enroll", cluster.base())
                    .parse()
                    .expect("url"),
            );
            r.headers_mut()
                .insert("dpop", proof.parse().expect("header"));
            r.headers_mut()
                .insert("content-type", "application/json".parse().expect("header"));
            *r.body_mut() = Some(
                serde_json::json!({"device_id": format!("e-{i}")})
                    .to_string()
                    .into(),
            );
            r
        })
        .collect();
    assert_exactly(&burst(&http, requests).await, 200, 1, "replay_detected");

    // Mailbox read-once: sixteen items for that identity (the one enrollment above and
    // fifteen more, through both instances), BURST readers, each with its own proof.
    for i in 0..15 {
        e.set_http_client(cluster.via(i % 2));
        e.enroll(&format!("e-more-{i}"), None)
            .await
            .expect("enroll");
    }
    let requests = (0..BURST)
        .map(|_| {
            let mut r = reqwest::Request::new(
                Method::GET,
                format!("{}/v1/mailbox", cluster.base())
                    .parse()
                    .expect("url"),
            );
            let proof = e.dpop(&Method::GET, "/v1/mailbox").expect("proof");
            r.headers_mut()
                .insert("dpop", proof.parse().expect("header"));
            r
        })
        .collect();
    let responses = burst(&http, requests).await;
    assert!(
        responses.iter().all(|r| r.status == 200),
        "every reader is answered"
    );
    let mut ids: Vec<String> = responses
        .iter()
        .flat_map(|r| {
            r.json().expect("json")["items"]
                .as_array()
                .expect("items")
                .clone()
        })
        .map(|item| item["id"].as_str().expect("id").to_owned())
        .collect();
    ids.sort();
    let handed_out = ids.len();
    ids.dedup();
    assert_eq!(
        (handed_out, ids.len()),
        (16, 16),
        "sixteen items, each once"
    );

    // SMS budget: the global one (10 an hour) binds; one SMS goes to the user registered here,
    // so a burst to BURST distinct phones gets exactly nine more.
    let phone = "+14155552671";
    let password = "correct horse battery staple";
    let r = c
        .call(
            Method::POST,
            "/api/register",
            Some(&serde_json::json!({"phone": phone, "password": password})),
            none.clone(),
        )
        .await
        .expect("register");
    assert_eq!(r.status, 202);
    let outbox: serde_json::Value = cluster
        .admin(1, Method::GET, "/admin/v1/sms/outbox?phone=%2B14155552671")
        .await
        .json()
        .await
        .expect("json");
    let text = outbox["messages"][0]["body"].as_str().expect("an SMS");
    let code = text
        .split(|ch: char| !ch.is_ascii_digit())
        .find(|w| w.len() == 6)
        .expect("code");
    c.set_http_client(cluster.via(1));
    let r = c
        .call(
            Method::POST,
            "/api/register/confirm",
            Some(&serde_json::json!({"phone": phone, "otp": code})),
            none.clone(),
        )
        .await
        .expect("confirm");
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let requests = (0..BURST)
        .map(|i| {
            let body = serde_json::json!({"phone": format!("+1415555{:04}", 3000 + i)});
            prepared(
                &d,
                Method::POST,
                "/api/password/reset",
                json_of(&body),
                &none,
            )
        })
        .collect();
    assert_exactly(&burst(&http, requests).await, 202, 9, "sms_blocked");

    // Logins: a right password gives back the failure its attempt reserved (eleven pass, one
    // more than the lockout allows failures), each starting a token family.
    let login = [
        ("grant_type", "password"),
        ("username", phone),
        ("password", password),
    ];
    let mut families = Vec::new();
    for i in 0..11 {
        c.set_http_client(cluster.via(i % 2));
        let r = c
            .call_form("/api/token", &login, none.clone())
            .await
            .expect("login");
        assert_eq!(
            r.status,
            200,
            "login {i}: {}",
            String::from_utf8_lossy(&r.body)
        );
        families.push(token_field(&r, "refresh_token"));
    }

    // Refresh rotation: one token presented BURST times, once; its reuse revokes the token the
    // rotation issued. Then ten families whose token is presented twice at once, once on each
    // instance: each rotates once and keeps no live token.
    let form = |t: &str| {
        [("grant_type", "refresh_token"), ("refresh_token", t)].map(|(k, v)| (k, v.to_owned()))
    };
    let refresh = |t: &str| {
        let pairs = form(t);
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        prepared(
            &c,
            Method::POST,
            "/api/token",
            moat_client::Payload::Form(&pairs),
            &none,
        )
    };
    let one = refresh(&families[0]);
    let requests = (0..BURST)
        .map(|_| one.try_clone().expect("clone"))
        .collect();
    let responses = burst(&http, requests).await;
    assert_exactly(&responses, 200, 1, "token_invalid");
    let next = token_field(
        responses.iter().find(|r| r.status == 200).expect("winner"),
        "refresh_token",
    );
    let requests = families[1..]
        .iter()
        .flat_map(|t| {
            let one = refresh(t);
            [one.try_clone().expect("clone"), one]
        })
        .collect();
    let responses = burst(&http, requests).await;
    let mut winners = vec![next];
    for pair in responses.chunks(2) {
        assert_exactly(pair, 200, 1, "token_invalid");
        winners.push(token_field(
            pair.iter().find(|r| r.status == 200).expect("winner"),
            "refresh_token",
        ));
    }
    let requests = winners.iter().map(|t| refresh(t)).collect();
    assert_exactly(&burst(&http, requests).await, 200, 0, "token_invalid");

    // Lockout: BURST wrong passwords at once, exactly ten checked; then the right one is
    // refused too.
    let requests = (0..BURST)
        .map(|i| {
            let wrong = format!("wrong password {i}");
            let pairs = [
                ("grant_type", "password"),
                ("username", phone),
                ("password", wrong.as_str()),
            ];
            prepared(
                &c,
                Method::POST,
                "/api/token",
                moat_client::Payload::Form(&pairs),
                &none,
            )
        })
        .collect();
    assert_exactly(&burst(&http, requests).await, 400, 10, "rate_limited");
    let r = c
        .call_form("/api/token", &login, none.clone())
        .await
        .expect("login");
    assert_eq!(r.status, 429);

    // Attestation challenge: one challenge (issued by A), its answer sent BURST times; one
    // genuine integrity token among the answers (the route requiring one tells).
    let package: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
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
    c.set_http_client(cluster.via(0));
    let challenge = |app: &str| {
        let body = serde_json::json!({"app_id": app, "version": "1"});
        prepared(
            &c,
            Method::POST,
            "/v1/attest/challenge",
            json_of(&body),
            &none,
        )
    };
    let ch = burst(&http, vec![challenge("app")]).await[0]
        .json()
        .expect("json");
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(&moat_core::b64::url_decode(ch["nonce"].as_str().expect("nonce")).expect("b64"));
    for r in ch["ranges"].as_array().expect("ranges") {
        let (o, l) = (
            usize::try_from(r[0].as_u64().expect("o")).expect("o"),
            usize::try_from(r[1].as_u64().expect("l")).expect("l"),
        );
        ctx.update(&package[o..o + l]);
    }
    let answer = serde_json::json!({
        "challenge_id": ch["challenge_id"],
        "measurement": moat_core::b64::url_encode(ctx.finish().as_ref()),
    });
    let requests = (0..BURST)
        .map(|_| prepared(&c, Method::POST, "/v1/attest", json_of(&answer), &none))
        .collect();
    let tokens = burst(&http, requests).await;
    let genuine = |tokens: Vec<moat_client::Response>| {
        tokens
            .iter()
            .map(|r| {
                assert_eq!(r.status, 200, "always 200");
                let options = CallOptions {
                    headers: vec![("moat-integrity".into(), token_field(r, "integrity_token"))],
                    ..CallOptions::default()
                };
                prepared(
                    &c,
                    Method::GET,
                    "/v1/device",
                    moat_client::Payload::None,
                    &options,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_exactly(
        &burst(&http, genuine(tokens)).await,
        200,
        1,
        "integrity_invalid",
    );

    // App Attest counter: a key attested by this device (stored as an attestation stores it),
    // BURST assertions with counter 1, each answering its own challenge: one passes.
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let alg = &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING;
    let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("key");
    let key = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).expect("key");
    use aws_lc_rs::signature::KeyPair as _;
    let key_id = moat_core::b64::url_encode(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.public_key().as_ref()).as_ref(),
    );
    let store = moat_store::open(&cluster.store_url, &moat_store::PoolOptions::default())
        .await
        .expect("store");
    store
        .attest
        .put_attest_key(
            moat_store::attest::AttestKey {
                key_id: key_id.clone(),
                device: device_uuid(&c),
                public_key: key.public_key().as_ref().to_vec(),
                counter: 0,
                environment: "production".into(),
            },
            0,
        )
        .await
        .expect("put key");
    let challenges = burst(&http, (0..BURST).map(|_| challenge(bundle)).collect()).await;
    let app_id = format!("{team}.{bundle}");
    let requests = challenges
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200);
            let ch = r.json().expect("json");
            let body = serde_json::json!({
                "challenge_id": ch["challenge_id"],
                "platform": "app_attest",
                "key_id": key_id,
                "assertion": moat_core::b64::url_encode(assertion(&key, &app_id, 1, &ch)),
            });
            prepared(&c, Method::POST, "/v1/attest", json_of(&body), &none)
        })
        .collect();
    let tokens = burst(&http, requests).await;
    assert_exactly(
        &burst(&http, genuine(tokens)).await,
        200,
        1,
        "integrity_invalid",
    );
    eprintln!("bursts across two instances took {:?}", started.elapsed());
}

/// A DPoP-proved `POST` of `body` to `path` (the enrollment endpoints), ready to send.
fn dpop_post(
    cluster: &Cluster,
    c: &Client,
    path: &str,
    body: serde_json::Value,
) -> reqwest::Request {
    let mut r = reqwest::Request::new(
        Method::POST,
        format!("{}{path}", cluster.base()).parse().expect("url"),
    );
    let proof = c.dpop(&Method::POST, path).expect("proof");
    r.headers_mut()
        .insert("dpop", proof.parse().expect("header"));
    r.headers_mut()
        .insert("content-type", "application/json".parse().expect("header"));
    *r.body_mut() = Some(body.to_string().into());
    r
}

/// The code attempt locks (an SMS code, an enrollment OTP) and the per-IP enrollment limit,
/// each under a burst of 300 split over two instances sharing PostgreSQL and Redis: exactly
/// five guesses are compared, exactly `per_ip_hour` devices are enrolled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn code_attempts_and_the_enrollment_limit_hold_across_two_instances_under_bursts() {
    const PER_IP: usize = 12;
    let cluster = Cluster::start_timed(
        2,
        "otp",
        &format!("per_ip_hour = {PER_IP}\n"),
        BURST_TIMEOUTS,
    );
    let http = cluster.burst_clients().await;
    let none = CallOptions::default();

    // Enrollment OTP: 300 wrong codes with their own proofs; 4 `otp_invalid`, then locked.
    let mut x = cluster.device(0);
    x.enroll("phone-x", None).await.expect("enroll");
    let code = x.mailbox().await.expect("mailbox")[0]["code"]
        .as_str()
        .expect("code")
        .to_owned();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let requests = (0..BURST)
        .map(|_| {
            dpop_post(
                &cluster,
                &x,
                "/v1/enroll/confirm",
                serde_json::json!({"device_id": "phone-x", "otp": wrong}),
            )
        })
        .collect();
    assert_exactly(&burst(&http, requests).await, 401, 4, "otp_locked");
    let err = x.confirm("phone-x", &code).await.expect_err("locked");
    assert!(
        matches!(&err, moat_client::Error::Problem { status: 403, code, .. } if code == "otp_locked"),
        "{err}"
    );

    // SMS code of a registration: 300 wrong guesses, signed, from its device.
    let mut c = cluster.device(1);
    c.enroll_and_fetch("phone-c", None).await.expect("enroll");
    let phone = "+14155552671";
    let r = c
        .call(
            Method::POST,
            "/api/register",
            Some(&serde_json::json!({"phone": phone, "password": "correct horse battery"})),
            none.clone(),
        )
        .await
        .expect("register");
    assert_eq!(r.status, 202);
    let outbox: serde_json::Value = cluster
        .admin(0, Method::GET, "/admin/v1/sms/outbox?phone=%2B14155552671")
        .await
        .json()
        .await
        .expect("json");
    let text = outbox["messages"][0]["body"]
        .as_str()
        .expect("an SMS")
        .to_owned();
    let code = text
        .split(|ch: char| !ch.is_ascii_digit())
        .find(|w| w.len() == 6)
        .expect("code")
        .to_owned();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let body = serde_json::json!({"phone": phone, "otp": wrong});
    let requests = (0..BURST)
        .map(|_| {
            prepared(
                &c,
                Method::POST,
                "/api/register/confirm",
                json_of(&body),
                &none,
            )
        })
        .collect();
    assert_exactly(&burst(&http, requests).await, 401, 4, "otp_locked");
    let r = c
        .call(
            Method::POST,
            "/api/register/confirm",
            Some(&serde_json::json!({"phone": phone, "otp": code})),
            none.clone(),
        )
        .await
        .expect("confirm");
    assert_eq!(r.problem_code().as_deref(), Some("otp_locked"));

    // Enrollments from one client IP: two were made above; 300 fresh identities at once get
    // exactly the rest of the budget, whichever instance they reach.
    let scripts: Vec<Client> = (0..BURST).map(|i| cluster.device(i % 2)).collect();
    let requests = scripts
        .iter()
        .enumerate()
        .map(|(i, s)| {
            dpop_post(
                &cluster,
                s,
                "/v1/enroll",
                serde_json::json!({"device_id": format!("script-{i}")}),
            )
        })
        .collect();
    assert_exactly(
        &burst(&http, requests).await,
        200,
        PER_IP - 2,
        "rate_limited",
    );
}

// Several instances without a copied secrets file (PROTOCOL section 11): each has its own
// data directory, and the data key comes from `server.data_key`.

/// The data key every instance of these tests is given (base64url of 32 bytes).
const DATA_KEY: &str = "8J2Q7kHh3n4bXo6yS0m1aZc9fVqLrT5uWpEiKdGjNsA";

/// Writes `dir/moat.toml` for one instance with its own data directory on `pg`;
/// `data_key` is the `server.data_key` line, if any.
fn write_own_config(dir: &Path, pg: &str, port: u16, data_key: Option<&str>) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let data_key = data_key.map_or(String::new(), |r| format!("data_key = \"{r}\"\n"));
    let config = format!(
        "[server]\npublic_base_url = \"http://{HOST}:{port}\"\ndata_dir = \"{data}\"\n{data_key}\
         [admin]\ntoken = \"{ADMIN_TOKEN}\"\n[store]\nurl = \"{pg}\"\n\
         [enrollment]\nmode = \"dynamic\"\n",
        data = dir.join("data").display(),
    );
    std::fs::write(dir.join("moat.toml"), config).expect("write config");
}

/// Starts `moat serve` with `dir/moat.toml` on `ip:port`, with `MOAT_TEST_DATA_KEY` set to
/// `key` (if any); does not wait.
fn start_own(dir: &Path, ip: &str, port: u16, key: Option<&str>) -> (Child, u16) {
    let admin = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_moat"));
    cmd.args(["serve", "--config"])
        .arg(dir.join("moat.toml"))
        .env("MOAT_SERVER__LISTEN", format!("{ip}:{port}"))
        .env("MOAT_ADMIN__LISTEN", format!("127.0.0.1:{admin}"))
        .env("RUST_LOG", "warn")
        .env_remove("MOAT_TEST_DATA_KEY")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("serve.log")).expect("log file"));
    if let Some(key) = key {
        cmd.env("MOAT_TEST_DATA_KEY", key);
    }
    (cmd.spawn().expect("spawn moat serve"), admin)
}

/// Waits until the instance is ready, or panics with its log if it exits.
fn wait_own(dir: &Path, child: &mut Child, admin: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready(admin) {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
            panic!("instance in {} exited ({status}): {log}", dir.display());
        }
        assert!(Instant::now() < deadline, "instance not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for the instance to exit, returning its status and log.
fn exit_of(dir: &Path, mut child: Child) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let log = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
            return (status, log);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the instance did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Killed(Vec<Child>);

impl Drop for Killed {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn client_via(ip: &str, port: u16) -> reqwest::Client {
    reqwest::Client::builder()
        .resolve(HOST, format!("{ip}:{port}").parse().expect("addr"))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_with_the_data_key_from_the_environment_start_together_and_agree() {
    let root = tempfile::tempdir().expect("tmp");
    let pg = Postgres::start();
    let store = pg.database();
    let port = free_port();
    let dirs: Vec<_> = (0..2).map(|i| root.path().join(format!("i{i}"))).collect();
    for d in &dirs {
        write_own_config(d, &store, port, Some("env:MOAT_TEST_DATA_KEY"));
    }
    // Both at once, on an empty store.
    let (c0, a0) = start_own(&dirs[0], "127.0.0.1", port, Some(DATA_KEY));
    let (c1, a1) = start_own(&dirs[1], "127.0.0.2", port, Some(DATA_KEY));
    let mut children = Killed(vec![c0, c1]);
    wait_own(&dirs[0], &mut children.0[0], a0);
    wait_own(&dirs[1], &mut children.0[1], a1);
    for d in &dirs {
        let file = std::fs::read_to_string(d.join("data/secrets.json")).expect("secrets file");
        assert!(
            !file.contains("data_key"),
            "no data key of its own was generated: {file}"
        );
    }
    // One set of signing keys: each instance publishes the same JWKS.
    let jwks = |ip: &'static str| {
        let http = client_via(ip, port);
        async move {
            http.get(format!("http://{HOST}:{port}/.well-known/jwks.json"))
                .send()
                .await
                .expect("jwks")
                .json::<serde_json::Value>()
                .await
                .expect("json")
        }
    };
    let (j0, j1) = (jwks("127.0.0.1").await, jwks("127.0.0.2").await);
    assert_eq!(j0, j1);
    assert_eq!(
        j0["keys"].as_array().map(Vec::len),
        Some(1),
        "one key: {j0}"
    );
    // A credential issued by one is accepted by the other, both ways.
    for (from, to) in [("127.0.0.1", "127.0.0.2"), ("127.0.0.2", "127.0.0.1")] {
        let mut c = Client::generate(&format!("http://{HOST}:{port}")).expect("client");
        c.set_http_client(client_via(from, port));
        c.enroll_and_fetch("shared-key", Some("android"))
            .await
            .expect("enroll");
        c.set_http_client(client_via(to, port));
        assert_eq!(
            get_device(&c).await,
            200,
            "enrolled on {from}, used on {to}"
        );
    }
    // An operator's machine: the configuration and the data key, no data directory. The
    // admin command reads the store and writes nothing locally.
    let operator = root.path().join("operator");
    write_own_config(&operator, &store, port, Some("env:MOAT_TEST_DATA_KEY"));
    let out = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args([
            "admin",
            "--config",
            "moat.toml",
            "devices",
            "list",
            "--json",
        ])
        .current_dir(&operator)
        .env("MOAT_TEST_DATA_KEY", DATA_KEY)
        .output()
        .expect("moat admin");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("store postgres://"), "{err}");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(list["devices"].as_array().map(Vec::len), Some(2), "{list}");
    assert!(!operator.join("data").exists(), "nothing written locally");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_without_the_data_key_of_a_sealed_store_exits_saying_how_to_fix_it() {
    let root = tempfile::tempdir().expect("tmp");
    let pg = Postgres::start();
    let store = pg.database();
    let port = free_port();
    let first = root.path().join("first");
    write_own_config(&first, &store, port, Some("env:MOAT_TEST_DATA_KEY"));
    let (c, admin) = start_own(&first, "127.0.0.1", port, Some(DATA_KEY));
    let mut children = Killed(vec![c]);
    wait_own(&first, &mut children.0[0], admin);

    // No data key at all: it does not generate one for this store.
    let second = root.path().join("second");
    write_own_config(&second, &store, port, None);
    let (child, _) = start_own(&second, "127.0.0.2", port, None);
    let (status, log) = exit_of(&second, child);
    assert!(!status.success());
    assert!(
        log.contains("already holds sealed data")
            && log.contains("server.data_key")
            && log.contains("docs/deploy.md"),
        "says what is wrong and how to fix it: {log}"
    );
    assert!(
        !second.join("data/secrets.json").exists(),
        "no key was generated for a sealed store"
    );

    // A different data key: refused, naming the key it has (never the key itself).
    let third = root.path().join("third");
    write_own_config(&third, &store, port, Some("env:MOAT_TEST_DATA_KEY"));
    let other = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let (child, _) = start_own(&third, "127.0.0.2", port, Some(other));
    let (status, log) = exit_of(&third, child);
    assert!(!status.success());
    assert!(
        log.contains("sealed with another data key")
            && log.contains("dk_")
            && log.contains("server.data_key")
            && !log.contains(other),
        "{log}"
    );

    // A secrets file copied from nowhere (its own generated key, as before this change): the
    // same clear refusal instead of "malformed".
    let fourth = root.path().join("fourth");
    write_own_config(&fourth, &store, port, None);
    std::fs::create_dir_all(fourth.join("data")).expect("mkdir");
    std::fs::set_permissions(
        fourth.join("data"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod");
    std::fs::write(
        fourth.join("data/secrets.json"),
        format!(
            "{{\"data_key\":\"{other}\",\"integrity_secret\":\"{other}\",\
             \"admin_token\":\"t\",\"static_key\":\"moat_sk_x\"}}"
        ),
    )
    .expect("secrets");
    std::fs::set_permissions(
        fourth.join("data/secrets.json"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
    let (child, _) = start_own(&fourth, "127.0.0.2", port, None);
    let (status, log) = exit_of(&fourth, child);
    assert!(!status.success());
    assert!(
        log.contains("sealed with another data key") && log.contains("secrets.json"),
        "{log}"
    );

    // The first instance serves on.
    assert!(ready(admin));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_without_a_data_key_started_together_on_an_empty_store_never_diverge() {
    let root = tempfile::tempdir().expect("tmp");
    let pg = Postgres::start();
    let store = pg.database();
    let port = free_port();
    let dirs: Vec<_> = (0..2).map(|i| root.path().join(format!("i{i}"))).collect();
    for d in &dirs {
        write_own_config(d, &store, port, None);
    }
    // Each would generate its own key into its own data dir: one does, under the store's
    // init lease, and the other finds the first's sealed keys and exits without a key.
    let (c0, a0) = start_own(&dirs[0], "127.0.0.1", port, None);
    let (c1, a1) = start_own(&dirs[1], "127.0.0.2", port, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut children = Killed(vec![c0, c1]);
    let (serving, exited) = loop {
        let up = [ready(a0), ready(a1)];
        let down: Vec<bool> = children
            .0
            .iter_mut()
            .map(|c| c.try_wait().ok().flatten().is_some())
            .collect();
        if (up[0] && down[1]) || (up[1] && down[0]) {
            break if up[0] { (0, 1) } else { (1, 0) };
        }
        assert!(
            !(down[0] && down[1]),
            "both exited: {} / {}",
            std::fs::read_to_string(dirs[0].join("serve.log")).unwrap_or_default(),
            std::fs::read_to_string(dirs[1].join("serve.log")).unwrap_or_default()
        );
        assert!(!(up[0] && up[1]), "both serve, each with its own data key");
        assert!(Instant::now() < deadline, "neither settled");
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = std::fs::read_to_string(dirs[exited].join("serve.log")).unwrap_or_default();
    assert!(
        log.contains("already holds sealed data") && log.contains("server.data_key"),
        "{log}"
    );
    assert!(!dirs[exited].join("data/secrets.json").exists());
    assert!(dirs[serving].join("data/secrets.json").exists());
}
