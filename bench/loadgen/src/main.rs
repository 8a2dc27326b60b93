//! Load generator for Moat benchmarks. Every signed request carries a fresh nonce and
//! `created`, exactly as a device would send it, so the server pays the full verification
//! (signature, digest, replay cache, device lookup) on each one.
//!
//! Prints one JSON object per run: requests, errors, requests/s, latency p50/p90/p99 (ms).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use moat_client::{Auth, CallOptions, Client};

#[derive(Parser)]
#[command(about = "Moat load generator")]
struct Cli {
    /// Label of this run in the output.
    #[arg(long, global = true)]
    name: Option<String>,
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
    serde_json::json!({
        "run": name,
        "requests": lat_us.len(),
        "errors": errors,
        "seconds": (elapsed.as_secs_f64() * 100.0).round() / 100.0,
        "rps": (n / elapsed.as_secs_f64()).round(),
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
    })
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
    let (lat, errors) = paced_workers(concurrency, rate, seconds, move |t| {
        let (client, http, path, options) = (
            clients[t % clients.len()].clone(),
            http.clone(),
            route.clone(),
            options.clone(),
        );
        signed_gets(client, http, path, options)
    })
    .await?;
    Ok(summary(
        &format!("call {path}"),
        lat,
        errors,
        started.elapsed(),
    ))
}

/// Sleeps until this worker's next slot when running at a fixed total rate.
async fn pace(rate: u64, concurrency: usize, started: Instant, sent: u64) {
    if rate == 0 {
        return;
    }
    let per_worker = rate as f64 / concurrency as f64;
    let due = started + Duration::from_secs_f64(sent as f64 / per_worker);
    tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
}

async fn raw(
    url: String,
    headers: Vec<String>,
    concurrency: usize,
    seconds: u64,
    rate: u64,
) -> Result<serde_json::Value> {
    let http = http_client()?;
    let mut map = reqwest::header::HeaderMap::new();
    for h in headers {
        let (n, v) = h.split_once(':').context("header must be `Name: value`")?;
        map.insert(
            reqwest::header::HeaderName::from_bytes(n.trim().as_bytes())?,
            reqwest::header::HeaderValue::from_str(v.trim())?,
        );
    }
    let started = Instant::now();
    let target = url.clone();
    let (lat, errors) = paced_workers(concurrency, rate, seconds, move |_| {
        let (http, url, map) = (http.clone(), target.clone(), map.clone());
        move || {
            let (http, url, map) = (http.clone(), url.clone(), map.clone());
            async move { Ok(http.get(&url).headers(map).send().await?) }
        }
    })
    .await?;
    Ok(summary(&url, lat, errors, started.elapsed()))
}

type Sent = std::pin::Pin<Box<dyn std::future::Future<Output = Result<reqwest::Response>> + Send>>;

/// GETs of `path` from `client`, each with a fresh signature (new nonce, current `created`).
fn signed_gets(
    client: Arc<Client>,
    http: reqwest::Client,
    path: String,
    options: CallOptions,
) -> impl FnMut() -> Sent + Send + 'static {
    move || {
        let prepared = client.prepare(&http::Method::GET, &path, None, &options);
        let http = http.clone();
        Box::pin(async move {
            let (url, headers, _) = prepared?;
            Ok(http.get(url).headers(headers).send().await?)
        })
    }
}

/// Runs `concurrency` workers for `seconds`, each sending the requests its `make(worker)`
/// closure produces, paced to a total of `rate` per second (0: as fast as possible).
async fn paced_workers<M, F, Fut>(
    concurrency: usize,
    rate: u64,
    seconds: u64,
    make: M,
) -> Result<(Vec<u32>, u64)>
where
    M: Fn(usize) -> F,
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<reqwest::Response>> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks: Vec<Worker> = Vec::new();
    for t in 0..concurrency {
        let stop = stop.clone();
        let mut request = make(t);
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors, mut sent) = (Vec::new(), 0u64, 0u64);
            let begin = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                pace(rate, concurrency, begin, sent).await;
                sent += 1;
                let t0 = Instant::now();
                match request().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
                    }
                    Ok(r) => {
                        errors += 1;
                        if errors <= 3 {
                            eprintln!(
                                "status {}: {}",
                                r.status(),
                                r.text().await.unwrap_or_default()
                            );
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

#[allow(clippy::too_many_arguments)]
async fn full(
    server: String,
    admin: String,
    admin_token: String,
    path: String,
    devices: usize,
    concurrency: usize,
    seconds: u64,
    rate: u64,
    print_key: bool,
) -> Result<serde_json::Value> {
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
    let started = Instant::now();
    let (lat, errors) = paced_workers(concurrency, rate, seconds, move |t| {
        let (client, options) = prepared[t % prepared.len()].clone();
        let (path, http) = (path.clone(), http.clone());
        signed_gets(client, http, path, options)
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
        } => {
            full(
                server,
                admin,
                admin_token,
                path,
                devices,
                concurrency,
                seconds,
                rate,
                print_key,
            )
            .await?
        }
    };
    if let Some(name) = cli.name {
        result["run"] = name.into();
    }
    println!("{result}");
    Ok(())
}
