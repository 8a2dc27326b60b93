//! Load generator for Moat benchmarks. Every signed request carries a fresh nonce and
//! `created`, exactly as a device would send it, so the server pays the full verification
//! (signature, digest, replay cache, device lookup) on each one.
//!
//! Prints one JSON object per run: requests, errors, requests/s, latency p50/p90/p99 (ms),
//! and the load generator's own CPU time per request.
//!
//! Requests go out on [`conn::Conn`], one keep-alive connection per worker driven in the
//! worker's own task; `proxy` runs the bare hyper proxy baseline ([`proxy`]).

mod conn;
mod proxy;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use http::{HeaderMap, Method};
use moat_client::{Auth, CallOptions, Client};

// The same allocator as the server binary, for the proxy baseline and to keep the load
// generator's share of the cores small.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "Moat load generator")]
struct Cli {
    /// Label of this run in the output.
    #[arg(long, global = true)]
    name: Option<String>,
    /// The server's process (repeatable; its child processes count too): its CPU time over
    /// the measured window is reported per request, and setup work (enrollment, sign-in,
    /// attestation, the RSA pool refill) is left out.
    #[arg(long = "server-pid", global = true)]
    server_pids: Vec<u32>,
    /// Create this file when the measured window begins (after set-up), so a profiler can
    /// start then.
    #[arg(long, global = true)]
    started_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Full enrollments (enroll, mailbox, and in otp mode confirm and mailbox again), each
    /// with a new installation key.
    Enroll {
        #[arg(long)]
        server: String,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Protected requests from pre-enrolled devices.
    Call {
        #[arg(long)]
        server: String,
        #[arg(long, default_value = "/v1/device")]
        path: String,
        #[arg(long, default_value_t = 64)]
        devices: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, value_enum, default_value_t = AuthArg::Auto)]
        auth: AuthArg,
        /// Total requests per second (0 = as fast as possible).
        #[arg(long, default_value_t = 0)]
        rate: u64,
    },
    /// GET a URL with fixed headers (baselines: nginx, Node, device keys).
    Raw {
        #[arg(long)]
        url: String,
        /// `Name: value`, repeatable.
        #[arg(long = "header")]
        headers: Vec<String>,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Total requests per second (0 = as fast as possible).
        #[arg(long, default_value_t = 0)]
        rate: u64,
    },
    /// Full checks through Moat: every request carries a fresh RFC 9421 HMAC signature (new
    /// nonce), an integrity token bound to the user's access token, and that access token.
    Full {
        #[arg(long)]
        server: String,
        #[arg(long)]
        admin: String,
        #[arg(long, env = "MOAT_BENCH_ADMIN_TOKEN")]
        admin_token: String,
        #[arg(long, default_value = "/full/x")]
        path: String,
        #[arg(long, default_value_t = 8)]
        devices: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Print the device's API key instead of running (setup for `raw` against a device-key route).
        #[arg(long)]
        print_key: bool,
        /// After setting up, wait until the server (`--server-pid`) is idle before measuring:
        /// in otp mode it refills its RSA key pool after the enrollments, seconds of CPU that
        /// would otherwise land in the measured window.
        #[arg(long)]
        settle: bool,
    },
    /// A bare reverse proxy on Moat's HTTP stack that checks nothing (a baseline).
    Proxy {
        #[arg(long)]
        listen: String,
        #[arg(long)]
        upstream: String,
    },
    /// Measure RSA-2048 key generation (aws-lc-rs) on this machine.
    Keygen {
        #[arg(long, default_value_t = 40)]
        count: usize,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum AuthArg {
    /// Whatever the credential supports (HMAC signature in otp mode, API key otherwise).
    Auto,
    /// Installation-key (ECDSA P-256) signature.
    Installation,
    /// No credential (for unprotected baselines such as /healthz).
    None,
}

fn summary(name: &str, mut lat_us: Vec<u32>, errors: u64, elapsed: Duration) -> serde_json::Value {
    lat_us.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat_us.is_empty() {
            return 0.0;
        }
        let idx = ((lat_us.len() as f64 - 1.0) * p).round() as usize;
        f64::from(lat_us[idx]) / 1000.0
    };
    let n = lat_us.len() as f64;
    let per_request = |us: u64| ((us as f64 / n.max(1.0)) * 10.0).round() / 10.0;
    let cpu_us = own_cpu_us().saturating_sub(CPU_AT_START.load(Ordering::Relaxed));
    let server_us = cpu_ticks(server_pids())
        .saturating_sub(SERVER_TICKS_AT_START.load(Ordering::Relaxed))
        * US_PER_TICK;
    let mut out = serde_json::json!({
        "loadgen_cpu_us_per_req": per_request(cpu_us),
        "run": name,
        "requests": lat_us.len(),
        "errors": errors,
        "seconds": (elapsed.as_secs_f64() * 100.0).round() / 100.0,
        "rps": (n / elapsed.as_secs_f64()).round(),
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
    });
    if !server_pids().is_empty() {
        out["cpu_us_per_req"] = per_request(server_us).into();
    }
    out
}

/// CPU time (user + system) this process has used, in microseconds.
fn own_cpu_us() -> u64 {
    stat_ticks("/proc/self/stat") * US_PER_TICK
}

/// Linux reports CPU time in USER_HZ, 100 on every architecture Moat is built for.
const US_PER_TICK: u64 = 10_000;

/// User plus system CPU ticks from a `/proc/…/stat` file (the 12th and 13th fields after
/// the parenthesised command name); 0 if it cannot be read.
fn stat_ticks(path: &str) -> u64 {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    rest.split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum()
}

/// CPU used before the measured part of a run (setup: enrollment, sign-in, attestation).
static CPU_AT_START: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// The server's CPU ticks when the measured part of a run began.
static SERVER_TICKS_AT_START: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// `--started-file`.
static STARTED_FILE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
/// `--server-pid`.
static SERVER_PIDS: std::sync::OnceLock<Vec<u32>> = std::sync::OnceLock::new();

fn server_pids() -> &'static [u32] {
    SERVER_PIDS.get().map_or(&[], Vec::as_slice)
}

type Worker = tokio::task::JoinHandle<Result<(Vec<u32>, u64)>>;

/// Lets the workers run for `seconds`, stops them, and merges their latencies and errors.
async fn stop_after(
    seconds: u64,
    stop: &AtomicBool,
    tasks: Vec<Worker>,
) -> Result<(Vec<u32>, u64)> {
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut lat, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await??;
        lat.extend(l);
        errors += e;
    }
    Ok((lat, errors))
}

fn http_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()?)
}

async fn enroll(server: String, concurrency: usize, seconds: u64) -> Result<serde_json::Value> {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let (server, stop) = (server.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let http = http_client()?;
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (key, pkcs8) = moat_core::dpop::InstallationKey::generate_p256()?;
                let mut c = Client::with_key(&server, key, pkcs8, http.clone())?;
                let t0 = Instant::now();
                match c
                    .enroll_and_fetch(&format!("bench-{t}-{i}"), Some("other"))
                    .await
                {
                    Ok(_) => lat.push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX)),
                    Err(e) => {
                        errors += 1;
                        if errors <= 3 {
                            eprintln!("enroll error: {e}");
                        }
                    }
                }
                i += 1;
            }
            anyhow::Ok((lat, errors))
        }));
    }
    let (lat, errors) = stop_after(seconds, &stop, tasks).await?;
    Ok(summary("enroll", lat, errors, started.elapsed()))
}

async fn call(
    server: String,
    path: String,
    devices: usize,
    concurrency: usize,
    seconds: u64,
    auth: AuthArg,
    rate: u64,
) -> Result<serde_json::Value> {
    let http = http_client()?;
    let mut clients = Vec::with_capacity(devices);
    if matches!(auth, AuthArg::None) {
        let (key, pkcs8) = moat_core::dpop::InstallationKey::generate_p256()?;
        clients.push(Arc::new(Client::with_key(
            &server,
            key,
            pkcs8,
            http.clone(),
        )?));
    } else {
        for i in 0..devices {
            let (key, pkcs8) = moat_core::dpop::InstallationKey::generate_p256()?;
            let mut c = Client::with_key(&server, key, pkcs8, http.clone())?;
            c.enroll_and_fetch(&format!("bench-call-{i}"), Some("other"))
                .await
                .context("pre-enrolling devices")?;
            clients.push(Arc::new(c));
        }
    }
    let auth = match auth {
        AuthArg::Auto => Auth::Auto,
        AuthArg::Installation => Auth::InstallationSignature,
        AuthArg::None => Auth::None,
    };
    let options = CallOptions {
        auth,
        ..CallOptions::default()
    };
    let started = Instant::now();
    let route = path.clone();
    let (lat, errors) = paced_workers(&server, concurrency, rate, seconds, move |t| {
        let (client, path, options) = (
            clients[t % clients.len()].clone(),
            route.clone(),
            options.clone(),
        );
        signed_gets(client, path, options)
    })
    .await?;
    Ok(summary(
        &format!("call {path}"),
        lat,
        errors,
        started.elapsed(),
    ))
}

/// Sleeps until worker `worker`'s next slot when running at a fixed total rate. The workers'
/// schedules are staggered evenly over the interval, so requests arrive spread out rather
/// than in a burst of `concurrency` at each tick.
async fn pace(rate: u64, concurrency: usize, worker: usize, started: Instant, sent: u64) {
    if rate == 0 {
        return;
    }
    let per_worker = rate as f64 / concurrency as f64;
    let slot = sent as f64 + worker as f64 / concurrency as f64;
    let due = started + Duration::from_secs_f64(slot / per_worker);
    tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
}

async fn raw(
    url: String,
    headers: Vec<String>,
    concurrency: usize,
    seconds: u64,
    rate: u64,
) -> Result<serde_json::Value> {
    let mut map = HeaderMap::new();
    for h in headers {
        let (n, v) = h.split_once(':').context("header must be `Name: value`")?;
        map.insert(
            http::HeaderName::from_bytes(n.trim().as_bytes())?,
            http::HeaderValue::from_str(v.trim())?,
        );
    }
    let uri: http::Uri = url.parse().context("url")?;
    let origin = format!(
        "http://{}",
        uri.authority().context("url has no host")?.as_str()
    );
    let target = uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str)
        .to_owned();
    let started = Instant::now();
    let (lat, errors) = paced_workers(&origin, concurrency, rate, seconds, move |_| {
        let (target, map) = (target.clone(), map.clone());
        move || Ok((Method::GET, target.clone(), map.clone()))
    })
    .await?;
    Ok(summary(&url, lat, errors, started.elapsed()))
}

/// A request to send: method, path and query, headers.
type Prepared = (Method, String, HeaderMap);

/// GETs of `path` from `client`, each with a fresh signature (new nonce, current `created`),
/// prepared by the client SDK exactly as an app's call would be.
fn signed_gets(
    client: Arc<Client>,
    path: String,
    options: CallOptions,
) -> impl FnMut() -> Result<Prepared> + Send + 'static {
    move || {
        let (url, headers, _) = client.prepare(&Method::GET, &path, None, &options)?;
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        Ok((Method::GET, target, headers))
    }
}

/// Runs `concurrency` workers for `seconds`, each on its own connection to `origin`, sending
/// the requests its `make(worker)` closure prepares, paced to a total of `rate` per second
/// (0: as fast as possible).
async fn paced_workers<M, F>(
    origin: &str,
    concurrency: usize,
    rate: u64,
    seconds: u64,
    make: M,
) -> Result<(Vec<u32>, u64)>
where
    M: Fn(usize) -> F,
    F: FnMut() -> Result<Prepared> + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks: Vec<Worker> = Vec::new();
    CPU_AT_START.store(own_cpu_us(), Ordering::Relaxed);
    SERVER_TICKS_AT_START.store(cpu_ticks(server_pids()), Ordering::Relaxed);
    if let Some(path) = STARTED_FILE.get() {
        std::fs::write(path, b"")?;
    }
    let begin = Instant::now();
    for t in 0..concurrency {
        let stop = stop.clone();
        let mut next = make(t);
        let mut conn = conn::Conn::new(origin)?;
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors, mut sent) = (Vec::new(), 0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                pace(rate, concurrency, t, begin, sent).await;
                sent += 1;
                let t0 = Instant::now();
                let outcome = match next() {
                    Ok((method, target, headers)) => conn.send(method, &target, headers).await,
                    Err(e) => Err(e),
                };
                match outcome {
                    Ok((status, _)) if status.is_success() => {
                        lat.push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
                    }
                    Ok((status, body)) => {
                        errors += 1;
                        if errors <= 3 {
                            eprintln!("status {status}: {}", String::from_utf8_lossy(&body));
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        if errors <= 3 {
                            eprintln!("error: {e}");
                        }
                    }
                }
            }
            anyhow::Ok((lat, errors))
        }));
    }
    stop_after(seconds, &stop, tasks).await
}

/// Registers and logs in a user from this device, reading the SMS code from the outbox.
async fn user_token(c: &Client, admin: &str, admin_token: &str, phone: &str) -> Result<String> {
    let http = reqwest::Client::new();
    let r = c
        .call(
            http::Method::POST,
            "/api/register",
            Some(&serde_json::json!({"phone": phone, "password": "bench password 1"})),
            CallOptions::default(),
        )
        .await?;
    anyhow::ensure!(
        r.status == 202,
        "register: {} {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    let outbox: serde_json::Value = http
        .get(format!(
            "{admin}/admin/v1/sms/outbox?phone={}",
            phone.replace('+', "%2B")
        ))
        .bearer_auth(admin_token)
        .send()
        .await?
        .json()
        .await?;
    let body = outbox["messages"][0]["body"]
        .as_str()
        .context("no SMS in the outbox")?;
    let code: String = body
        .split(|ch: char| !ch.is_ascii_digit())
        .find(|w| w.len() == 6)
        .context("no code")?
        .to_owned();
    let r = c
        .call(
            http::Method::POST,
            "/api/register/confirm",
            Some(&serde_json::json!({"phone": phone, "otp": code})),
            CallOptions::default(),
        )
        .await?;
    anyhow::ensure!(r.status == 201, "confirm: {}", r.status);
    let r = c
        .call_form(
            "/api/token",
            &[
                ("grant_type", "password"),
                ("username", phone),
                ("password", "bench password 1"),
            ],
            CallOptions::default(),
        )
        .await?;
    anyhow::ensure!(r.status == 200, "token: {}", r.status);
    Ok(r.json()?["access_token"]
        .as_str()
        .context("access token")?
        .to_owned())
}

/// What the `full` run sets up before measuring.
struct Setup {
    server: String,
    admin: String,
    admin_token: String,
    path: String,
    devices: usize,
    settle: Option<Vec<u32>>,
}

/// CPU time (clock ticks, 100 per second) used so far by `pids` and their child processes
/// (nginx and Node cluster workers).
fn cpu_ticks(pids: &[u32]) -> u64 {
    let one = |pid: u32| stat_ticks(&format!("/proc/{pid}/stat"));
    let mut total = 0;
    for &pid in pids {
        total += one(pid);
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten();
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            total += children
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok())
                .map(one)
                .sum::<u64>();
        }
    }
    total
}

/// Waits (up to 60 s) until `pids` used under 5% of a core over half a second.
async fn settle(pids: &[u32]) {
    for _ in 0..120 {
        let before = cpu_ticks(pids);
        tokio::time::sleep(Duration::from_millis(500)).await;
        // 5% of a core over 0.5 s is 2.5 ticks.
        if cpu_ticks(pids).saturating_sub(before) <= 2 {
            return;
        }
    }
    eprintln!("server still busy after 60 s; measuring anyway");
}

async fn full(
    setup: Setup,
    concurrency: usize,
    seconds: u64,
    rate: u64,
    print_key: bool,
) -> Result<serde_json::Value> {
    let Setup {
        server,
        admin,
        admin_token,
        path,
        devices,
        settle: settle_pids,
    } = setup;
    let http = http_client()?;
    if print_key {
        let (key, pkcs8) = moat_core::dpop::InstallationKey::generate_p256()?;
        let mut c = Client::with_key(&server, key, pkcs8, http.clone())?;
        c.enroll_and_fetch("bench-key", Some("other")).await?;
        let state = serde_json::to_value(c.state())?;
        return Ok(serde_json::json!({"key": state["credential"]["key"]}));
    }
    let package: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let r = reqwest::Client::new()
        .put(format!("{admin}/admin/v1/apps/bench.app/1.0"))
        .bearer_auth(&admin_token)
        .body(package.clone())
        .send()
        .await?;
    anyhow::ensure!(
        r.status().is_success() || r.status() == 409,
        "registering the package: {}",
        r.status()
    );
    let mut prepared = Vec::new();
    for i in 0..devices {
        let (key, pkcs8) = moat_core::dpop::InstallationKey::generate_p256()?;
        let mut c = Client::with_key(&server, key, pkcs8, http.clone())?;
        c.enroll_and_fetch(&format!("bench-full-{i}"), Some("other"))
            .await
            .context("enrolling")?;
        let phone = format!("+1212555{:04}", 1000 + i);
        let access = user_token(&c, &admin, &admin_token, &phone).await?;
        let authorization = format!("Bearer {access}");
        let integrity = c
            .attest_package("bench.app", "1.0", &package, Some(&authorization))
            .await?;
        let options = CallOptions {
            headers: vec![
                ("authorization".into(), authorization),
                ("moat-integrity".into(), integrity),
            ],
            ..CallOptions::default()
        };
        prepared.push((Arc::new(c), options));
    }
    if let Some(pids) = settle_pids {
        settle(&pids).await;
    }
    let started = Instant::now();
    let (lat, errors) = paced_workers(&server, concurrency, rate, seconds, move |t| {
        let (client, options) = prepared[t % prepared.len()].clone();
        signed_gets(client, path.clone(), options)
    })
    .await?;
    Ok(summary("full checks", lat, errors, started.elapsed()))
}

fn keygen(count: usize) -> Result<serde_json::Value> {
    if count == 0 {
        bail!("count must be positive");
    }
    let mut lat = Vec::with_capacity(count);
    let started = Instant::now();
    for _ in 0..count {
        let t0 = Instant::now();
        moat_core::jwe::RsaPrivateKey::generate_2048()?;
        lat.push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
    }
    Ok(summary(
        "rsa-2048 keygen (one core)",
        lat,
        0,
        started.elapsed(),
    ))
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let _ = SERVER_PIDS.set(cli.server_pids.clone());
    if let Some(path) = &cli.started_file {
        let _ = STARTED_FILE.set(path.clone());
    }
    let mut result = match cli.command {
        Cmd::Enroll {
            server,
            concurrency,
            seconds,
        } => enroll(server, concurrency, seconds).await?,
        Cmd::Call {
            server,
            path,
            devices,
            concurrency,
            seconds,
            auth,
            rate,
        } => call(server, path, devices, concurrency, seconds, auth, rate).await?,
        Cmd::Keygen { count } => keygen(count)?,
        Cmd::Proxy { listen, upstream } => {
            proxy::run(&listen, &upstream).await?;
            return Ok(());
        }
        Cmd::Raw {
            url,
            headers,
            concurrency,
            seconds,
            rate,
        } => raw(url, headers, concurrency, seconds, rate).await?,
        Cmd::Full {
            server,
            admin,
            admin_token,
            path,
            devices,
            concurrency,
            seconds,
            rate,
            print_key,
            settle,
        } => {
            let setup = Setup {
                server,
                admin,
                admin_token,
                path,
                devices,
                settle: settle.then(|| cli.server_pids.clone()),
            };
            full(setup, concurrency, seconds, rate, print_key).await?
        }
    };
    if let Some(name) = cli.name {
        result["run"] = name.into();
    }
    println!("{result}");
    Ok(())
}
