//! Attestation (seed 002, PROTOCOL section 5): challenge-response measurement of the app
//! package, platform attestation (Play Integrity, App Attest, Firebase App Check), and the
//! integrity tokens that result.
//!
//! `POST /v1/attest` always answers `200 {"integrity_token","expires_in"}`: a failed
//! attestation gets a token of the same shape signed with a random secret, computed in about
//! the same time, so a client (or a script probing for what works) cannot tell pass from fail.
//! Only the API server, holding the real secret, can.

pub mod app_attest;
pub mod challenge;
pub mod integrity;
pub mod platform;

use axum::Json;
use axum::extract::{Extension, State};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::middleware::protect::Principal;
use crate::state::AppState;
use challenge::Challenge;

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

fn device_of(p: &Principal) -> Result<String, ApiError> {
    p.device
        .as_ref()
        .map(|d| d.id.to_string())
        .ok_or_else(|| ApiError::credential("attestation needs a per-device credential"))
}

fn label_ok(s: &str) -> bool {
    (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic())
}

/// `POST /v1/attest/challenge`
#[utoipa::path(post, path = "/v1/attest/challenge", request_body = ChallengeRequest,
    responses((status = 200, body = crate::openapi::ChallengeResponse), (status = 401, description = "credential_invalid: attestation needs a per-device credential"),
              (status = 422, description = "validation")))]
pub async fn challenge(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<ChallengeRequest>,
) -> Result<Json<Value>, ApiError> {
    if !label_ok(&req.app_id) || !label_ok(&req.version) {
        return Err(ApiError::validation(
            "app_id and version must be 1-128 visible characters",
        ));
    }
    let device = device_of(&p)?;
    let release = state.attest.release(&req.app_id, &req.version).await?;
    let known = release.as_ref().is_some_and(|r| r.status == "active");
    // Unknown apps get a challenge of the same shape over a made-up size drawn from the
    // registered ones (see `challenge::DecoySizes`); they will fail.
    let size = match &release {
        Some(r) if known => u64::try_from(r.size).unwrap_or(0),
        _ => state.decoys.size_for(&req.app_id, &req.version),
    };
    let now = state.now();
    let c = Challenge {
        device,
        app_id: req.app_id,
        version: req.version,
        nonce: moat_core::random::array::<32>()?,
        ranges: challenge::ranges(size)?,
        known,
        expires_at: now + challenge::TTL,
    };
    let id = format!("ch_{}", moat_core::random::token(16)?);
    let body = json!({
        "challenge_id": id,
        "nonce": moat_core::b64::url_encode(c.nonce),
        "ranges": c.ranges.iter().map(|(o, l)| json!([o, l])).collect::<Vec<_>>(),
        "expires_in": challenge::TTL,
    });
    if !state.challenges.put(id, c, now).await {
        return Err(ApiError::unavailable());
    }
    Ok(Json(body))
}

/// The expected measurement of a challenge, or of a decoy of the same size (same work).
async fn expected_measurement(state: &AppState, c: &Challenge) -> Result<[u8; 32], ApiError> {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(&c.nonce);
    if c.known {
        for part in state
            .attest
            .release_ranges(&c.app_id, &c.version, &c.ranges)
            .await?
        {
            ctx.update(&part);
        }
    } else {
        let total: u64 = c.ranges.iter().map(|(_, l)| *l).sum();
        let filler = vec![0u8; usize::try_from(total.min(1 << 20)).unwrap_or(0)];
        ctx.update(&filler);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    Ok(out)
}

/// `POST /v1/attest`: always `200` with an integrity token; only a genuine attestation gets
/// one signed with the shared secret.
#[utoipa::path(post, path = "/v1/attest", request_body = AttestRequest,
    responses((status = 200, body = crate::openapi::IntegrityTokenResponse, description = "pass or fail look alike"),
              (status = 401, description = "credential_invalid: attestation needs a per-device credential"),
              (status = 422, description = "validation")))]
pub async fn attest(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<AttestRequest>,
) -> Result<Json<Value>, ApiError> {
    let device = device_of(&p)?;
    let now = state.now();
    let pay = match &req.bind {
        Some(b) if moat_core::b64::url_decode(b).map(|d| d.len()) == Ok(32) => Some(b.clone()),
        Some(_) => return Err(ApiError::validation("bind must be base64url of a SHA-256")),
        None => None,
    };
    // The body's shape is checked before the challenge is taken: a malformed request must not
    // burn the client's challenge, and must get the same 422 whether or not the challenge
    // exists (else the answer tells which challenge ids are live).
    if req.measurement.is_some() == req.platform.is_some() {
        return Err(ApiError::validation("send either measurement or platform"));
    }
    let challenge = state
        .challenges
        .take(&req.challenge_id, now)
        .await
        .map_err(|_| ApiError::unavailable())?
        .filter(|c| c.device == device);
    let genuine = match (
        &challenge,
        req.measurement.as_deref(),
        req.platform.as_deref(),
    ) {
        (Some(c), Some(measurement), None) => {
            let expected = expected_measurement(&state, c).await?;
            let presented = moat_core::b64::url_decode(measurement).unwrap_or_default();
            c.known && moat_core::secret::ct_eq(&expected, &presented)
        }
        (Some(c), None, Some(platform)) => {
            platform::verify(&state, c, &device, platform, &req.fields, now).await
        }
        (None, _, _) => {
            // Unknown, expired, reused or another device's challenge: same work, failing token.
            let decoy = Challenge {
                device: device.clone(),
                app_id: String::new(),
                version: String::new(),
                nonce: [0; 32],
                ranges: vec![(0, challenge::RANGE_LEN); challenge::RANGES],
                known: false,
                expires_at: now,
            };
            let _ = expected_measurement(&state, &decoy).await?;
            false
        }
        // Exactly one of the two is present (checked above).
        (Some(_), _, _) => false,
    };
    tracing::info!(device = %device, genuine, "attestation");
    let platform = match req.platform.as_deref() {
        None => "package",
        Some("play_integrity") => "play_integrity",
        Some("firebase_app_check") => "firebase_app_check",
        Some("app_attest") => "app_attest",
        Some(_) => "other",
    };
    state.metrics.attestation(platform, genuine);
    state.stats.add(
        now,
        crate::stats::metric::ATTEST,
        if genuine { "pass" } else { "fail" },
        1,
    );
    let token = state.integrity.issue(&device, pay, genuine, now)?;
    Ok(Json(
        json!({"integrity_token": token, "expires_in": state.integrity.ttl()}),
    ))
}
