//! The Firebase path (seed 000) against stand-ins for Google on loopback: an x509-certificate
//! endpoint publishing test keys (with `Cache-Control`), an OAuth2 token endpoint that checks
//! the service account's JWT-bearer assertion, and a Realtime Database REST recorder that
//! checks each call's method, path and authorisation, stores what is written and serves reads.
//! The real Auth emulator and a third-party RTDB REST server are exercised in
//! `firebase_emulator.rs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use http::Method;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use moat_client::firebase::{FirebaseApp, FirebaseUser};
use moat_client::{CallOptions, Credential};
use serde_json::{Value, json};

use super::support::*;

const PROJECT: &str = "moat-test";
const SA_EMAIL: &str = "moat@moat-test.iam.gserviceaccount.com";

/// An RSA key with a self-signed certificate, as Google publishes them.
struct TestKey {
    encoding: EncodingKey,
    cert_pem: String,
    private_pem: String,
}

fn test_key() -> TestKey {
    let key = aws_lc_rs::rsa::PrivateDecryptingKey::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
        .expect("rsa");
    let der = aws_lc_rs::encoding::AsDer::as_der(&key).expect("der");
    let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &rustls_pki_types::PrivatePkcs8KeyDer::from(der.as_ref()),
        &rcgen::PKCS_RSA_SHA256,
    )
    .expect("rcgen key");
    let cert = rcgen::CertificateParams::new(Vec::<String>::new())
        .expect("params")
        .self_signed(&pair)
        .expect("cert");
    let private_pem = pair.serialize_pem();
    TestKey {
        encoding: EncodingKey::from_rsa_pem(private_pem.as_bytes()).expect("encoding key"),
        cert_pem: cert.pem(),
        private_pem,
    }
}

#[derive(Default)]
struct Google {
    /// Published certificates.
    certs: HashMap<String, String>,
    cert_fetches: u32,
    max_age: u32,
    /// The service account's public key, to check token requests.
    sa_public: Option<jsonwebtoken::DecodingKey>,
    token_uri: String,
    tokens_minted: u32,
    /// The database: path (without `.json`) → item.
    db: BTreeMap<String, Value>,
    /// Every database call: (method, path, authorization).
    calls: Vec<(String, String, String)>,
    /// Answer every write with this status instead (to simulate an outage).
    fail_with: Option<StatusCode>,
}

type Shared = Arc<Mutex<Google>>;

async fn certs(State(g): State<Shared>) -> Response {
    let mut g = g.lock().expect("lock");
    g.cert_fetches += 1;
    (
        [(
            "cache-control",
            format!(
                "public, max-age={}, must-revalidate, no-transform",
                g.max_age
            ),
        )],
        axum::Json(g.certs.clone()),
    )
        .into_response()
}

async fn token(State(g): State<Shared>, body: String) -> Response {
    let mut g = g.lock().expect("lock");
    let form: HashMap<String, String> = serde_urlencoded::from_str(&body).expect("form");
    assert_eq!(
        form.get("grant_type").map(String::as_str),
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    );
    let mut validation = jsonwebtoken::Validation::new(Algorithm::RS256);
    validation.set_audience(&[g.token_uri.clone()]);
    validation.set_issuer(&[SA_EMAIL]);
    let claims = jsonwebtoken::decode::<Value>(
        form.get("assertion").expect("assertion"),
        g.sa_public.as_ref().expect("sa key"),
        &validation,
    )
    .expect("the assertion is signed by the service account, for this endpoint");
    assert_eq!(
        claims.claims["scope"],
        "https://www.googleapis.com/auth/firebase.database https://www.googleapis.com/auth/userinfo.email"
    );
    g.tokens_minted += 1;
    axum::Json(json!({
        "access_token": format!("ya29.test-{}", g.tokens_minted),
        "expires_in": 3599,
        "token_type": "Bearer",
    }))
    .into_response()
}

/// The Realtime Database REST API, for the paths Moat uses.
async fn rtdb(State(g): State<Shared>, headers: HeaderMap, request: Request) -> Response {
    let method = request.method().clone();
    let uri = request.uri().clone();
    let body: Bytes = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .expect("body");
    let mut g = g.lock().expect("lock");
    let path = uri
        .path()
        .strip_prefix("/rtdb/")
        .and_then(|p| p.strip_suffix(".json"))
        .expect("REST paths end in .json")
        .to_owned();
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    g.calls
        .push((method.to_string(), path.clone(), auth.clone()));
    if method == Method::GET {
        // A client read, authorised the REST way: ?auth=<ID token> of that uid.
        assert!(
            uri.query().unwrap_or_default().contains("auth="),
            "reads carry the ID token"
        );
        let prefix = format!("{path}/");
        let node: serde_json::Map<String, Value> =
            g.db.iter()
                .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.to_owned(), v.clone())))
                .collect();
        return axum::Json(if node.is_empty() {
            Value::Null
        } else {
            Value::Object(node)
        })
        .into_response();
    }
    assert!(
        auth.starts_with("Bearer ya29.test-"),
        "server writes carry a minted access token: {auth}"
    );
    assert!(uri.query().is_none(), "no credential in the URL");
    if let Some(status) = g.fail_with {
        return status.into_response();
    }
    match method {
        Method::PUT => {
            let value: Value = serde_json::from_slice(&body).expect("json body");
            g.db.insert(path, value.clone());
            axum::Json(value).into_response()
        }
        Method::DELETE => {
            g.db.remove(&path);
            axum::Json(Value::Null).into_response()
        }
        other => panic!("unexpected {other}"),
    }
}

struct Fixture {
    server: TestServer,
    google: Shared,
    key: TestKey,
    base: String,
    _files: tempfile::TempDir,
}

async fn fixture(mode: &str) -> Fixture {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let key = test_key();
    let sa = test_key();
    let google: Shared = Arc::new(Mutex::new(Google {
        certs: HashMap::from([("k1".to_owned(), key.cert_pem.clone())]),
        max_age: 600,
        sa_public: Some(
            jsonwebtoken::DecodingKey::from_rsa_pem(sa.cert_pem.as_bytes()).expect("sa public"),
        ),
        token_uri: format!("{base}/token"),
        ..Google::default()
    }));
    let app = Router::new()
        .route("/certs", axum::routing::get(certs))
        .route("/token", axum::routing::post(token))
        .fallback(rtdb)
        .with_state(google.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.expect("google") });
    let files = tempfile::tempdir().expect("tmp");
    let sa_path = files.path().join("service-account.json");
    std::fs::write(
        &sa_path,
        json!({
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": "sa-key-1",
            "private_key": sa.private_pem,
            "client_email": SA_EMAIL,
            "token_uri": format!("{base}/token"),
        })
        .to_string(),
    )
    .expect("write sa");
    let server = TestServer::start_enrolling(
        mode,
        "identity = [\"installation\", \"firebase\"]",
        &format!(
            "[delivery]\nchannel = \"firebase\"\n[firebase]\nproject_id = \"{PROJECT}\"\n\
             database_url = \"{base}/rtdb\"\nservice_account = \"{}\"\ncerts_url = \"{base}/certs\"\n",
            sa_path.display()
        ),
    )
    .await;
    Fixture {
        server,
        google,
        key,
        base,
        _files: files,
    }
}

impl Fixture {
    fn now(&self) -> i64 {
        moat_client::unix_now() + self.server.clock.offset()
    }

    /// An ID token as Firebase Auth issues them, with `edit` applied to the claims.
    fn id_token(&self, uid: &str, kid: &str, edit: impl FnOnce(&mut Value)) -> String {
        self.id_token_with(&self.key.encoding, uid, kid, edit)
    }

    fn id_token_with(
        &self,
        key: &EncodingKey,
        uid: &str,
        kid: &str,
        edit: impl FnOnce(&mut Value),
    ) -> String {
        let now = self.now();
        let mut claims = json!({
            "iss": format!("https://securetoken.google.com/{PROJECT}"),
            "aud": PROJECT,
            "auth_time": now - 5,
            "user_id": uid,
            "sub": uid,
            "iat": now - 5,
            "exp": now + 3600,
            "firebase": {"identities": {}, "sign_in_provider": "anonymous"},
        });
        edit(&mut claims);
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, &claims, key).expect("sign")
    }

    fn app(&self) -> FirebaseApp {
        FirebaseApp {
            api_key: "unused".into(),
            auth_url: "http://127.0.0.1:9/unused".into(),
            database_url: format!("{}/rtdb", self.base),
            mailbox_root: "moat/mailbox".into(),
        }
    }

    async fn enroll(&self, token: &str, device_id: &str) -> moat_client::Response {
        let r = http()
            .post(format!("{}/v1/enroll", self.server.base))
            .json(&json!({"device_id": device_id, "firebase_id_token": token}))
            .send()
            .await
            .expect("enroll");
        read(r).await
    }

    fn google(&self) -> std::sync::MutexGuard<'_, Google> {
        self.google.lock().expect("lock")
    }

    async fn cleanup(&self) -> Value {
        http()
            .post(format!("{}/admin/v1/cleanup", self.server.admin))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("cleanup")
            .json()
            .await
            .expect("json")
    }

    async fn device_count(&self) -> usize {
        let v: Value = http()
            .get(format!("{}/admin/v1/devices", self.server.admin))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("devices")
            .json()
            .await
            .expect("json");
        v["devices"].as_array().expect("devices").len()
    }
}

#[tokio::test]
async fn id_tokens_are_verified_as_firebase_documents() {
    let f = fixture("dynamic").await;

    // A genuine token: enrolled, and the key is written to the uid's node with a minted token.
    let good = f.id_token("uidAlice01", "k1", |_| {});
    let r = f.enroll(&good, "phone-1").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json().expect("json")["channel"], "firebase");
    {
        let g = f.google();
        assert_eq!(g.cert_fetches, 1);
        let (path, item) = g.db.iter().next().expect("one item written");
        assert!(path.starts_with("moat/mailbox/uidAlice01/mb_"), "{path}");
        assert_eq!(item["kind"], "api_key");
        assert!(item["key"].as_str().expect("key").starts_with("moat_dk_"));
        assert_eq!(
            path.rsplit('/').next(),
            item["id"].as_str(),
            "stored under its id"
        );
        assert!(item["created_at"].is_string() && item["expires_at"].is_string());
    }

    type Edit = Box<dyn FnOnce(&mut Value)>;
    let claims_cases: [(&str, Edit); 6] = [
        (
            "another project",
            Box::new(|c: &mut Value| {
                c["aud"] = "other-project".into();
                c["iss"] = "https://securetoken.google.com/other-project".into();
            }),
        ),
        (
            "right aud, wrong iss",
            Box::new(|c: &mut Value| c["iss"] = "https://evil.example/moat-test".into()),
        ),
        (
            "expired",
            Box::new(|c: &mut Value| c["exp"] = (c["iat"].as_i64().expect("iat") - 1).into()),
        ),
        (
            "issued in the future",
            Box::new(|c: &mut Value| c["iat"] = (c["iat"].as_i64().expect("iat") + 600).into()),
        ),
        (
            "authenticated in the future",
            Box::new(|c: &mut Value| {
                c["auth_time"] = (c["auth_time"].as_i64().expect("t") + 600).into();
            }),
        ),
        (
            "empty subject",
            Box::new(|c: &mut Value| c["sub"] = "".into()),
        ),
    ];
    for (name, edit) in claims_cases {
        let token = f.id_token("uidMallory1", "k1", edit);
        let r = f.enroll(&token, "phone-x").await;
        assert_eq!(
            (name, r.status, r.problem_code().as_deref()),
            (name, 401, Some("identity_invalid"))
        );
    }
    // Tampered: Alice's signature over Mallory's claims.
    let mallory = f.id_token("uidMallory1", "k1", |_| {});
    let forged = format!(
        "{}.{}.{}",
        good.split('.').next().expect("h"),
        mallory.split('.').nth(1).expect("p"),
        good.split('.').nth(2).expect("s")
    );
    assert_problem(&f.enroll(&forged, "phone-x").await, 401, "identity_invalid");
    // Unsigned tokens exist only in emulator mode, which this server is not in.
    let none = format!(
        "{}.{}.",
        moat_core::b64::url_encode(br#"{"alg":"none","typ":"JWT"}"#),
        mallory.split('.').nth(1).expect("p")
    );
    assert_problem(&f.enroll(&none, "phone-x").await, 401, "identity_invalid");
    // HS256 with the certificate as the secret (algorithm confusion).
    let hs = jsonwebtoken::encode(
        &Header {
            kid: Some("k1".into()),
            ..Header::new(Algorithm::HS256)
        },
        &json!({"sub": "uidMallory1"}),
        &EncodingKey::from_secret(f.key.cert_pem.as_bytes()),
    )
    .expect("hs");
    assert_problem(&f.enroll(&hs, "phone-x").await, 401, "identity_invalid");
    assert_eq!(f.google().cert_fetches, 1, "fresh certificates are reused");

    // An unknown kid makes one refetch (at most one every 30 s); a second unknown kid right
    // after makes none.
    f.server.advance(31);
    let other_key = test_key();
    let k2 = f.id_token_with(&other_key.encoding, "uidBob0001", "k2", |_| {});
    assert_problem(&f.enroll(&k2, "phone-2").await, 401, "identity_invalid");
    assert_eq!(f.google().cert_fetches, 2);
    let k3 = f.id_token_with(&other_key.encoding, "uidBob0001", "k3", |_| {});
    assert_problem(&f.enroll(&k3, "phone-2").await, 401, "identity_invalid");
    assert_eq!(f.google().cert_fetches, 2, "no refetch storm");
    // Google rotates in k2: picked up on the next unknown-kid refetch.
    f.google()
        .certs
        .insert("k2".into(), other_key.cert_pem.clone());
    f.server.advance(31);
    let k2 = f.id_token_with(&other_key.encoding, "uidBob0001", "k2", |_| {});
    assert_eq!(f.enroll(&k2, "phone-2").await.status, 200);
    assert_eq!(f.google().cert_fetches, 3);
    // Past max-age the certificates are fetched again.
    f.server.advance(601);
    let later = f.id_token("uidAlice01", "k1", |_| {});
    assert_eq!(f.enroll(&later, "phone-1").await.status, 200);
    assert_eq!(f.google().cert_fetches, 4);
    assert_eq!(
        f.google().tokens_minted,
        1,
        "one access token serves every write until it nears expiry"
    );
    f.server.stop().await;
}

#[tokio::test]
async fn the_app_reads_its_credential_from_its_node_and_uses_it() {
    for mode in ["dynamic", "otp"] {
        let f = fixture(mode).await;
        let user = FirebaseUser {
            uid: "uidCarol01".into(),
            id_token: f.id_token("uidCarol01", "k1", |_| {}),
        };
        let mut c = f.server.device();
        let credential = c
            .enroll_and_fetch_firebase(&f.app(), &user, "phone-c", Some("android"))
            .await
            .expect("enroll through Firebase");
        match (mode, &credential) {
            ("dynamic", Credential::ApiKey { .. })
            | ("otp", Credential::ClientCredential { .. }) => {}
            other => panic!("unexpected credential {other:?}"),
        }
        let r = c
            .call(Method::GET, "/v1/device", None, CallOptions::default())
            .await
            .expect("call");
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let device = r.json().expect("json")["device"]
            .as_str()
            .expect("device")
            .to_owned();
        let record: Value = http()
            .get(format!("{}/admin/v1/devices/{device}", f.server.admin))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("device")
            .json()
            .await
            .expect("json");
        assert_eq!(record["identity"], "fb:uidCarol01", "{mode}: {record}");
        // Every database call was on the uid's own node.
        for (_, path, _) in &f.google().calls {
            assert!(path.starts_with("moat/mailbox/uidCarol01"), "{path}");
        }
        f.server.stop().await;
    }
}

#[tokio::test]
async fn a_failed_delivery_leaves_no_device_and_expired_items_are_deleted() {
    let f = fixture("dynamic").await;
    f.google().fail_with = Some(StatusCode::SERVICE_UNAVAILABLE);
    let token = f.id_token("uidDave001", "k1", |_| {});
    let r = f.enroll(&token, "phone-d").await;
    assert_problem(&r, 503, "unavailable");
    {
        let g = f.google();
        let puts = g.calls.iter().filter(|c| c.0 == "PUT").count();
        assert_eq!(puts, 3, "retried with backoff, then gave up");
        assert!(g.db.is_empty());
    }
    assert_eq!(
        f.device_count().await,
        0,
        "no device without its delivered credential"
    );

    // The database is back: enrollment works, and the item expires and is deleted there.
    f.google().fail_with = None;
    assert_eq!(f.enroll(&token, "phone-d").await.status, 200);
    assert_eq!(f.device_count().await, 1);
    assert_eq!(f.google().db.len(), 1);
    f.server.advance(601);
    let removed = f.cleanup().await;
    assert!(
        removed["remote_items"].as_u64() >= Some(1),
        "expired items deleted from the database: {removed}"
    );
    {
        let g = f.google();
        assert!(g.db.is_empty(), "{:?}", g.db.keys().collect::<Vec<_>>());
        assert!(g.calls.iter().any(|c| c.0 == "DELETE"));
    }
    f.server.stop().await;
}
