//! Attestation endpoints (seed 002, PROTOCOL section 5): the HTTP side of
//! [`moat_attest::Attestation`], which issues challenges, checks answers (package
//! measurement or platform attestation) and issues the integrity tokens that result.
//!
//! `POST /v1/attest` always answers `200 {"integrity_token","expires_in"}`: a failed
//! attestation gets a token of the same shape signed with a random secret, computed in about
//! the same time, so a client (or a script probing for what works) cannot tell pass from fail.
//! Only the API server, holding the real secret, can.

use axum::Json;
use axum::extract::{Extension, State};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::error::ApiError;
use std::sync::Arc;

use moat_attest::Attestation;

use crate::extract::{ApiJson, Now};
use crate::middleware::protect::Principal;

/// `POST /v1/attest/challenge` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    /// App id (package name or bundle id): 1-128 visible ASCII characters.
    #[schema(pattern = "^[!-~]{1,128}$", example = "com.example.app")]
    pub app_id: String,
    /// Version: 1-128 visible ASCII characters.
    #[schema(pattern = "^[!-~]{1,128}$", example = "1.4.2")]
    pub version: String,
}

/// `POST /v1/attest` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AttestRequest {
    /// From the challenge.
    pub challenge_id: String,
    /// base64url(SHA-256(nonce ‖ bytes of each range)).
    pub measurement: Option<String>,
    /// `app_attest`, `play_integrity`, `firebase_app_check`.
    pub platform: Option<String>,
    /// base64url(SHA-256(Authorization header value)), copied into the token's `pay`.
    #[schema(pattern = "^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$")]
    pub bind: Option<String>,
    /// Platform fields (`token`, `attestation`, `assertion`, `key_id`, `client_data`).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub fields: serde_json::Map<String, Value>,
}

/// `POST /v1/attest/challenge`
#[utoipa::path(post, path = crate::routes::ATTEST_CHALLENGE, request_body = ChallengeRequest,
    responses((status = 200, body = crate::schemas::ChallengeResponse), (status = 401, description = "credential_invalid: attestation needs a per-device credential"),
              (status = 422, description = "validation")))]
pub async fn challenge(
    State(attestation): State<Arc<Attestation>>,
    Now(now): Now,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<ChallengeRequest>,
) -> Result<Json<Value>, ApiError> {
    let device = p.device.as_ref().map(|d| d.id.to_string());
    let issued = attestation
        .challenge(device.as_deref(), &req.app_id, &req.version, now)
        .await?;
    Ok(Json(json!({
        "challenge_id": issued.id,
        "nonce": moat_core::b64::url_encode(issued.nonce),
        "ranges": issued.ranges.iter().map(|(o, l)| json!([o, l])).collect::<Vec<_>>(),
        "expires_in": issued.expires_in,
    })))
}

/// `POST /v1/attest`: always `200` with an integrity token; only a genuine attestation gets
/// one signed with the shared secret.
#[utoipa::path(post, path = crate::routes::ATTEST, request_body = AttestRequest,
    responses((status = 200, body = crate::schemas::IntegrityTokenResponse, description = "pass or fail look alike"),
              (status = 401, description = "credential_invalid: attestation needs a per-device credential"),
              (status = 422, description = "validation")))]
pub async fn attest(
    State(attestation): State<Arc<Attestation>>,
    Now(now): Now,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<AttestRequest>,
) -> Result<Json<Value>, ApiError> {
    let device = p.device.as_ref().map(|d| d.id.to_string());
    let answer = moat_attest::Answer {
        challenge_id: &req.challenge_id,
        measurement: req.measurement.as_deref(),
        platform: req.platform.as_deref(),
        bind: req.bind.as_deref(),
        fields: &req.fields,
    };
    let issued = attestation.answer(device.as_deref(), answer, now).await?;
    Ok(Json(
        json!({"integrity_token": issued.token, "expires_in": issued.expires_in}),
    ))
}
