//! Diagnostic endpoints: `GET /v1/device` and `POST /v1/device/echo` (PROTOCOL section 4).

use axum::Json;
use axum::body::Bytes;
use axum::extract::Extension;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::{StartedAt, parse_json};
use crate::middleware::protect::Principal;
use moat_core::clock::rfc3339;

/// `GET /v1/device` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceInfo {
    /// Device uuid, or `static` for the shared static key.
    pub device: String,
    /// Enrollment mode of the credential.
    pub mode: String,
    /// When the device first enrolled (for the static key: when this server started).
    pub created_at: String,
}

/// `POST /v1/device/echo` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Echo {
    /// Device uuid, or `static`.
    pub device: String,
    /// The JSON body received, after any decryption (`null` for an empty body): any JSON
    /// value, as sent.
    #[schema(value_type = Value)]
    pub body: Value,
}

fn describe(started_at: StartedAt, p: &Principal) -> DeviceInfo {
    match &p.device {
        Some(d) => DeviceInfo {
            device: d.id.to_string(),
            mode: d.mode.clone(),
            created_at: rfc3339(d.created_at),
        },
        None => DeviceInfo {
            device: "static".into(),
            mode: "static".into(),
            created_at: rfc3339(started_at.0),
        },
    }
}

/// `GET /v1/device`: who the credential says the caller is.
#[utoipa::path(get, path = crate::routes::DEVICE,
    responses((status = 200, body = DeviceInfo), (status = 401, description = "credential_invalid, signature_*"), (status = 403, description = "device_revoked")))]
pub async fn device(
    axum::extract::State(started_at): axum::extract::State<StartedAt>,
    Extension(p): Extension<Principal>,
) -> Json<DeviceInfo> {
    Json(describe(started_at, &p))
}

/// `POST /v1/device/echo`: the body as Moat received it, after signature checks and JWE
/// decryption.
#[utoipa::path(post, path = crate::routes::DEVICE_ECHO, request_body(content((Option<Value> = "application/json"), (Option<String> = "application/jose")),
        description = "any JSON value, or a compact JWE (RFC 7516) of one with Content-Type application/jose; optional (an empty body echoes `null`)"),
    responses((status = 200, body = Echo), (status = 400, description = "malformed"), (status = 401, description = "credential_invalid, signature_*, digest_mismatch, replay_detected"),
              (status = 403, description = "device_revoked"), (status = 413, description = "body_too_large")))]
pub async fn echo(
    axum::extract::State(started_at): axum::extract::State<StartedAt>,
    Extension(p): Extension<Principal>,
    body: Bytes,
) -> Result<Json<Echo>, ApiError> {
    let body = if body.is_empty() {
        Value::Null
    } else {
        parse_json(&body)?
    };
    Ok(Json(Echo {
        device: describe(started_at, &p).device,
        body,
    }))
}
