//! The server's errors: [`ApiError`], the one place where failures of every crate become HTTP
//! responses (RFC 9457 `application/problem+json` with Moat's stable `code`, PROTOCOL section 1),
//! and [`ServerError`], why the server could not start.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use moat_store::StoreError;

/// The stable `code` of a problem response (PROTOCOL section 1), and the one table that maps
/// it to its HTTP status. The strings are the contract's: clients branch on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    /// The request cannot be parsed.
    Malformed,
    /// The request parses but a value is not acceptable.
    Validation,
    /// The identity proof (Firebase ID token, installation key) is missing or invalid.
    IdentityInvalid,
    /// The device credential is missing or invalid.
    CredentialInvalid,
    /// A request signature or DPoP proof does not verify.
    SignatureInvalid,
    /// A request signature is outside its time window.
    SignatureExpired,
    /// A nonce or proof was already used.
    ReplayDetected,
    /// The body does not match its signed digest.
    DigestMismatch,
    /// The device was revoked.
    DeviceRevoked,
    /// The integrity token is missing, invalid or expired.
    IntegrityInvalid,
    /// The bearer token is missing or invalid.
    TokenInvalid,
    /// The access token is past its `exp`: refresh it.
    TokenExpired,
    /// The token endpoint refuses a grant (RFC 6749 section 5.2 answers 400 `invalid_grant`).
    InvalidGrant,
    /// The token endpoint does not know the grant type (RFC 6749 section 5.2: 400).
    UnsupportedGrantType,
    /// A one-time code is wrong or unknown.
    OtpInvalid,
    /// A one-time code expired.
    OtpExpired,
    /// Too many wrong attempts: the code is locked.
    OtpLocked,
    /// Over a rate limit (sent with `Retry-After`).
    RateLimited,
    /// The SMS-pumping guard refuses to send to this number.
    SmsBlocked,
    /// A dependency is down: Moat refuses rather than guess.
    Unavailable,
    /// No such resource.
    NotFound,
    /// The resource already exists or changed.
    Conflict,
    /// The path exists but not with this method.
    MethodNotAllowed,
    /// The body is over the route's limit.
    BodyTooLarge,
    /// The body's content type or coding is not accepted.
    UnsupportedMediaType,
    /// The upstream could not be reached or answered badly.
    BadGateway,
    /// The upstream did not answer in time.
    UpstreamTimeout,
    /// A failure inside Moat; the detail is logged, never sent.
    Internal,
}

impl Code {
    /// The contract's string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Validation => "validation",
            Self::IdentityInvalid => "identity_invalid",
            Self::CredentialInvalid => "credential_invalid",
            Self::SignatureInvalid => "signature_invalid",
            Self::SignatureExpired => "signature_expired",
            Self::ReplayDetected => "replay_detected",
            Self::DigestMismatch => "digest_mismatch",
            Self::DeviceRevoked => "device_revoked",
            Self::IntegrityInvalid => "integrity_invalid",
            Self::TokenInvalid => "token_invalid",
            Self::TokenExpired => "token_expired",
            Self::InvalidGrant => "token_invalid",
            Self::UnsupportedGrantType => "validation",
            Self::OtpInvalid => "otp_invalid",
            Self::OtpExpired => "otp_expired",
            Self::OtpLocked => "otp_locked",
            Self::RateLimited => "rate_limited",
            Self::SmsBlocked => "sms_blocked",
            Self::Unavailable => "unavailable",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::BodyTooLarge => "body_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::BadGateway => "bad_gateway",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::Internal => "internal",
        }
    }

    /// The HTTP status answered with this code.
    pub const fn status(self) -> StatusCode {
        match self {
            Self::Malformed => StatusCode::BAD_REQUEST,
            Self::Validation => StatusCode::UNPROCESSABLE_ENTITY,
            Self::IdentityInvalid => StatusCode::UNAUTHORIZED,
            Self::CredentialInvalid => StatusCode::UNAUTHORIZED,
            Self::SignatureInvalid => StatusCode::UNAUTHORIZED,
            Self::SignatureExpired => StatusCode::UNAUTHORIZED,
            Self::ReplayDetected => StatusCode::UNAUTHORIZED,
            Self::DigestMismatch => StatusCode::UNAUTHORIZED,
            Self::DeviceRevoked => StatusCode::FORBIDDEN,
            Self::IntegrityInvalid => StatusCode::UNAUTHORIZED,
            Self::TokenInvalid => StatusCode::UNAUTHORIZED,
            Self::TokenExpired => StatusCode::UNAUTHORIZED,
            Self::InvalidGrant => StatusCode::BAD_REQUEST,
            Self::UnsupportedGrantType => StatusCode::BAD_REQUEST,
            Self::OtpInvalid => StatusCode::UNAUTHORIZED,
            Self::OtpExpired => StatusCode::UNAUTHORIZED,
            Self::OtpLocked => StatusCode::FORBIDDEN,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::SmsBlocked => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict => StatusCode::CONFLICT,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BadGateway => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The code of a problem response, left in its extensions for the metrics layer.
#[derive(Clone, Copy, Debug)]
pub struct ProblemCode(pub Code);

/// A refusal or failure, as the client will see it.
#[derive(Debug)]
pub struct ApiError {
    code: Code,
    detail: String,
    /// What went wrong inside, for `internal` errors: logged when the answer is written,
    /// never sent.
    cause: Option<String>,
    retry_after: Option<u64>,
    extra: Vec<(&'static str, serde_json::Value)>,
    headers: Vec<(&'static str, HeaderValue)>,
}

impl ApiError {
    /// An error with a stable code (which decides the status) and a detail safe to show the
    /// client.
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            cause: None,
            retry_after: None,
            extra: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// Adds a response header.
    #[must_use]
    pub fn with_header(mut self, name: &'static str, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Adds a member to the problem document (e.g. RFC 6749's `error`).
    #[must_use]
    pub fn with_member(mut self, name: &'static str, value: impl Into<serde_json::Value>) -> Self {
        self.extra.push((name, value.into()));
        self
    }

    /// Adds `Retry-After` (seconds).
    #[must_use]
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// 400 `malformed`.
    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(Code::Malformed, detail)
    }

    /// 422 `validation`.
    pub fn validation(detail: impl Into<String>) -> Self {
        Self::new(Code::Validation, detail)
    }

    /// 401 `credential_invalid`.
    pub fn credential(detail: impl Into<String>) -> Self {
        Self::new(Code::CredentialInvalid, detail)
    }

    /// 401 `identity_invalid`.
    pub fn identity(detail: impl Into<String>) -> Self {
        Self::new(Code::IdentityInvalid, detail)
    }

    /// 403 `device_revoked`.
    pub fn revoked() -> Self {
        Self::new(Code::DeviceRevoked, "this device has been revoked")
    }

    /// 404 `not_found`.
    pub fn not_found() -> Self {
        Self::new(Code::NotFound, "no such resource")
    }

    /// 413 `body_too_large`.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            Code::BodyTooLarge,
            format!("request body exceeds {limit} bytes"),
        )
    }

    /// A limiter's refusal: `429 rate_limited` with `Retry-After` and `detail`, or `503` when
    /// the limiter (Redis) cannot answer.
    pub fn rate_limited(refusal: moat_cluster::ratelimit::Refusal, detail: &'static str) -> Self {
        match refusal {
            moat_cluster::ratelimit::Refusal::Limited { retry_after, .. } => {
                Self::new(Code::RateLimited, detail).retry_after(retry_after)
            }
            moat_cluster::ratelimit::Refusal::Unavailable => Self::unavailable(),
        }
    }

    /// 503 `unavailable`: a dependency is down, so Moat refuses rather than guess.
    pub fn unavailable() -> Self {
        Self::new(Code::Unavailable, "a dependency is unavailable, try again").retry_after(1)
    }

    /// 500 `internal`: the cause is logged when the answer is written, never sent.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        let mut e = Self::new(Code::Internal, "something went wrong");
        e.cause = Some(cause.to_string());
        e
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// The stable code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The detail shown to the client.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::not_found(),
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "store unavailable");
                Self::unavailable()
            }
            other => Self::internal(&other),
        }
    }
}

impl From<moat_core::Error> for ApiError {
    fn from(e: moat_core::Error) -> Self {
        use moat_core::Error as E;
        let detail = e.to_string();
        match e {
            E::Malformed(_) => Self::malformed(detail),
            E::IdentityInvalid(_) => Self::identity(detail),
            E::SignatureInvalid(_) | E::Unsupported(_) => Self::new(Code::SignatureInvalid, detail),
            E::SignatureExpired => Self::new(Code::SignatureExpired, detail),
            E::DigestMismatch => Self::new(Code::DigestMismatch, detail),
            E::DecryptionFailed => Self::malformed("the encrypted body could not be decrypted"),
            E::Crypto => Self::internal(&e),
            _ => Self::internal(&e),
        }
    }
}

impl From<moat_identity::Error> for ApiError {
    fn from(e: moat_identity::Error) -> Self {
        match e {
            moat_identity::Error::Invalid(why) => Self::new(Code::TokenInvalid, why),
            moat_identity::Error::Unavailable => Self::unavailable(),
        }
    }
}

impl From<moat_gateway::Error> for ApiError {
    fn from(e: moat_gateway::Error) -> Self {
        use moat_gateway::Error as E;
        match e {
            E::Refused(_) => Self::malformed(e.to_string()),
            E::MethodNotAllowed { ref allow } => {
                let refused = Self::new(Code::MethodNotAllowed, e.to_string());
                match HeaderValue::from_str(allow) {
                    // RFC 9110 section 15.5.6: a 405 lists the methods the target allows.
                    Ok(v) => refused.with_header("allow", v),
                    Err(_) => refused,
                }
            }
            E::BodyTooLarge(limit) => Self::too_large(limit),
            E::UpstreamTimeout => Self::new(Code::UpstreamTimeout, e.to_string()),
            E::BadGateway(detail) => Self::new(Code::BadGateway, detail),
            E::Core(e) => Self::from(e),
            E::Internal(cause) => Self::internal(&cause),
        }
    }
}

impl From<moat_attest::Error> for ApiError {
    fn from(e: moat_attest::Error) -> Self {
        use moat_attest::Error as E;
        match e {
            E::InvalidRequest(why) => Self::validation(why),
            E::DeviceRequired => Self::credential(e.to_string()),
            E::IntegrityInvalid(why) => Self::new(Code::IntegrityInvalid, why),
            E::Unavailable => Self::unavailable(),
            E::Store(cause) => cause.into(),
            E::Crypto(cause) => cause.into(),
            E::PlayIntegrityKeys(cause) => Self::internal(&cause),
            E::Internal(cause) => Self::internal(&cause),
        }
    }
}

impl From<moat_accounts::Error> for ApiError {
    fn from(e: moat_accounts::Error) -> Self {
        use moat_accounts::Error as E;
        let detail = e.to_string();
        match e {
            E::Invalid(why) => Self::validation(why),
            E::OtpInvalid => Self::new(Code::OtpInvalid, detail),
            E::OtpExpired => Self::new(Code::OtpExpired, detail),
            E::OtpLocked => Self::new(Code::OtpLocked, detail),
            E::SmsBlocked { retry_after } => {
                Self::new(Code::SmsBlocked, detail).retry_after(retry_after)
            }
            E::LoginLimited { retry_after } => {
                Self::new(Code::RateLimited, detail).retry_after(retry_after)
            }
            E::AccountExists => Self::new(Code::Conflict, detail),
            // RFC 6749 section 5.2: the token endpoint's own members beside the problem's.
            E::InvalidGrant(why) => Self::new(Code::InvalidGrant, why)
                .with_member("error", "invalid_grant")
                .with_member("error_description", why),
            E::TokenInvalid(why) => Self::new(Code::TokenInvalid, why),
            // RFC 6750 section 3.1 (PROTOCOL section 1): the app should refresh.
            E::TokenExpired => Self::new(Code::TokenExpired, detail).with_header(
                "www-authenticate",
                HeaderValue::from_static(
                    "Bearer error=\"invalid_token\", error_description=\"The access token expired\"",
                ),
            ),
            E::Busy => Self::unavailable().retry_after(2),
            E::Unavailable => Self::unavailable(),
            E::Store(e) => e.into(),
            E::Core(e) => e.into(),
            E::Internal(cause) => Self::internal(&cause),
        }
    }
}

impl From<moat_enroll::Error> for ApiError {
    fn from(e: moat_enroll::Error) -> Self {
        use moat_enroll::Error as E;
        let detail = e.to_string();
        match e {
            E::Validation(_) => Self::validation(detail),
            E::TooManyEnrollments(refusal) => Self::rate_limited(
                refusal,
                "too many enrollments from this address; try again later",
            ),
            E::Identity(detail) => Self::identity(detail),
            E::Replay => Self::new(Code::ReplayDetected, detail),
            E::Revoked => Self::revoked(),
            E::Concurrent | E::NotOtpMode => Self::new(Code::Conflict, detail),
            E::OtpInvalid => Self::new(Code::OtpInvalid, detail),
            E::OtpExpired => Self::new(Code::OtpExpired, detail),
            E::OtpLocked => Self::new(Code::OtpLocked, detail),
            E::KeysExhausted => Self::unavailable().retry_after(2),
            E::Unavailable => Self::unavailable(),
            E::Store(e) => Self::from(e),
            E::Core(e) => Self::from(e),
            E::Internal(cause) => Self::internal(&cause),
        }
    }
}

impl From<moat_policy::Error> for ApiError {
    fn from(e: moat_policy::Error) -> Self {
        use moat_policy::{Credential, Error as E};
        let detail = e.to_string();
        match e {
            E::Repeated { credential, .. } => Self::new(
                match credential {
                    Credential::Signature => Code::SignatureInvalid,
                    Credential::DeviceKey => Code::CredentialInvalid,
                    Credential::Integrity => Code::IntegrityInvalid,
                    Credential::Token => Code::TokenInvalid,
                },
                detail,
            ),
            E::Malformed(why) => Self::malformed(why),
            E::CredentialInvalid(why) => Self::credential(why),
            E::SignatureInvalid(why) => Self::new(Code::SignatureInvalid, why),
            E::SignedBeforeHorizon => Self::new(Code::SignatureExpired, detail),
            E::Replayed => Self::new(Code::ReplayDetected, detail),
            E::Revoked => Self::revoked(),
            E::TokenInvalid(why) => Self::new(Code::TokenInvalid, why),
            E::IntegrityInvalid(why) => Self::new(Code::IntegrityInvalid, why),
            E::NoEncryptionKey => Self::new(Code::UnsupportedMediaType, detail),
            E::RateLimited {
                retry_after,
                policy,
                state,
            } => Self::new(Code::RateLimited, detail)
                .retry_after(retry_after)
                .with_header("ratelimit-policy", policy)
                .with_header("ratelimit", state),
            E::Unavailable => Self::unavailable(),
            E::Store(e) => e.into(),
            E::Core(e) => e.into(),
            E::Token(e) => e.into(),
            E::Issuer(e) => e.into(),
            E::Integrity(e) => e.into(),
            E::Internal(cause) => Self::internal(&cause),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(cause) = &self.cause {
            // In the request's span: the request id leads from the client's report here.
            tracing::error!(error = %cause, "internal error");
        }
        let status = self.code.status();
        let title = status.canonical_reason().unwrap_or("Error");
        let mut body = serde_json::json!({
            "type": format!("urn:moat:problem:{}", self.code.as_str()),
            "title": title,
            "status": status.as_u16(),
            "detail": self.detail,
            "code": self.code.as_str(),
        });
        for (name, value) in self.extra {
            body[name] = value;
        }
        let mut response = (status, body.to_string()).into_response();
        response.extensions_mut().insert(ProblemCode(self.code));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        if status == StatusCode::UNAUTHORIZED && !headers.contains_key(header::WWW_AUTHENTICATE) {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Moat"));
        }
        response
    }
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Secrets file problem.
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretsError),
    /// Store could not be opened.
    #[error("store: {0}")]
    Store(#[from] moat_store::StoreError),
    /// Key material problem.
    #[error("keys: {0}")]
    Keys(#[from] moat_core::Error),
    /// Socket error.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A dependency named in the configuration cannot be used.
    #[error("{0}")]
    Setup(String),
    /// The data key is missing, malformed, or does not open what the store holds.
    #[error("{0}")]
    DataKey(String),
    /// The store or its data key does not exist (an admin state without `create`).
    #[error("{0}")]
    Missing(String),
}
