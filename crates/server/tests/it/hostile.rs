//! Hostile clients at the HTTP level: slowloris, deeply nested JSON, duplicated credential
//! headers, and account enumeration by timing.

use std::time::{Duration, Instant};

use http::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::support::*;

#[tokio::test]
async fn a_client_trickling_its_headers_is_cut_off() {
    // The test servers run with server.header_timeout = 5 (30 by default).
    let server = TestServer::start("dynamic").await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    stream
        .write_all(b"POST /v1/enroll HTTP/1.1\r\nHost: moat\r\n")
        .await
        .expect("write");
    let start = Instant::now();
    // One header byte a second, forever: the server must close the connection once the
    // header timeout has passed, whatever the trickle.
    let closed = loop {
        if stream.write_all(b"X").await.is_err() {
            break start.elapsed();
        }
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break start.elapsed(),
            // hyper answers 408 before closing.
            Ok(Ok(n)) => {
                assert!(
                    String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"),
                    "{}",
                    String::from_utf8_lossy(&buf[..n])
                );
                break start.elapsed();
            }
            Err(_) => {}
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the connection is still open after 20 s"
        );
    };
    assert!(
        closed >= Duration::from_secs(4),
        "closed for the timeout, not earlier: {closed:?}"
    );
    // Other clients were served all along.
    let r = http()
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .expect("healthz");
    assert_eq!(r.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn deeply_nested_json_is_refused_cleanly() {
    let server = TestServer::start("dynamic").await;
    let c = server.enrolled("phone-1").await;
    let Some(moat_client::Credential::ApiKey { key, .. }) = c.credential().cloned() else {
        panic!("api key")
    };
    let depth = 5_000;
    let body = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    // The echo endpoint takes any JSON value: the parser's depth limit answers, not the stack.
    let r = read(
        http()
            .post(format!("{}/v1/device/echo", server.base))
            .header("content-type", "application/json")
            .header("moat-device-key", key.as_str())
            .body(body.clone())
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_problem(&r, 400, "malformed");
    // The open endpoint, which expects an object: refused as the wrong shape.
    let r = read(
        http()
            .post(format!("{}/v1/enroll", server.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert!(matches!(r.status, 400 | 422), "{}", r.status);
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    // And the server lives on.
    let r = c
        .call(
            Method::POST,
            "/v1/device/echo",
            Some(&json!({"ok": true})),
            opts(),
        )
        .await
        .expect("call");
    assert_eq!(r.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn duplicated_credential_headers_are_refused() {
    let server = TestServer::start("otp").await;
    let c = server.enrolled("phone-1").await;
    let (url, headers, bytes) = c
        .prepare(&Method::GET, "/v1/device", None, &opts())
        .expect("prepare");
    // A second copy of a credential header: ambiguous which one was checked.
    for (name, code) in [
        ("signature", "signature_invalid"),
        ("signature-input", "signature_invalid"),
        ("authorization", "token_invalid"),
    ] {
        let mut h = headers.clone();
        let value = h
            .get(name)
            .cloned()
            .unwrap_or_else(|| http::HeaderValue::from_static("Bearer x"));
        h.append(name, value.clone());
        if name == "authorization" {
            h.append(name, value);
        }
        let r = read(
            http()
                .get(url.clone())
                .headers(h)
                .body(bytes.clone().unwrap_or_default())
                .send()
                .await
                .expect("send"),
        )
        .await;
        assert_eq!(
            (r.status, r.problem_code().as_deref()),
            (401, Some(code)),
            "{name}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn login_timing_does_not_reveal_registered_phones() {
    // Generous throttles so the samples measure hashing, not the rate limiter.
    let server = TestServer::start_with(
        "dynamic",
        "[accounts]\nlogin_per_minute = 100000\nlogin_lock_after = 100000\n",
    )
    .await;
    let c = server.enrolled("phone-1").await;
    let registered = "+14155552671";
    let unknown = "+14155552672";
    let r = c
        .call(
            Method::POST,
            "/api/register",
            Some(&json!({"phone": registered, "password": "correct horse battery"})),
            opts(),
        )
        .await
        .expect("register");
    assert_eq!(r.status, 202);
    // Confirming needs the code; the sign-up itself is what makes the phone known.
    let code = {
        let v: serde_json::Value = http()
            .get(format!(
                "{}/admin/v1/sms/outbox?phone={}",
                server.admin,
                registered.replace('+', "%2B")
            ))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("outbox")
            .json()
            .await
            .expect("json");
        let text = v["messages"][0]["body"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        text.split(|ch: char| !ch.is_ascii_digit())
            .find(|w| w.len() == 6)
            .expect("6-digit code")
            .to_owned()
    };
    let r = c
        .call(
            Method::POST,
            "/api/register/confirm",
            Some(&json!({"phone": registered, "otp": code})),
            opts(),
        )
        .await
        .expect("confirm");
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let attempt = |phone: &'static str| {
        let c = &c;
        async move {
            let t = Instant::now();
            let r = c
                .call_form(
                    "/api/token",
                    &[
                        ("grant_type", "password"),
                        ("username", phone),
                        ("password", "not the password"),
                    ],
                    opts(),
                )
                .await
                .expect("token");
            assert_eq!(r.status, 400);
            t.elapsed().as_secs_f64()
        }
    };
    // Interleaved samples, so drift in machine load hits both sides alike; 14 pairs stay under
    // the fixed per-IP login budget (30 a minute).
    let (mut known, mut absent) = (Vec::new(), Vec::new());
    for _ in 0..14 {
        known.push(attempt(registered).await);
        absent.push(attempt(unknown).await);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (k, a) = (median(&mut known), median(&mut absent));
    // Threshold: medians within 25 % of each other. Without the dummy hash for unknown phones
    // the difference is the whole argon2id cost (tens of ms against ~1 ms).
    let ratio = k.max(a) / k.min(a);
    assert!(
        ratio < 1.25,
        "registered {:.1} ms vs unknown {:.1} ms (ratio {ratio:.2})",
        k * 1e3,
        a * 1e3
    );
    server.stop().await;
}
