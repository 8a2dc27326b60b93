//! The one place where failures become HTTP responses: RFC 9457 `application/problem+json`
//! with Moat's stable `code` (PROTOCOL section 1).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use moat_store::StoreError;

/// The code of a problem response, left in its extensions for the metrics layer.
#[derive(Clone, Copy, Debug)]
pub struct ProblemCode(pub &'static str);

/// A refusal or failure, as the client will see it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
    retry_after: Option<u64>,
    extra: Vec<(&'static str, serde_json::Value)>,
    headers: Vec<(&'static str, HeaderValue)>,
}

impl ApiError {
    /// An error with a status, a stable code and a detail safe to show the client.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
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
        Self::new(StatusCode::BAD_REQUEST, "malformed", detail)
    }

    /// 422 `validation`.
    pub fn validation(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", detail)
    }

    /// 401 `credential_invalid`.
    pub fn credential(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "credential_invalid", detail)
    }

    /// 401 `identity_invalid`.
    pub fn identity(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "identity_invalid", detail)
    }

    /// 403 `device_revoked`.
    pub fn revoked() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "device_revoked",
            "this device has been revoked",
        )
    }

    /// 404 `not_found`.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    /// 413 `body_too_large`.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body exceeds {limit} bytes"),
        )
    }

    /// A limiter's refusal: `429 rate_limited` with `Retry-After` and `detail`, or `503` when
    /// the limiter (Redis) cannot answer.
    pub fn rate_limited(refusal: crate::ratelimit::Refusal, detail: &'static str) -> Self {
        match refusal {
            crate::ratelimit::Refusal::Limited { retry_after, .. } => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", detail)
                    .retry_after(retry_after)
            }
            crate::ratelimit::Refusal::Unavailable => Self::unavailable(),
        }
    }

    /// 503 `unavailable`: a dependency is down, so Moat refuses rather than guess.
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "a dependency is unavailable, try again",
        )
        .retry_after(1)
    }

    /// 500 `internal`: the detail is logged, never sent.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "something went wrong",
        )
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
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
            E::SignatureInvalid(_) | E::Unsupported(_) => {
                Self::new(StatusCode::UNAUTHORIZED, "signature_invalid", detail)
            }
            E::SignatureExpired => Self::new(StatusCode::UNAUTHORIZED, "signature_expired", detail),
            E::DigestMismatch => Self::new(StatusCode::UNAUTHORIZED, "digest_mismatch", detail),
            E::DecryptionFailed => Self::malformed("the encrypted body could not be decrypted"),
            E::Crypto => Self::internal(&e),
            _ => Self::internal(&e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let mut body = serde_json::json!({
            "type": format!("urn:moat:problem:{}", self.code),
            "title": title,
            "status": self.status.as_u16(),
            "detail": self.detail,
            "code": self.code,
        });
        for (name, value) in self.extra {
            body[name] = value;
        }
        let mut response = (self.status, body.to_string()).into_response();
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
        if self.status == StatusCode::UNAUTHORIZED
            && !headers.contains_key(header::WWW_AUTHENTICATE)
        {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Moat"));
        }
        response
    }
}
