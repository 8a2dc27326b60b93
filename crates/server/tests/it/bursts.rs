//! Every once-only or counted state under a burst: [`BURST`] requests prepared ahead, then sent
//! at the same moment over their own connections to one real server. Each limit must hold
//! exactly: one success for a once-only value, exactly the budget for a counted one. The
//! inventory, and where each state lives, is in `docs/attacks.md` ("Once-only and counted
//! states under concurrency"); the same states across two instances are in
//! `crates/cli/tests/scale.rs`, and the store's operations under as many concurrent callers in
//! `crates/store/tests/conformance.rs`.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _};
use http::Method;
use moat_client::{Auth, CallOptions, Client, Payload};
use serde_json::{Value, json};

use super::support::*;

const PASSWORD: &str = "correct horse battery";

fn with_auth(auth: Auth) -> CallOptions {
    CallOptions { auth, ..opts() }
}

/// A prepared `POST` of a form (the token endpoint) with `c`'s credential.
fn prepared_form(http: &reqwest::Client, c: &Client, pairs: &[(&str, &str)]) -> reqwest::Request {
    let (url, headers, body) = c
        .prepare_payload(&Method::POST, "/api/token", Payload::Form(pairs), &opts())
        .expect("prepare");
    http.post(url)
        .headers(headers)
        .body(body.unwrap_or_default())
        .build()
        .expect("request")
}

/// `n` distinct valid phone numbers of one country (US), from `first` on.
fn phones(first: u32, n: usize) -> Vec<String> {
    (0..n as u32)
        .map(|i| format!("+1415555{:04}", first + i))
        .collect()
}

/// Registers `phone` through `c` (register, read the code from the outbox, confirm); returns
/// the user id.
async fn register(server: &TestServer, c: &Client, phone: &str) -> String {
    let r = c
        .call(
            Method::POST,
            "/api/register",
            Some(&json!({"phone": phone, "password": PASSWORD})),
            opts(),
        )
        .await
        .expect("register");
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let outbox = admin_get(
        server,
        &format!("/admin/v1/sms/outbox?phone={}", phone.replace('+', "%2B")),
    )
    .await;
    let body = outbox["messages"][0]["body"].as_str().expect("an SMS");
    let code = body
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .expect("6-digit code");
    let r = c
        .call(
            Method::POST,
            "/api/register/confirm",
            Some(&json!({"phone": phone, "otp": code})),
            opts(),
        )
        .await
        .expect("confirm");
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json().expect("json")["user_id"]
        .as_str()
        .expect("user id")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_nonce_is_accepted_once_in_a_burst() {
    let server = TestServer::start("otp").await;
    let c = server.enrolled("phone-1").await;
    let http = burst_client(&server.base, BURST).await;
    // The same signed request (one nonce) BURST times: with the client credential (HMAC), then
    // with the installation key (ECDSA P-256).
    for auth in [Auth::HmacSignature, Auth::InstallationSignature] {
        let body = json!({"transfer": 100});
        let one = prepared(
            &http,
            &c,
            Method::POST,
            "/v1/device/echo",
            Some(&body),
            &with_auth(auth),
        );
        let requests = (0..BURST)
            .map(|_| one.try_clone().expect("clone"))
            .collect();
        let responses = burst(&http, requests).await;
        assert_exactly(&responses, 200, 1, (401, "replay_detected"));
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dpop_proof_enrolls_once_in_a_burst() {
    // The per-IP enrollment limit would refuse most of the burst before its proof is looked
    // at; what is measured here is the proof's `jti`.
    let server = TestServer::start_enrolling("dynamic", "per_ip_hour = 100000", "").await;
    let c = server.device();
    let http = burst_client(&server.base, BURST).await;
    let proof = c.dpop(&Method::POST, "/v1/enroll").expect("proof");
    let requests = (0..BURST)
        .map(|i| {
            http.post(format!("{}/v1/enroll", server.base))
                .header("dpop", &proof)
                .json(&json!({"device_id": format!("phone-{i}")}))
                .build()
                .expect("request")
        })
        .collect();
    let responses = burst(&http, requests).await;
    assert_exactly(&responses, 200, 1, (401, "replay_detected"));
    // One enrollment happened: one device for the identity, one key in its mailbox.
    let identity = format!("inst:{}", c.thumbprint());
    let devices = admin_get(&server, &format!("/admin/v1/devices?q={identity}")).await;
    assert_eq!(
        devices["devices"].as_array().expect("devices").len(),
        1,
        "{devices}"
    );
    let items = c.mailbox().await.expect("mailbox");
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["kind"], "api_key");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailbox_items_are_handed_out_once_in_a_burst() {
    let server = TestServer::start("dynamic").await;
    let mut c = server.device();
    // Sixteen items (the mailbox cap) for one identity: one API key per enrolled device id.
    for i in 0..16 {
        c.enroll(&format!("phone-{i}"), None).await.expect("enroll");
    }
    let http = burst_client(&server.base, BURST).await;
    // Each reader has its own proof (a copied proof would be a replay).
    let requests = (0..BURST)
        .map(|_| {
            http.get(format!("{}/v1/mailbox", server.base))
                .header("dpop", c.dpop(&Method::GET, "/v1/mailbox").expect("proof"))
                .build()
                .expect("request")
        })
        .collect();
    let responses = burst(&http, requests).await;
    assert_eq!(statuses(&responses).get(&200), Some(&BURST));
    let ids: Vec<String> = responses
        .iter()
        .flat_map(|r| {
            r.json().expect("json")["items"]
                .as_array()
                .expect("items")
                .clone()
        })
        .map(|item| item["id"].as_str().expect("id").to_owned())
        .collect();
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), 16, "sixteen items handed out in all: {ids:?}");
    assert_eq!(distinct.len(), 16, "each once: {ids:?}");
    assert!(c.mailbox().await.expect("mailbox").is_empty());
    server.stop().await;
}

fn refresh_form(token: &str) -> [(&'static str, &str); 2] {
    [("grant_type", "refresh_token"), ("refresh_token", token)]
}

fn refresh_token_of(r: &moat_client::Response) -> String {
    r.json().expect("json")["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_token_rotates_once_and_its_reuse_revokes_the_family_in_a_burst() {
    let server = TestServer::start("dynamic").await;
    let c = server.enrolled("phone-1").await;
    let phone = "+14155552671";
    let user = register(&server, &c, phone).await;
    let login = c
        .call_form(
            "/api/token",
            &[
                ("grant_type", "password"),
                ("username", phone),
                ("password", PASSWORD),
            ],
            opts(),
        )
        .await
        .expect("login");
    assert_eq!(login.status, 200);
    let http = burst_client(&server.base, BURST).await;

    // One refresh token presented BURST times at once: one rotation; every other presentation
    // is a reuse, which revokes the family, including the token the rotation just issued.
    let token = refresh_token_of(&login);
    let one = prepared_form(&http, &c, &refresh_form(&token));
    let requests = (0..BURST)
        .map(|_| one.try_clone().expect("clone"))
        .collect();
    let responses = burst(&http, requests).await;
    assert_exactly(&responses, 200, 1, (400, "token_invalid"));
    let winner = responses.iter().find(|r| r.status == 200).expect("winner");
    let next = refresh_token_of(winner);
    let r = c
        .call_form("/api/token", &refresh_form(&next), opts())
        .await
        .expect("refresh");
    assert_problem(&r, 400, "token_invalid");

    // BURST/2 logins (families), each refresh token presented twice at the same moment, as a
    // thief and the phone would: in every family one presentation wins, and the token it won
    // is revoked by the other one's reuse, whichever of the two the store saw first.
    let user = uuid::Uuid::parse_str(&user).expect("uuid");
    let device = device_of(&c);
    let state = &server.state;
    let mut tokens = Vec::new();
    for _ in 0..BURST / 2 {
        let family = uuid::Uuid::new_v4().to_string();
        let token = state
            .tokens
            .issue_refresh(
                &*state.accounts,
                &state.keys,
                user,
                &device,
                &family,
                state.now(),
            )
            .await
            .expect("refresh token");
        tokens.push(token);
    }
    let requests = tokens
        .iter()
        .flat_map(|t| {
            let one = prepared_form(&http, &c, &refresh_form(t));
            [one.try_clone().expect("clone"), one]
        })
        .collect();
    let responses = burst(&http, requests).await;
    let mut winners = Vec::new();
    for pair in responses.chunks(2) {
        assert_exactly(pair, 200, 1, (400, "token_invalid"));
        winners.push(refresh_token_of(
            pair.iter().find(|r| r.status == 200).expect("winner"),
        ));
    }
    let requests = winners
        .iter()
        .map(|t| prepared_form(&http, &c, &refresh_form(t)))
        .collect();
    let responses = burst(&http, requests).await;
    let live = responses.iter().filter(|r| r.status == 200).count();
    assert_eq!(
        live,
        0,
        "{live} of {} families kept a live token after their reuse was detected",
        winners.len()
    );
    assert_exactly(&responses, 200, 0, (400, "token_invalid"));
    server.stop().await;
}

fn login_form<'a>(phone: &'a str, password: &'a str) -> [(&'static str, &'a str); 3] {
    [
        ("grant_type", "password"),
        ("username", phone),
        ("password", password),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_lock_exactly_at_the_limit_in_a_burst() {
    // The per-minute limit is out of the way: only the lockout (10 failures) may bind.
    let server = TestServer::start_with(
        "dynamic",
        "[accounts]\nlogin_per_minute = 1000\nlogin_lock_after = 10\n",
    )
    .await;
    let c = server.enrolled("phone-1").await;
    let phone = "+14155552671";
    let user = register(&server, &c, phone).await;
    // A right password gives back the failure its attempt reserved: more logins than the
    // lockout allows failures all pass.
    for _ in 0..12 {
        let r = c
            .call_form("/api/token", &login_form(phone, PASSWORD), opts())
            .await
            .expect("login");
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    let http = burst_client(&server.base, BURST).await;
    // BURST wrong passwords at once: exactly ten are checked, and every other one is refused
    // before its password is looked at.
    let requests = (0..BURST)
        .map(|i| {
            prepared_form(
                &http,
                &c,
                &login_form(phone, &format!("wrong password {i}")),
            )
        })
        .collect();
    let responses = burst(&http, requests).await;
    let seen = statuses(&responses);
    assert_eq!(seen.get(&400), Some(&10), "ten guesses checked: {seen:?}");
    assert_exactly(&responses, 400, 10, (429, "rate_limited"));
    let user = server
        .state
        .accounts
        .user(uuid::Uuid::parse_str(&user).expect("uuid"))
        .await
        .expect("store")
        .expect("user");
    assert_eq!(user.failed_logins, 10);
    assert!(user.locked_until > server.state.now(), "locked");
    // Locked: even the right password is refused now.
    let r = c
        .call_form("/api/token", &login_form(phone, PASSWORD), opts())
        .await
        .expect("login");
    assert_problem(&r, 429, "rate_limited");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_rate_limits_hold_exactly_in_a_burst() {
    // Per phone: five a minute (the default), before any password is hashed.
    let server = TestServer::start("dynamic").await;
    let c = server.enrolled("phone-1").await;
    let http = burst_client(&server.base, BURST).await;
    let requests = (0..BURST)
        .map(|i| {
            prepared_form(
                &http,
                &c,
                &login_form("+14155552679", &format!("guess number {i}")),
            )
        })
        .collect();
    let responses = burst(&http, requests).await;
    assert_exactly(&responses, 400, 5, (429, "rate_limited"));
    server.stop().await;
    // Per client IP: thirty a minute, whatever the phones (on a server of its own). This budget
    // gives one back every two seconds, so if the burst's admissions spread over more than
    // that (a loaded machine) one more per two seconds may rightly pass; the burst's whole
    // time, password checks included, bounds that spread.
    let server = TestServer::start("dynamic").await;
    let c = server.enrolled("phone-1").await;
    let http = burst_client(&server.base, BURST).await;
    let phones = phones(3000, BURST);
    let requests = phones
        .iter()
        .map(|p| prepared_form(&http, &c, &login_form(p, "some password")))
        .collect();
    let started = std::time::Instant::now();
    let responses = burst(&http, requests).await;
    let refilled = (started.elapsed().as_secs() / 2) as usize;
    // Admitted by the limiter: a password check ran (400, no such account) or, on a loaded
    // machine, the bounded password hasher refused to queue longer (503 unavailable, fail
    // closed). Either way the limiter let it through; everything else it refused.
    let seen = statuses(&responses);
    let passed = seen.get(&400).copied().unwrap_or(0) + seen.get(&503).copied().unwrap_or(0);
    assert!(
        (30..=30 + refilled).contains(&passed),
        "30 (+{refilled} refilled at most) of {BURST} must pass the limiter: {seen:?}"
    );
    for r in &responses {
        match r.status {
            400 => {}
            503 => assert_problem(r, 503, "unavailable"),
            _ => assert_problem(r, 429, "rate_limited"),
        }
    }
    server.stop().await;
}

/// A registered package of 100 kB (eight challenged ranges).
fn package() -> Vec<u8> {
    (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect()
}

fn measure(challenge: &Value, package: &[u8]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(
        &moat_core::b64::url_decode(challenge["nonce"].as_str().expect("nonce")).expect("b64"),
    );
    for r in challenge["ranges"].as_array().expect("ranges") {
        let (o, l) = (
            r[0].as_u64().expect("offset") as usize,
            r[1].as_u64().expect("length") as usize,
        );
        ctx.update(&package[o..o + l]);
    }
    moat_core::b64::url_encode(ctx.finish().as_ref())
}

async fn challenge(c: &Client, app_id: &str) -> Value {
    let r = c
        .call(
            Method::POST,
            "/v1/attest/challenge",
            Some(&json!({"app_id": app_id, "version": "1"})),
            opts(),
        )
        .await
        .expect("challenge");
    assert_eq!(r.status, 200);
    r.json().expect("json")
}

/// How many of the `/v1/attest` answers carry a genuine integrity token (one signed with the
/// shared secret: only the server can tell).
fn genuine(server: &TestServer, responses: &[moat_client::Response]) -> usize {
    assert_eq!(
        statuses(responses).get(&200),
        Some(&responses.len()),
        "always 200"
    );
    responses
        .iter()
        .filter(|r| {
            let token = r.json().expect("json")["integrity_token"]
                .as_str()
                .expect("token")
                .to_owned();
            server
                .state
                .attestation
                .integrity()
                .verify(&token, server.state.now())
                .is_ok()
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attestation_challenge_is_redeemed_once_in_a_burst() {
    let server = TestServer::start("dynamic").await;
    let pkg = package();
    let r = http()
        .put(format!("{}/admin/v1/apps/app/1", server.admin))
        .bearer_auth(ADMIN_TOKEN)
        .body(pkg.clone())
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), 200);
    let c = server.enrolled("phone-1").await;
    let http = burst_client(&server.base, BURST).await;
    let ch = challenge(&c, "app").await;
    let answer = json!({"challenge_id": ch["challenge_id"], "measurement": measure(&ch, &pkg)});
    let requests = (0..BURST)
        .map(|_| {
            prepared(
                &http,
                &c,
                Method::POST,
                "/v1/attest",
                Some(&answer),
                &opts(),
            )
        })
        .collect();
    let responses = burst(&http, requests).await;
    assert_eq!(
        genuine(&server, &responses),
        1,
        "one challenge, one genuine token"
    );
    server.stop().await;
}

/// An App Attest assertion by `key` with `counter`, over `challenge`'s nonce: the CBOR map
/// `{"signature", "authenticatorData"}`, written by hand (two byte strings under two text
/// keys).
fn assertion(key: &EcdsaKeyPair, app_id: &str, counter: u32, challenge: &Value) -> Vec<u8> {
    use aws_lc_rs::digest::{SHA256, digest};
    let nonce =
        moat_core::b64::url_decode(challenge["nonce"].as_str().expect("nonce")).expect("b64");
    let client_data_hash = digest(&SHA256, &nonce);
    let mut auth = digest(&SHA256, app_id.as_bytes()).as_ref().to_vec();
    auth.push(0x01);
    auth.extend_from_slice(&counter.to_be_bytes());
    let mut signed = auth.clone();
    signed.extend_from_slice(client_data_hash.as_ref());
    let to_sign = digest(&SHA256, &signed);
    let signature = key
        .sign(&aws_lc_rs::rand::SystemRandom::new(), to_sign.as_ref())
        .expect("sign");
    let cbor_text = |out: &mut Vec<u8>, s: &str| {
        out.push(0x60 | s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    };
    let cbor_bytes = |out: &mut Vec<u8>, b: &[u8]| {
        out.push(0x58);
        out.push(b.len() as u8);
        out.extend_from_slice(b);
    };
    let mut out = vec![0xa2];
    cbor_text(&mut out, "signature");
    cbor_bytes(&mut out, signature.as_ref());
    cbor_text(&mut out, "authenticatorData");
    cbor_bytes(&mut out, &auth);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_attest_counter_value_is_accepted_once_in_a_burst() {
    let (team, bundle) = ("ABCDE12345", "com.example.burst");
    let server = TestServer::start_with(
        "dynamic",
        &format!(
            "[attestation.app_attest]\nteam_id = \"{team}\"\nbundle_id = \"{bundle}\"\nenvironment = \"any\"\n"
        ),
    )
    .await;
    let c = server.enrolled("iphone-1").await;
    // A key attested earlier by this device (stored as an attestation would store it), whose
    // counter stands at 0.
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let alg = &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING;
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("key");
    let key = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).expect("key");
    let key_id = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.public_key().as_ref());
    server
        .state
        .attest
        .put_attest_key(
            moat_store::attest::AttestKey {
                key_id: moat_core::b64::url_encode(key_id.as_ref()),
                device: device_of(&c),
                public_key: key.public_key().as_ref().to_vec(),
                counter: 0,
                environment: "production".into(),
            },
            server.state.now(),
        )
        .await
        .expect("put key");
    let http = burst_client(&server.base, BURST).await;
    // BURST assertions, each answering its own challenge, all with counter 1: the counter
    // moves from 0 to 1 once, so one passes.
    let app_id = format!("{team}.{bundle}");
    let mut requests = Vec::new();
    for _ in 0..BURST {
        let ch = challenge(&c, bundle).await;
        let body = json!({
            "challenge_id": ch["challenge_id"],
            "platform": "app_attest",
            "key_id": moat_core::b64::url_encode(key_id.as_ref()),
            "assertion": moat_core::b64::url_encode(assertion(&key, &app_id, 1, &ch)),
        });
        requests.push(prepared(
            &http,
            &c,
            Method::POST,
            "/v1/attest",
            Some(&body),
            &opts(),
        ));
    }
    let responses = burst(&http, requests).await;
    assert_eq!(genuine(&server, &responses), 1, "counter 1 accepted once");
    let stored = server
        .state
        .attest
        .attest_key(&moat_core::b64::url_encode(key_id.as_ref()))
        .await
        .expect("store")
        .expect("key");
    assert_eq!(stored.counter, 1);
    server.stop().await;
}

/// `n` requests that may each send an SMS, from `c`, to `phones` in turn, cycling through the
/// three endpoints that send one when `mixed`.
fn sms_requests(
    http: &reqwest::Client,
    c: &Client,
    phones: &[String],
    mixed: bool,
) -> Vec<reqwest::Request> {
    phones
        .iter()
        .enumerate()
        .map(|(i, phone)| {
            let (path, body) = match (mixed, i % 3) {
                (true, 1) => (
                    "/api/register",
                    json!({"phone": phone, "password": PASSWORD}),
                ),
                (true, 2) => (
                    "/api/resend_otp",
                    json!({"phone": phone, "purpose": "register"}),
                ),
                _ => ("/api/password/reset", json!({"phone": phone})),
            };
            prepared(http, c, Method::POST, path, Some(&body), &opts())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_budgets_hold_exactly_in_a_burst() {
    // Each budget in turn is the one that binds (the others are out of its way); BURST requests
    // at once must get exactly that many through. `limits` are the [sms] lines; `devices`
    // split the burst; `one_phone` sends it all to one number.
    struct Case {
        name: &'static str,
        limits: &'static str,
        devices: usize,
        one_phone: bool,
        mixed: bool,
        expected: usize,
    }
    let cases = [
        Case {
            name: "cooldown of one phone",
            limits: "",
            devices: 1,
            one_phone: true,
            mixed: false,
            expected: 1,
        },
        Case {
            name: "per device",
            limits: "per_device_hour = 5\n",
            devices: 1,
            one_phone: false,
            mixed: false,
            expected: 5,
        },
        Case {
            name: "per IP, two devices",
            limits: "per_device_hour = 1000\nper_ip_hour = 20\n",
            devices: 2,
            one_phone: false,
            mixed: false,
            expected: 20,
        },
        Case {
            name: "per country",
            limits: "per_device_hour = 1000\nper_ip_hour = 1000\nper_country_hour = 7\n",
            devices: 1,
            one_phone: false,
            mixed: false,
            expected: 7,
        },
        Case {
            name: "global, two devices, three endpoints",
            limits: "per_device_hour = 1000\nper_ip_hour = 1000\nper_country_hour = 1000\nglobal_hour = 9\n",
            devices: 2,
            one_phone: false,
            mixed: true,
            expected: 9,
        },
    ];
    for case in cases {
        let server = TestServer::start_with("dynamic", &format!("[sms]\n{}", case.limits)).await;
        let mut devices = Vec::new();
        for d in 0..case.devices {
            devices.push(server.enrolled(&format!("phone-{d}")).await);
        }
        let http = burst_client(&server.base, BURST).await;
        let all = if case.one_phone {
            vec!["+14155552671".to_owned(); BURST]
        } else {
            phones(2000, BURST)
        };
        let share = BURST / case.devices;
        let mut requests = Vec::new();
        for (d, c) in devices.iter().enumerate() {
            requests.extend(sms_requests(
                &http,
                c,
                &all[d * share..(d + 1) * share],
                case.mixed,
            ));
        }
        let responses = burst(&http, requests).await;
        let seen = statuses(&responses);
        assert_eq!(
            seen.get(&202).copied().unwrap_or(0),
            case.expected,
            "{}: {seen:?}",
            case.name
        );
        assert_exactly(&responses, 202, case.expected, (429, "sms_blocked"));
        server.stop().await;
    }
}

/// A loopback upstream that counts the requests reaching it.
async fn counting_upstream() -> (String, Arc<Mutex<usize>>) {
    let seen: Arc<Mutex<usize>> = Arc::default();
    let counter = seen.clone();
    let app = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            *counter.lock().expect("lock") += 1;
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_rate_limits_hold_exactly_in_a_burst() {
    // Budgets that do not refill during the burst (one request per 1000 s): what passes is the
    // burst size, exactly.
    let (up, reached) = counting_upstream().await;
    let extra = format!(
        "[[route]]\npath = \"/v1/device\"\nrequire = [\"device\"]\n\
         rate_limit = {{ key = \"device\", per_second = 0.001, burst = 7 }}\n\
         [[route]]\npath = \"/v1/device/echo\"\nrequire = [\"device\"]\n\
         rate_limit = {{ key = \"route\", per_second = 0.001, burst = 11 }}\n\
         [[route]]\npath = \"/v1/attest/challenge\"\nrequire = [\"device\"]\n\
         rate_limit = {{ key = \"ip\", per_second = 0.001, burst = 13 }}\n\
         [[route]]\nprefix = \"/up\"\nupstream = \"{up}\"\nrequire = [\"device\"]\n\
         rate_limit = {{ key = \"device\", per_second = 0.001, burst = 17 }}\n"
    );
    let server = TestServer::start_with("dynamic", &extra).await;
    let a = server.enrolled("phone-a").await;
    let b = server.enrolled("phone-b").await;
    let http = burst_client(&server.base, BURST).await;
    let half = |path: &str, method: Method, body: Option<&Value>| -> Vec<reqwest::Request> {
        (0..BURST)
            .map(|i| {
                let c = if i % 2 == 0 { &a } else { &b };
                prepared(&http, c, method.clone(), path, body, &opts())
            })
            .collect()
    };
    // Per device: each of two devices gets its own seven.
    let responses = burst(&http, half("/v1/device", Method::GET, None)).await;
    assert_exactly(&responses, 200, 14, (429, "rate_limited"));
    for first in [0, 1] {
        let mine: Vec<_> = responses.iter().skip(first).step_by(2).cloned().collect();
        assert_exactly(&mine, 200, 7, (429, "rate_limited"));
    }
    // Per route: eleven in all, whichever device asks.
    let body = json!({"x": 1});
    let responses = burst(&http, half("/v1/device/echo", Method::POST, Some(&body))).await;
    assert_exactly(&responses, 200, 11, (429, "rate_limited"));
    // Per client IP: thirteen from this address.
    let body = json!({"app_id": "app", "version": "1"});
    let responses = burst(
        &http,
        half("/v1/attest/challenge", Method::POST, Some(&body)),
    )
    .await;
    assert_exactly(&responses, 200, 13, (429, "rate_limited"));
    // A gateway route: seventeen per device reach the upstream, no more.
    let requests = (0..BURST)
        .map(|_| prepared(&http, &a, Method::GET, "/up/x", None, &opts()))
        .collect();
    let responses = burst(&http, requests).await;
    assert_exactly(&responses, 200, 17, (429, "rate_limited"));
    assert_eq!(
        *reached.lock().expect("lock"),
        17,
        "refused requests never reach the upstream"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_route_and_reason_counters_count_every_request_of_a_burst() {
    let server = TestServer::start("dynamic").await;
    // The warm-up is BURST health checks at once, then BURST refusals at once.
    let http = burst_client(&server.base, BURST).await;
    let requests = (0..BURST)
        .map(|_| {
            http.get(format!("{}/v1/device", server.base))
                .header("moat-device-key", "mk_nope_nope")
                .build()
                .expect("request")
        })
        .collect();
    for r in burst(&http, requests).await {
        assert_eq!(r.status, 401);
    }
    let stats = admin_get(&server, "/admin/v1/stats?days=1").await;
    let route = |name: &str| {
        stats["routes"]
            .as_array()
            .expect("routes")
            .iter()
            .find(|r| r["route"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {stats}"))
    };
    assert_eq!(route("/healthz")["requests"], BURST, "{stats}");
    assert_eq!(route("/healthz")["refused"], 0, "{stats}");
    assert_eq!(route("/v1/device")["requests"], BURST, "{stats}");
    assert_eq!(route("/v1/device")["refused"], BURST, "{stats}");
    assert_eq!(stats["totals"]["refusals"], BURST, "{stats}");
    assert_eq!(
        stats["refusals"][0]["label"], "credential_invalid",
        "{stats}"
    );
    let hourly: u64 = stats["refusals_hourly"]
        .as_array()
        .expect("hourly")
        .iter()
        .map(|p| p["value"].as_u64().expect("value"))
        .sum();
    assert_eq!(hourly, BURST as u64, "{stats}");
    server.stop().await;
}
