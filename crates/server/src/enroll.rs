//! Enrollment (`POST /v1/enroll`, `POST /v1/enroll/confirm`) and the built-in mailbox
//! (`GET /v1/mailbox`): PROTOCOL sections 2 and 3, seed 000 sections 3.1-3.3.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use moat_core::apikey::ApiKey;
use moat_core::dpop::{self, VerifiedProof};
use moat_core::{b64, random, totp};
use moat_store::{
    Credential, Device, DeviceStatus, NewCredential, NewMailboxItem, OtpRecord, StoreError,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::clock::rfc3339;
use crate::config::Mode;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::state::AppState;

/// TOTP time step of enrollment codes, seconds (PROTOCOL section 3).
pub const OTP_STEP: i64 = 30;
/// Digits of enrollment codes.
pub const OTP_DIGITS: u32 = 6;
/// Most mailbox items returned by one read.
pub const MAILBOX_READ_LIMIT: u32 = 16;

/// `POST /v1/enroll` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The app's own id for this installation: 1-128 characters of `A-Za-z0-9._:-`.
    pub device_id: String,
    /// `android`, `ios` or `other`.
    pub platform: Option<String>,
    /// Firebase ID token (Firebase identity only).
    pub firebase_id_token: Option<String>,
}

/// `POST /v1/enroll/confirm` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    /// The same device id as at enrollment.
    pub device_id: String,
    /// The 6-digit code read from the mailbox.
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

fn validate_device_id(id: &str) -> Result<(), ApiError> {
    let ok = (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::validation(
            "device_id must be 1-128 characters of A-Za-z0-9._:-",
        ))
    }
}

fn validate_platform(p: Option<&str>) -> Result<(), ApiError> {
    match p {
        None | Some("android" | "ios" | "other") => Ok(()),
        Some(_) => Err(ApiError::validation(
            "platform must be android, ios or other",
        )),
    }
}

/// Checks the request's DPoP proof and its `jti`; returns the installation identity.
///
/// # Errors
/// `401 identity_invalid` for a missing or bad proof, `401 replay_detected` for a reused
/// `jti`, `503` if the replay cache cannot answer.
pub async fn installation_identity(
    state: &AppState,
    headers: &HeaderMap,
    method: &Method,
    path: &str,
) -> Result<VerifiedProof, ApiError> {
    let mut values = headers.get_all("dpop").iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(ApiError::identity("exactly one DPoP header is required"));
    };
    let proof = value
        .to_str()
        .map_err(|_| ApiError::identity("DPoP header is not ASCII"))?;
    let now = state.now();
    let url = format!("{}{}", state.config.public_base_url, path);
    let skew = state.config.dpop_max_skew;
    let verified = dpop::verify(
        proof,
        &dpop::Expectation {
            method: method.as_str(),
            url: &url,
            now,
            max_skew: skew,
        },
    )
    .map_err(|e| match e {
        moat_core::Error::Malformed(_) | moat_core::Error::Unsupported(_) => {
            ApiError::identity(format!("DPoP proof rejected: {e}"))
        }
        other => ApiError::from(other),
    })?;
    let key = format!("dpop\0{}\0{}", verified.thumbprint, verified.jti);
    let expires = verified.iat.max(now) + skew + 1;
    let fresh = state
        .replay
        .insert_once(key.as_bytes(), expires, now)
        .await
        .map_err(|_| ApiError::unavailable())?;
    if !fresh {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "replay_detected",
            "this DPoP proof was already used",
        ));
    }
    Ok(verified)
}

fn refuse_firebase(token: Option<&String>) -> Result<(), ApiError> {
    if token.is_some() {
        return Err(ApiError::identity(
            "the Firebase identity is not enabled on this server",
        ));
    }
    Ok(())
}

/// Builds a sealed mailbox item. The sealed payload is bound to the item id.
fn mailbox_item(
    state: &AppState,
    identity: &str,
    payload: &Value,
    now: i64,
) -> Result<NewMailboxItem, ApiError> {
    let id = format!("mb_{}", random::token(16)?);
    let sealed = state
        .keys
        .data
        .seal(id.as_bytes(), payload.to_string().as_bytes())?;
    Ok(NewMailboxItem {
        id,
        identity: identity.to_owned(),
        payload_sealed: sealed,
        expires_at: now + state.config.mailbox_ttl,
    })
}

/// A mailbox builder for `issue_credential`: the payload is made once the device row exists,
/// so it names the device id the store actually wrote.
fn builder(
    state: &AppState,
    identity: &str,
    now: i64,
    payload: impl FnOnce(&Device) -> Value + Send + 'static,
) -> moat_store::MailboxBuilder {
    let (state, identity) = (state.clone(), identity.to_owned());
    Box::new(move |device: &Device| {
        mailbox_item(&state, &identity, &payload(device), now)
            .map_err(|e| StoreError::Backend(format!("sealing mailbox item: {}", e.code()).into()))
    })
}

async fn refuse_if_revoked(
    state: &AppState,
    identity: &str,
    device_id: &str,
) -> Result<(), ApiError> {
    match state.store.device_by_identity(identity, device_id).await? {
        Some(d) if d.status == DeviceStatus::Revoked => Err(ApiError::revoked()),
        Some(d) => {
            // Re-enrollment rotates this credential: forget the old one now, on this
            // instance (others see it within the device cache TTL).
            forget_credential(state, &d);
            Ok(())
        }
        None => Ok(()),
    }
}

fn forget_credential(state: &AppState, d: &Device) {
    use crate::cache::TtlCache;
    use crate::middleware::protect::CachedCredential;
    if let Some(lookup) = &d.credential.key_lookup {
        state
            .device_cache
            .remove(&TtlCache::<CachedCredential>::key(
                format!("key\0{lookup}").as_bytes(),
            ));
    }
    if let Some(client_id) = &d.credential.client_id {
        state
            .device_cache
            .remove(&TtlCache::<CachedCredential>::key(
                format!("sig\0{client_id}").as_bytes(),
            ));
    }
}

fn issued(result: Result<Device, StoreError>) -> Result<Device, ApiError> {
    result.map_err(|e| match e {
        StoreError::Conflict(_) => ApiError::revoked(),
        other => other.into(),
    })
}

/// `POST /v1/enroll`: the one endpoint open to the world.
#[utoipa::path(post, path = "/v1/enroll", request_body = EnrollRequest,
    params(("DPoP" = String, Header, description = "RFC 9449 proof of the installation key")),
    responses((status = 200, body = EnrollResponse), (status = 401, description = "identity_invalid or replay_detected"),
              (status = 403, description = "device_revoked"), (status = 422, description = "validation")))]
pub async fn enroll(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    ApiJson(req): ApiJson<EnrollRequest>,
) -> Result<Json<EnrollResponse>, ApiError> {
    validate_device_id(&req.device_id)?;
    validate_platform(req.platform.as_deref())?;
    refuse_firebase(req.firebase_id_token.as_ref())?;
    let proof = installation_identity(&state, &headers, &method, "/v1/enroll").await?;
    let identity = proof.identity();
    let now = state.now();
    match state.config.mode {
        Mode::Static => {
            let key = std::str::from_utf8(state.keys.static_key.expose()).unwrap_or_default();
            let item = mailbox_item(
                &state,
                &identity,
                &json!({"kind": "api_key", "key": key}),
                now,
            )?;
            // No device row: the static key is the same for everyone (seed 000 section 3.1).
            state.store.put_mailbox_item(item, now).await?;
        }
        Mode::Dynamic => {
            refuse_if_revoked(&state, &identity, &req.device_id).await?;
            let (key, text) = ApiKey::generate()?;
            let key_text = std::str::from_utf8(text.expose())
                .unwrap_or_default()
                .to_owned();
            let cred = NewCredential {
                id: Uuid::new_v4(),
                identity: identity.clone(),
                device_id: req.device_id.clone(),
                mode: "dynamic".into(),
                platform: req.platform.clone(),
                credential: Credential {
                    key_lookup: Some(key.lookup.clone()),
                    key_hash: Some(key.hash(&state.keys.api_key_pepper).to_vec()),
                    signing_jwk: Some(proof.jwk.to_json().to_string()),
                    ..Credential::default()
                },
            };
            let build = builder(
                &state,
                &identity,
                now,
                move |device| json!({"kind": "api_key", "key": key_text, "device": device.id}),
            );
            let device = issued(state.store.issue_credential(cred, Some(build), now).await)?;
            tracing::info!(device = %device.id, mode = "dynamic", "device enrolled");
        }
        Mode::Otp => {
            refuse_if_revoked(&state, &identity, &req.device_id).await?;
            let secret = random::secret(20)?;
            let step = i64::try_from(totp::time_step(now, OTP_STEP)).unwrap_or(0);
            let code = totp::hotp(secret.expose(), step as u64, OTP_DIGITS, totp::Hash::Sha1);
            let otp_id = format!("eo_{}", random::token(16)?);
            let expires_at = now + state.config.otp_ttl;
            let sealed = state.keys.data.seal(otp_id.as_bytes(), secret.expose())?;
            let payload =
                json!({"kind": "enrollment_otp", "code": code, "expires_at": rfc3339(expires_at)});
            let item = mailbox_item(&state, &identity, &payload, now)?;
            let record = OtpRecord {
                id: otp_id,
                identity: identity.clone(),
                device_id: req.device_id.clone(),
                platform: req.platform.clone(),
                secret_sealed: sealed,
                step,
                attempts: 0,
                expires_at,
                used_at: None,
            };
            state.store.put_enrollment_otp(record, item, now).await?;
        }
    }
    Ok(Json(EnrollResponse {
        channel: "builtin",
        expires_in: state.config.mailbox_ttl,
    }))
}

/// `POST /v1/enroll/confirm` (otp mode): exchanges the code for a client credential.
#[utoipa::path(post, path = "/v1/enroll/confirm", request_body = ConfirmRequest,
    params(("DPoP" = String, Header, description = "RFC 9449 proof of the installation key")),
    responses((status = 200, body = EnrollResponse), (status = 401, description = "otp_invalid, otp_expired, identity_invalid"),
              (status = 403, description = "otp_locked or device_revoked"), (status = 503, description = "unavailable")))]
pub async fn confirm(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ConfirmRequest>,
) -> Result<Json<EnrollResponse>, ApiError> {
    validate_device_id(&req.device_id)?;
    refuse_firebase(req.firebase_id_token.as_ref())?;
    if req.otp.len() != OTP_DIGITS as usize || !req.otp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::validation("otp must be 6 digits"));
    }
    let proof = installation_identity(&state, &headers, &method, "/v1/enroll/confirm").await?;
    let identity = proof.identity();
    if state.config.mode != Mode::Otp {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "this server does not enroll in otp mode",
        ));
    }
    let otp_invalid = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "otp_invalid",
            "the code is not valid",
        )
    };
    let locked = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "otp_locked",
            "too many wrong codes; enroll again",
        )
    };
    let now = state.now();
    let record = state
        .store
        .enrollment_otp(&identity, &req.device_id)
        .await?
        .ok_or_else(otp_invalid)?;
    if record.used_at.is_some() {
        return Err(otp_invalid());
    }
    if record.attempts >= state.config.otp_max_attempts {
        return Err(locked());
    }
    if record.expires_at <= now {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "otp_expired",
            "the code has expired; enroll again",
        ));
    }
    let secret = state
        .keys
        .data
        .open(record.id.as_bytes(), &record.secret_sealed)?;
    let expected = totp::hotp(
        secret.expose(),
        u64::try_from(record.step).unwrap_or(0),
        OTP_DIGITS,
        totp::Hash::Sha1,
    );
    if !moat_core::secret::ct_eq(expected.as_bytes(), req.otp.as_bytes()) {
        let attempts = state.store.record_otp_failure(&record.id).await?;
        tracing::info!(identity = %identity, attempts, "wrong enrollment code");
        return Err(if attempts >= state.config.otp_max_attempts {
            locked()
        } else {
            otp_invalid()
        });
    }
    refuse_if_revoked(&state, &identity, &req.device_id).await?;
    // Take the RSA key before consuming the code, so a drained pool does not burn the code.
    let pool = state.rsa_pool.as_ref().ok_or_else(ApiError::unavailable)?;
    let rsa = pool.take().await.ok_or_else(|| {
        tracing::warn!(
            "rsa key pool empty: confirmations are arriving faster than keys are generated"
        );
        ApiError::unavailable().retry_after(2)
    })?;
    if !state
        .store
        .consume_otp(&record.id, now, state.config.otp_max_attempts)
        .await?
    {
        return Err(otp_invalid());
    }
    let client_id = format!("mc_{}", random::token(16)?);
    let rsa_kid = format!("mk_{}", random::token(12)?);
    let hmac_secret = random::secret(32)?;
    let rsa_jwk = rsa.public_jwk()?;
    let cred = NewCredential {
        id: Uuid::new_v4(),
        identity: identity.clone(),
        device_id: req.device_id.clone(),
        mode: "otp".into(),
        platform: record.platform.clone(),
        credential: Credential {
            client_id: Some(client_id.clone()),
            hmac_secret_sealed: Some(
                state
                    .keys
                    .data
                    .seal(client_id.as_bytes(), hmac_secret.expose())?,
            ),
            rsa_kid: Some(rsa_kid.clone()),
            rsa_private_sealed: Some(
                state
                    .keys
                    .data
                    .seal(rsa_kid.as_bytes(), rsa.pkcs8().expose())?,
            ),
            signing_jwk: Some(proof.jwk.to_json().to_string()),
            ..Credential::default()
        },
    };
    let mut encryption_key = rsa_jwk.to_json();
    encryption_key["kid"] = rsa_kid.into();
    encryption_key["alg"] = "RSA-OAEP-256".into();
    encryption_key["use"] = "enc".into();
    let secret_text = b64::url_encode(hmac_secret.expose());
    let build = builder(&state, &identity, now, move |device| {
        json!({
            "kind": "client_credential",
            "device": device.id,
            "client_id": client_id,
            "hmac_secret": secret_text,
            "alg": "hmac-sha256",
            "encryption_key": encryption_key,
        })
    });
    let device = issued(state.store.issue_credential(cred, Some(build), now).await)?;
    tracing::info!(device = %device.id, mode = "otp", "device enrolled");
    Ok(Json(EnrollResponse {
        channel: "builtin",
        expires_in: state.config.mailbox_ttl,
    }))
}

/// `GET /v1/mailbox`: items for the caller's identity, each returned once.
#[utoipa::path(get, path = "/v1/mailbox",
    params(("DPoP" = String, Header, description = "RFC 9449 proof of the installation key")),
    responses((status = 200, body = MailboxResponse), (status = 401, description = "identity_invalid or replay_detected")))]
pub async fn mailbox(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
) -> Result<Json<MailboxResponse>, ApiError> {
    let proof = installation_identity(&state, &headers, &method, "/v1/mailbox").await?;
    let now = state.now();
    let taken = state
        .store
        .take_mailbox(&proof.identity(), now, MAILBOX_READ_LIMIT)
        .await?;
    let mut items = Vec::with_capacity(taken.len());
    for item in taken {
        let plain = state
            .keys
            .data
            .open(item.id.as_bytes(), &item.payload_sealed)?;
        let mut value: Value =
            serde_json::from_slice(plain.expose()).map_err(|e| ApiError::internal(&e))?;
        value["id"] = item.id.into();
        value["created_at"] = rfc3339(item.created_at).into();
        value["expires_at"] = value
            .get("expires_at")
            .cloned()
            .unwrap_or_else(|| rfc3339(item.expires_at).into());
        items.push(value);
    }
    Ok(Json(MailboxResponse { items }))
}
