//! Each enrollment mode end to end through the SDK.

use http::Method;
use moat_client::{Auth, CallOptions, Credential};
use serde_json::json;

use super::support::*;

#[tokio::test]
async fn static_mode_delivers_the_shared_key() {
    let server = TestServer::start("static").await;
    let a = server.enrolled("phone-a").await;
    let b = server.enrolled("phone-b").await;
    let (Some(Credential::ApiKey { key: ka, .. }), Some(Credential::ApiKey { key: kb, .. })) =
        (a.credential(), b.credential())
    else {
        panic!("api keys expected");
    };
    assert_eq!(ka, kb, "static mode gives everyone the same key");
    let r = a
        .call(Method::GET, "/v1/device", None, opts())
        .await
        .expect("call");
    assert_eq!(r.status, 200);
    assert_eq!(r.json().expect("json")["device"], "static");
    server.stop().await;
}

#[tokio::test]
async fn dynamic_mode_issues_a_key_per_device_and_rotates() {
    let server = TestServer::start("dynamic").await;
    let mut a = server.enrolled("phone-a").await;
    let b = server.enrolled("phone-b").await;
    let Some(Credential::ApiKey {
        key: first,
        device: Some(dev_a),
    }) = a.credential().cloned()
    else {
        panic!("key")
    };
    let Some(Credential::ApiKey {
        key: kb,
        device: Some(dev_b),
    }) = b.credential().cloned()
    else {
        panic!("key")
    };
    assert!(first.starts_with("moat_dk_"));
    assert_ne!(first, kb);
    assert_ne!(dev_a, dev_b);

    let r = a
        .call(Method::GET, "/v1/device", None, opts())
        .await
        .expect("call");
    assert_eq!(r.status, 200);
    let info = r.json().expect("json");
    assert_eq!(info["device"], dev_a.as_str());
    assert_eq!(info["mode"], "dynamic");

    let r = a
        .call(
            Method::POST,
            "/v1/device/echo",
            Some(&json!({"hello": "world"})),
            opts(),
        )
        .await
        .expect("echo");
    assert_eq!(r.json().expect("json")["body"], json!({"hello": "world"}));

    // Re-enrolling the same identity and device id rotates: new key, same device, old key dead.
    a.enroll_and_fetch("phone-a", Some("android"))
        .await
        .expect("re-enroll");
    let Some(Credential::ApiKey {
        key: second,
        device: Some(dev_a2),
    }) = a.credential().cloned()
    else {
        panic!("key")
    };
    assert_ne!(first, second);
    assert_eq!(dev_a, dev_a2);
    let mut old = server.device();
    old.set_credential(Some(Credential::ApiKey {
        key: first,
        device: None,
    }))
    .expect("set");
    let r = old
        .call(Method::GET, "/v1/device", None, opts())
        .await
        .expect("call");
    assert_problem(&r, 401, "credential_invalid");

    // A dynamic device can also sign with its installation key: no shared secret at all.
    let r = a
        .call(
            Method::POST,
            "/v1/device/echo?x=1",
            Some(&json!({"n": 1})),
            CallOptions {
                auth: Auth::InstallationSignature,
                ..opts()
            },
        )
        .await
        .expect("signed");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json().expect("json")["device"], dev_a.as_str());
    server.stop().await;
}

#[tokio::test]
async fn otp_mode_confirms_then_signs_and_encrypts() {
    let server = TestServer::start("otp").await;
    let mut c = server.device();
    c.enroll("phone-1", Some("ios")).await.expect("enroll");
    let items = c.mailbox().await.expect("mailbox");
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert_eq!(item["kind"], "enrollment_otp");
    let code = item["code"].as_str().expect("code");
    assert_eq!(code.len(), 6);
    for field in ["id", "created_at", "expires_at"] {
        assert!(item[field].is_string(), "{field} in {item}");
    }
    assert!(
        c.mailbox().await.expect("again").is_empty(),
        "items are returned once"
    );

    c.confirm("phone-1", code).await.expect("confirm");
    let items = c.mailbox().await.expect("mailbox");
    let cred = &items[0];
    assert_eq!(cred["kind"], "client_credential");
    assert_eq!(cred["alg"], "hmac-sha256");
    assert_eq!(
        moat_core::b64::url_decode(cred["hmac_secret"].as_str().expect("secret"))
            .expect("b64")
            .len(),
        32
    );
    assert_eq!(cred["encryption_key"]["kty"], "RSA");
    assert_eq!(cred["encryption_key"]["alg"], "RSA-OAEP-256");
    assert!(cred["encryption_key"]["kid"].is_string());
    assert!(
        cred["encryption_key"].get("d").is_none(),
        "the private key never leaves the server"
    );
    let credential: Credential = serde_json::from_value(cred.clone()).expect("credential");
    c.set_credential(Some(credential)).expect("set");

    // A code is accepted once.
    let again = c.confirm("phone-1", code).await.expect_err("used code");
    assert!(matches!(again, moat_client::Error::Problem { code, .. } if code == "otp_invalid"));

    let r = c
        .call(Method::GET, "/v1/device?verbose=1", None, opts())
        .await
        .expect("signed get");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json().expect("json")["mode"], "otp");

    let body = json!({"card": "4111 1111 1111 1111", "n": [1, 2, 3]});
    let r = c
        .call(
            Method::POST,
            "/v1/device/echo",
            Some(&body),
            CallOptions {
                encrypt: true,
                ..opts()
            },
        )
        .await
        .expect("encrypted echo");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json().expect("json")["body"],
        body,
        "the handler sees the decrypted body"
    );
    server.stop().await;
}

#[tokio::test]
async fn otp_expires_and_locks_after_five_wrong_codes() {
    let server = TestServer::start("otp").await;
    let mut c = server.device();
    c.enroll("phone-x", None).await.expect("enroll");
    let code = c.mailbox().await.expect("mailbox")[0]["code"]
        .as_str()
        .expect("code")
        .to_owned();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for attempt in 1..=5 {
        let err = c.confirm("phone-x", wrong).await.expect_err("wrong code");
        let expected = if attempt < 5 {
            "otp_invalid"
        } else {
            "otp_locked"
        };
        assert!(
            matches!(&err, moat_client::Error::Problem { code, .. } if code == expected),
            "attempt {attempt}: {err}"
        );
    }
    let err = c.confirm("phone-x", &code).await.expect_err("locked");
    assert!(
        matches!(&err, moat_client::Error::Problem { status: 403, code, .. } if code == "otp_locked"),
        "{err}"
    );

    // A fresh enrollment issues a fresh code; it expires after otp_ttl (600 s).
    c.enroll("phone-x", None).await.expect("enroll again");
    let code = c.mailbox().await.expect("mailbox")[0]["code"]
        .as_str()
        .expect("code")
        .to_owned();
    server.advance(601);
    c.set_clock_offset(601);
    let err = c.confirm("phone-x", &code).await.expect_err("expired");
    assert!(
        matches!(&err, moat_client::Error::Problem { code, .. } if code == "otp_expired"),
        "{err}"
    );
    server.stop().await;
}

#[tokio::test]
async fn health_openapi_and_problem_documents() {
    let server = TestServer::start("dynamic").await;
    let h = http();
    assert_eq!(
        h.get(format!("{}/healthz", server.base))
            .send()
            .await
            .expect("get")
            .status(),
        200
    );
    assert_eq!(
        h.get(format!("{}/readyz", server.base))
            .send()
            .await
            .expect("get")
            .status(),
        200
    );
    let r = h
        .get(format!("{}/openapi.json", server.base))
        .send()
        .await
        .expect("get");
    let doc: serde_json::Value = r.json().await.expect("json");
    assert!(doc["openapi"].as_str().expect("version").starts_with("3.1"));
    for path in [
        "/v1/enroll",
        "/v1/enroll/confirm",
        "/v1/mailbox",
        "/v1/device",
        "/v1/device/echo",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
    let r = read(
        h.get(format!("{}/nope", server.base))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_problem(&r, 404, "not_found");
    let r = read(
        h.get(format!("{}/v1/enroll", server.base))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_problem(&r, 405, "method_not_allowed");
    assert!(
        r.headers.get("x-request-id").is_some(),
        "every response carries a request id"
    );
    server.stop().await;
}
