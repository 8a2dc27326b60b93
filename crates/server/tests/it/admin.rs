//! The admin listener and the cleanup job.

use http::Method;
use moat_client::Credential;

use super::support::*;

#[tokio::test]
async fn admin_requires_the_token_and_lists_and_revokes() {
    let server = TestServer::start("dynamic").await;
    let c = server.enrolled("p1").await;
    let devices = format!("{}/admin/v1/devices", server.admin);
    let r = read(http().get(&devices).send().await.expect("get")).await;
    assert_problem(&r, 401, "credential_invalid");
    let r = read(
        http()
            .get(&devices)
            .bearer_auth("wrong-token")
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_problem(&r, 401, "credential_invalid");
    let r = http()
        .get(&devices)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    let list: serde_json::Value = r.json().await.expect("json");
    let arr = list["devices"].as_array().expect("array");
    assert_eq!(arr.len(), 1);
    let text = list.to_string();
    assert!(
        !text.contains("key_hash") && !text.contains("moat_dk_"),
        "no credential material in admin output"
    );
    let Some(Credential::ApiKey {
        device: Some(id), ..
    }) = c.credential().cloned()
    else {
        panic!("cred")
    };
    assert_eq!(arr[0]["id"], id.as_str());
    assert_eq!(arr[0]["status"], "active");
    let r = http()
        .post(format!("{devices}/{id}/revoke"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    let r = read(
        http()
            .post(format!(
                "{devices}/00000000-0000-0000-0000-000000000000/revoke"
            ))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_problem(&r, 404, "not_found");
    let r = read(
        http()
            .get(format!("{devices}?limit=100000"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_problem(&r, 422, "validation");
    assert_eq!(
        http()
            .get(format!("{}/healthz", server.admin))
            .send()
            .await
            .expect("get")
            .status(),
        200
    );
    assert_eq!(
        http()
            .get(format!("{}/readyz", server.admin))
            .send()
            .await
            .expect("get")
            .status(),
        200
    );
    server.stop().await;
}

#[tokio::test]
async fn cleanup_removes_expired_items_used_codes_and_dormant_devices() {
    let server = TestServer::start("otp").await;
    // One device fully enrolled (its OTP is used), one enrollment left pending in the mailbox.
    let active = server.enrolled("active").await;
    let mut pending = server.device();
    pending.enroll("pending", None).await.expect("enroll");
    let run = || async {
        let r = http()
            .post(format!("{}/admin/v1/cleanup", server.admin))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 200);
        r.json::<serde_json::Value>().await.expect("json")
    };
    let first = run().await;
    assert_eq!(
        first["enrollment_otps"], 1,
        "the used code is removed: {first}"
    );
    assert_eq!(first["dormant_devices"], 0);

    server.advance(601);
    let second = run().await;
    assert_eq!(
        second["mailbox_items"], 1,
        "the unread code expired: {second}"
    );
    assert_eq!(
        second["enrollment_otps"], 1,
        "the pending code expired: {second}"
    );
    assert!(
        second["replay_entries"].as_u64().expect("n") > 0,
        "expired DPoP/nonce entries purged: {second}"
    );

    // A use moves last_used_at; 91 days of silence makes the device dormant.
    let mut active = active;
    active.set_clock_offset(601);
    assert_eq!(
        active
            .call(Method::GET, "/v1/device", None, opts())
            .await
            .expect("call")
            .status,
        200
    );
    server.advance(89 * 86_400);
    assert_eq!(run().await["dormant_devices"], 0, "used within 90 days");
    server.advance(2 * 86_400);
    assert_eq!(run().await["dormant_devices"], 1, "dormant after 90 days");
    server.stop().await;
}
