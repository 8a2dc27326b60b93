//! Holes an attacker review found (issue "Hardening II"), each driven over HTTP against the
//! real router: the code-attempt lock under a burst, enumeration through the lockout.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Method;
use moat_client::{Client, Response};
use serde_json::{Value, json};

use super::support::*;

const PHONE: &str = "+14155552671";
const PASSWORD: &str = "correct horse battery";
/// Concurrent guesses per burst: far past the five attempts a code allows.
const BURST: usize = 300;

async fn post(c: &Client, path: &str, body: Value) -> Response {
    c.call(Method::POST, path, Some(&body), opts())
        .await
        .expect("call")
}

async fn latest_code(server: &TestServer, phone: &str) -> String {
    let v: Value = http()
        .get(format!(
            "{}/admin/v1/sms/outbox?phone={}",
            server.admin,
            phone.replace('+', "%2B")
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("outbox")
        .json()
        .await
        .expect("json");
    let body = v["messages"][0]["body"].as_str().expect("an SMS").to_owned();
    body.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .expect("6-digit code")
        .to_owned()
}

/// Fires `BURST` copies of one POST at once; returns how many got each (status, code).
async fn burst(c: &Arc<Client>, path: &'static str, body: Value) -> BTreeMap<(u16, String), usize> {
    let start = Arc::new(tokio::sync::Barrier::new(BURST));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..BURST {
        let (c, body, start) = (c.clone(), body.clone(), start.clone());
        tasks.spawn(async move {
            start.wait().await;
            let r = post(&c, path, body).await;
            (r.status, r.problem_code().unwrap_or_default())
        });
    }
    let mut seen = BTreeMap::new();
    while let Some(r) = tasks.join_next().await {
        *seen.entry(r.expect("task")).or_insert(0) += 1;
    }
    seen
}

/// How many guesses the stored code counts. The answers alone cannot show the race: under the
/// read-compare-increment race a burst of wrong guesses is still answered four `otp_invalid`
/// and then `otp_locked`, but every guess was compared (the attacker's right code among them
/// would have won) and counted afterwards.
async fn compared(server: &TestServer, purpose: &str) -> i64 {
    server
        .state
        .accounts
        .sms_code(PHONE, purpose)
        .await
        .expect("store")
        .expect("the code")
        .attempts
}

fn wrong_for(code: &str) -> &'static str {
    if code == "000000" { "111111" } else { "000000" }
}

/// A burst of wrong guesses takes exactly the five attempts a code has (four answered
/// `otp_invalid`, the fifth and every other `otp_locked`), and the right code afterwards is
/// refused: before the fix each guess read the count, compared, then incremented, so a burst
/// compared hundreds of guesses and a right code sent after it still reset the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_guesses_takes_exactly_five_attempts_at_an_sms_code() {
    let server = TestServer::start("dynamic").await;
    let owner = Arc::new(server.enrolled("phone-owner").await);
    // Registration code.
    let r = post(&owner, "/api/register", json!({"phone": PHONE, "password": PASSWORD})).await;
    assert_eq!(r.status, 202);
    let code = latest_code(&server, PHONE).await;
    let seen = burst(
        &owner,
        "/api/register/confirm",
        json!({"phone": PHONE, "otp": wrong_for(&code)}),
    )
    .await;
    let expected = BTreeMap::from([
        ((401, "otp_invalid".to_owned()), 4),
        ((403, "otp_locked".to_owned()), BURST - 4),
    ]);
    assert_eq!(seen, expected, "register/confirm");
    assert_eq!(
        compared(&server, "register").await,
        5,
        "exactly five guesses were compared"
    );
    let r = post(&owner, "/api/register/confirm", json!({"phone": PHONE, "otp": code})).await;
    assert_problem(&r, 403, "otp_locked");

    // The same for a password reset, the account-takeover path.
    server.advance(31);
    let r = post(&owner, "/api/register", json!({"phone": PHONE, "password": PASSWORD})).await;
    assert_eq!(r.status, 202);
    let code = latest_code(&server, PHONE).await;
    let r = post(&owner, "/api/register/confirm", json!({"phone": PHONE, "otp": code})).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    server.advance(31);
    let r = post(&owner, "/api/password/reset", json!({"phone": PHONE})).await;
    assert_eq!(r.status, 202);
    let code = latest_code(&server, PHONE).await;
    let seen = burst(
        &owner,
        "/api/password/reset/confirm",
        json!({"phone": PHONE, "otp": wrong_for(&code), "new_password": "attacker chosen pass 1"}),
    )
    .await;
    assert_eq!(seen, expected, "password/reset/confirm");
    assert_eq!(
        compared(&server, "password_reset").await,
        5,
        "exactly five guesses were compared"
    );
    let r = post(
        &owner,
        "/api/password/reset/confirm",
        json!({"phone": PHONE, "otp": code, "new_password": "attacker chosen pass 1"}),
    )
    .await;
    assert_problem(&r, 403, "otp_locked");
    server.stop().await;
}

/// The enrollment OTP (otp mode) holds the same way under a burst of DPoP-signed guesses.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_guesses_takes_exactly_five_attempts_at_an_enrollment_otp() {
    let server = TestServer::start("otp").await;
    let mut c = server.device();
    c.enroll("phone-x", None).await.expect("enroll");
    let code = c.mailbox().await.expect("mailbox")[0]["code"]
        .as_str()
        .expect("code")
        .to_owned();
    let c = Arc::new(c);
    let start = Arc::new(tokio::sync::Barrier::new(BURST));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..BURST {
        let (c, start) = (c.clone(), start.clone());
        let wrong = wrong_for(&code);
        tasks.spawn(async move {
            start.wait().await;
            match c.confirm("phone-x", wrong).await {
                Err(moat_client::Error::Problem { code, .. }) => code,
                other => panic!("a wrong code was not refused: {other:?}"),
            }
        });
    }
    let mut seen = BTreeMap::new();
    while let Some(code) = tasks.join_next().await {
        *seen.entry(code.expect("task")).or_insert(0) += 1;
    }
    assert_eq!(
        seen,
        BTreeMap::from([("otp_invalid".to_owned(), 4), ("otp_locked".to_owned(), BURST - 4)])
    );
    let stored = server
        .state
        .store
        .enrollment_otp(&format!("inst:{}", c.thumbprint()), "phone-x")
        .await
        .expect("store")
        .expect("the otp");
    assert_eq!(stored.attempts, 5, "exactly five guesses were compared");
    let err = c.confirm("phone-x", &code).await.expect_err("locked");
    assert!(
        matches!(&err, moat_client::Error::Problem { status: 403, code, .. } if code == "otp_locked"),
        "{err}"
    );
    server.stop().await;
}

/// Status, problem body and headers of a response, without the per-request ones.
fn answer(r: &Response) -> (u16, String, Vec<(String, String)>) {
    let mut headers: Vec<(String, String)> = r
        .headers
        .iter()
        .filter(|(n, _)| !matches!(n.as_str(), "date" | "x-request-id"))
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("?").to_owned()))
        .collect();
    headers.sort();
    (r.status, String::from_utf8_lossy(&r.body).into_owned(), headers)
}

/// Six wrong confirmations answer the same, status, body and headers, whether or not the
/// phone has an account, in both flows: before the fix a reset for a registered phone locked
/// (`401` ×4 then `403 otp_locked`) while an unknown phone answered `401` forever, and
/// registration showed the inverse.
#[tokio::test]
async fn the_lockout_does_not_reveal_registered_phones() {
    let server = TestServer::start("dynamic").await;
    let owner = server.enrolled("phone-owner").await;
    let r = post(&owner, "/api/register", json!({"phone": PHONE, "password": PASSWORD})).await;
    assert_eq!(r.status, 202);
    let code = latest_code(&server, PHONE).await;
    let r = post(&owner, "/api/register/confirm", json!({"phone": PHONE, "otp": code})).await;
    assert_eq!(r.status, 201);
    let unknown = "+14155552672";
    server.advance(31);
    for (n, (start, confirm, extra)) in [
        ("/api/password/reset", "/api/password/reset/confirm", json!({"new_password": "brand new password 7"})),
        ("/api/register", "/api/register/confirm", json!({})),
    ]
    .into_iter()
    .enumerate()
    {
        // A device of its own per flow: the per-device SMS budget is not what is measured.
        let attacker = server.enrolled(&format!("phone-attacker-{n}")).await;
        let mut answers = Vec::new();
        for phone in [PHONE, unknown] {
            let mut body = json!({"phone": phone});
            if start == "/api/register" {
                body["password"] = json!("another password 1");
            }
            let r = post(&attacker, start, body).await;
            assert_eq!(r.status, 202);
            let mut seq = Vec::new();
            for _ in 0..6 {
                let mut body = json!({"phone": phone, "otp": "000000"});
                for (k, v) in extra.as_object().expect("object") {
                    body[k] = v.clone();
                }
                seq.push(answer(&post(&attacker, confirm, body).await));
            }
            // A resend answers the same too, and reaches no phone.
            server.advance(31);
            let purpose = if start == "/api/register" { "register" } else { "password_reset" };
            let r = post(&attacker, "/api/resend_otp", json!({"phone": phone, "purpose": purpose})).await;
            seq.push(answer(&r));
            answers.push(seq);
        }
        assert_eq!(answers[0], answers[1], "{confirm}: known and unknown phones differ");
        let statuses: Vec<u16> = answers[0].iter().map(|a| a.0).collect();
        assert_eq!(statuses[..6], [401, 401, 401, 401, 403, 403], "{confirm}");
        server.advance(31);
    }
    // No reset code reached the unknown phone, and the registered phone got no registration
    // code but its own first one.
    let v: Value = http()
        .get(format!("{}/admin/v1/sms/messages?limit=500", server.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("messages")
        .json()
        .await
        .expect("json");
    let sent: Vec<(&str, &str)> = v["messages"]
        .as_array()
        .expect("array")
        .iter()
        .map(|m| (m["to"].as_str().unwrap_or(""), m["purpose"].as_str().unwrap_or("")))
        .collect();
    let count = |to: &str, purpose: &str| sent.iter().filter(|s| **s == (to, purpose)).count();
    assert_eq!(count(unknown, "password_reset"), 0, "{sent:?}");
    assert_eq!(count(PHONE, "register"), 1, "{sent:?}");
    server.stop().await;
}

/// A reset for a registered phone and for an unknown one take the same time: both store a
/// code in one transaction (a decoy for the unknown phone). Medians of interleaved samples
/// within 30 %; before the fix the unknown phone skipped the write entirely.
#[tokio::test]
async fn reset_timing_does_not_reveal_registered_phones() {
    let server = TestServer::start_with(
        "dynamic",
        "[sms]\nper_phone_hour = 100000\nper_device_hour = 100000\nper_ip_hour = 100000\nper_country_hour = 100000\nglobal_hour = 100000\n",
    )
    .await;
    let owner = server.enrolled("phone-owner").await;
    let r = post(&owner, "/api/register", json!({"phone": PHONE, "password": PASSWORD})).await;
    assert_eq!(r.status, 202);
    let code = latest_code(&server, PHONE).await;
    let r = post(&owner, "/api/register/confirm", json!({"phone": PHONE, "otp": code})).await;
    assert_eq!(r.status, 201);
    let unknown = "+14155552672";
    server.advance(31);
    let mut known_t = Vec::new();
    let mut unknown_t = Vec::new();
    for i in 0..40 {
        for (phone, out) in [(PHONE, &mut known_t), (unknown, &mut unknown_t)] {
            let t = Instant::now();
            let r = post(&owner, "/api/password/reset", json!({"phone": phone})).await;
            let took = t.elapsed();
            assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
            if i >= 5 {
                out.push(took);
            }
        }
        server.advance(31); // past the per-phone cooldown
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2].as_secs_f64()
    };
    let (k, u) = (median(&mut known_t), median(&mut unknown_t));
    let ratio = k.max(u) / k.min(u);
    assert!(ratio < 1.3, "known {k:.6}s vs unknown {u:.6}s");
    server.stop().await;
}
