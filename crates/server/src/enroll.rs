//! Enrollment (`POST /v1/enroll`, `POST /v1/enroll/confirm`) and the built-in mailbox
//! (`GET /v1/mailbox`): PROTOCOL sections 2 and 3, seed 000 sections 3.1-3.3.
//!
//! The work is the enrollment service's ([`moat_enroll::Enrollment`]); these handlers read the
//! request, call it and shape the answer.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Method};
use std::sync::Arc;

use moat_enroll::{Caller, Delivery, Enrollment, Proof};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::{ApiJson, ClientIp, Now};

/// `POST /v1/enroll` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The app's own id for this installation: 1-128 characters of `A-Za-z0-9._:-`.
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,128}$", example = "app-3f9c2a")]
    pub device_id: String,
    /// `android`, `ios` or `other`.
    #[schema(pattern = "^(android|ios|other)$", example = "android")]
    pub platform: Option<String>,
    /// Firebase ID token (Firebase identity only).
    pub firebase_id_token: Option<String>,
}

/// `POST /v1/enroll/confirm` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
// Named apart from the accounts' `ConfirmRequest`: one schema name would hide the other.
#[schema(as = EnrollConfirmRequest)]
pub struct ConfirmRequest {
    /// The same device id as at enrollment.
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,128}$", example = "app-3f9c2a")]
    pub device_id: String,
    /// The 6-digit code read from the mailbox.
    #[schema(pattern = "^[0-9]{6}$", example = "492039")]
    pub otp: String,
    /// Firebase ID token (Firebase identity only).
    pub firebase_id_token: Option<String>,
}

/// Answer of enroll and confirm: never a secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct EnrollResponse {
    /// `builtin` or `firebase`: where to read the mailbox.
    pub channel: &'static str,
    /// Seconds the mailbox item stays readable.
    pub expires_in: i64,
}

/// `GET /v1/mailbox` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct MailboxResponse {
    /// Items, oldest first; each is returned once.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Value>,
}

/// The raw values of the request's `DPoP` headers.
fn dpop_values(headers: &HeaderMap) -> Vec<&[u8]> {
    headers
        .get_all("dpop")
        .iter()
        .map(axum::http::HeaderValue::as_bytes)
        .collect()
}

impl From<Delivery> for EnrollResponse {
    fn from(d: Delivery) -> Self {
        Self {
            channel: d.channel,
            expires_in: d.expires_in,
        }
    }
}

/// `POST /v1/enroll`: the one endpoint open to the world.
#[utoipa::path(post, path = crate::routes::ENROLL, request_body = EnrollRequest,
    responses((status = 200, body = EnrollResponse), (status = 401, description = "identity_invalid or replay_detected"),
              (status = 403, description = "device_revoked"), (status = 409, description = "conflict: a concurrent enrollment of this device"),
              (status = 422, description = "validation"),
              (status = 429, description = "rate_limited: too many enrollments from this client IP (enrollment.per_ip_hour)")))]
pub async fn enroll(
    State(enrollment): State<Arc<Enrollment>>,
    Now(now): Now,
    method: Method,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    ApiJson(req): ApiJson<EnrollRequest>,
) -> Result<Json<EnrollResponse>, ApiError> {
    let dpop = dpop_values(&headers);
    let caller = Caller {
        proof: Proof {
            method: method.as_str(),
            path: crate::routes::ENROLL,
            dpop: &dpop,
        },
        firebase_id_token: req.firebase_id_token.as_deref(),
        ip,
    };
    let rate_key = crate::extract::ip_rate_key("enroll", ip);
    let delivery = enrollment
        .enroll(
            caller,
            &req.device_id,
            req.platform.as_deref(),
            rate_key,
            now,
        )
        .await?;
    Ok(Json(delivery.into()))
}

/// `POST /v1/enroll/confirm` (otp mode): exchanges the code for a client credential.
#[utoipa::path(post, path = crate::routes::ENROLL_CONFIRM, request_body = ConfirmRequest,
    responses((status = 200, body = EnrollResponse), (status = 401, description = "otp_invalid, otp_expired, identity_invalid"),
              (status = 403, description = "otp_locked or device_revoked"),
              (status = 409, description = "conflict: the server is not in otp mode, or a concurrent enrollment"),
              (status = 503, description = "unavailable")))]
pub async fn confirm(
    State(enrollment): State<Arc<Enrollment>>,
    Now(now): Now,
    method: Method,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ConfirmRequest>,
) -> Result<Json<EnrollResponse>, ApiError> {
    let dpop = dpop_values(&headers);
    let caller = Caller {
        proof: Proof {
            method: method.as_str(),
            path: crate::routes::ENROLL_CONFIRM,
            dpop: &dpop,
        },
        firebase_id_token: req.firebase_id_token.as_deref(),
        ip,
    };
    let delivery = enrollment
        .confirm(caller, &req.device_id, &req.otp, now)
        .await?;
    Ok(Json(delivery.into()))
}

/// `GET /v1/mailbox`: items for the caller's identity, each returned once.
#[utoipa::path(get, path = crate::routes::MAILBOX,
    responses((status = 200, body = MailboxResponse), (status = 401, description = "identity_invalid or replay_detected")))]
pub async fn mailbox(
    State(enrollment): State<Arc<Enrollment>>,
    Now(now): Now,
    method: Method,
    headers: HeaderMap,
) -> Result<Json<MailboxResponse>, ApiError> {
    let dpop = dpop_values(&headers);
    let proof = Proof {
        method: method.as_str(),
        path: crate::routes::MAILBOX,
        dpop: &dpop,
    };
    let items = enrollment.read_mailbox(proof, now).await?;
    Ok(Json(MailboxResponse { items }))
}
