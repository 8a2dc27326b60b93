//! The seed's account endpoints end to end: flows, enumeration, SMS pumping, token binding,
//! key rotation, lockout, SMS providers on loopback, external issuers, and PyJWT.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use moat_client::{Client, Response};
use serde_json::{Value, json};

use super::support::*;

const PHONE: &str = "+14155552671";
const PASSWORD: &str = "correct horse battery";

/// Waits until the worker has handled every queued SMS; returns (sent, failed, total).
async fn drained(server: &TestServer) -> (usize, usize, usize) {
    for _ in 0..200 {
        let v: Value = http()
            .get(format!("{}/admin/v1/sms/messages?limit=500", server.admin))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("messages")
            .json()
            .await
            .expect("json");
        let all = v["messages"].as_array().expect("array").clone();
        let count = |s: &str| all.iter().filter(|m| m["status"] == s).count();
        if count("queued") + count("sending") == 0 {
            return (count("sent"), count("failed"), all.len());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("SMS queue did not drain");
}

async fn login(c: &Client, phone: &str, password: &str) -> Response {
    c.call_form(
        "/api/token",
        &[
            ("grant_type", "password"),
            ("username", phone),
            ("password", password),
        ],
        opts(),
    )
    .await
    .expect("token")
}

async fn refresh(c: &Client, token: &str) -> Response {
    c.call_form(
        "/api/token",
        &[("grant_type", "refresh_token"), ("refresh_token", token)],
        opts(),
    )
    .await
    .expect("refresh")
}

#[tokio::test]
async fn register_login_refresh_reuse_reset_resend() {
    let server = TestServer::start("dynamic").await;
    let c = server.enrolled("phone-1").await;
    let user_id = register(&server, &c, "+1 (415) 555-2671", PASSWORD).await;
    let (sent, _, _) = drained(&server).await;
    assert_eq!(sent, 1);

    let r = login(&c, PHONE, PASSWORD).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let t = r.json().expect("json");
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 900);
    let access = t["access_token"].as_str().expect("access");
    let refresh1 = t["refresh_token"].as_str().expect("refresh").to_owned();
    assert!(refresh1.starts_with("moat_rt_"));

    let me = c
        .call(Method::GET, "/api/me", None, bearer(access))
        .await
        .expect("me");
    assert_eq!(me.status, 200, "{}", String::from_utf8_lossy(&me.body));
    assert_eq!(
        me.json().expect("json"),
        json!({"user_id": user_id, "phone": PHONE})
    );

    // Refresh rotates; presenting the used token again revokes the whole family.
    let r = refresh(&c, &refresh1).await;
    assert_eq!(r.status, 200);
    let refresh2 = r.json().expect("json")["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    assert_ne!(refresh1, refresh2);
    let reuse = refresh(&c, &refresh1).await;
    assert_problem(&reuse, 400, "token_invalid");
    assert_eq!(reuse.json().expect("json")["error"], "invalid_grant");
    let after = refresh(&c, &refresh2).await;
    assert_problem(&after, 400, "token_invalid");

    // Wrong password.
    assert_problem(
        &login(&c, PHONE, "wrong horse battery").await,
        400,
        "token_invalid",
    );

    // Password reset: code by SMS, new password works, old does not, refresh tokens revoked.
    let fresh = login(&c, PHONE, PASSWORD).await.json().expect("json")["refresh_token"]
        .as_str()
        .expect("r")
        .to_owned();
    server.advance(31); // SMS cooldown between two sends to one phone
    assert_eq!(
        post(&c, "/api/password/reset", json!({"phone": PHONE}))
            .await
            .status,
        202
    );
    let first = latest_code(&server, PHONE).await;
    server.advance(31);
    // Resend replaces the code: the first one no longer works.
    assert_eq!(
        post(
            &c,
            "/api/resend_otp",
            json!({"phone": PHONE, "purpose": "password_reset"})
        )
        .await
        .status,
        202
    );
    let second = latest_code(&server, PHONE).await;
    if first != second {
        let r = post(
            &c,
            "/api/password/reset/confirm",
            json!({"phone": PHONE, "otp": first, "new_password": "a brand new secret"}),
        )
        .await;
        assert_problem(&r, 401, "otp_invalid");
    }
    let r = post(
        &c,
        "/api/password/reset/confirm",
        json!({"phone": PHONE, "otp": second, "new_password": "a brand new secret"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_problem(&login(&c, PHONE, PASSWORD).await, 400, "token_invalid");
    assert_eq!(login(&c, PHONE, "a brand new secret").await.status, 200);
    assert_problem(&refresh(&c, &fresh).await, 400, "token_invalid");
    server.stop().await;
}

#[tokio::test]
async fn answers_do_not_reveal_registered_phones() {
    let server = TestServer::start("dynamic").await;
    let c = server.enrolled("phone-1").await;
    register(&server, &c, PHONE, PASSWORD).await;
    let other = server.enrolled("phone-2").await;
    let unknown = "+14155552672";
    server.advance(31); // past the per-phone cooldown of the registration SMS
    let known = post(&other, "/api/password/reset", json!({"phone": PHONE})).await;
    let not_known = post(&other, "/api/password/reset", json!({"phone": unknown})).await;
    assert_eq!(
        (known.status, &known.body),
        (not_known.status, &not_known.body)
    );
    assert!(
        outbox(&server, unknown).await.is_empty(),
        "nothing is sent to unknown phones"
    );
    // Registering a phone that has an account answers the same and sends nothing.
    let before = outbox(&server, PHONE).await.len();
    server.advance(31);
    let again = post(
        &other,
        "/api/register",
        json!({"phone": PHONE, "password": "another password 1"}),
    )
    .await;
    let fresh = post(
        &other,
        "/api/register",
        json!({"phone": "+14155552673", "password": "another password 1"}),
    )
    .await;
    assert_eq!((again.status, &again.body), (fresh.status, &fresh.body));
    assert_eq!(
        outbox(&server, PHONE).await.len(),
        before,
        "no registration SMS to a phone that has an account"
    );
    // Validation answers do not depend on registration either.
    let r = post(
        &other,
        "/api/register",
        json!({"phone": PHONE, "password": "password1"}),
    )
    .await;
    assert_problem(&r, 422, "validation");
    let r = post(
        &other,
        "/api/register",
        json!({"phone": "12345", "password": PASSWORD}),
    )
    .await;
    assert_problem(&r, 422, "validation");
    server.stop().await;
}

fn random_numbers(n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    while out.len() < n {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let candidate = format!("+1212{:07}", 2_000_000 + seed % 7_999_999);
        if moat_accounts::phone::parse(&candidate).is_ok() && !out.contains(&candidate) {
            out.push(candidate);
        }
    }
    out
}

#[tokio::test]
async fn sms_pumping_from_one_device_and_from_many_behind_one_ip() {
    let server = TestServer::start("dynamic").await;
    let numbers = random_numbers(500);
    let bot = server.enrolled("bot-1").await;
    let mut accepted = 0;
    for n in &numbers {
        let r = post(
            &bot,
            "/api/register",
            json!({"phone": n, "password": PASSWORD}),
        )
        .await;
        match r.status {
            202 => accepted += 1,
            429 => {
                assert_problem(&r, 429, "sms_blocked");
                assert!(r.headers.get("retry-after").is_some());
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(accepted, 5, "per-device budget: 5 an hour");
    assert_eq!(drained(&server).await.0, 5, "exactly 5 SMS really sent");

    // 25 more devices from the same IP share the per-IP budget (20 an hour): 15 left.
    let mut bots = Vec::new();
    for i in 0..25 {
        bots.push(server.enrolled(&format!("bot-ip-{i}")).await);
    }
    let mut accepted = 0;
    for (i, n) in numbers.iter().enumerate() {
        let r = post(
            &bots[i % bots.len()],
            "/api/register",
            json!({"phone": n, "password": PASSWORD}),
        )
        .await;
        if r.status == 202 {
            accepted += 1;
        } else {
            assert_problem(&r, 429, "sms_blocked");
        }
    }
    assert_eq!(accepted, 15);
    let (sent, failed, total) = drained(&server).await;
    assert_eq!(
        (sent, failed, total),
        (20, 0, 20),
        "20 SMS an hour from one IP, however many devices"
    );
    server.stop().await;
}

#[tokio::test]
async fn global_budget_trips_the_breaker_and_countries_can_be_narrowed() {
    let server = TestServer::start_with(
        "dynamic",
        "[sms]\nglobal_hour = 3\nallowed_countries = [\"US\"]\n",
    )
    .await;
    let numbers = random_numbers(6);
    let mut statuses = Vec::new();
    for (i, n) in numbers.iter().enumerate() {
        let c = server.enrolled(&format!("d{i}")).await;
        statuses.push(
            post(
                &c,
                "/api/register",
                json!({"phone": n, "password": PASSWORD}),
            )
            .await
            .status,
        );
    }
    assert_eq!(statuses, vec![202, 202, 202, 429, 429, 429]);
    let c = server.enrolled("uk").await;
    let r = post(
        &c,
        "/api/register",
        json!({"phone": "+447400123456", "password": PASSWORD}),
    )
    .await;
    assert_problem(&r, 422, "validation");
    server.stop().await;
}

#[tokio::test]
async fn access_token_is_bound_to_the_device_that_logged_in() {
    let server = TestServer::start("dynamic").await;
    let a = server.enrolled("phone-a").await;
    register(&server, &a, PHONE, PASSWORD).await;
    let access = login(&a, PHONE, PASSWORD).await.json().expect("json")["access_token"]
        .as_str()
        .expect("t")
        .to_owned();
    let b = server.enrolled("phone-b").await;
    let r = b
        .call(Method::GET, "/api/me", None, bearer(&access))
        .await
        .expect("call");
    assert_problem(&r, 401, "token_invalid");
    let none = Client::generate(&server.base).expect("client");
    let r = none
        .call(Method::GET, "/api/me", None, bearer(&access))
        .await
        .expect("call");
    assert_problem(&r, 401, "token_invalid");
    let r = a
        .call(Method::GET, "/api/me", None, opts())
        .await
        .expect("call");
    assert_problem(&r, 401, "token_invalid");
    // A refresh token is bound too.
    let refresh_token = login(&a, PHONE, PASSWORD).await.json().expect("json")["refresh_token"]
        .as_str()
        .expect("r")
        .to_owned();
    assert_problem(&refresh(&b, &refresh_token).await, 400, "token_invalid");
    // Expired: said as such, so the app refreshes (it::first_hour an_expired_access_token_says_so).
    server.advance(901);
    let mut a = a;
    a.set_clock_offset(901);
    let r = a
        .call(Method::GET, "/api/me", None, bearer(&access))
        .await
        .expect("call");
    assert_problem(&r, 401, "token_expired");
    server.stop().await;
}

#[tokio::test]
async fn pyjwt_verifies_access_tokens_with_the_jwks_across_a_rotation() {
    let server = TestServer::start("dynamic").await;
    let c = server.enrolled("phone-1").await;
    register(&server, &c, PHONE, PASSWORD).await;
    let old = login(&c, PHONE, PASSWORD).await.json().expect("json")["access_token"]
        .as_str()
        .expect("t")
        .to_owned();
    let r = http()
        .post(format!("{}/admin/v1/keys/rotate", server.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("rotate");
    assert_eq!(r.status(), 200);
    let new = login(&c, PHONE, PASSWORD).await.json().expect("json")["access_token"]
        .as_str()
        .expect("t")
        .to_owned();
    let jwks: Value = http()
        .get(format!("{}/.well-known/jwks.json", server.base))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    assert_eq!(
        jwks["keys"].as_array().expect("keys").len(),
        2,
        "current and previous key published"
    );
    // The old token still opens /api/me until it expires.
    assert_eq!(
        c.call(Method::GET, "/api/me", None, bearer(&old))
            .await
            .expect("me")
            .status,
        200
    );
    for token in [old, new] {
        let (jwks_url, iss) = (
            format!("{}/.well-known/jwks.json", server.base),
            server.base.clone(),
        );
        let out = tokio::task::spawn_blocking(move || {
            run_python("verify_jwt.py", &[&jwks_url, &iss, &token])
        })
        .await
        .expect("join");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let claims: Value = serde_json::from_slice(&out.stdout).expect("claims");
        assert_eq!(claims["iss"], server.base.as_str());
        assert!(claims["cnf"]["moat_device"].is_string());
        for claim in ["sub", "exp", "jti", "iat"] {
            assert!(claims.get(claim).is_some(), "{claim}");
        }
    }
    // Past the access-token lifetime the retired key leaves the JWKS.
    server.advance(901);
    let r = http()
        .post(format!("{}/admin/v1/cleanup", server.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("cleanup");
    assert_eq!(r.status(), 200);
    server
        .state
        .tokens
        .reload(
            &*server.state.accounts,
            &server.state.keys,
            server.state.now(),
        )
        .await
        .expect("reload");
    let jwks: Value = http()
        .get(format!("{}/.well-known/jwks.json", server.base))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    assert_eq!(jwks["keys"].as_array().expect("keys").len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn repeated_failed_logins_are_slowed_then_locked() {
    let server = TestServer::start_with(
        "dynamic",
        "[accounts]\nlogin_per_minute = 50\nlogin_lock_after = 4\n",
    )
    .await;
    let c = server.enrolled("phone-1").await;
    register(&server, &c, PHONE, PASSWORD).await;
    for _ in 0..4 {
        assert_problem(
            &login(&c, PHONE, "not the password").await,
            400,
            "token_invalid",
        );
    }
    let r = login(&c, PHONE, PASSWORD).await;
    assert_problem(&r, 429, "rate_limited");
    assert!(r.headers.get("retry-after").is_some());
    // A phone with no account is slowed and locked exactly the same way: a lock reveals
    // nothing about registration.
    let unknown = "+14155552679";
    for _ in 0..4 {
        assert_problem(
            &login(&c, unknown, "not the password").await,
            400,
            "token_invalid",
        );
    }
    let r2 = login(&c, unknown, "not the password").await;
    assert_problem(&r2, 429, "rate_limited");
    // The same wait, give or take the second that may tick between the two requests.
    let wait = |r: &moat_client::Response| -> i64 {
        r.headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("retry-after")
    };
    assert!(
        (wait(&r2) - wait(&r)).abs() <= 1,
        "{} vs {}",
        wait(&r2),
        wait(&r)
    );
    assert_eq!(r2.body, r.body);
    server.advance(901);
    let mut c = c;
    c.set_clock_offset(901);
    assert_eq!(
        login(&c, PHONE, PASSWORD).await.status,
        200,
        "unlocked after the lock period"
    );

    // The per-minute limit applies before any password hash, known phone or not.
    let strict = TestServer::start_with("dynamic", "[accounts]\nlogin_per_minute = 2\n").await;
    let d = strict.enrolled("phone-2").await;
    let statuses: Vec<u16> = futures_statuses(&d, "+14155552679").await;
    assert_eq!(statuses, vec![400, 400, 429]);
    strict.stop().await;
    server.stop().await;
}

async fn futures_statuses(c: &Client, phone: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..3 {
        out.push(login(c, phone, "whatever password").await.status);
    }
    out
}

/// A loopback HTTP server that records what it receives and answers with the given statuses
/// in turn (then the last one forever).
async fn recorder(
    statuses: Vec<u16>,
    body: &'static str,
) -> (String, Arc<Mutex<Vec<(String, http::HeaderMap, String)>>>) {
    use axum::response::IntoResponse as _;
    let seen: Arc<Mutex<Vec<(String, http::HeaderMap, String)>>> = Arc::default();
    let seen2 = seen.clone();
    let statuses = Arc::new(Mutex::new(statuses));
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let seen = seen2.clone();
        let statuses = statuses.clone();
        async move {
            let (parts, b) = req.into_parts();
            let bytes = axum::body::to_bytes(b, 1 << 20).await.unwrap_or_default();
            seen.lock().expect("lock").push((
                parts.uri.to_string(),
                parts.headers.clone(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
            let status = {
                let mut s = statuses.lock().expect("lock");
                if s.len() > 1 { s.remove(0) } else { s[0] }
            };
            (
                http::StatusCode::from_u16(status).expect("status"),
                [("content-type", "application/json")],
                body,
            )
                .into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn twilio_sender_speaks_twilios_messages_api_and_retries() {
    let (base, seen) = recorder(vec![500, 201], r#"{"sid":"SM0123456789abcdef"}"#).await;
    let dir = tempfile::tempdir().expect("tmp");
    let token_file = dir.path().join("twilio-token");
    std::fs::write(&token_file, "tw-auth-token-123\n").expect("write");
    let extra = format!(
        "[sms]\nsender = \"twilio\"\n[sms.twilio]\naccount_sid = \"AC0123\"\nauth_token = \"file:{}\"\nfrom = \"+15005550006\"\n\
         status_callback = \"https://hooks.example/sms-status\"\nbase_url = \"{base}\"\n",
        token_file.display()
    );
    let server = TestServer::start_with("dynamic", &extra).await;
    let c = server.enrolled("phone-1").await;
    assert_eq!(
        post(
            &c,
            "/api/register",
            json!({"phone": PHONE, "password": PASSWORD})
        )
        .await
        .status,
        202
    );
    let mut done = false;
    for _ in 0..100 {
        let v: Value = http()
            .get(format!("{}/admin/v1/sms/messages", server.admin))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        if v["messages"][0]["status"] == "sent" {
            assert_eq!(v["messages"][0]["attempts"], 2, "one failure, one retry");
            assert_eq!(v["messages"][0]["provider_id"], "SM0123456789abcdef");
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(done, "message sent after a retry");
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 2);
    let (uri, headers, body) = &seen[1];
    assert_eq!(uri, "/2010-04-01/Accounts/AC0123/Messages.json");
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/x-www-form-urlencoded")
    );
    let expected_auth = format!(
        "Basic {}",
        moat_core::b64::std_encode("AC0123:tw-auth-token-123")
    );
    assert_eq!(
        headers.get("authorization").and_then(|v| v.to_str().ok()),
        Some(expected_auth.as_str())
    );
    let form: std::collections::HashMap<String, String> =
        serde_urlencoded::from_str(body).expect("form");
    assert_eq!(form["To"], PHONE);
    assert_eq!(form["From"], "+15005550006");
    assert_eq!(form["StatusCallback"], "https://hooks.example/sms-status");
    assert!(form["Body"].contains("verification code"));
    // The outbox is for the outbox sender only: Twilio's messages are not readable there.
    assert!(outbox(&server, PHONE).await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn webhook_sender_signs_its_posts() {
    let (base, seen) = recorder(vec![200], "{}").await;
    let dir = tempfile::tempdir().expect("tmp");
    let secret_file = dir.path().join("hook-secret");
    std::fs::write(&secret_file, "whsec-test-secret").expect("write");
    let extra = format!(
        "[sms]\nsender = \"webhook\"\n[sms.webhook]\nurl = \"{base}/sms\"\nsecret = \"file:{}\"\n",
        secret_file.display()
    );
    let server = TestServer::start_with("dynamic", &extra).await;
    let c = server.enrolled("phone-1").await;
    assert_eq!(
        post(
            &c,
            "/api/register",
            json!({"phone": PHONE, "password": PASSWORD})
        )
        .await
        .status,
        202
    );
    assert_eq!(drained(&server).await.0, 1);
    let seen = seen.lock().expect("lock").clone();
    let (uri, headers, body) = &seen[0];
    assert_eq!(uri, "/sms");
    let sig = headers
        .get("moat-webhook-signature")
        .and_then(|v| v.to_str().ok())
        .expect("signature");
    let t: i64 = sig
        .split(',')
        .next()
        .and_then(|p| p.strip_prefix("t="))
        .and_then(|t| t.parse().ok())
        .expect("t");
    assert_eq!(
        moat_accounts::sms::sender::webhook_signature(b"whsec-test-secret", t, body.as_bytes()),
        sig
    );
    let payload: Value = serde_json::from_str(body).expect("json");
    assert_eq!(payload["to"], PHONE);
    assert!(
        payload["body"]
            .as_str()
            .expect("body")
            .contains("verification code")
    );
    server.stop().await;
}

#[tokio::test]
async fn external_issuer_tokens_are_verified_against_its_jwks() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let (k1, p1) = moat_core::dpop::InstallationKey::generate_p256().expect("key");
    let (k2, p2) = moat_core::dpop::InstallationKey::generate_p256().expect("key");
    let jwk = |k: &moat_core::dpop::InstallationKey, kid: &str| {
        let mut j = k.public_jwk().to_json();
        j["kid"] = kid.into();
        j["alg"] = "ES256".into();
        j
    };
    let jwks = Arc::new(Mutex::new(json!({"keys": [jwk(&k1, "k1")]})));
    let served = jwks.clone();
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let v = served.lock().expect("lock").clone();
            async move { axum::Json(v) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let idp = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    let extra = format!(
        "[[issuer]]\nissuer = \"https://idp.example\"\njwks_url = \"{idp}/jwks\"\naudience = \"moat-api\"\n"
    );
    let server = TestServer::start_with("dynamic", &extra).await;
    let c = server.enrolled("phone-1").await;
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let sign = |pkcs8: &[u8], kid: &str, aud: &str| {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(kid.into());
        let exp = moat_client::unix_now() + 300;
        jsonwebtoken::encode(
            &h,
            &json!({"iss": "https://idp.example", "sub": "idp-user-7", "aud": aud, "exp": exp}),
            &EncodingKey::from_ec_der(pkcs8),
        )
        .expect("sign")
    };
    let r = c
        .call(
            Method::GET,
            "/api/me",
            None,
            bearer(&sign(&p1, "k1", "moat-api")),
        )
        .await
        .expect("me");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json().expect("json")["user_id"], "idp-user-7");
    let r = c
        .call(
            Method::GET,
            "/api/me",
            None,
            bearer(&sign(&p1, "k1", "other-api")),
        )
        .await
        .expect("me");
    assert_problem(&r, 401, "token_invalid");
    // The issuer rotates: a token with the new kid makes Moat refetch the JWKS... once the
    // refetch interval allows it.
    jwks.lock().expect("lock")["keys"] = json!([jwk(&k2, "k2")]);
    server.advance(31);
    let mut c = c;
    c.set_clock_offset(31);
    let r = c
        .call(
            Method::GET,
            "/api/me",
            None,
            bearer(&sign(&p2, "k2", "moat-api")),
        )
        .await
        .expect("me");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // A token signed by a key the issuer never published.
    let (_, p3) = moat_core::dpop::InstallationKey::generate_p256().expect("key");
    let r = c
        .call(
            Method::GET,
            "/api/me",
            None,
            bearer(&sign(&p3, "k2", "moat-api")),
        )
        .await
        .expect("me");
    assert_problem(&r, 401, "token_invalid");
    server.stop().await;
}

#[tokio::test]
async fn sms_codes_lock_after_five_wrong_and_belong_to_the_requesting_device() {
    let server = TestServer::start("dynamic").await;
    let a = server.enrolled("phone-a").await;
    let b = server.enrolled("phone-b").await;
    assert_eq!(
        post(
            &a,
            "/api/register",
            json!({"phone": PHONE, "password": PASSWORD})
        )
        .await
        .status,
        202
    );
    let code = latest_code(&server, PHONE).await;
    // The right code from another device does not confirm someone else's registration.
    let r = post(
        &b,
        "/api/register/confirm",
        json!({"phone": PHONE, "otp": code}),
    )
    .await;
    assert_problem(&r, 401, "otp_invalid");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for attempt in 1..=5 {
        let r = post(
            &a,
            "/api/register/confirm",
            json!({"phone": PHONE, "otp": wrong}),
        )
        .await;
        let expected = if attempt < 5 {
            (401, "otp_invalid")
        } else {
            (403, "otp_locked")
        };
        assert_problem(&r, expected.0, expected.1);
    }
    let r = post(
        &a,
        "/api/register/confirm",
        json!({"phone": PHONE, "otp": code}),
    )
    .await;
    assert_problem(&r, 403, "otp_locked");
    // Codes expire after 10 minutes.
    server.advance(31);
    assert_eq!(
        post(
            &a,
            "/api/register",
            json!({"phone": PHONE, "password": PASSWORD})
        )
        .await
        .status,
        202
    );
    let code = latest_code(&server, PHONE).await;
    server.advance(601);
    let r = post(
        &a,
        "/api/register/confirm",
        json!({"phone": PHONE, "otp": code}),
    )
    .await;
    assert_problem(&r, 401, "otp_expired");
    server.stop().await;
}

#[tokio::test]
async fn a_refused_send_is_recorded_as_failed_not_dropped() {
    let (base, _seen) = recorder(
        vec![400],
        r#"{"code":21211,"message":"Invalid 'To' Phone Number"}"#,
    )
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let token_file = dir.path().join("t");
    std::fs::write(&token_file, "tok").expect("write");
    let extra = format!(
        "[sms]\nsender = \"twilio\"\n[sms.twilio]\naccount_sid = \"AC1\"\nauth_token = \"file:{}\"\nfrom = \"+15005550006\"\nbase_url = \"{base}\"\n",
        token_file.display()
    );
    let server = TestServer::start_with("dynamic", &extra).await;
    let c = server.enrolled("phone-1").await;
    assert_eq!(
        post(
            &c,
            "/api/register",
            json!({"phone": PHONE, "password": PASSWORD})
        )
        .await
        .status,
        202
    );
    assert_eq!(drained(&server).await, (0, 1, 1));
    let v: Value = http()
        .get(format!("{}/admin/v1/sms/messages", server.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let m = &v["messages"][0];
    assert_eq!(m["status"], "failed");
    assert!(
        m["last_error"]
            .as_str()
            .expect("error")
            .contains("HTTP 400"),
        "{m}"
    );
    assert!(
        !m.to_string().contains("tok\""),
        "no secret in the recorded error"
    );
    server.stop().await;
}

/// A JWT from a header, the claims of a genuine token, and a signature made by `sign`.
fn forge(header: Value, claims_b64: &str, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let head = moat_core::b64::url_encode(header.to_string().as_bytes());
    let input = format!("{head}.{claims_b64}");
    let sig = sign(input.as_bytes());
    format!("{input}.{}", moat_core::b64::url_encode(&sig))
}

#[tokio::test]
async fn forged_access_tokens_are_refused() {
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
    };
    let server = TestServer::start("dynamic").await;
    let a = server.enrolled("phone-a").await;
    register(&server, &a, PHONE, PASSWORD).await;
    let access = login(&a, PHONE, PASSWORD).await.json().expect("json")["access_token"]
        .as_str()
        .expect("t")
        .to_owned();
    // The genuine token opens the route: the forgeries below differ only where they say.
    let r = a
        .call(Method::GET, "/api/me", None, bearer(&access))
        .await
        .expect("call");
    assert_eq!(r.status, 200);
    let mut parts = access.split('.');
    let header: Value =
        serde_json::from_slice(&moat_core::b64::url_decode(parts.next().expect("h")).expect("b64"))
            .expect("header");
    let claims = parts.next().expect("claims").to_owned();
    let kid = header["kid"].as_str().expect("kid").to_owned();
    let jwks: Value = http()
        .get(format!("{}/.well-known/jwks.json", server.base))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let p256 = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("p256");
    let p384 = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).expect("p384");
    fn es<'k>(
        key: &'k EcdsaKeyPair,
        rng: &'k aws_lc_rs::rand::SystemRandom,
    ) -> impl FnOnce(&[u8]) -> Vec<u8> + 'k {
        move |input: &[u8]| key.sign(rng, input).expect("sign").as_ref().to_vec()
    }
    let hmac_with = |secret: Vec<u8>| {
        move |input: &[u8]| {
            aws_lc_rs::hmac::sign(
                &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret),
                input,
            )
            .as_ref()
            .to_vec()
        }
    };
    let forgeries = [
        (
            "alg none",
            forge(json!({"alg": "none", "kid": kid}), &claims, |_| Vec::new()),
        ),
        (
            "HS256 keyed with the published public key",
            forge(
                json!({"alg": "HS256", "kid": kid}),
                &claims,
                hmac_with(jwks.to_string().into_bytes()),
            ),
        ),
        (
            "HS256 keyed with the public key's x coordinate",
            forge(
                json!({"alg": "HS256", "kid": kid}),
                &claims,
                hmac_with(
                    moat_core::b64::url_decode(jwks["keys"][0]["x"].as_str().expect("x"))
                        .expect("b64"),
                ),
            ),
        ),
        (
            "ES256 header, P-384 signature",
            forge(
                json!({"alg": "ES256", "kid": kid}),
                &claims,
                es(&p384, &rng),
            ),
        ),
        (
            "ES384",
            forge(
                json!({"alg": "ES384", "kid": kid}),
                &claims,
                es(&p384, &rng),
            ),
        ),
        (
            "ES256 by another key under the server's kid",
            forge(
                json!({"alg": "ES256", "kid": kid}),
                &claims,
                es(&p256, &rng),
            ),
        ),
        (
            "kid path injection",
            forge(
                json!({"alg": "ES256", "kid": "../../../../etc/passwd"}),
                &claims,
                es(&p256, &rng),
            ),
        ),
        (
            "kid SQL injection",
            forge(
                json!({"alg": "ES256", "kid": "x' OR '1'='1"}),
                &claims,
                es(&p256, &rng),
            ),
        ),
        (
            "embedded jwk",
            forge(
                json!({"alg": "ES256", "kid": kid, "jwk": jwks["keys"][0]}),
                &claims,
                es(&p256, &rng),
            ),
        ),
        ("unknown critical extension, genuine signature parts", {
            let mut h = header.clone();
            h["crit"] = json!(["x-moat-test"]);
            h["x-moat-test"] = json!(true);
            let head = moat_core::b64::url_encode(h.to_string().as_bytes());
            format!("{head}.{claims}.{}", access.rsplit('.').next().expect("s"))
        }),
    ];
    for (name, token) in forgeries {
        let r = a
            .call(Method::GET, "/api/me", None, bearer(&token))
            .await
            .expect("call");
        assert_eq!(
            (name, r.status, r.problem_code().as_deref()),
            (name, 401, Some("token_invalid")),
            "{}",
            String::from_utf8_lossy(&r.body)
        );
    }
    server.stop().await;
}
