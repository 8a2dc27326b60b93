//! The public and admin routers driven without a socket (`tower::ServiceExt::oneshot` on
//! `moat_server::app` and `admin_app`): which requests each endpoint refuses, with which
//! status and problem code, before any handler work. Fast enough to run on every change; the
//! behaviour over real connections is in the `integration` tests.

use axum::Router;
use axum::body::Body;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use moat_client::{Auth, CallOptions, Client};
use moat_testkit::server::{ADMIN_TOKEN, TestState};
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// The deployment's public base URL: signatures and DPoP proofs name it, whatever the socket.
const BASE: &str = "http://moat.test";

/// The key every device shares in static mode.
const STATIC_KEY: &str = "static-key-0123456789abcdefghijklmnopqrstuvwxyz";

/// The echo endpoint wants a signature, so the matrix covers both device requirements.
const POLICIES: &str = "[[route]]\npath = \"/v1/device/echo\"\nrequire = [\"signature\"]\n";

/// Every built-in protected endpoint with its method. Each requires `device` (the default),
/// but `/api/me` a user token and the echo a signature ([`POLICIES`]).
const PROTECTED: &[(Method, &str)] = &[
    (Method::GET, "/v1/device"),
    (Method::POST, "/v1/device/echo"),
    (Method::POST, "/api/register"),
    (Method::POST, "/api/register/confirm"),
    (Method::POST, "/api/resend_otp"),
    (Method::POST, "/api/password/reset"),
    (Method::POST, "/api/password/reset/confirm"),
    (Method::POST, "/api/token"),
    (Method::GET, "/api/me"),
    (Method::POST, "/v1/attest/challenge"),
    (Method::POST, "/v1/attest"),
];

/// A response, read whole.
struct Answer {
    status: StatusCode,
    content_type: Option<String>,
    body: Value,
}

impl Answer {
    /// Asserts a problem document with `status` and `code`.
    #[track_caller]
    fn problem(&self, status: u16, code: &str, what: &str) {
        assert_eq!(self.status.as_u16(), status, "{what}: {}", self.body);
        assert_eq!(
            self.content_type.as_deref(),
            Some("application/problem+json"),
            "{what}"
        );
        assert_eq!(self.body["code"], code, "{what}: {}", self.body);
    }
}

async fn send(router: &Router, request: Request<Body>) -> Answer {
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        content_type,
        body,
    }
}

/// A request with `headers`; a JSON body for POST.
fn request(method: &Method, path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::builder().method(method.clone()).uri(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let body = if method == Method::POST {
        builder = builder.header("content-type", "application/json");
        Body::from("{}")
    } else {
        Body::empty()
    };
    builder.body(body).expect("request")
}

/// The request `client` would send (credential or signature included).
fn prepared(
    client: &Client,
    method: &Method,
    path: &str,
    body: Option<&Value>,
    auth: Auth,
) -> Request<Body> {
    let options = CallOptions {
        auth,
        ..CallOptions::default()
    };
    let (url, headers, body) = client
        .prepare(method, path, body, &options)
        .expect("prepare");
    let mut builder = Request::builder().method(method.clone()).uri(url.path());
    for (name, value) in &headers {
        builder = builder.header(name, value);
    }
    builder
        .body(body.map_or_else(Body::empty, Body::from))
        .expect("request")
}

/// The public and admin routers of a dynamic-mode state with [`POLICIES`].
async fn routers() -> (TestState, Router, Router) {
    let t = TestState::build(BASE, "dynamic", POLICIES).await;
    let app = moat_server::app(t.state.clone());
    let admin = moat_server::admin_app(t.state.clone());
    (t, app, admin)
}

/// The problem code a refused request gets on `path` when it carries `credential`.
fn expected_code(path: &str, credential: &str) -> &'static str {
    match (path, credential) {
        // A malformed signature is refused as a credential whatever the requirement.
        (_, "signature") => "credential_invalid",
        ("/v1/device/echo", _) => "signature_invalid",
        ("/api/me", "none" | "bearer") => "token_invalid",
        _ => "credential_invalid",
    }
}

#[tokio::test]
async fn protected_endpoints_refuse_missing_and_bad_credentials() {
    let (_t, app, _) = routers().await;
    let credentials: &[(&str, &[(&str, &str)])] = &[
        ("none", &[]),
        (
            "api key",
            &[("moat-device-key", "moat_dk_0000000000000000_bogus")],
        ),
        ("bearer", &[("authorization", "Bearer not-a-token")]),
        (
            "signature",
            &[
                ("signature-input", "moat=();keyid=\"x\""),
                ("signature", "moat=:AAAA:"),
            ],
        ),
    ];
    for (method, path) in PROTECTED {
        for (name, headers) in credentials {
            send(&app, request(method, path, headers)).await.problem(
                401,
                expected_code(path, name),
                &format!("{method} {path} with {name}"),
            );
        }
    }
}

#[tokio::test]
async fn wrong_methods_are_refused() {
    let (_t, app, _) = routers().await;
    for (method, path) in PROTECTED {
        let wrong = if *method == Method::GET {
            Method::POST
        } else {
            Method::GET
        };
        send(&app, request(&wrong, path, &[])).await.problem(
            405,
            "method_not_allowed",
            &format!("{wrong} {path}"),
        );
    }
    send(&app, request(&Method::GET, "/v1/enroll", &[]))
        .await
        .problem(405, "method_not_allowed", "GET /v1/enroll");
    send(&app, request(&Method::DELETE, "/v1/device", &[]))
        .await
        .problem(405, "method_not_allowed", "DELETE /v1/device");
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_before_the_credential_is_read() {
    let (_t, app, _) = routers().await;
    // The test configuration's server.max_body_bytes is 64 KiB.
    for (method, path) in PROTECTED.iter().filter(|(m, _)| m == Method::POST) {
        let big = Request::builder()
            .method(method.clone())
            .uri(*path)
            .header("content-type", "application/json")
            .body(Body::from(vec![b' '; 70_000]))
            .expect("request");
        send(&app, big)
            .await
            .problem(413, "body_too_large", &format!("{method} {path}"));
    }
}

#[tokio::test]
async fn good_credentials_pass_and_meet_each_requirement() {
    let (_t, app, _) = routers().await;
    // Enrollment in dynamic mode: a DPoP-proved enroll, then the key from the mailbox.
    let mut device = Client::generate(BASE).expect("client");
    let proof = device.dpop(&Method::POST, "/v1/enroll").expect("dpop");
    let enroll = Request::builder()
        .method(Method::POST)
        .uri("/v1/enroll")
        .header("dpop", proof)
        .header("content-type", "application/json")
        .body(Body::from(json!({"device_id": "router-1"}).to_string()))
        .expect("request");
    let a = send(&app, enroll).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let proof = device.dpop(&Method::GET, "/v1/mailbox").expect("dpop");
    let mailbox = Request::builder()
        .uri("/v1/mailbox")
        .header("dpop", proof)
        .body(Body::empty())
        .expect("request");
    let a = send(&app, mailbox).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let credential = serde_json::from_value(a.body["items"][0].clone()).expect("api_key item");
    device.set_credential(Some(credential)).expect("credential");

    let a = send(
        &app,
        prepared(&device, &Method::GET, "/v1/device", None, Auth::ApiKey),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["mode"], "dynamic");
    let body = json!({"x": 1});
    let signed = prepared(
        &device,
        &Method::POST,
        "/v1/device/echo",
        Some(&body),
        Auth::InstallationSignature,
    );
    let a = send(&app, signed).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["body"], body);
    // A good credential of the wrong kind still falls short of the requirement.
    let keyed = prepared(
        &device,
        &Method::POST,
        "/v1/device/echo",
        Some(&body),
        Auth::ApiKey,
    );
    send(&app, keyed).await.problem(
        401,
        "signature_invalid",
        "API key where a signature is required",
    );
    send(
        &app,
        prepared(&device, &Method::GET, "/api/me", None, Auth::ApiKey),
    )
    .await
    .problem(
        401,
        "token_invalid",
        "device key where a user token is required",
    );

    let s = TestState::build(BASE, "static", &format!("static_key = \"{STATIC_KEY}\"\n")).await;
    let a = send(
        &moat_server::app(s.state.clone()),
        request(
            &Method::GET,
            "/v1/device",
            &[("moat-device-key", STATIC_KEY)],
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["device"], "static");
}

#[tokio::test]
async fn identity_endpoints_want_a_dpop_proof() {
    let (_t, app, _) = routers().await;
    send(&app, request(&Method::GET, "/v1/mailbox", &[]))
        .await
        .problem(401, "identity_invalid", "GET /v1/mailbox");
    let enroll = Request::builder()
        .method(Method::POST)
        .uri("/v1/enroll")
        .header("content-type", "application/json")
        .body(Body::from(json!({"device_id": "router-1"}).to_string()))
        .expect("request");
    send(&app, enroll)
        .await
        .problem(401, "identity_invalid", "POST /v1/enroll");
}

#[tokio::test]
async fn unknown_paths_and_admin_endpoints_are_404_on_the_public_router() {
    let (_t, app, _) = routers().await;
    let token = format!("Bearer {ADMIN_TOKEN}");
    for path in [
        "/nope",
        "/v1",
        "/admin",
        "/admin/",
        "/admin/v1/devices",
        "/admin/v1/stats",
        "/admin/v1/sms/outbox",
        "/metrics",
    ] {
        send(
            &app,
            request(&Method::GET, path, &[("authorization", &token)]),
        )
        .await
        .problem(404, "not_found", path);
    }
    send(
        &app,
        request(
            &Method::POST,
            "/admin/v1/cleanup",
            &[("authorization", &token)],
        ),
    )
    .await
    .problem(404, "not_found", "POST /admin/v1/cleanup");
}

#[tokio::test]
async fn admin_endpoints_want_the_admin_token() {
    let (_t, _, admin) = routers().await;
    for path in ["/admin/v1/devices", "/admin/v1/stats", "/admin/v1/apps"] {
        send(&admin, request(&Method::GET, path, &[]))
            .await
            .problem(401, "credential_invalid", path);
        send(
            &admin,
            request(&Method::GET, path, &[("authorization", "Bearer wrong")]),
        )
        .await
        .problem(401, "credential_invalid", path);
    }
    let token = format!("Bearer {ADMIN_TOKEN}");
    let a = send(
        &admin,
        request(
            &Method::GET,
            "/admin/v1/devices",
            &[("authorization", &token)],
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    send(&admin, request(&Method::GET, "/v1/device", &[]))
        .await
        .problem(404, "not_found", "public endpoint on the admin router");
}

#[tokio::test]
async fn healthz_answers_on_both_routers() {
    let (_t, app, admin) = routers().await;
    for router in [&app, &admin] {
        let a = send(router, request(&Method::GET, "/healthz", &[])).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.content_type.as_deref(), Some("application/json"));
        assert_eq!(a.body, json!({"status": "ok"}));
    }
}
