//! The seed's open account endpoints (PROTOCOL section 6): registration and password reset by
//! SMS code, resend, tokens (RFC 6749 section 5), `/api/me` and the JWKS. The flows are
//! [`moat_accounts::Accounts`]'s; these handlers parse the request, call it and shape the
//! answer.
//!
//! Every endpoint that can send an SMS answers `202` before the flow looks the phone up
//! ([`moat_accounts::sms::Detached`]): neither the answer, its timing, nor the lockout of later
//! confirmations tells a caller which phones have accounts.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::{ApiJson, ClientIp, MAX_JSON_BODY};
use crate::middleware::protect::Principal;
use moat_accounts::Accounts;
use moat_accounts::tokens::TokenService;
use std::sync::Arc;

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

/// `POST /api/register`
#[utoipa::path(post, path = crate::routes::REGISTER, request_body = RegisterRequest,
    responses((status = 202, body = crate::schemas::Accepted, description = "an SMS code goes to the phone (unless it already has an account)"),
              (status = 422, description = "validation"), (status = 429, description = "sms_blocked")))]
pub async fn register(
    State(accounts): State<Arc<Accounts>>,
    Extension(p): Extension<Principal>,
    ip: ClientIp,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<impl IntoResponse, ApiError> {
    accounts
        .register(&req.phone, &req.password, &device_of(&p), ip.0)
        .await?;
    Ok(accepted())
}

/// `POST /api/register/confirm`
#[utoipa::path(post, path = crate::routes::REGISTER_CONFIRM, request_body = ConfirmRequest,
    responses((status = 201, body = crate::schemas::UserCreated), (status = 401, description = "otp_invalid, otp_expired"),
              (status = 403, description = "otp_locked"), (status = 409, description = "conflict"),
              (status = 422, description = "validation")))]
pub async fn register_confirm(
    State(accounts): State<Arc<Accounts>>,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<ConfirmRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let user_id = accounts
        .confirm_registration(&req.phone, &req.otp, &device_of(&p))
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"user_id": user_id}))))
}

/// `POST /api/resend_otp`
#[utoipa::path(post, path = crate::routes::RESEND_OTP, request_body = ResendRequest,
    responses((status = 202, body = crate::schemas::Accepted, description = "a new code is sent if one is pending"),
              (status = 422, description = "validation"), (status = 429, description = "sms_blocked")))]
pub async fn resend(
    State(accounts): State<Arc<Accounts>>,
    Extension(p): Extension<Principal>,
    ip: ClientIp,
    ApiJson(req): ApiJson<ResendRequest>,
) -> Result<impl IntoResponse, ApiError> {
    accounts
        .resend(&req.phone, &req.purpose, &device_of(&p), ip.0)
        .await?;
    Ok(accepted())
}

/// `POST /api/password/reset`: the same answer whether or not the phone is known.
#[utoipa::path(post, path = crate::routes::PASSWORD_RESET, request_body = ResetRequest,
    responses((status = 202, body = crate::schemas::Accepted, description = "a code goes to the phone if it has an account"),
              (status = 422, description = "validation"), (status = 429, description = "sms_blocked")))]
pub async fn reset(
    State(accounts): State<Arc<Accounts>>,
    Extension(p): Extension<Principal>,
    ip: ClientIp,
    ApiJson(req): ApiJson<ResetRequest>,
) -> Result<impl IntoResponse, ApiError> {
    accounts
        .request_reset(&req.phone, &device_of(&p), ip.0)
        .await?;
    Ok(accepted())
}

/// `POST /api/password/reset/confirm`
#[utoipa::path(post, path = crate::routes::PASSWORD_RESET_CONFIRM, request_body = ResetConfirmRequest,
    responses((status = 200, body = crate::schemas::PasswordUpdated, description = "password changed; every refresh token of the user is revoked"),
              (status = 401, description = "otp_invalid, otp_expired"), (status = 403, description = "otp_locked"),
              (status = 422, description = "validation")))]
pub async fn reset_confirm(
    State(accounts): State<Arc<Accounts>>,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<ResetConfirmRequest>,
) -> Result<impl IntoResponse, ApiError> {
    accounts
        .confirm_reset(&req.phone, &req.otp, &req.new_password, &device_of(&p))
        .await?;
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

/// The token answer (RFC 6749 section 5.1).
fn token_response(grant: moat_accounts::Grant) -> Response {
    let body = json!({
        "access_token": grant.access_token,
        "token_type": "Bearer",
        "expires_in": grant.expires_in,
        "refresh_token": grant.refresh_token,
    });
    let mut response = Json(body).into_response();
    // RFC 6749 section 5.1.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
        .headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// `POST /api/token` (RFC 6749 section 5): `grant_type=password` or `refresh_token`, form
/// encoded.
#[utoipa::path(post, path = crate::routes::TOKEN, request_body(content_type = "application/x-www-form-urlencoded", content = crate::schemas::TokenForm,
        description = "grant_type=password&username=<phone>&password=… or grant_type=refresh_token&refresh_token=…"),
    responses((status = 200, body = crate::schemas::TokenResponse),
              (status = 400, description = "invalid_grant (code token_invalid)"), (status = 429, description = "rate_limited")))]
pub async fn token(
    State(accounts): State<Arc<Accounts>>,
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
    let service = &accounts;
    match req.grant_type.as_str() {
        "password" => {
            let (Some(username), Some(password)) = (req.username, req.password) else {
                return Err(ApiError::malformed("username and password are required")
                    .with_member("error", "invalid_request"));
            };
            let grant = service.login(&username, &password, &device, ip.0).await?;
            Ok(token_response(grant))
        }
        "refresh_token" => {
            let text = req.refresh_token.ok_or(moat_accounts::Error::InvalidGrant(
                "refresh_token is required",
            ))?;
            let grant = service.refresh(&text, &device, ip.0).await?;
            Ok(token_response(grant))
        }
        _ => Err(ApiError::new(
            crate::error::Code::UnsupportedGrantType,
            "unsupported grant_type",
        )
        .with_member("error", "unsupported_grant_type")),
    }
}

/// `GET /api/me`
#[utoipa::path(get, path = crate::routes::ME,
    responses((status = 200, body = crate::schemas::Me), (status = 401, description = "token_invalid")))]
pub async fn me(
    State(accounts): State<Arc<Accounts>>,
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
    let record = accounts.me(&user.id).await?;
    Ok(Json(json!({"user_id": record.id, "phone": record.phone})))
}

/// `GET /.well-known/jwks.json`
#[utoipa::path(get, path = crate::routes::JWKS,
    responses((status = 200, body = crate::schemas::Jwks, description = "public keys of the access tokens")))]
pub async fn jwks(State(tokens): State<Arc<TokenService>>) -> Response {
    let mut response = Json(tokens.jwks()).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}
