//! The OpenAPI document (`GET /openapi.json`) that the API fuzzing checks responses against
//! (scripts/api-fuzz.sh, docs/api-fuzzing.md): regressions of what the fuzzing found wrong in
//! the document itself.

use serde_json::Value;

use super::support::*;

async fn document(server: &TestServer) -> Value {
    let r = http()
        .get(format!("{}/openapi.json", server.base))
        .send()
        .await
        .expect("openapi.json");
    assert_eq!(r.status(), 200);
    r.json().await.expect("json")
}

fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            out.push((method.to_uppercase(), path.clone(), op.clone()));
        }
    }
    out
}

/// Enrollment's and registration's confirmation bodies were both named `ConfirmRequest`, so
/// the document described `POST /v1/enroll/confirm` with the registration's fields.
#[tokio::test]
async fn each_confirmation_body_has_its_own_schema() {
    let server = TestServer::start("otp").await;
    let doc = document(&server).await;
    let schema_of = |path: &str| {
        let r = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
            ["$ref"]
            .as_str()
            .expect("a $ref")
            .rsplit('/')
            .next()
            .expect("name")
            .to_owned();
        doc["components"]["schemas"][&r]["required"].clone()
    };
    assert_eq!(
        schema_of("/v1/enroll/confirm"),
        serde_json::json!(["device_id", "otp"])
    );
    assert_eq!(
        schema_of("/api/register/confirm"),
        serde_json::json!(["phone", "otp"])
    );
    server.stop().await;
}

/// Every refusal an operation can give is documented, as `application/problem+json`, and the
/// refusals every operation shares (timeouts, a store that is down) are there too.
#[tokio::test]
async fn every_refusal_is_a_documented_problem() {
    let server = TestServer::start("dynamic").await;
    let doc = document(&server).await;
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    for (method, path, op) in operations(&doc) {
        let responses = op["responses"].as_object().expect("responses");
        for (status, response) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                assert_eq!(
                    response["content"]["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{method} {path} {status}"
                );
            }
        }
        if !["/healthz", "/.well-known/jwks.json"].contains(&path.as_str()) {
            assert!(responses.contains_key("503"), "{method} {path} lacks 503");
        }
        if op["requestBody"]["content"]["application/json"].is_object()
            && op["requestBody"]["required"] == true
        {
            for status in ["400", "413", "415", "422"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} lacks {status}"
                );
            }
        }
    }
    server.stop().await;
}

/// utoipa writes a link's own fields in snake_case, which no OpenAPI tool reads: the links
/// must carry `operationId` naming an operation of the document.
#[tokio::test]
async fn links_name_their_target_operation() {
    let server = TestServer::start("dynamic").await;
    let doc = document(&server).await;
    let ids: Vec<Value> = operations(&doc)
        .into_iter()
        .map(|(_, _, op)| op["operationId"].clone())
        .collect();
    let mut links = 0;
    for (method, path, op) in operations(&doc) {
        for (status, response) in op["responses"].as_object().expect("responses") {
            for (name, link) in response["links"].as_object().into_iter().flatten() {
                links += 1;
                assert!(
                    ids.contains(&link["operationId"]),
                    "{method} {path} {status} link {name}: {link}"
                );
                assert!(link.get("operation_id").is_none(), "{link}");
            }
        }
    }
    assert!(links >= 5, "{links} links");
    server.stop().await;
}

/// `POST /v1/device/echo` echoes any JSON value (PROTOCOL section 4), not only objects, and
/// takes an empty body too.
#[tokio::test]
async fn echo_is_documented_for_any_json_value() {
    let server = TestServer::start("dynamic").await;
    let doc = document(&server).await;
    let op = &doc["paths"]["/v1/device/echo"]["post"];
    assert_ne!(op["requestBody"]["required"], true);
    assert!(
        op["requestBody"]["content"]["application/json"]["schema"]
            .get("type")
            .is_none()
    );
    assert!(
        doc["components"]["schemas"]["Echo"]["properties"]["body"]
            .get("type")
            .is_none()
    );
    let c = server.enrolled("phone-1").await;
    for body in [
        serde_json::json!(42),
        serde_json::json!("text"),
        Value::Null,
    ] {
        let r = c
            .call(http::Method::POST, "/v1/device/echo", Some(&body), opts())
            .await
            .expect("echo");
        assert_eq!(r.status, 200);
        assert_eq!(r.json().expect("json")["body"], body);
    }
    server.stop().await;
}
