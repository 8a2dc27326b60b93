//! Requests signed by an independent RFC 9421 implementation (Python
//! `http-message-signatures`) are accepted, and Moat's own signatures verify there.

use moat_client::Credential;

use super::support::*;

#[tokio::test]
async fn python_http_message_signatures_client_is_accepted() {
    let server = TestServer::start("otp").await;
    let c = server.enrolled("py-1").await;
    let Some(Credential::ClientCredential {
        client_id,
        hmac_secret,
        device,
        ..
    }) = c.credential().cloned()
    else {
        panic!("cred")
    };
    let base = server.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        run_python(
            "rfc9421_client.py",
            &["send", &base, &client_id, &hmac_secret],
        )
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json from python");
    assert_eq!(result["first"]["status"], 200, "{result}");
    assert_eq!(result["first"]["body"]["device"], device.as_str());
    assert_eq!(result["first"]["body"]["body"]["from"], "python");
    assert_eq!(result["replay"]["status"], 401, "{result}");
    assert_eq!(result["replay"]["body"]["code"], "replay_detected");
    assert_eq!(result["tampered"]["status"], 401, "{result}");
    assert_eq!(result["tampered"]["body"]["code"], "digest_mismatch");
    server.stop().await;
}

#[tokio::test]
async fn moat_signatures_verify_with_python_http_message_signatures() {
    let server = TestServer::start("otp").await;
    let c = server.enrolled("py-2").await;
    let Some(Credential::ClientCredential {
        client_id,
        hmac_secret,
        ..
    }) = c.credential().cloned()
    else {
        panic!("cred")
    };
    let body = serde_json::json!({"hello": "python"});
    let (url, headers, bytes) = c
        .prepare(
            &http::Method::POST,
            "/v1/device/echo?q=1",
            Some(&body),
            &opts(),
        )
        .expect("prepare");
    let mut header_args = Vec::new();
    for (name, value) in &headers {
        header_args.push(format!("{}: {}", name, value.to_str().expect("ascii")));
    }
    let body_text = String::from_utf8(bytes.expect("body")).expect("utf8");
    let out = tokio::task::spawn_blocking(move || {
        let mut args = vec!["verify", url.as_str(), &client_id, &hmac_secret, &body_text];
        args.extend(header_args.iter().map(String::as_str));
        run_python("rfc9421_client.py", &args)
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "verified");
    server.stop().await;
}
