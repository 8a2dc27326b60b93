//! What a new user and an operator meet first (issue "The first hour"): expired tokens said
//! as such, a URL mismatch that names the URL, and the gateway's 405, `Server` and body limit.

use http::Method;
use moat_client::{CallOptions, Client};
use serde_json::json;

use super::support::*;

const PHONE: &str = "+14155552671";
const PASSWORD: &str = "correct horse battery";

/// An access token past its `exp` answers `401 token_expired` with RFC 6750's
/// `WWW-Authenticate: Bearer error="invalid_token"` (PROTOCOL section 1), so an app knows to
/// refresh; a forged one stays `token_invalid`. Before, both were `token_invalid "token
/// rejected"`.
#[tokio::test]
async fn an_expired_access_token_says_so() {
    let server = TestServer::start("dynamic").await;
    let c = server.enrolled("phone-1").await;
    register(&server, &c, PHONE, PASSWORD).await;
    let r = c
        .call_form(
            "/api/token",
            &[
                ("grant_type", "password"),
                ("username", PHONE),
                ("password", PASSWORD),
            ],
            opts(),
        )
        .await
        .expect("token");
    assert_eq!(r.status, 200);
    let access = r.json().expect("json")["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let bearer = |token: &str| CallOptions {
        headers: vec![("authorization".into(), format!("Bearer {token}"))],
        ..opts()
    };
    let r = c
        .call(Method::GET, "/api/me", None, bearer(&access))
        .await
        .expect("me");
    assert_eq!(r.status, 200);
    server.advance(901);
    let mut c = c;
    c.set_clock_offset(server.clock.offset());
    let r = c
        .call(Method::GET, "/api/me", None, bearer(&access))
        .await
        .expect("me");
    assert_problem(&r, 401, "token_expired");
    let challenge = r
        .headers
        .get("www-authenticate")
        .expect("challenge")
        .to_str()
        .expect("ascii");
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(challenge.contains("expired"), "{challenge}");
    // A token signed by someone else is not "expired", whatever its exp.
    let mut forged = access.clone();
    forged.pop();
    forged.push(if access.ends_with('A') { 'B' } else { 'A' });
    let r = c
        .call(Method::GET, "/api/me", None, bearer(&forged))
        .await
        .expect("me");
    assert_problem(&r, 401, "token_invalid");
    assert_eq!(
        r.headers.get("www-authenticate").expect("challenge"),
        "Moat"
    );
    server.stop().await;
}

/// A client calling `localhost` where the server is `127.0.0.1` (or an emulator's
/// `10.0.2.2`) is told the URL the server expects.
#[tokio::test]
async fn a_url_mismatch_names_the_expected_url() {
    let server = TestServer::start("dynamic").await;
    let other = server.base.replace("127.0.0.1", "localhost");
    let mut c = Client::generate(&other).expect("client");
    c.set_clock_offset(server.clock.offset());
    let err = c.enroll("phone-1", None).await.expect_err("refused");
    let moat_client::Error::Problem {
        status,
        code,
        detail,
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!((*status, code.as_str()), (401, "identity_invalid"));
    assert!(
        detail.contains(&format!("{}/v1/enroll", server.base)),
        "the refusal names the expected URL: {detail}"
    );
    server.stop().await;
}

async fn upstream() -> String {
    use axum::response::IntoResponse as _;
    let app = axum::Router::new().fallback(|req: axum::extract::Request| async move {
        let n = axum::body::to_bytes(req.into_body(), 1 << 22)
            .await
            .map_or(0, |b| b.len());
        (
            [
                ("server", "Apache/2.4.1 (Unix)"),
                ("x-powered-by", "PHP/5.6"),
            ],
            axum::Json(json!({"received": n})),
        )
            .into_response()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    format!("http://{addr}")
}

/// The gateway's `405` lists the route's methods in `Allow`; the upstream's `Server` and
/// `X-Powered-By` are removed unless `pass_server_header`; `max_body_bytes` is per route
/// (here smaller and larger than the server's 64 KiB).
#[tokio::test]
async fn gateway_405_allow_server_header_and_route_body_limits() {
    let up = upstream().await;
    let server = TestServer::start_with(
        "dynamic",
        &format!(
            "[[route]]\nprefix = \"/ro\"\nupstream = \"{up}\"\nrequire = [\"device\"]\nmethods = [\"GET\", \"HEAD\"]\n\
             [[route]]\nprefix = \"/small\"\nupstream = \"{up}\"\nrequire = [\"device\"]\nmax_body_bytes = 100\n\
             [[route]]\nprefix = \"/big\"\nupstream = \"{up}\"\nrequire = [\"device\"]\nmax_body_bytes = 1048576\n\
             [[route]]\nprefix = \"/told\"\nupstream = \"{up}\"\nrequire = [\"device\"]\npass_server_header = true\n"
        ),
    )
    .await;
    let c = server.enrolled("phone-1").await;
    let r = c
        .call(Method::POST, "/ro/x", Some(&json!({})), opts())
        .await
        .expect("call");
    assert_problem(&r, 405, "method_not_allowed");
    assert_eq!(r.headers.get("allow").expect("Allow"), "GET, HEAD");
    let r = c
        .call(Method::GET, "/ro/x", None, opts())
        .await
        .expect("call");
    assert_eq!(r.status, 200);
    assert!(r.headers.get("server").is_none(), "{:?}", r.headers);
    assert!(r.headers.get("x-powered-by").is_none(), "{:?}", r.headers);
    let r = c
        .call(Method::GET, "/told/x", None, opts())
        .await
        .expect("call");
    assert_eq!(
        r.headers.get("server").expect("kept"),
        "Apache/2.4.1 (Unix)"
    );
    let body = |n: usize| json!({"pad": "x".repeat(n)});
    let r = c
        .call(Method::POST, "/small/x", Some(&body(50)), opts())
        .await
        .expect("call");
    assert_eq!(r.status, 200);
    let r = c
        .call(Method::POST, "/small/x", Some(&body(200)), opts())
        .await
        .expect("call");
    assert_problem(&r, 413, "body_too_large");
    let r = c
        .call(Method::POST, "/big/x", Some(&body(200_000)), opts())
        .await
        .expect("call");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.json().expect("json")["received"].as_u64().expect("n") > 200_000);
    let r = c
        .call(Method::POST, "/ro2", Some(&body(200_000)), opts())
        .await
        .expect("call");
    assert_eq!(r.status, 404);
    server.stop().await;
}
