//! Schema-only types of the OpenAPI document: the shapes of answers that handlers write as
//! JSON values, and of the problem document that `error::ApiError` writes. A leaf module, so
//! that handlers can name them in their annotations without depending on the document.

use utoipa::ToSchema;

/// An RFC 9457 problem document (PROTOCOL section 1). Some refusals add members, e.g. the
/// token endpoint's RFC 6749 `error`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // Schema only: `error::ApiError` writes the document.
pub struct Problem {
    /// `urn:moat:problem:<code>`.
    #[schema(rename = "type")]
    pub kind: String,
    /// The HTTP reason phrase.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// A human-readable explanation, safe to show.
    pub detail: String,
    /// The stable snake_case code.
    pub code: String,
}

/// `{"status": "accepted"}`: the answer of the endpoints that may send an SMS.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // Schema only.
pub struct Accepted {
    /// Always `accepted`.
    pub status: String,
}

/// `{"status": "password_updated"}`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // Schema only.
pub struct PasswordUpdated {
    /// Always `password_updated`.
    pub status: String,
}

/// `POST /api/register/confirm` answer.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // Schema only.
pub struct UserCreated {
    /// The new user's id.
    pub user_id: uuid::Uuid,
}

/// `POST /api/token` form body (RFC 6749 sections 4.3 and 6).
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // Schema only: the handler parses the form itself.
pub struct TokenForm {
    /// `password` or `refresh_token`.
    #[schema(pattern = "^(password|refresh_token)$", example = "password")]
    pub grant_type: String,
    /// The phone (E.164), for `grant_type=password`.
    #[schema(example = "+14155550123")]
    pub username: Option<String>,
    /// For `grant_type=password`.
    pub password: Option<String>,
    /// For `grant_type=refresh_token`.
    pub refresh_token: Option<String>,
    /// Ignored.
    pub scope: Option<String>,
}

/// `POST /api/token` answer (RFC 6749 section 5.1).
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // Schema only.
pub struct TokenResponse {
    /// ES256 JWT.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds.
    pub expires_in: i64,
    /// Rotating refresh token.
    pub refresh_token: String,
}

/// `GET /api/me` answer.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // Schema only.
pub struct Me {
    /// The user's id (`sub` of the access token).
    pub user_id: String,
    /// E.164 phone; `null` for a user of an external issuer.
    pub phone: Option<String>,
    /// The external issuer, for a user of an external issuer.
    #[schema(required = false)]
    pub issuer: Option<String>,
}

/// `POST /v1/attest/challenge` answer.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // Schema only.
pub struct ChallengeResponse {
    /// Names the challenge in `POST /v1/attest`.
    pub challenge_id: String,
    /// base64url (no padding) of 32 random bytes.
    pub nonce: String,
    /// `[offset, length]` ranges of the app package to hash, in order.
    pub ranges: Vec<[u64; 2]>,
    /// Seconds.
    pub expires_in: i64,
}

/// `POST /v1/attest` answer: pass or fail look alike.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // Schema only.
pub struct IntegrityTokenResponse {
    /// JWS HS256 integrity token.
    pub integrity_token: String,
    /// Seconds.
    pub expires_in: i64,
}

/// A JSON Web Key Set.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // Schema only.
pub struct Jwks {
    /// Public keys.
    #[schema(value_type = Vec<Object>)]
    pub keys: Vec<serde_json::Value>,
}

/// `GET /healthz` and `GET /readyz` answer.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // Schema only.
pub struct Health {
    /// `ok` or `ready`.
    pub status: String,
}
