//! `moat serve --log-format json`: one JSON object per line, each request's lines carrying
//! the request id the response returned in `x-request-id`, and no secret in any line.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "log-test-admin-token-0123456789abcdefghij";

#[test]
fn json_logs_carry_the_request_id_and_no_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, admin) = (moat_testkit::free_port(), moat_testkit::free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_moat"))
        .args(["serve", "--log-format", "json"])
        .current_dir(dir.path())
        .env("MOAT_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("MOAT_ADMIN__LISTEN", format!("127.0.0.1:{admin}"))
        .env("MOAT_ADMIN__TOKEN", TOKEN)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn moat serve");
    moat_testkit::wait_for_http_ok(admin, "/healthz", Duration::from_secs(30));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (device, request_id) = rt.block_on(async {
        let mut c =
            moat_client::Client::generate(&format!("http://127.0.0.1:{port}")).expect("client");
        c.enroll_and_fetch("log-device", Some("android"))
            .await
            .expect("enroll");
        let device = match c.credential() {
            Some(moat_client::Credential::ApiKey {
                device: Some(id), ..
            }) => id.clone(),
            other => panic!("no device in {other:?}"),
        };
        let r = reqwest::Client::new()
            .post(format!(
                "http://127.0.0.1:{admin}/admin/v1/devices/{device}/revoke"
            ))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("revoke");
        assert_eq!(r.status(), 200);
        let id = r.headers()["x-request-id"]
            .to_str()
            .expect("ascii")
            .to_owned();
        // A refused call: its line names the problem code, in the span of its request id.
        let refused = c
            .call(http::Method::GET, "/v1/device", None, Default::default())
            .await
            .expect("call");
        assert_eq!(refused.status, 403);
        let refused_id = refused.headers["x-request-id"]
            .to_str()
            .expect("ascii")
            .to_owned();
        (device, (id, refused_id))
    });
    let (request_id, refused_id) = request_id;
    // SIGTERM, then read everything the server wrote.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let stderr = child.stderr.take().expect("stderr");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut lines = Vec::new();
    for line in BufReader::new(stderr).lines() {
        lines.push(line.expect("line"));
        assert!(Instant::now() < deadline, "server did not stop");
    }
    child.wait().expect("wait");

    let events: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let revoked = events
        .iter()
        .find(|e| e["fields"]["message"] == "device revoked by admin")
        .unwrap_or_else(|| panic!("no revocation line in {lines:#?}"));
    assert_eq!(revoked["fields"]["device"], device.as_str());
    assert_eq!(revoked["level"], "INFO");
    // The line is written inside the request's span, which names the id the client got.
    assert_eq!(
        revoked["span"]["request_id"],
        request_id.as_str(),
        "{revoked}"
    );
    assert_eq!(
        revoked["span"]["path"],
        format!("/admin/v1/devices/{device}/revoke")
    );
    assert!(
        events
            .iter()
            .any(|e| e["fields"]["message"] == "moat listening"),
        "{lines:#?}"
    );
    let refusal = events
        .iter()
        .find(|e| e["fields"]["message"] == "request refused")
        .unwrap_or_else(|| panic!("no refusal line in {lines:#?}"));
    assert_eq!(refusal["level"], "INFO");
    assert_eq!(refusal["fields"]["code"], "device_revoked", "{refusal}");
    assert_eq!(refusal["fields"]["status"], 403, "{refusal}");
    assert_eq!(
        refusal["span"]["request_id"],
        refused_id.as_str(),
        "{refusal}"
    );
    let all = lines.join("\n");
    assert!(!all.contains(TOKEN), "the admin token reached the log");
}
