//! The gateway in front of a real upstream (an axum server started by the test).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, Method};
use moat_client::{Client, Credential};
use moat_core::httpsig::{Message, ParsedSignature, VerifyingKey};
use moat_core::jwk::PublicJwk;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::support::*;

const SECRET: &str = "sk_live_SECRET_4242";

#[derive(Clone, Debug)]
struct Seen {
    method: String,
    uri: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// The upstream: records each request and answers according to its path.
async fn upstream() -> (String, Arc<Mutex<Vec<Seen>>>) {
    use axum::response::IntoResponse as _;
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let record = record.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20)
                .await
                .unwrap_or_default()
                .to_vec();
            let path = parts.uri.path().to_owned();
            let key = parts
                .headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            record.lock().expect("lock").push(Seen {
                method: parts.method.to_string(),
                uri: parts.uri.to_string(),
                headers: parts.headers,
                body,
            });
            match path.as_str() {
                "/base/leak" => (
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    [("x-echo-key", key.clone())],
                    format!("upstream failed for key {key} (key={key})"),
                )
                    .into_response(),
                "/base/redirect" => (
                    http::StatusCode::FOUND,
                    [("location", format!("https://elsewhere.example/?key={key}"))],
                    "",
                )
                    .into_response(),
                "/base/slow" => {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    "late".into_response()
                }
                _ => axum::Json(json!({"ok": true})).into_response(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (format!("http://{addr}"), seen)
}

async fn gateway_server() -> (TestServer, Arc<Mutex<Vec<Seen>>>, tempfile::TempDir) {
    let (up, seen) = upstream().await;
    let dir = tempfile::tempdir().expect("tmp");
    let secret = dir.path().join("maps-key");
    std::fs::write(&secret, format!("{SECRET}\n")).expect("write");
    let extra = format!(
        "[[route]]\nprefix = \"/events\"\nupstream = \"{up}/base\"\nrequire = [\"device\"]\ntimeout = 1\nsign_upstream = true\n\
         inject_headers = {{ \"X-Api-Key\" = \"file:{s}\" }}\ninject_query = {{ \"key\" = \"file:{s}\" }}\n\
         [[route]]\nprefix = \"/limited\"\nupstream = \"{up}/base\"\nrequire = [\"device\"]\nmethods = [\"GET\"]\n\
         rate_limit = {{ key = \"device\", per_second = 5, burst = 5 }}\n",
        s = secret.display()
    );
    (TestServer::start_with("dynamic", &extra).await, seen, dir)
}

fn key_of(c: &Client) -> String {
    let Some(Credential::ApiKey { key, .. }) = c.credential() else {
        panic!("api key")
    };
    key.clone()
}

#[tokio::test]
async fn forwards_exactly_replaces_spoofed_identity_and_injects_secrets() {
    let (server, seen, _dir) = gateway_server().await;
    let c = server.enrolled("phone-1").await;
    let Some(Credential::ApiKey {
        device: Some(device),
        ..
    }) = c.credential().cloned()
    else {
        panic!("cred")
    };
    let body = json!({"seats": 2, "event": "opera"});
    let r = http()
        .post(format!(
            "{}/events/orders/42?x=1&y=two%20words&key=mine",
            server.base
        ))
        .header("moat-device-key", key_of(&c))
        .header("moat-device", "00000000-0000-0000-0000-000000000000")
        .header("moat-user", "admin")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-custom", "kept")
        .header("connection", "x-hop")
        .header("x-hop", "dropped")
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("text");
    assert!(!text.contains(SECRET));
    let seen = seen.lock().expect("lock")[0].clone();
    assert_eq!(seen.method, "POST");
    assert_eq!(
        seen.uri, "/base/orders/42?x=1&y=two+words&key=sk_live_SECRET_4242",
        "client's `key` replaced by the injected one"
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&seen.body).expect("json"),
        body
    );
    let h = |n: &str| {
        seen.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(
        h("moat-device").as_deref(),
        Some(device.as_str()),
        "spoofed Moat-Device replaced"
    );
    assert_eq!(h("moat-user"), None, "spoofed Moat-User removed");
    assert_eq!(
        h("x-forwarded-for").as_deref(),
        Some("127.0.0.1"),
        "untrusted X-Forwarded-For replaced"
    );
    assert!(
        h("forwarded")
            .expect("forwarded")
            .starts_with("for=127.0.0.1;proto=http")
    );
    assert_eq!(h("x-custom").as_deref(), Some("kept"));
    assert_eq!(
        h("x-hop"),
        None,
        "headers named in Connection are hop-by-hop"
    );
    assert_eq!(h("x-api-key").as_deref(), Some(SECRET));
    assert_eq!(
        h("moat-device-key"),
        None,
        "the device's credential stays with Moat"
    );

    // The upstream can check the request came through Moat: RFC 9421 with the gateway key.
    let jwks: Value = http()
        .get(format!(
            "{}/.well-known/moat-gateway-jwks.json",
            server.base
        ))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    let mut jwk = jwks["keys"][0].clone();
    for k in ["kid", "alg", "use"] {
        jwk.as_object_mut().expect("obj").remove(k);
    }
    let key = VerifyingKey::from_jwk(&PublicJwk::from_json(&jwk).expect("jwk")).expect("key");
    let sig = ParsedSignature::parse(
        &h("signature-input").expect("input"),
        &h("signature").expect("sig"),
        "moat",
    )
    .expect("parse");
    assert_eq!(sig.params.keyid.as_deref(), Some("moat-gateway"));
    let covered: Vec<&str> = sig.components().collect();
    for c in [
        "@method",
        "@authority",
        "@path",
        "@query",
        "moat-device",
        "content-digest",
    ] {
        assert!(covered.contains(&c), "{c} covered");
    }
    moat_core::digest::verify(&h("content-digest").expect("digest"), &seen.body).expect("digest");
    let (path, query) = seen.uri.split_once('?').expect("query");
    let authority = h("host").expect("host");
    let msg = Message {
        method: "POST",
        scheme: "http",
        authority: &authority,
        path,
        query: Some(query),
        headers: &seen.headers,
    };
    sig.verify(&msg, &key)
        .expect("gateway signature verifies at the upstream");
    server.stop().await;
}

#[tokio::test]
async fn injected_secrets_never_reach_the_client() {
    let (server, _seen, _dir) = gateway_server().await;
    let c = server.enrolled("phone-1").await;
    let leak = c
        .call(Method::GET, "/events/leak", None, opts())
        .await
        .expect("call");
    assert_eq!(leak.status, 500);
    let body = String::from_utf8_lossy(&leak.body);
    assert!(
        !body.contains(SECRET) && body.contains("[redacted]"),
        "{body}"
    );
    assert!(
        leak.headers.get("x-echo-key").is_none(),
        "a header echoing the secret is dropped"
    );
    let redirect = c
        .call(Method::GET, "/events/redirect", None, opts())
        .await
        .expect("call");
    assert_eq!(redirect.status, 302);
    assert!(
        redirect.headers.get("location").is_none(),
        "a redirect carrying the secret is dropped"
    );
    server.stop().await;
}

async fn raw(server: &TestServer, request_line: &str, key: &str) -> u16 {
    let addr = server.base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "{request_line}\r\nHost: {addr}\r\nMoat-Device-Key: {key}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn traversal_and_ssrf_tricks_are_refused() {
    let (server, seen, _dir) = gateway_server().await;
    let c = server.enrolled("phone-1").await;
    let key = key_of(&c);
    for target in [
        "GET /events/../admin/v1/devices HTTP/1.1",
        "GET /events/a/../../x HTTP/1.1",
        "GET /events/%2e%2e/x HTTP/1.1",
        "GET /events/a%2Fb HTTP/1.1",
        "GET /events/a%5Cb HTTP/1.1",
        "GET /events//evil.example/x HTTP/1.1",
        "GET /events/a%00b HTTP/1.1",
        "GET http://evil.example/events/x HTTP/1.1",
        "GET http://169.254.169.254/events/x HTTP/1.1",
    ] {
        assert_eq!(raw(&server, target, &key).await, 400, "{target}");
    }
    assert!(
        seen.lock().expect("lock").is_empty(),
        "nothing reached the upstream"
    );
    // Without a device credential the gateway forwards nothing at all.
    let r = read(
        http()
            .get(format!("{}/events/x", server.base))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_problem(&r, 401, "credential_invalid");
    assert_eq!(
        raw(&server, "GET /events/fine/path HTTP/1.1", &key).await,
        200
    );
    server.stop().await;
}

#[tokio::test]
async fn rate_limits_hold_under_concurrent_load() {
    let (server, seen, _dir) = gateway_server().await;
    let a = Arc::new(server.enrolled("phone-a").await);
    let b = server.enrolled("phone-b").await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let a = a.clone();
        tasks.push(tokio::spawn(async move {
            a.call(Method::GET, "/limited/x", None, opts())
                .await
                .expect("call")
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let r = t.await.expect("join");
        match r.status {
            200 => {
                ok += 1;
                assert!(
                    r.headers.get("ratelimit").is_some()
                        && r.headers.get("ratelimit-policy").is_some()
                );
            }
            429 => {
                assert_problem(&r, 429, "rate_limited");
                assert!(r.headers.get("retry-after").is_some());
                assert!(
                    r.headers
                        .get("ratelimit")
                        .expect("ratelimit")
                        .to_str()
                        .expect("ascii")
                        .contains("r=0")
                );
            }
            s => panic!("status {s}"),
        }
    }
    assert!(
        (5..=6).contains(&ok),
        "burst of 5 (+1 refill at most): {ok}"
    );
    assert_eq!(
        seen.lock().expect("lock").len(),
        ok,
        "refused requests never reached the upstream"
    );
    assert_eq!(
        b.call(Method::GET, "/limited/x", None, opts())
            .await
            .expect("call")
            .status,
        200,
        "another device has its own budget"
    );
    // HTTP/2 (prior knowledge, cleartext) through the gateway.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let r = h2
        .get(format!("{}/limited/y", server.base))
        .header("moat-device-key", key_of(&b))
        .send()
        .await
        .expect("h2");
    assert_eq!(r.version(), http::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let r = b
        .call(Method::POST, "/limited/x", Some(&json!({})), opts())
        .await
        .expect("call");
    assert_problem(&r, 405, "method_not_allowed");
    server.stop().await;
}

#[tokio::test]
async fn slow_upstream_times_out_and_dead_upstream_is_a_502() {
    let (server, _seen, _dir) = gateway_server().await;
    let c = server.enrolled("phone-1").await;
    let r = c
        .call(Method::GET, "/events/slow", None, opts())
        .await
        .expect("call");
    assert_problem(&r, 504, "upstream_timeout");
    server.stop().await;

    let dead = "[[route]]\nprefix = \"/dead\"\nupstream = \"http://127.0.0.1:9/\"\nrequire = [\"device\"]\n";
    let server = TestServer::start_with("dynamic", dead).await;
    let c = server.enrolled("phone-1").await;
    let r = c
        .call(Method::GET, "/dead/x", None, opts())
        .await
        .expect("call");
    assert_problem(&r, 502, "bad_gateway");
    server.stop().await;
}

#[tokio::test]
async fn tls_with_a_pinned_key_is_accepted_and_another_key_refused() {
    use rcgen::PublicKeyData as _;
    let dir = tempfile::tempdir().expect("tmp");
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("cert");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).expect("write");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write");
    let pin = moat_client::pin::spki_pin(&certified.signing_key.subject_public_key_info());
    assert_eq!(
        moat_client::pin::certificate_pin(certified.cert.der()).expect("pin"),
        pin
    );

    let server = TestServer::start_full("otp", "", Some((cert, key))).await;
    assert!(server.base.starts_with("https://"));
    let mut c = Client::generate_pinned(&server.base, std::slice::from_ref(&pin)).expect("client");
    c.enroll_and_fetch("tls-phone", Some("ios"))
        .await
        .expect("enroll over pinned TLS");
    let r = c
        .call(Method::GET, "/v1/device", None, opts())
        .await
        .expect("call");
    assert_eq!(r.status, 200);

    let other = rcgen::KeyPair::generate().expect("key");
    let wrong_pin = moat_client::pin::spki_pin(&other.subject_public_key_info());
    let mut wrong = Client::generate_pinned(&server.base, &[wrong_pin]).expect("client");
    let err = wrong.enroll("x", None).await.expect_err("refused");
    assert!(matches!(err, moat_client::Error::Http(_)), "{err}");
    // HTTP/2 is negotiated by ALPN.
    let h2 = moat_client::pin::pinned_http_client(std::slice::from_ref(&pin)).expect("client");
    let r = h2
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .expect("h2");
    assert_eq!(r.version(), http::Version::HTTP_2);
    // A client that trusts only public CAs refuses the self-signed certificate too.
    let mut plain = Client::generate(&server.base).expect("client");
    assert!(plain.enroll("y", None).await.is_err());
    server.stop().await;
}

/// Starts one of the documented example backends (`docs/examples`) on `port`, waits until it
/// listens, and returns the process (killed on drop).
async fn example_backend(
    program: &str,
    file: &str,
    port: u16,
    jwks: &str,
) -> tokio::process::Child {
    use tokio::io::AsyncBufReadExt as _;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/examples")
        .join(file);
    let mut child = tokio::process::Command::new(program)
        .arg(path)
        .env("MOAT_JWKS_URL", jwks)
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{program} is needed for the documented backend check: {e}"));
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("listening") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready, Ok(true), "{file} did not start");
    child
}

#[tokio::test]
async fn documented_node_and_java_backends_verify_what_moat_forwards() {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port()
    };
    let (node_port, java_port) = (free(), free());
    let extra = format!(
        "[[route]]\nprefix = \"/node\"\nupstream = \"http://127.0.0.1:{node_port}/app\"\nrequire = [\"device\"]\nsign_upstream = true\n\
         [[route]]\nprefix = \"/java\"\nupstream = \"http://127.0.0.1:{java_port}/app\"\nrequire = [\"device\"]\nsign_upstream = true\n"
    );
    let server = TestServer::start_with("dynamic", &extra).await;
    let jwks = format!("{}/.well-known/moat-gateway-jwks.json", server.base);
    let _node = example_backend("node", "verify-moat.js", node_port, &jwks).await;
    let _java = example_backend("java", "VerifyMoat.java", java_port, &jwks).await;
    let c = server.enrolled("phone-1").await;
    let Some(Credential::ApiKey {
        device: Some(device),
        ..
    }) = c.credential().cloned()
    else {
        panic!("cred")
    };
    for (prefix, port) in [("/node", node_port), ("/java", java_port)] {
        for (method, body) in [
            (Method::GET, None),
            (Method::POST, Some(json!({"order": 7}))),
        ] {
            let r = c
                .call(
                    method.clone(),
                    &format!("{prefix}/orders?page=2"),
                    body.as_ref(),
                    opts(),
                )
                .await
                .expect("call");
            assert_eq!(
                r.status,
                200,
                "{prefix} {method}: {}",
                String::from_utf8_lossy(&r.body)
            );
            let v = r.json().expect("json");
            assert_eq!(v["verified"], true);
            assert_eq!(v["device"], device.as_str());
        }
        // Straight to the backend, with a forged identity and no signature: refused.
        let r = http()
            .post(format!("http://127.0.0.1:{port}/app/orders"))
            .header("moat-device", device.as_str())
            .body("{}")
            .send()
            .await
            .expect("direct");
        assert_eq!(r.status(), 401, "{prefix}: an unsigned request is refused");
    }
    server.stop().await;
}
