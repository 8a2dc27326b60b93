//! The seed's open account endpoints (PROTOCOL section 6): registration and password reset by
//! SMS code, resend, tokens (RFC 6749 section 5), `/api/me` and the JWKS.
//!
//! Every endpoint that can send an SMS runs the pumping guard first (and, for registration,
//! the password hash), answers `202`, and only then looks the phone up and stores a code: a
//! real one with its SMS, or a decoy no code matches where the flow must not text the phone
//! ([`crate::sms::Detached`]). Neither the answer, its timing, nor the lockout of later
//! confirmations tells a caller which phones have accounts.

pub mod codes;
pub mod password;
pub mod phone;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use moat_core::apikey::{ApiKey, REFRESH_PREFIX};
use moat_store::accounts::{NewSms, SmsCode};
use moat_store::{Attempt, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;
use crate::extract::{ApiJson, ClientIp, MAX_JSON_BODY};
use crate::middleware::protect::Principal;
use crate::ratelimit::{Quota, Refusal};
use crate::sms::guard::Ask;
use crate::state::AppState;
use phone::Phone;

/// Wrong attempts before an SMS code locks.
pub const CODE_MAX_ATTEMPTS: i64 = 5;
const REGISTER: &str = "register";
const RESET: &str = "password_reset";

/// `POST /api/register` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// E.164 phone.
    #[schema(pattern = "^\\+[0-9 ().-]{6,31}$", example = "+14155550123")]
    pub phone: String,
    /// Password (8+ characters, not a common one).
    #[schema(min_length = 8, max_length = 128, example = "correct horse battery")]
    pub password: String,
}

/// `POST /api/register/confirm` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RegisterConfirmRequest)]
pub struct ConfirmRequest {
    /// E.164 phone.
    #[schema(pattern = "^\\+[0-9 ().-]{6,31}$", example = "+14155550123")]
    pub phone: String,
    /// 6-digit SMS code.
    #[schema(pattern = "^[0-9]{6}$", example = "492039")]
    pub otp: String,
}

/// `POST /api/resend_otp` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResendRequest {
    /// E.164 phone.
    #[schema(pattern = "^\\+[0-9 ().-]{6,31}$", example = "+14155550123")]
    pub phone: String,
    /// `register` or `password_reset`.
    #[schema(pattern = "^(register|password_reset)$", example = "register")]
    pub purpose: String,
}

/// `POST /api/password/reset` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    /// E.164 phone.
    #[schema(pattern = "^\\+[0-9 ().-]{6,31}$", example = "+14155550123")]
    pub phone: String,
}

/// `POST /api/password/reset/confirm` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirmRequest {
    /// E.164 phone.
    #[schema(pattern = "^\\+[0-9 ().-]{6,31}$", example = "+14155550123")]
    pub phone: String,
    /// 6-digit SMS code.
    #[schema(pattern = "^[0-9]{6}$", example = "492039")]
    pub otp: String,
    /// The new password (8+ characters, not a common one).
    #[schema(min_length = 8, max_length = 128, example = "correct horse battery")]
    pub new_password: String,
}

fn device_of(p: &Principal) -> String {
    p.device
        .as_ref()
        .map_or_else(|| "static".to_owned(), |d| d.id.to_string())
}

fn accepted() -> (StatusCode, Json<Value>) {
    (StatusCode::ACCEPTED, Json(json!({"status": "accepted"})))
}

fn sms_text(state: &AppState, purpose: &str, code: &str) -> String {
    let app = &state.config.sms.app_name;
    let minutes = state.config.sms.code_ttl / 60;
    match purpose {
        RESET => format!(
            "{app} password reset code: {code}. Valid for {minutes} minutes. Do not share it."
        ),
        _ => format!(
            "{app} verification code: {code}. Valid for {minutes} minutes. Do not share it."
        ),
    }
}

/// Stores a new code for `(phone, purpose)` (replacing any) and, if `real`, queues its SMS.
///
/// A flow that must not send (a reset for a phone without an account, a registration for one
/// that has one) stores a decoy instead: a random hash no code matches, bound to the device
/// like a real one, so confirmations take the same attempts and lock the same way for every
/// phone. This runs after the answer ([`spawn_send`]), so the two paths need not cost the same.
async fn send_code(
    state: &AppState,
    phone: &Phone,
    purpose: &str,
    device: &str,
    pending_password: Option<String>,
    real: bool,
) -> Result<(), ApiError> {
    let now = state.now();
    let (code_hash, sms) = if real {
        let code = codes::generate()?;
        let id = format!("sms_{}", moat_core::random::token(16)?);
        let body = sms_text(state, purpose, &code);
        let sms = NewSms {
            body_sealed: state.keys.data.seal(id.as_bytes(), body.as_bytes())?,
            id,
            sender: state.sms_sender.name().to_owned(),
            phone: phone.e164.clone(),
            country: phone.region.clone(),
            purpose: purpose.to_owned(),
        };
        let hash = codes::hash(&state.keys.api_key_pepper, &phone.e164, purpose, &code);
        (hash, Some(sms))
    } else {
        (moat_core::random::secret(32)?.expose().to_vec(), None)
    };
    let record = SmsCode {
        phone: phone.e164.clone(),
        purpose: purpose.to_owned(),
        code_hash,
        device: Some(device.to_owned()),
        pending_password,
        attempts: 0,
        created_at: now,
        expires_at: now + state.config.sms.code_ttl,
    };
    let queued = sms.is_some();
    state.accounts.put_sms_code(record, sms, now).await?;
    if queued {
        state.sms_notify.notify_one();
    }
    Ok(())
}

/// After the answer: looks `phone` up and stores its code for `purpose`, real or decoy.
fn spawn_send(
    state: &AppState,
    phone: Phone,
    purpose: &'static str,
    device: String,
    pending_password: Option<String>,
) {
    let st = state.clone();
    state.sms_flows.spawn(purpose, async move {
        let real = sends_for_real(&st, &phone, purpose).await?;
        send_code(&st, &phone, purpose, &device, pending_password, real).await
    });
}

/// Whether a code for `purpose` goes to `phone` for real: registration only without an
/// account, reset only with one.
async fn sends_for_real(state: &AppState, phone: &Phone, purpose: &str) -> Result<bool, ApiError> {
    let known = state.accounts.user_by_phone(&phone.e164).await?.is_some();
    Ok(if purpose == REGISTER { !known } else { known })
}

async fn admit(
    state: &AppState,
    phone: &Phone,
    device: &str,
    ip: &ClientIp,
) -> Result<(), ApiError> {
    let ip = ip.0.to_string();
    let now = state.now();
    let admitted = state
        .sms_guard
        .admit(
            now,
            &Ask {
                phone: &phone.e164,
                region: &phone.region,
                device,
                ip: &ip,
            },
        )
        .await;
    if admitted
        .as_ref()
        .is_err_and(|e| e.code() == crate::error::Code::SmsBlocked)
    {
        state
            .metrics
            .sms
            .get_or_create(&crate::metrics::OutcomeLabels { outcome: "blocked" })
            .inc();
        state
            .stats
            .add(now, crate::stats::metric::SMS, "blocked", 1);
    }
    admitted
}

/// Checks a code for `(phone, purpose)` sent to the calling device.
async fn check_code(
    state: &AppState,
    phone: &Phone,
    purpose: &str,
    device: &str,
    otp: &str,
) -> Result<SmsCode, ApiError> {
    if otp.len() != 6 || !otp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::validation("otp must be 6 digits"));
    }
    let invalid = || ApiError::new(crate::error::Code::OtpInvalid, "the code is not valid");
    let locked = || {
        ApiError::new(
            crate::error::Code::OtpLocked,
            "too many wrong codes; ask for a new one",
        )
    };
    // One attempt is taken (checked and counted in one statement) before any comparison, so a
    // burst of guesses compares at most CODE_MAX_ATTEMPTS of them. A code another device asked
    // for is "missing" to this one: the right code from elsewhere confirms nothing.
    let code = match state
        .accounts
        .take_sms_code_attempt(&phone.e164, purpose, device, CODE_MAX_ATTEMPTS)
        .await?
    {
        Attempt::Taken(code) => code,
        Attempt::Locked => return Err(locked()),
        Attempt::Missing => return Err(invalid()),
    };
    if code.expires_at <= state.now() {
        return Err(ApiError::new(
            crate::error::Code::OtpExpired,
            "the code has expired; ask for a new one",
        ));
    }
    let presented = codes::hash(&state.keys.api_key_pepper, &phone.e164, purpose, otp);
    if !moat_core::secret::ct_eq(&presented, &code.code_hash) {
        // The last attempt used up: this answer is the lock's, as every later one will be.
        return Err(if code.attempts >= CODE_MAX_ATTEMPTS {
            locked()
        } else {
            invalid()
        });
    }
    Ok(code)
}

/// `POST /api/register`
#[utoipa::path(post, path = "/api/register", request_body = RegisterRequest,
    responses((status = 202, body = crate::openapi::Accepted, description = "an SMS code goes to the phone (unless it already has an account)"),
              (status = 422, description = "validation"), (status = 429, description = "sms_blocked")))]
pub async fn register(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ip: ClientIp,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let phone = phone::parse(&req.phone)?;
    password::check_policy(&req.password, &phone.e164)?;
    let device = device_of(&p);
    admit(&state, &phone, &device, &ip).await?;
    // Hash before looking the phone up, so both paths cost the same.
    let hash = state.hasher.hash(&req.password).await?;
    spawn_send(&state, phone, REGISTER, device, Some(hash));
    Ok(accepted())
}

/// `POST /api/register/confirm`
#[utoipa::path(post, path = "/api/register/confirm", request_body = ConfirmRequest,
    responses((status = 201, body = crate::openapi::UserCreated), (status = 401, description = "otp_invalid, otp_expired"),
              (status = 403, description = "otp_locked"), (status = 409, description = "conflict"),
              (status = 422, description = "validation")))]
pub async fn register_confirm(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<ConfirmRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let phone = phone::parse(&req.phone)?;
    let code = check_code(&state, &phone, REGISTER, &device_of(&p), &req.otp).await?;
    let hash = code
        .pending_password
        .clone()
        .ok_or_else(|| ApiError::internal(&"registration code without password"))?;
    let user = match state
        .accounts
        .create_user(
            &phone.e164,
            code.created_at,
            Uuid::new_v4(),
            &hash,
            state.now(),
        )
        .await
    {
        Ok(Some(user)) => user,
        Ok(None) => {
            return Err(ApiError::new(
                crate::error::Code::OtpInvalid,
                "the code is not valid",
            ));
        }
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::new(
                crate::error::Code::Conflict,
                "this phone already has an account",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(user = %user.id, "user registered");
    Ok((StatusCode::CREATED, Json(json!({"user_id": user.id}))))
}

/// `POST /api/resend_otp`
#[utoipa::path(post, path = "/api/resend_otp", request_body = ResendRequest,
    responses((status = 202, body = crate::openapi::Accepted, description = "a new code is sent if one is pending"),
              (status = 422, description = "validation"), (status = 429, description = "sms_blocked")))]
pub async fn resend(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ip: ClientIp,
    ApiJson(req): ApiJson<ResendRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let phone = phone::parse(&req.phone)?;
    let purpose = match req.purpose.as_str() {
        REGISTER => REGISTER,
        RESET => RESET,
        _ => {
            return Err(ApiError::validation(
                "purpose must be register or password_reset",
            ));
        }
    };
    let device = device_of(&p);
    admit(&state, &phone, &device, &ip).await?;
    let st = state.clone();
    state.sms_flows.spawn("resend_otp", async move {
        if let Some(code) = st.accounts.sms_code(&phone.e164, purpose).await?
            && code.device.as_deref() == Some(device.as_str())
            && code.expires_at > st.now()
        {
            // A decoy is renewed as a decoy: resending never reaches a phone the first
            // request would not have.
            let real = sends_for_real(&st, &phone, purpose).await?;
            send_code(&st, &phone, purpose, &device, code.pending_password, real).await?;
        }
        Ok(())
    });
    Ok(accepted())
}

/// `POST /api/password/reset`: the same answer whether or not the phone is known.
#[utoipa::path(post, path = "/api/password/reset", request_body = ResetRequest,
    responses((status = 202, body = crate::openapi::Accepted, description = "a code goes to the phone if it has an account"),
              (status = 422, description = "validation"), (status = 429, description = "sms_blocked")))]
pub async fn reset(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ip: ClientIp,
    ApiJson(req): ApiJson<ResetRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let phone = phone::parse(&req.phone)?;
    let device = device_of(&p);
    admit(&state, &phone, &device, &ip).await?;
    spawn_send(&state, phone, RESET, device, None);
    Ok(accepted())
}

/// `POST /api/password/reset/confirm`
#[utoipa::path(post, path = "/api/password/reset/confirm", request_body = ResetConfirmRequest,
    responses((status = 200, body = crate::openapi::PasswordUpdated, description = "password changed; every refresh token of the user is revoked"),
              (status = 401, description = "otp_invalid, otp_expired"), (status = 403, description = "otp_locked"),
              (status = 422, description = "validation")))]
pub async fn reset_confirm(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<ResetConfirmRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let phone = phone::parse(&req.phone)?;
    password::check_policy(&req.new_password, &phone.e164)?;
    let code = check_code(&state, &phone, RESET, &device_of(&p), &req.otp).await?;
    let invalid = || ApiError::new(crate::error::Code::OtpInvalid, "the code is not valid");
    let user = state
        .accounts
        .user_by_phone(&phone.e164)
        .await?
        .ok_or_else(invalid)?;
    let hash = state.hasher.hash(&req.new_password).await?;
    if !state
        .accounts
        .reset_password(&phone.e164, code.created_at, user.id, &hash)
        .await?
    {
        return Err(invalid());
    }
    tracing::info!(user = %user.id, "password reset");
    Ok(Json(json!({"status": "password_updated"})))
}

#[derive(Debug, Deserialize)]
struct TokenRequest {
    grant_type: String,
    username: Option<String>,
    password: Option<String>,
    refresh_token: Option<String>,
    #[allow(dead_code)]
    scope: Option<String>,
}

fn invalid_grant(detail: &str) -> ApiError {
    ApiError::new(crate::error::Code::InvalidGrant, detail.to_owned())
        .with_member("error", "invalid_grant")
        .with_member("error_description", detail.to_owned())
}

fn limited(refusal: Refusal) -> ApiError {
    ApiError::rate_limited(refusal, "too many login attempts; try again later")
}

/// The token answer: a new access token for `user` on `device`, and `refresh` (stored).
fn token_response(
    state: &AppState,
    user: Uuid,
    device: &str,
    refresh: String,
) -> Result<Response, ApiError> {
    let access = state.tokens.issue_access(user, device, state.now())?;
    let body = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": state.tokens.access_ttl(),
        "refresh_token": refresh,
    });
    let mut response = Json(body).into_response();
    // RFC 6749 section 5.1.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
        .headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// `POST /api/token` (RFC 6749 section 5): `grant_type=password` or `refresh_token`, form
/// encoded.
#[utoipa::path(post, path = "/api/token", request_body(content_type = "application/x-www-form-urlencoded", content = crate::openapi::TokenForm,
        description = "grant_type=password&username=<phone>&password=… or grant_type=refresh_token&refresh_token=…"),
    responses((status = 200, body = crate::openapi::TokenResponse),
              (status = 400, description = "invalid_grant (code token_invalid)"), (status = 429, description = "rate_limited")))]
pub async fn token(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ip: ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form {
        return Err(ApiError::new(
            crate::error::Code::UnsupportedMediaType,
            "expected application/x-www-form-urlencoded",
        ));
    }
    if body.len() > MAX_JSON_BODY {
        return Err(ApiError::too_large(MAX_JSON_BODY));
    }
    let req: TokenRequest = serde_urlencoded::from_bytes(&body)
        .map_err(|_| ApiError::malformed("invalid form body"))?;
    let device = device_of(&p);
    let now = state.now();
    match req.grant_type.as_str() {
        "password" => {
            let (Some(username), Some(password)) = (req.username, req.password) else {
                return Err(ApiError::malformed("username and password are required")
                    .with_member("error", "invalid_request"));
            };
            let phone = phone::parse(&username)
                .map_err(|_| invalid_grant("invalid username or password"))?;
            let per_minute = Quota {
                burst: state.config.accounts.login_per_minute,
                period: std::time::Duration::from_secs(60),
            };
            let per_ip = Quota {
                burst: 30,
                period: std::time::Duration::from_secs(60),
            };
            // Failed logins are counted per phone whether or not it has an account, so being
            // slowed and locked looks the same for both: a lock reveals nothing. Each attempt
            // reserves a failure before its password is checked, and a right password gives
            // it back: guesses arriving together cannot all pass a look taken before any of
            // them had failed, so no more than `login_lock_after` are ever checked.
            let c = &state.config.accounts;
            let failures = Quota {
                burst: u32::try_from(c.login_lock_after).unwrap_or(10),
                period: std::time::Duration::from_secs(
                    u64::try_from(c.login_lock_seconds).unwrap_or(900),
                ),
            };
            let fail_key = format!("loginfail\0{}", phone.e164);
            state
                .login_limiter
                .check(
                    now.saturating_mul(1000),
                    &[
                        (format!("login\0{}", phone.e164), per_minute),
                        (format!("loginip\0{}", ip.0), per_ip),
                        (fail_key.clone(), failures),
                    ],
                )
                .await
                .map_err(limited)?;
            let user = state.accounts.user_by_phone(&phone.e164).await?;
            let locked = user.as_ref().is_some_and(|u| u.locked_until > now);
            let ok = state
                .hasher
                .verify(&password, user.as_ref().map(|u| u.password_hash.as_str()))
                .await?
                && !locked;
            let user_id = user.as_ref().map(|u| u.id);
            let Some(user) = user.filter(|_| ok) else {
                if let Some(id) = user_id {
                    let count = state
                        .accounts
                        .record_login_failure(id, now, c.login_lock_after, c.login_lock_seconds)
                        .await?;
                    if count >= c.login_lock_after {
                        tracing::warn!(user = %id, failures = count, "login locked after repeated failures");
                    }
                    if count == c.login_lock_after {
                        let event = crate::audit::event(
                            now,
                            crate::audit::kind::USER_LOCKED,
                            format!("ip:{}", ip.0),
                        )
                        .subject(id)
                        .ip(ip.0)
                        .detail(&serde_json::json!({"failures": count, "locked_seconds": c.login_lock_seconds}));
                        state.audit.record(event).await;
                    }
                }
                return Err(invalid_grant("invalid username or password"));
            };
            if state
                .login_limiter
                .refund(now.saturating_mul(1000), &fail_key, failures)
                .await
                .is_err()
            {
                tracing::warn!(user = %user.id, "could not give back a successful login's reserved failure");
            }
            state.accounts.clear_login_failures(user.id).await?;
            let family = Uuid::new_v4().to_string();
            let refresh = state
                .tokens
                .issue_refresh(
                    &*state.accounts,
                    &state.keys,
                    user.id,
                    &device,
                    &family,
                    now,
                )
                .await?;
            token_response(&state, user.id, &device, refresh)
        }
        "refresh_token" => {
            let text = req
                .refresh_token
                .ok_or_else(|| invalid_grant("refresh_token is required"))?;
            let presented = ApiKey::parse_with_prefix(REFRESH_PREFIX, &text)
                .map_err(|_| invalid_grant("invalid refresh token"))?;
            let record = state
                .accounts
                .refresh_token(&presented.lookup)
                .await?
                .ok_or_else(|| invalid_grant("invalid refresh token"))?;
            if !presented.matches(&state.keys.api_key_pepper, &record.hash) {
                return Err(invalid_grant("invalid refresh token"));
            }
            // The successor is made before the token is spent and stored with it in one
            // transaction: a concurrent presenter of the same token that finds it spent finds
            // the successor already in the family, and its reuse revokes both. (Stored
            // separately, the successor could land after that revocation and stay live.)
            let (next, next_text) = if record.expires_at > now && record.device == device {
                Some(state.tokens.new_refresh(
                    &state.keys,
                    record.user_id,
                    &device,
                    &record.family,
                    now,
                )?)
            } else {
                None
            }
            .unzip();
            if record.status != "active"
                || !state
                    .accounts
                    .rotate_refresh_token(&record.lookup, now, next)
                    .await?
            {
                // A used token presented again: someone holds a copy. Revoke the whole login.
                let revoked = state.accounts.revoke_refresh_family(&record.family).await?;
                tracing::warn!(user = %record.user_id, revoked, "refresh token reuse detected; family revoked");
                let event = crate::audit::event(
                    now,
                    crate::audit::kind::REFRESH_REUSED,
                    format!("device:{device}"),
                )
                .subject(record.user_id)
                .ip(ip.0)
                .detail(&serde_json::json!({"revoked_tokens": revoked}));
                state.audit.record(event).await;
                return Err(invalid_grant("refresh token reuse detected; sign in again"));
            }
            if record.expires_at <= now {
                return Err(invalid_grant("refresh token expired"));
            }
            if record.device != device {
                state.accounts.revoke_refresh_family(&record.family).await?;
                return Err(invalid_grant("refresh token belongs to another device"));
            }
            let next_text =
                next_text.ok_or_else(|| ApiError::internal(&"refresh token not rotated"))?;
            token_response(&state, record.user_id, &device, next_text)
        }
        _ => Err(ApiError::new(
            crate::error::Code::UnsupportedGrantType,
            "unsupported grant_type",
        )
        .with_member("error", "unsupported_grant_type")),
    }
}

/// `GET /api/me`
#[utoipa::path(get, path = "/api/me",
    responses((status = 200, body = crate::openapi::Me), (status = 401, description = "token_invalid")))]
pub async fn me(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    let user = p
        .user
        .as_ref()
        .ok_or_else(|| ApiError::new(crate::error::Code::TokenInvalid, "no user"))?;
    if !user.local {
        return Ok(Json(
            json!({"user_id": user.id, "phone": null, "issuer": user.issuer}),
        ));
    }
    let id = Uuid::parse_str(&user.id)
        .map_err(|_| ApiError::new(crate::error::Code::TokenInvalid, "bad subject"))?;
    let record = state
        .accounts
        .user(id)
        .await?
        .ok_or_else(|| ApiError::new(crate::error::Code::TokenInvalid, "unknown user"))?;
    Ok(Json(json!({"user_id": record.id, "phone": record.phone})))
}

/// `GET /.well-known/jwks.json`
#[utoipa::path(get, path = "/.well-known/jwks.json",
    responses((status = 200, body = crate::openapi::Jwks, description = "public keys of the access tokens")))]
pub async fn jwks(State(state): State<AppState>) -> Response {
    let mut response = Json(state.tokens.jwks()).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}
