//! Seed 002's attestation: package measurement, integrity tokens, and the `integrity`
//! requirement.

use http::Method;
use moat_client::{CallOptions, Client, Credential};
use serde_json::{Value, json};

use super::support::*;

const POLICY: &str = "[[route]]\npath = \"/v1/device\"\nrequire = [\"device\", \"integrity\"]\n";

fn package() -> Vec<u8> {
    (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

async fn register(server: &TestServer, app: &str, version: &str, bytes: Vec<u8>) {
    let r = http()
        .put(format!("{}/admin/v1/apps/{app}/{version}", server.admin))
        .bearer_auth(ADMIN_TOKEN)
        .body(bytes)
        .send()
        .await
        .expect("register");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
}

fn with_integrity(token: &str) -> CallOptions {
    CallOptions {
        headers: vec![("moat-integrity".into(), token.into())],
        ..opts()
    }
}

fn parts(token: &str) -> (Value, Value) {
    let mut it = token.split('.');
    let h = moat_core::b64::url_decode(it.next().expect("header")).expect("b64");
    let c = moat_core::b64::url_decode(it.next().expect("claims")).expect("b64");
    (
        serde_json::from_slice(&h).expect("json"),
        serde_json::from_slice(&c).expect("json"),
    )
}

fn keys_sorted(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
    k.sort();
    k
}

async fn device_status(c: &Client, token: &str) -> u16 {
    c.call(Method::GET, "/v1/device", None, with_integrity(token))
        .await
        .expect("call")
        .status
}

#[tokio::test]
async fn genuine_package_opens_the_route_and_a_flipped_byte_does_not() {
    let server = TestServer::start_with("dynamic", POLICY).await;
    let pkg = package();
    register(&server, "com.example.events", "1.4.0", pkg.clone()).await;
    let c = server.enrolled("phone-1").await;

    let r = c
        .call(Method::GET, "/v1/device", None, opts())
        .await
        .expect("call");
    assert_problem(&r, 401, "integrity_invalid");

    let good = c
        .attest_package("com.example.events", "1.4.0", &pkg, None)
        .await
        .expect("attest");
    assert_eq!(device_status(&c, &good).await, 200);

    let mut tampered = pkg.clone();
    tampered[123_457] ^= 1;
    // The flipped byte is only caught when a challenged range covers it: attest until one does
    // (the ranges are random; over many challenges every byte is covered).
    let mut refused = 0;
    for _ in 0..400 {
        let token = c
            .attest_package("com.example.events", "1.4.0", &tampered, None)
            .await
            .expect("attest");
        let (h, claims) = parts(&token);
        let (gh, gclaims) = parts(&good);
        assert_eq!(h, gh, "pass and fail tokens have the same header");
        assert_eq!(
            keys_sorted(&claims),
            keys_sorted(&gclaims),
            "and the same claim names"
        );
        assert_eq!(token.len(), good.len(), "and the same size");
        if device_status(&c, &token).await == 401 {
            refused += 1;
            break;
        }
    }
    assert_eq!(
        refused, 1,
        "a tampered package fails once a challenge covers the flipped byte"
    );
    // Unknown app: a challenge of the same shape, and a failing token.
    let unknown = c
        .attest_package("com.example.clone", "1.4.0", &pkg, None)
        .await
        .expect("attest");
    assert_eq!(device_status(&c, &unknown).await, 401);
    server.stop().await;
}

async fn challenge(c: &Client) -> Value {
    let r = c
        .call(
            Method::POST,
            "/v1/attest/challenge",
            Some(&json!({"app_id": "app", "version": "1"})),
            opts(),
        )
        .await
        .expect("challenge");
    assert_eq!(r.status, 200);
    r.json().expect("json")
}

async fn attest(c: &Client, body: Value) -> String {
    let r = c
        .call(Method::POST, "/v1/attest", Some(&body), opts())
        .await
        .expect("attest");
    assert_eq!(r.status, 200, "always 200");
    r.json().expect("json")["integrity_token"]
        .as_str()
        .expect("token")
        .to_owned()
}

#[tokio::test]
async fn challenges_are_single_use_expire_and_belong_to_their_device() {
    let server = TestServer::start_with("dynamic", POLICY).await;
    let pkg = package();
    register(&server, "app", "1", pkg.clone()).await;
    let a = server.enrolled("phone-a").await;
    let b = server.enrolled("phone-b").await;
    let measure = |ch: &Value| {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(&moat_core::b64::url_decode(ch["nonce"].as_str().expect("nonce")).expect("b64"));
        for r in ch["ranges"].as_array().expect("ranges") {
            let (o, l) = (
                r[0].as_u64().expect("o") as usize,
                r[1].as_u64().expect("l") as usize,
            );
            ctx.update(&pkg[o..o + l]);
        }
        moat_core::b64::url_encode(ctx.finish().as_ref())
    };
    let ch = challenge(&a).await;
    assert_eq!(ch["expires_in"], 60);
    assert_eq!(
        moat_core::b64::url_decode(ch["nonce"].as_str().expect("nonce"))
            .expect("b64")
            .len(),
        32
    );
    let body = json!({"challenge_id": ch["challenge_id"], "measurement": measure(&ch)});
    let first = attest(&a, body.clone()).await;
    assert_eq!(device_status(&a, &first).await, 200);
    let replay = attest(&a, body).await;
    assert_eq!(
        device_status(&a, &replay).await,
        401,
        "a challenge is used once"
    );

    // Another device cannot redeem A's challenge.
    let ch = challenge(&a).await;
    let stolen = attest(
        &b,
        json!({"challenge_id": ch["challenge_id"], "measurement": measure(&ch)}),
    )
    .await;
    assert_eq!(device_status(&b, &stolen).await, 401);

    // Expired after 60 s.
    let ch = challenge(&a).await;
    server.advance(61);
    let late = attest(
        &a,
        json!({"challenge_id": ch["challenge_id"], "measurement": measure(&ch)}),
    )
    .await;
    assert_eq!(device_status(&a, &late).await, 401);
    server.stop().await;
}

#[tokio::test]
async fn tokens_are_bound_to_device_and_authorization_and_expire() {
    let server = TestServer::start_with("dynamic", POLICY).await;
    let pkg = package();
    register(&server, "app", "1", pkg.clone()).await;
    let a = server.enrolled("phone-a").await;
    let b = server.enrolled("phone-b").await;
    let token = a
        .attest_package("app", "1", &pkg, None)
        .await
        .expect("attest");
    assert_eq!(
        device_status(&b, &token).await,
        401,
        "device A's token refused for device B"
    );

    let bound = a
        .attest_package("app", "1", &pkg, Some("Bearer user-token-1"))
        .await
        .expect("attest");
    let call = |auth: &str| CallOptions {
        headers: vec![
            ("moat-integrity".into(), bound.clone()),
            ("authorization".into(), auth.to_owned()),
        ],
        ..opts()
    };
    assert_eq!(
        a.call(Method::GET, "/v1/device", None, call("Bearer user-token-1"))
            .await
            .expect("call")
            .status,
        200
    );
    let r = a
        .call(Method::GET, "/v1/device", None, call("Bearer user-token-2"))
        .await
        .expect("call");
    assert_problem(&r, 401, "integrity_invalid");
    assert_eq!(
        device_status(&a, &bound).await,
        401,
        "pay without the Authorization header"
    );

    server.advance(301);
    let r = a
        .call(Method::GET, "/v1/device", None, with_integrity(&token))
        .await
        .expect("call");
    assert_problem(&r, 401, "integrity_invalid");
    server.stop().await;
}

#[tokio::test]
async fn rotation_keeps_old_tokens_and_a_stock_jwt_library_verifies() {
    let server = TestServer::start_with("dynamic", POLICY).await;
    let pkg = package();
    register(&server, "app", "1", pkg.clone()).await;
    let c = server.enrolled("phone-a").await;
    let Some(Credential::ApiKey {
        device: Some(device),
        ..
    }) = c.credential().cloned()
    else {
        panic!("cred")
    };
    let old = c
        .attest_package("app", "1", &pkg, None)
        .await
        .expect("attest");
    let r = http()
        .post(format!("{}/admin/v1/integrity/rotate", server.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("rotate");
    assert_eq!(r.status(), 200);
    let new = c
        .attest_package("app", "1", &pkg, None)
        .await
        .expect("attest");
    assert_ne!(parts(&old).0["kid"], parts(&new).0["kid"]);
    assert_eq!(
        device_status(&c, &old).await,
        200,
        "the previous secret verifies until its tokens expire"
    );
    assert_eq!(device_status(&c, &new).await, 200);
    let fake = c
        .attest_package("app", "1", b"not the package", None)
        .await
        .expect("attest");

    let keys: Vec<Value> = server
        .state
        .attestation
        .integrity()
        .export()
        .into_iter()
        .map(|(kid, secret, _)| json!({"kid": kid, "secret": secret}))
        .collect();
    let keys = serde_json::to_string(&keys).expect("json");
    for (token, expected) in [
        (&old, "valid"),
        (&new, "valid"),
        (&fake, "invalid: InvalidSignatureError"),
    ] {
        let out = run_python(
            "verify_integrity.py",
            &[
                server.base.as_str(),
                device.as_str(),
                keys.as_str(),
                token.as_str(),
            ],
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            expected,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    server.stop().await;
}

fn python(args: &[&str]) -> String {
    let out = run_python("platform_tokens.py", args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

async fn challenge_for(c: &Client, app: &str) -> Value {
    let r = c
        .call(
            Method::POST,
            "/v1/attest/challenge",
            Some(&json!({"app_id": app, "version": "any"})),
            opts(),
        )
        .await
        .expect("challenge");
    assert_eq!(r.status, 200);
    r.json().expect("json")
}

#[tokio::test]
async fn play_integrity_tokens_made_with_jwcrypto() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path().display().to_string();
    python(&["play-keys", &d]);
    let cert = moat_core::b64::url_encode([7u8; 32]);
    let extra = format!(
        "{POLICY}[attestation.play_integrity]\ndecryption_key = \"file:{d}/decryption.b64\"\nverification_key = \"file:{d}/verification.b64\"\n\
         package_name = \"com.example.events\"\ncertificate_digests = [\"{cert}\"]\n"
    );
    let server = TestServer::start_with("dynamic", &extra).await;
    let c = server.enrolled("android-1").await;
    let verdict = |nonce: &str, overrides: &dyn Fn(&mut Value)| {
        let mut v = json!({
            "requestDetails": {"requestPackageName": "com.example.events", "requestHash": nonce,
                               "timestampMillis": (moat_client::unix_now() * 1000).to_string()},
            "appIntegrity": {"appRecognitionVerdict": "PLAY_RECOGNIZED", "packageName": "com.example.events",
                             "certificateSha256Digest": [cert], "versionCode": "42"},
            "deviceIntegrity": {"deviceRecognitionVerdict": ["MEETS_DEVICE_INTEGRITY"]},
            "accountDetails": {"appLicensingVerdict": "LICENSED"},
        });
        overrides(&mut v);
        v.to_string()
    };
    let try_token = |payload: String| {
        let (c, d) = (&c, d.clone());
        async move {
            let ch = challenge_for(c, "com.example.events").await;
            let nonce = ch["nonce"].as_str().expect("nonce").to_owned();
            let token = python(&["play", &d, &payload.replace("NONCE", &nonce)]);
            let body = json!({"challenge_id": ch["challenge_id"], "platform": "play_integrity", "token": token});
            attest(c, body).await
        }
    };
    let good = try_token(verdict("NONCE", &|_| {})).await;
    assert_eq!(
        device_status(&c, &good).await,
        200,
        "a genuine verdict opens the route"
    );
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "wrong nonce",
            Box::new(|v: &mut Value| v["requestDetails"]["requestHash"] = "AAAA".into()),
        ),
        (
            "other package",
            Box::new(|v: &mut Value| v["appIntegrity"]["packageName"] = "com.evil.clone".into()),
        ),
        (
            "unrecognized app",
            Box::new(|v: &mut Value| {
                v["appIntegrity"]["appRecognitionVerdict"] = "UNRECOGNIZED_VERSION".into()
            }),
        ),
        (
            "other certificate",
            Box::new(|v: &mut Value| {
                v["appIntegrity"]["certificateSha256Digest"] = json!(["AAAA"])
            }),
        ),
        (
            "no device integrity",
            Box::new(|v: &mut Value| v["deviceIntegrity"]["deviceRecognitionVerdict"] = json!([])),
        ),
        (
            "stale",
            Box::new(|v: &mut Value| {
                v["requestDetails"]["timestampMillis"] =
                    ((moat_client::unix_now() - 600) * 1000).to_string().into()
            }),
        ),
    ];
    for (name, edit) in cases {
        let token = try_token(verdict("NONCE", &*edit)).await;
        assert_eq!(device_status(&c, &token).await, 401, "{name}");
    }
    // A token made with other keys.
    let other = tempfile::tempdir().expect("tmp");
    let od = other.path().display().to_string();
    python(&["play-keys", &od]);
    let ch = challenge_for(&c, "com.example.events").await;
    let forged = python(&[
        "play",
        &od,
        &verdict(ch["nonce"].as_str().expect("nonce"), &|_| {}),
    ]);
    let token = attest(
        &c,
        json!({"challenge_id": ch["challenge_id"], "platform": "play_integrity", "token": forged}),
    )
    .await;
    assert_eq!(device_status(&c, &token).await, 401, "keys of another app");
    server.stop().await;
}

#[tokio::test]
async fn firebase_app_check_tokens_verified_against_the_jwks() {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path().display().to_string();
    python(&["appcheck-keys", &d, "ac-1"]);
    let jwks: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("jwks.json")).expect("jwks"))
            .expect("json");
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let v = jwks.clone();
            async move { axum::Json(v) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/jwks", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    let extra = format!(
        "{POLICY}[attestation.firebase_app_check]\nproject_number = \"123456\"\napp_ids = [\"1:123456:android:abc\"]\njwks_url = \"{url}\"\n"
    );
    let server = TestServer::start_with("dynamic", &extra).await;
    let c = server.enrolled("phone-1").await;
    let now = moat_client::unix_now();
    let claims = |aud: &str, sub: &str, exp: i64| {
        json!({"iss": "https://firebaseappcheck.googleapis.com/123456", "aud": [aud, "projects/demo"], "sub": sub, "exp": exp, "iat": now}).to_string()
    };
    for (name, claims_text, expected) in [
        (
            "genuine",
            claims("projects/123456", "1:123456:android:abc", now + 3600),
            200,
        ),
        (
            "other project",
            claims("projects/999", "1:123456:android:abc", now + 3600),
            401,
        ),
        (
            "other app",
            claims("projects/123456", "1:123456:android:zzz", now + 3600),
            401,
        ),
        (
            "expired",
            claims("projects/123456", "1:123456:android:abc", now - 120),
            401,
        ),
    ] {
        let token = python(&["appcheck", &d, "ac-1", &claims_text]);
        let ch = challenge_for(&c, "1:123456:android:abc").await;
        let it = attest(&c, json!({"challenge_id": ch["challenge_id"], "platform": "firebase_app_check", "token": token})).await;
        assert_eq!(device_status(&c, &it).await, expected, "{name}");
    }
    server.stop().await;
}

#[tokio::test]
async fn app_attest_objects_must_answer_this_challenge() {
    let samples: Value = serde_json::from_str(include_str!(
        "../../../core/vectors/apple_app_attest_samples.json"
    ))
    .expect("samples");
    let s = &samples["attestations"][1];
    let (team, bundle) = (
        s["team_id"].as_str().expect("team"),
        s["bundle_id"].as_str().expect("bundle"),
    );
    let extra = format!(
        "{POLICY}[attestation.app_attest]\nteam_id = \"{team}\"\nbundle_id = \"{bundle}\"\nenvironment = \"any\"\n"
    );
    let server = TestServer::start_with("dynamic", &extra).await;
    let c = server.enrolled("iphone-1").await;
    // A genuine Apple attestation, but made for another client data (not this challenge's
    // nonce) and with a leaf certificate that has expired since: it must not pass.
    let ch = challenge_for(&c, bundle).await;
    let body = json!({
        "challenge_id": ch["challenge_id"], "platform": "app_attest",
        "key_id": s["key_id_base64"], "attestation": s["attestation_object_base64"],
    });
    let token = attest(&c, body).await;
    assert_eq!(device_status(&c, &token).await, 401);
    // An assertion for a key never attested here fails too.
    let a = &samples["assertions"][0];
    let ch = challenge_for(&c, bundle).await;
    let body = json!({"challenge_id": ch["challenge_id"], "platform": "app_attest", "key_id": a["key_id_base64"], "assertion": a["assertion_base64"]});
    assert_eq!(device_status(&c, &attest(&c, body).await).await, 401);
    server.stop().await;
}

#[tokio::test]
async fn integrity_tokens_with_unknown_critical_headers_or_other_algorithms_are_refused() {
    let server = TestServer::start_with("dynamic", POLICY).await;
    let pkg = package();
    register(&server, "app", "1", pkg.clone()).await;
    let c = server.enrolled("phone-1").await;
    let good = c
        .attest_package("app", "1", &pkg, None)
        .await
        .expect("attest");
    assert_eq!(device_status(&c, &good).await, 200);
    // Re-sign the genuine claims with the shared secret itself (what an API server holding it
    // could do): the same token passes, and only the header changes below.
    let (kid, secret, _) = server
        .state
        .attestation
        .integrity()
        .export()
        .into_iter()
        .find(|k| k.2)
        .expect("current secret");
    let secret = moat_core::b64::url_decode(&secret).expect("b64");
    let claims = good.split('.').nth(1).expect("claims").to_owned();
    let sign = |header: Value| {
        let input = format!(
            "{}.{claims}",
            moat_core::b64::url_encode(header.to_string().as_bytes())
        );
        let mac = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret),
            input.as_bytes(),
        );
        format!("{input}.{}", moat_core::b64::url_encode(mac.as_ref()))
    };
    let resigned = sign(json!({"alg": "HS256", "typ": "JWT", "kid": kid}));
    assert_eq!(
        device_status(&c, &resigned).await,
        200,
        "control: re-signed passes"
    );
    let crit = sign(json!({"alg": "HS256", "typ": "JWT", "kid": kid,
        "crit": ["x-moat-test"], "x-moat-test": true}));
    assert_eq!(
        device_status(&c, &crit).await,
        401,
        "RFC 7515 4.1.11: an unknown critical extension invalidates the token"
    );
    let hs512 = {
        let input = format!(
            "{}.{claims}",
            moat_core::b64::url_encode(json!({"alg": "HS512", "kid": kid}).to_string().as_bytes())
        );
        let mac = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA512, &secret),
            input.as_bytes(),
        );
        format!("{input}.{}", moat_core::b64::url_encode(mac.as_ref()))
    };
    assert_eq!(device_status(&c, &hs512).await, 401, "only HS256");
    let none = format!(
        "{}.{claims}.",
        moat_core::b64::url_encode(json!({"alg": "none", "kid": kid}).to_string().as_bytes())
    );
    assert_eq!(device_status(&c, &none).await, 401, "alg none");
    let injected = sign(json!({"alg": "HS256", "kid": "../../secrets.json"}));
    assert_eq!(device_status(&c, &injected).await, 401, "unknown kid");
    server.stop().await;
}

/// Found by the API fuzzing (docs/api-fuzzing.md): a body with neither `measurement` nor
/// `platform` used to be refused only after its challenge was taken, so a malformed request
/// burned the client's challenge, and the same body got 422 for a live challenge but 200 for
/// an unknown one.
#[tokio::test]
async fn attest_body_shape_is_checked_before_the_challenge_is_taken() {
    let server = TestServer::start_with("dynamic", POLICY).await;
    let pkg = package();
    register(&server, "app", "1", pkg.clone()).await;
    let c = server.enrolled("phone-1").await;
    let refused = |body: Value| {
        let c = &c;
        async move {
            let r = c
                .call(Method::POST, "/v1/attest", Some(&body), opts())
                .await
                .expect("attest");
            (
                r.status,
                r.json().map(|v| v["code"].clone()).unwrap_or_default(),
            )
        }
    };
    let ch = challenge(&c).await;
    let id = ch["challenge_id"].clone();
    for body in [
        json!({"challenge_id": id}),
        json!({"challenge_id": id, "measurement": null}),
        json!({"challenge_id": id, "measurement": "x", "platform": "play_integrity"}),
        json!({"challenge_id": "ch_unknown"}),
    ] {
        assert_eq!(
            refused(body.clone()).await,
            (422, json!("validation")),
            "{body}"
        );
    }
    // The challenge is still there: the genuine measurement opens the route.
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(&moat_core::b64::url_decode(ch["nonce"].as_str().expect("nonce")).expect("b64"));
    for r in ch["ranges"].as_array().expect("ranges") {
        let (o, l) = (
            r[0].as_u64().expect("o") as usize,
            r[1].as_u64().expect("l") as usize,
        );
        ctx.update(&pkg[o..o + l]);
    }
    let measurement = moat_core::b64::url_encode(ctx.finish().as_ref());
    let token = attest(&c, json!({"challenge_id": id, "measurement": measurement})).await;
    assert_eq!(device_status(&c, &token).await, 200);
    server.stop().await;
}
