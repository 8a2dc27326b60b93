//! The OpenAPI 3.1 document of the public API, generated from the handlers (utoipa).
//!
//! The handlers' `#[utoipa::path]` annotations give each operation's success answer and the
//! refusals that are its own. The refusals every operation shares because of the layers in
//! front of it (the route-policy middleware, the JSON extractor, the request timeout, a store
//! that is down) are added here by [`Refusals`], so the document lists every status a client can
//! get, each with the `application/problem+json` body of PROTOCOL section 1. The API fuzzing
//! (`scripts/api-fuzz.sh`, docs/api-fuzzing.md) checks responses against this document.

use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::schema::{AllOfBuilder, Object, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, Flow, OAuth2, Password, Scopes, SecurityScheme,
};
use utoipa::openapi::{
    Content, HeaderBuilder, OpenApi as Doc, Ref, ResponseBuilder, path::Operation,
};
use utoipa::{Modify, OpenApi};

use crate::schemas::{Problem, TokenForm};

/// The public API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Moat",
        description = "Enrollment, mailbox, protected requests and accounts (PROTOCOL.md sections 2-4 and 6)."
    ),
    components(schemas(
        Problem,
        crate::enroll::EnrollRequest,
        crate::enroll::ConfirmRequest,
        crate::enroll::EnrollResponse,
        crate::enroll::MailboxResponse,
        crate::device::DeviceInfo,
        crate::device::Echo,
        crate::accounts::RegisterRequest,
        crate::accounts::ConfirmRequest,
        crate::accounts::ResendRequest,
        crate::accounts::ResetRequest,
        crate::accounts::ResetConfirmRequest,
        crate::attest::ChallengeRequest,
        crate::attest::AttestRequest,
        TokenForm,
        crate::schemas::Accepted,
        crate::schemas::PasswordUpdated,
        crate::schemas::UserCreated,
        crate::schemas::TokenResponse,
        crate::schemas::Me,
        crate::schemas::ChallengeResponse,
        crate::schemas::IntegrityTokenResponse,
        crate::schemas::Jwks,
        crate::schemas::Health,
    ))
)]
pub struct ApiDoc;

/// The document: [`ApiDoc`]'s information and schemas, the operations in `paths` (from the
/// route table's bindings, `crate::endpoints`), and the refusals every operation shares.
pub fn document(paths: utoipa::openapi::path::Paths) -> Doc {
    let mut doc = ApiDoc::openapi();
    doc.paths = paths;
    Refusals.modify(&mut doc);
    doc
}

/// Security scheme names (the `security` of the operations).
pub const DEVICE_KEY: &str = "deviceKey";
/// RFC 9421 request signature (`Signature-Input` + `Signature`).
pub const SIGNATURE: &str = "signature";
/// RFC 9449 DPoP proof of the installation key.
pub const DPOP: &str = "dpop";
/// Access token (`Authorization: Bearer`) from the RFC 6749 password grant of `/api/token`.
pub const USER: &str = "user";

/// What guards an operation, which decides the refusals it shares with others.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Guard {
    /// No credential (health, JWKS).
    Open,
    /// The DPoP proof of the installation key, checked by the handler (enroll, mailbox).
    Identity,
    /// A route policy (`protect` middleware): device credential, signature, integrity, user.
    Policy,
}

/// Statuses an operation can answer besides its own, with the problem codes behind them.
fn shared(guard: Guard, json_body: bool, form_body: bool) -> Vec<(u16, &'static str)> {
    let mut out = Vec::new();
    match guard {
        Guard::Open => {}
        Guard::Identity => {
            out.push((401, "identity_invalid, replay_detected"));
            if json_body {
                out.push((400, "malformed: the body is not JSON"));
                out.push((413, "body_too_large"));
                out.push((415, "unsupported_media_type: not application/json"));
                out.push((422, "validation: the body does not match the schema"));
            }
        }
        Guard::Policy => {
            out.push((
                400,
                "malformed: unparseable signature fields, Content-Digest or JWE body",
            ));
            out.push((
                401,
                "credential_invalid, signature_invalid, signature_expired, digest_mismatch, \
                 replay_detected, integrity_invalid, token_invalid (per the route's policy)",
            ));
            out.push((403, "device_revoked"));
            out.push((413, "body_too_large"));
            out.push((
                415,
                "unsupported_media_type: a JWE body for a device without an encryption key, \
                 or not the body's documented media type",
            ));
            out.push((429, "rate_limited (when the route has a rate limit)"));
            if json_body {
                out.push((422, "validation: the body does not match the schema"));
            }
            if form_body {
                out.push((400, "token_invalid (invalid_grant), malformed, validation"));
            }
        }
    }
    out
}

/// Adds the shared refusals, the problem body of every refusal, and the security schemes.
struct Refusals;

impl Modify for Refusals {
    fn modify(&self, doc: &mut Doc) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            DEVICE_KEY,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Moat-Device-Key",
                "The device's API key (PROTOCOL section 4).",
            ))),
        );
        components.add_security_scheme(
            SIGNATURE,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Signature",
                "An RFC 9421 HTTP Message Signature (with Signature-Input) made with the \
                 device's client credential or installation key (PROTOCOL section 4).",
            ))),
        );
        components.add_security_scheme(
            DPOP,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "DPoP",
                "An RFC 9449 proof of the installation key (PROTOCOL section 2).",
            ))),
        );
        components.add_security_scheme(
            USER,
            SecurityScheme::OAuth2(OAuth2::with_description(
                [Flow::Password(Password::with_refresh_url(
                    "/api/token",
                    Scopes::new(),
                    "/api/token",
                ))],
                "A device-bound access token (`Authorization: Bearer`, PROTOCOL section 6), \
                 sent with the device's own credential.",
            )),
        );
        // `POST /v1/attest` takes a measurement or a platform attestation, never both.
        if let Some(attest) = components.schemas.get_mut("AttestRequest") {
            // A `null` counts as absent (`Option`), so each branch needs its field a string.
            let one = |field: &str| {
                ObjectBuilder::new()
                    .property(field, Object::with_type(Type::String))
                    .required(field)
                    .build()
            };
            let original = std::mem::take(attest);
            *attest = Schema::AllOf(
                AllOfBuilder::new()
                    .item(original)
                    .item(
                        OneOfBuilder::new()
                            .item(one("measurement"))
                            .item(one("platform")),
                    )
                    .build(),
            )
            .into();
        }
        for (path, item) in doc.paths.paths.iter_mut() {
            let guard = match crate::routes::find(path).map(|e| e.guard) {
                Some(crate::routes::Guard::Open) => Guard::Open,
                Some(crate::routes::Guard::Identity) => Guard::Identity,
                Some(crate::routes::Guard::Policy(_)) | None => Guard::Policy,
            };
            let ops = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in ops.into_iter().flatten() {
                refine(path, op, guard);
            }
        }
    }
}

fn refine(path: &str, op: &mut Operation, guard: Guard) {
    let content_type = op
        .request_body
        .as_ref()
        .and_then(|b| b.content.keys().next().cloned());
    let json_body = content_type.as_deref() == Some("application/json");
    let form_body = content_type.as_deref() == Some("application/x-www-form-urlencoded");
    let problem = || Content::new(Some(Ref::from_schema_name("Problem")));
    // Every operation can time out or lose its store.
    let mut statuses = shared(guard, json_body, form_body);
    if guard != Guard::Open || path == "/readyz" {
        statuses.push((
            503,
            "unavailable: a dependency is down or the request timed out",
        ));
    }
    for (status, codes) in statuses {
        let key = status.to_string();
        let description = match op.responses.responses.get(&key) {
            Some(utoipa::openapi::RefOr::T(existing)) => {
                format!("{}; {codes}", existing.description)
            }
            _ => codes.to_owned(),
        };
        op.responses.responses.insert(
            key,
            ResponseBuilder::new()
                .description(description)
                .build()
                .into(),
        );
    }
    // Every refusal is a problem document; some carry headers.
    for (status, response) in op.responses.responses.iter_mut() {
        let utoipa::openapi::RefOr::T(response) = response else {
            continue;
        };
        if !(status.starts_with('4') || status.starts_with('5')) {
            continue;
        }
        response.content.clear();
        response
            .content
            .insert("application/problem+json".into(), problem());
        let header = |description: &str| {
            HeaderBuilder::new()
                .schema(Object::with_type(Type::String))
                .description(Some(description))
                .build()
        };
        if status == "401" {
            response
                .headers
                .insert("WWW-Authenticate".into(), header("`Moat`"));
        }
        if status == "429" || status == "503" {
            response
                .headers
                .insert("Retry-After".into(), header("Seconds to wait."));
        }
    }
    // Links between operations, for stateful testing (and for readers): what one answer lets
    // a client call next.
    for (status, name, target, body) in links(path) {
        if let Some(utoipa::openapi::RefOr::T(response)) = op.responses.responses.get_mut(status) {
            // utoipa 5 writes `Link`'s own fields in snake_case (`operation_id`), which no
            // OpenAPI tool reads; its flattened extensions carry the camelCase names instead.
            let fields: Extensions = [
                ("operationId", serde_json::Value::from(target)),
                ("requestBody", body),
            ]
            .into_iter()
            .collect();
            response.links.insert(
                name.into(),
                LinkBuilder::new().extensions(Some(fields)).build().into(),
            );
        }
    }
    // The shared security of the route policies (their defaults: `device`, `user` for /api/me).
    let security = match (guard, path) {
        (Guard::Open, _) => None,
        (Guard::Identity, _) => Some(vec![req(&[DPOP])]),
        (Guard::Policy, "/api/me") => Some(vec![req(&[USER, DEVICE_KEY]), req(&[USER, SIGNATURE])]),
        (Guard::Policy, _) => Some(vec![req(&[DEVICE_KEY]), req(&[SIGNATURE])]),
    };
    if let Some(security) = security {
        op.security = Some(security);
    }
}

/// `(status, link name, target operation id, request body with runtime expressions)`.
fn links(path: &str) -> Vec<(&'static str, &'static str, &'static str, serde_json::Value)> {
    use serde_json::json;
    match path {
        "/v1/enroll" => vec![(
            "200",
            "ConfirmEnrollment",
            "confirm",
            json!({"device_id": "$request.body#/device_id"}),
        )],
        "/api/register" => vec![
            (
                "202",
                "ConfirmRegistration",
                "register_confirm",
                json!({"phone": "$request.body#/phone"}),
            ),
            (
                "202",
                "ResendRegistrationCode",
                "resend",
                json!({"phone": "$request.body#/phone", "purpose": "register"}),
            ),
        ],
        "/api/password/reset" => vec![
            (
                "202",
                "ConfirmReset",
                "reset_confirm",
                json!({"phone": "$request.body#/phone"}),
            ),
            (
                "202",
                "ResendResetCode",
                "resend",
                json!({"phone": "$request.body#/phone", "purpose": "password_reset"}),
            ),
        ],
        "/api/token" => vec![(
            "200",
            "RefreshToken",
            "token",
            json!({"grant_type": "refresh_token", "refresh_token": "$response.body#/refresh_token"}),
        )],
        "/v1/attest/challenge" => vec![(
            "200",
            "Attest",
            "attest",
            json!({"challenge_id": "$response.body#/challenge_id"}),
        )],
        _ => Vec::new(),
    }
}

fn req(names: &[&str]) -> utoipa::openapi::security::SecurityRequirement {
    names.iter().fold(
        utoipa::openapi::security::SecurityRequirement::default(),
        |r, n| r.add(*n, Vec::<String>::new()),
    )
}
