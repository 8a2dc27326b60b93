//! Every attack the Foundation must refuse, each asserting the exact problem code.

use aws_lc_rs::hmac;
use http::{HeaderMap, HeaderValue, Method};
use moat_client::{Auth, CallOptions, Client, Credential};
use moat_core::httpsig::{self, Message, Params, SigningKey};
use serde_json::{Value, json};

use super::support::*;

async fn send(
    method: Method,
    url: &str,
    headers: &HeaderMap,
    body: Option<Vec<u8>>,
) -> moat_client::Response {
    let mut req = http().request(method, url).headers(headers.clone());
    if let Some(b) = body {
        req = req.body(b);
    }
    read(req.send().await.expect("send")).await
}

fn hmac_key(c: &Client) -> (String, hmac::Key) {
    let Some(Credential::ClientCredential {
        client_id,
        hmac_secret,
        ..
    }) = c.credential()
    else {
        panic!("client credential")
    };
    let secret = moat_core::b64::url_decode(hmac_secret).expect("b64");
    (
        client_id.clone(),
        hmac::Key::new(hmac::HMAC_SHA256, &secret),
    )
}

#[tokio::test]
async fn replayed_signature_is_refused() {
    let server = TestServer::start("otp").await;
    let c = server.enrolled("p1").await;
    let body = json!({"transfer": 100});
    let (url, headers, bytes) = c
        .prepare(&Method::POST, "/v1/device/echo", Some(&body), &opts())
        .expect("prepare");
    let first = send(Method::POST, url.as_str(), &headers, bytes.clone()).await;
    assert_eq!(first.status, 200);
    let replay = send(Method::POST, url.as_str(), &headers, bytes).await;
    assert_problem(&replay, 401, "replay_detected");
    server.stop().await;
}

#[tokio::test]
async fn stale_and_future_created_are_refused() {
    let server = TestServer::start("otp").await;
    let mut c = server.enrolled("p1").await;
    // 300 s of accepted skew; 330 leaves room for the two sides truncating to seconds.
    server.advance(330);
    let r = c
        .call(Method::GET, "/v1/device", None, opts())
        .await
        .expect("call");
    assert_problem(&r, 401, "signature_expired");
    c.set_clock_offset(330 + 330);
    let r = c
        .call(Method::GET, "/v1/device", None, opts())
        .await
        .expect("call");
    assert_problem(&r, 401, "signature_expired");
    c.set_clock_offset(330);
    let r = c
        .call(Method::GET, "/v1/device", None, opts())
        .await
        .expect("call");
    assert_eq!(r.status, 200, "in step again");
    server.stop().await;
}

#[tokio::test]
async fn tampered_body_path_query_and_method_are_refused() {
    let server = TestServer::start("otp").await;
    let c = server.enrolled("p1").await;
    // Body changed after signing: the covered Content-Digest no longer matches.
    let (url, headers, _) = c
        .prepare(
            &Method::POST,
            "/v1/device/echo",
            Some(&json!({"amount": 1})),
            &opts(),
        )
        .expect("prepare");
    let r = send(
        Method::POST,
        url.as_str(),
        &headers,
        Some(br#"{"amount":1000}"#.to_vec()),
    )
    .await;
    assert_problem(&r, 401, "digest_mismatch");
    // Content-Digest rewritten to match the new body: the signature no longer verifies.
    let mut forged = headers.clone();
    forged.insert(
        "content-digest",
        HeaderValue::from_str(&moat_core::digest::sha256_field(br#"{"amount":1000}"#)).expect("v"),
    );
    let r = send(
        Method::POST,
        url.as_str(),
        &forged,
        Some(br#"{"amount":1000}"#.to_vec()),
    )
    .await;
    assert_problem(&r, 401, "signature_invalid");
    // Signed for one path, sent to another.
    let (_, headers, _) = c
        .prepare(&Method::GET, "/v1/other", None, &opts())
        .expect("prepare");
    let r = send(
        Method::GET,
        &format!("{}/v1/device", server.base),
        &headers,
        None,
    )
    .await;
    assert_problem(&r, 401, "signature_invalid");
    // Signed for one query, sent with another.
    let (_, headers, _) = c
        .prepare(&Method::GET, "/v1/device?page=1", None, &opts())
        .expect("prepare");
    let r = send(
        Method::GET,
        &format!("{}/v1/device?page=2", server.base),
        &headers,
        None,
    )
    .await;
    assert_problem(&r, 401, "signature_invalid");
    // `@authority` is this deployment's (server.public_base_url), whatever `Host` says: a
    // signature for this server verifies under another `Host` (a proxy may rewrite it), and
    // one made for another authority does not (it::hardening
    // a_signature_for_another_authority_is_refused).
    let (url, mut headers, _) = c
        .prepare(&Method::GET, "/v1/device", None, &opts())
        .expect("prepare");
    headers.insert("host", HeaderValue::from_static("evil.example"));
    let r = send(Method::GET, url.as_str(), &headers, None).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    server.stop().await;
}

#[tokio::test]
async fn body_not_covered_and_unknown_keyid_are_refused() {
    let server = TestServer::start("otp").await;
    let c = server.enrolled("p1").await;
    let (client_id, key) = hmac_key(&c);
    let authority = server.base.trim_start_matches("http://").to_owned();
    let body = br#"{"x":1}"#.to_vec();
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let sign = |keyid: &str, components: &[&str], headers: &HeaderMap| {
        let msg = Message {
            method: "POST",
            scheme: "http",
            authority: &authority,
            path: "/v1/device/echo",
            query: None,
            headers,
        };
        let params = Params {
            created: Some(moat_client::unix_now()),
            nonce: Some(moat_core::random::token(12).expect("nonce")),
            keyid: Some(keyid.to_owned()),
            ..Params::default()
        };
        httpsig::sign("moat", components, &params, &msg, SigningKey::Hmac(&key)).expect("sign")
    };
    let url = format!("{}/v1/device/echo", server.base);
    let s = sign(&client_id, &["@method", "@authority", "@path"], &headers);
    let mut h = headers.clone();
    h.insert(
        "signature-input",
        HeaderValue::from_str(&s.signature_input).expect("v"),
    );
    h.insert("signature", HeaderValue::from_str(&s.signature).expect("v"));
    let r = send(Method::POST, &url, &h, Some(body.clone())).await;
    assert_problem(&r, 401, "signature_invalid");
    assert!(String::from_utf8_lossy(&r.body).contains("content-digest not covered"));

    let s = sign(
        "mc_doesnotexist0000000",
        &["@method", "@authority", "@path"],
        &headers,
    );
    let mut h = headers.clone();
    h.insert(
        "signature-input",
        HeaderValue::from_str(&s.signature_input).expect("v"),
    );
    h.insert("signature", HeaderValue::from_str(&s.signature).expect("v"));
    let r = send(Method::POST, &url, &h, None).await;
    assert_problem(&r, 401, "credential_invalid");
    server.stop().await;
}

#[tokio::test]
async fn revoked_device_is_refused_everywhere() {
    let server = TestServer::start("otp").await;
    let c = server.enrolled("p1").await;
    let Some(Credential::ClientCredential { device, .. }) = c.credential().cloned() else {
        panic!("cred")
    };
    let r = http()
        .post(format!("{}/admin/v1/devices/{device}/revoke", server.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("revoke");
    assert_eq!(r.status(), 200);
    let r = c
        .call(Method::GET, "/v1/device", None, opts())
        .await
        .expect("call");
    assert_problem(&r, 403, "device_revoked");
    let r = c
        .call(
            Method::GET,
            "/v1/device",
            None,
            CallOptions {
                auth: Auth::InstallationSignature,
                ..opts()
            },
        )
        .await
        .expect("call");
    assert!(
        r.status == 401 || r.status == 403,
        "installation key of a revoked device refused: {}",
        r.status
    );
    // Re-enrolling the same identity and device id does not bring it back.
    let mut again = c;
    let err = again
        .enroll("p1", None)
        .await
        .expect_err("re-enroll refused");
    assert!(
        matches!(&err, moat_client::Error::Problem { status: 403, code, .. } if code == "device_revoked"),
        "{err}"
    );
    server.stop().await;
}

#[tokio::test]
async fn revoked_api_key_is_refused() {
    let server = TestServer::start("dynamic").await;
    let c = server.enrolled("p1").await;
    let Some(Credential::ApiKey {
        device: Some(device),
        ..
    }) = c.credential().cloned()
    else {
        panic!("cred")
    };
    assert_eq!(
        c.call(Method::GET, "/v1/device", None, opts())
            .await
            .expect("call")
            .status,
        200
    );
    // Revoked behind this instance's back (as another instance or the CLI would): seen within
    // the device cache bound (1 s by default).
    server
        .state
        .store
        .revoke_device(device.parse().expect("uuid"), 0)
        .await
        .expect("revoke");
    server.advance(2);
    let r = c
        .call(Method::GET, "/v1/device", None, opts())
        .await
        .expect("call");
    assert_problem(&r, 403, "device_revoked");
    server.stop().await;
}

#[tokio::test]
async fn dpop_replay_other_url_and_missing_are_refused() {
    let server = TestServer::start("dynamic").await;
    let c = server.device();
    let url = format!("{}/v1/mailbox", server.base);
    let proof = c.dpop(&Method::GET, "/v1/mailbox").expect("proof");
    let ok = read(
        http()
            .get(&url)
            .header("dpop", &proof)
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(ok.status, 200);
    let replay = read(
        http()
            .get(&url)
            .header("dpop", &proof)
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_problem(&replay, 401, "replay_detected");

    let for_enroll = c.dpop(&Method::POST, "/v1/enroll").expect("proof");
    let r = read(
        http()
            .get(&url)
            .header("dpop", &for_enroll)
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_problem(&r, 401, "identity_invalid");
    let other_host = Client::generate("http://other.example:8080").expect("client");
    let proof = other_host.dpop(&Method::GET, "/v1/mailbox").expect("proof");
    let r = read(
        http()
            .get(&url)
            .header("dpop", &proof)
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_problem(&r, 401, "identity_invalid");
    let r = read(http().get(&url).send().await.expect("get")).await;
    assert_problem(&r, 401, "identity_invalid");
    let a = c.dpop(&Method::GET, "/v1/mailbox").expect("proof");
    let b = c.dpop(&Method::GET, "/v1/mailbox").expect("proof");
    let r = read(
        http()
            .get(&url)
            .header("dpop", a)
            .header("dpop", b)
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_problem(&r, 401, "identity_invalid");
    let r = read(
        http()
            .get(&url)
            .header("dpop", "not.a.jwt")
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_problem(&r, 401, "identity_invalid");
    server.stop().await;
}

#[tokio::test]
async fn another_identity_cannot_read_a_mailbox() {
    let server = TestServer::start("otp").await;
    let mut victim = server.device();
    victim.enroll("victim", None).await.expect("enroll");
    let mut attacker = server.device();
    // Same app device id, different installation key: a different identity.
    attacker.enroll("victim", None).await.expect("enroll");
    let stolen = attacker.mailbox().await.expect("mailbox");
    assert_eq!(stolen.len(), 1, "only the attacker's own item");
    let mine = victim.mailbox().await.expect("mailbox");
    assert_eq!(mine.len(), 1);
    assert_ne!(stolen[0]["code"], Value::Null);
    assert_ne!(stolen[0]["id"], mine[0]["id"]);
    // The attacker cannot confirm the victim's enrollment with its own code either: codes are
    // per identity.
    let err = attacker
        .confirm("victim", mine[0]["code"].as_str().expect("code"))
        .await;
    if mine[0]["code"] != stolen[0]["code"] {
        assert!(err.is_err());
    }
    server.stop().await;
}

#[tokio::test]
async fn malformed_json_oversized_bodies_and_missing_credentials() {
    let server = TestServer::start("dynamic").await;
    let c = server.enrolled("p1").await;
    let Some(Credential::ApiKey { key, .. }) = c.credential().cloned() else {
        panic!("key")
    };
    let echo = format!("{}/v1/device/echo", server.base);
    let r = read(
        http()
            .post(&echo)
            .header("moat-device-key", &key)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_problem(&r, 400, "malformed");
    let big = vec![b'a'; 65537];
    let r = read(
        http()
            .post(&echo)
            .header("moat-device-key", &key)
            .body(big)
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_problem(&r, 413, "body_too_large");
    let r = read(
        http()
            .get(format!("{}/v1/device", server.base))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_problem(&r, 401, "credential_invalid");
    let r = read(
        http()
            .get(format!("{}/v1/device", server.base))
            .header("moat-device-key", "moat_dk_0000000000000000_xxx")
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_problem(&r, 401, "credential_invalid");

    let enroll = format!("{}/v1/enroll", server.base);
    let proof = || c.dpop(&Method::POST, "/v1/enroll").expect("proof");
    let r = read(
        http()
            .post(&enroll)
            .header("dpop", proof())
            .header("content-type", "application/json")
            .body("[")
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_problem(&r, 400, "malformed");
    let r = read(
        http()
            .post(&enroll)
            .header("dpop", proof())
            .json(&json!({"device_id": "bad id!"}))
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_problem(&r, 422, "validation");
    let r = read(
        http()
            .post(&enroll)
            .header("dpop", proof())
            .json(&json!({"device_id": "x", "platform": "windows"}))
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_problem(&r, 422, "validation");
    let r = read(
        http()
            .post(&enroll)
            .header("dpop", proof())
            .json(&json!({"device_id": "x", "extra": 1}))
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_problem(&r, 422, "validation");
    let r = read(
        http()
            .post(&enroll)
            .header("dpop", proof())
            .body("{}")
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_problem(&r, 415, "unsupported_media_type");
    let huge = json!({"device_id": "a".repeat(20_000)});
    let r = read(
        http()
            .post(&enroll)
            .header("dpop", proof())
            .json(&huge)
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_problem(&r, 413, "body_too_large");
    server.stop().await;
}

#[tokio::test]
async fn signature_policy_refuses_api_keys_and_bad_jwe() {
    let server = TestServer::start_with(
        "otp",
        "[[route]]\npath = \"/v1/device\"\nrequire = [\"signature\"]\n",
    )
    .await;
    let c = server.enrolled("p1").await;
    // otp credentials have no API key; an installation-key signature satisfies `signature`.
    let r = c
        .call(
            Method::GET,
            "/v1/device",
            None,
            CallOptions {
                auth: Auth::InstallationSignature,
                ..opts()
            },
        )
        .await
        .expect("call");
    assert_eq!(r.status, 200);
    let r = read(
        http()
            .get(format!("{}/v1/device", server.base))
            .header("moat-device-key", "moat_dk_0000000000000000_x")
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_problem(&r, 401, "signature_invalid");

    // A JWE for another key id, and a corrupted one.
    let (url, headers, body) = c
        .prepare(
            &Method::POST,
            "/v1/device/echo",
            Some(&json!({"a": 1})),
            &CallOptions {
                encrypt: true,
                ..opts()
            },
        )
        .expect("prepare");
    let body = body.expect("body");
    let text = String::from_utf8(body).expect("ascii");
    let mut parts: Vec<String> = text.split('.').map(str::to_owned).collect();
    let mut ct = moat_core::b64::url_decode(&parts[3]).expect("b64");
    ct[0] ^= 1;
    parts[3] = moat_core::b64::url_encode(ct);
    let corrupted = parts.join(".");
    // Re-sign so that only the JWE is wrong.
    let (_, mut h2, _) = c
        .prepare(&Method::POST, "/v1/device/echo", None, &opts())
        .expect("prepare");
    let Some(Credential::ClientCredential {
        client_id,
        hmac_secret,
        ..
    }) = c.credential().cloned()
    else {
        panic!("cred")
    };
    let key = hmac::Key::new(
        hmac::HMAC_SHA256,
        &moat_core::b64::url_decode(&hmac_secret).expect("b64"),
    );
    h2.insert("content-type", HeaderValue::from_static("application/jose"));
    let signed = moat_client::sign_request(
        &Method::POST,
        &url,
        &h2,
        Some(corrupted.as_bytes()),
        &client_id,
        SigningKey::Hmac(&key),
        moat_client::unix_now(),
    )
    .expect("sign");
    for (n, v) in signed.headers {
        h2.insert(n, HeaderValue::from_str(&v).expect("v"));
    }
    let r = send(
        Method::POST,
        url.as_str(),
        &h2,
        Some(corrupted.into_bytes()),
    )
    .await;
    assert_problem(&r, 400, "malformed");
    drop(headers);
    server.stop().await;
}
