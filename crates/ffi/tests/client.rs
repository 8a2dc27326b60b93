//! The exported interface, called from Rust exactly as the Kotlin and Swift bindings call it,
//! against a real server: enrollment in each style, protected calls, and requests signed by
//! `sign_request` but sent by another HTTP client (as an app with OkHttp or URLSession would).

use moat_ffi::{AuthMode, CallOptions, CredentialKind, HttpHeader, MoatClient, MoatError};
use moat_testkit::server::TestServer;

fn header(name: &str, value: &str) -> HttpHeader {
    HttpHeader {
        name: name.into(),
        value: value.into(),
    }
}

/// Sends a request with another HTTP client, with the headers `sign_request` returned.
async fn send(
    method: &str,
    url: &str,
    mut headers: Vec<HttpHeader>,
    extra: Vec<HttpHeader>,
    body: Option<Vec<u8>>,
) -> (u16, serde_json::Value) {
    headers.extend(extra);
    let mut request = reqwest::Client::new().request(
        reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
        url,
    );
    for h in headers {
        request = request.header(h.name, h.value);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    let r = request.send().await.expect("send");
    let status = r.status().as_u16();
    let body = r.bytes().await.expect("body");
    (
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).expect("JSON body")
}

#[tokio::test]
async fn dynamic_mode_enroll_call_sign_and_restore() {
    let server = TestServer::start("dynamic").await;
    let client = MoatClient::new(server.base.clone()).expect("client");
    assert_eq!(client.thumbprint().len(), 43);
    assert_eq!(client.server_url(), server.base);
    assert!(client.credential().is_none());
    let refused = client.sign_request("GET".into(), "/v1/device".into(), vec![], None, None);
    assert!(
        matches!(refused, Err(MoatError::Credential { .. })),
        "{refused:?}"
    );

    let info = client
        .enroll_and_fetch("ffi-rust-1".into(), Some("android".into()))
        .await
        .expect("enroll");
    assert_eq!(info.kind, CredentialKind::ApiKey);
    let device = info.device.clone().expect("device uuid");
    assert_eq!(client.device_id().as_deref(), Some("ffi-rust-1"));

    let r = client
        .call("GET".into(), "/v1/device".into(), None, None)
        .await
        .expect("call");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(json(&r.body)["device"], device.as_str());
    assert!(r.problem_code.is_none());
    assert!(r.headers.iter().any(|h| h.name == "content-type"));

    let r = client
        .call(
            "POST".into(),
            "/v1/device/echo".into(),
            Some(r#"{"hello":"moat"}"#.into()),
            None,
        )
        .await
        .expect("echo");
    assert_eq!(r.status, 200);
    assert_eq!(json(&r.body)["body"]["hello"], "moat");

    // Without a credential the server refuses, with a problem code.
    let r = client
        .call(
            "GET".into(),
            "/v1/device".into(),
            None,
            Some(CallOptions {
                auth: Some(AuthMode::Unauthenticated),
                ..CallOptions::default()
            }),
        )
        .await
        .expect("call");
    assert_eq!(r.status, 401);
    assert!(r.problem_code.is_some(), "{r:?}");

    // The app's own HTTP stack: the API key header ...
    let url = format!("{}/v1/device", server.base);
    let headers = client
        .sign_request("GET".into(), "/v1/device".into(), vec![], None, None)
        .expect("sign");
    assert_eq!(headers.len(), 1);
    assert_eq!(headers[0].name, "moat-device-key");
    let (status, body) = send("GET", &url, headers, vec![], None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["device"], device.as_str());

    // ... or an installation-key signature over an absolute URL with a query and a body.
    let url = format!("{}/v1/device/echo?lang=kt", server.base);
    let payload = br#"{"n":1}"#.to_vec();
    let sent = vec![header("content-type", "application/json")];
    let headers = client
        .sign_request(
            "POST".into(),
            url.clone(),
            sent.clone(),
            Some(payload.clone()),
            Some(AuthMode::InstallationSignature),
        )
        .expect("sign");
    let names: Vec<&str> = headers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["content-digest", "signature-input", "signature"]);
    let input = &headers[1].value;
    assert!(input.contains(r#""@query""#), "{input}");
    assert!(
        input.contains(&format!(r#"keyid="{}""#, client.thumbprint())),
        "{input}"
    );
    let (status, body) = send("POST", &url, headers.clone(), sent.clone(), Some(payload)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["body"]["n"], 1);
    // The same headers on another body: the digest no longer matches.
    let (status, _) = send("POST", &url, headers, sent, Some(br#"{"n":2}"#.to_vec())).await;
    assert!(status == 400 || status == 401, "tampered body got {status}");

    // Another origin is refused before anything is signed.
    let other = client.sign_request(
        "GET".into(),
        "http://127.0.0.1:1/v1/device".into(),
        vec![],
        None,
        None,
    );
    assert!(matches!(other, Err(MoatError::Invalid { .. })), "{other:?}");

    // Saved and restored: same identity, same credential.
    let saved = client.state_json().expect("state");
    let restored = MoatClient::from_state_json(saved).expect("restore");
    assert_eq!(restored.thumbprint(), client.thumbprint());
    assert_eq!(restored.credential(), client.credential());
    let r = restored
        .call("GET".into(), "/v1/device".into(), None, None)
        .await
        .expect("call");
    assert_eq!(r.status, 200);

    server.stop().await;
}

#[tokio::test]
async fn otp_mode_step_by_step_hmac_and_jwe() {
    let server = TestServer::start("otp").await;
    let client = MoatClient::new(server.base.clone()).expect("client");

    let answer = client
        .enroll("ffi-rust-otp".into(), Some("ios".into()))
        .await
        .expect("enroll");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&answer).expect("json")["channel"],
        "builtin"
    );
    let items = client.read_mailbox().await.expect("mailbox");
    let otp = items
        .iter()
        .find(|i| i.kind == "enrollment_otp")
        .expect("otp item");
    let code = serde_json::from_str::<serde_json::Value>(&otp.json).expect("json")["code"]
        .as_str()
        .expect("code")
        .to_owned();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    match client.confirm("ffi-rust-otp".into(), wrong.into()).await {
        Err(MoatError::Problem { status, code, .. }) => {
            assert_eq!(status, 401);
            assert_eq!(code, "otp_invalid");
        }
        other => panic!("wrong code accepted: {other:?}"),
    }
    client
        .confirm("ffi-rust-otp".into(), code)
        .await
        .expect("confirm");
    let items = client.read_mailbox().await.expect("mailbox");
    let item = items
        .iter()
        .find(|i| i.kind == "client_credential")
        .expect("credential item");
    let info = client
        .adopt_credential(item.json.clone())
        .expect("adopt credential");
    assert_eq!(info.kind, CredentialKind::ClientCredential);
    assert!(info.client_id.is_some());
    assert_eq!(client.credential(), Some(info.clone()));

    // The SDK sends: HMAC signature, JWE body.
    let r = client
        .call(
            "POST".into(),
            "/v1/device/echo".into(),
            Some(r#"{"card":"4111"}"#.into()),
            Some(CallOptions {
                encrypt: true,
                ..CallOptions::default()
            }),
        )
        .await
        .expect("call");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(json(&r.body)["body"]["card"], "4111");

    // The app sends: HMAC signature from sign_request, JWE from encrypt_json.
    let url = format!("{}/v1/device/echo", server.base);
    let jwe = client
        .encrypt_json(r#"{"pin":"1234"}"#.into())
        .expect("encrypt");
    assert_eq!(jwe.split('.').count(), 5);
    let sent = vec![
        header("content-type", "application/jose"),
        header("authorization", "Bearer not-checked-here"),
    ];
    let headers = client
        .sign_request(
            "POST".into(),
            "/v1/device/echo".into(),
            sent.clone(),
            Some(jwe.clone().into_bytes()),
            None,
        )
        .expect("sign");
    let input = &headers
        .iter()
        .find(|h| h.name == "signature-input")
        .expect("signature-input")
        .value;
    assert!(input.contains(r#""authorization""#), "{input}");
    assert!(input.contains(r#"alg="hmac-sha256""#), "{input}");
    let (status, body) = send("POST", &url, headers, sent, Some(jwe.into_bytes())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["body"]["pin"], "1234");

    // A device clock far off: signatures are refused until the offset is corrected.
    client.set_clock_offset(-3600).expect("offset");
    let headers = client
        .sign_request("GET".into(), "/v1/device".into(), vec![], None, None)
        .expect("sign");
    let (status, _) = send(
        "GET",
        &format!("{}/v1/device", server.base),
        headers,
        vec![],
        None,
    )
    .await;
    assert_eq!(status, 401);
    client.set_clock_offset(0).expect("offset");
    let r = client
        .call("GET".into(), "/v1/device".into(), None, None)
        .await
        .expect("call");
    assert_eq!(r.status, 200);

    server.stop().await;
}

#[tokio::test]
async fn errors_reach_the_caller_typed() {
    assert!(matches!(
        MoatClient::new("ftp://example.com".into()),
        Err(MoatError::Invalid { .. })
    ));
    assert!(matches!(
        MoatClient::from_state_json("{}".into()),
        Err(MoatError::Invalid { .. })
    ));
    // A saved state whose key is not base64url: the text parses, the key does not.
    assert!(matches!(
        MoatClient::from_state_json(
            r#"{"server":"http://127.0.0.1:1","device_id":null,"installation_key":"***","credential":null}"#
                .into()
        ),
        Err(MoatError::Protocol { .. })
    ));
    assert!(matches!(
        MoatClient::new_pinned("https://example.com".into(), vec!["md5/xyz".into()]),
        Err(MoatError::Invalid { .. })
    ));

    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let client = MoatClient::new(format!("http://127.0.0.1:{port}")).expect("client");
    let r = client.enroll_and_fetch("x".into(), None).await;
    assert!(matches!(r, Err(MoatError::Transport { .. })), "{r:?}");
    let r = client
        .call(
            "POST".into(),
            "/v1/device/echo".into(),
            Some("{not json".into()),
            None,
        )
        .await;
    assert!(matches!(r, Err(MoatError::Invalid { .. })), "{r:?}");
    let r = client
        .call("GET".into(), "no-slash".into(), None, None)
        .await;
    assert!(matches!(r, Err(MoatError::Invalid { .. })), "{r:?}");
    let r = client.sign_request(
        "GET".into(),
        "/v1/device".into(),
        vec![header("bad name", "x")],
        None,
        Some(AuthMode::InstallationSignature),
    );
    assert!(matches!(r, Err(MoatError::Invalid { .. })), "{r:?}");
    assert!(matches!(
        client.adopt_credential(r#"{"kind":"enrollment_otp","code":"123456"}"#.into()),
        Err(MoatError::Mailbox { .. })
    ));
    assert!(matches!(
        client.encrypt_json("{}".into()),
        Err(MoatError::Credential { .. })
    ));
    assert!(client.credential().is_none());
}
