//! Bearer-token authentication of the admin listener.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

use crate::error::ApiError;
use crate::state::AppState;

/// Requires `Authorization: Bearer <admin.token>`, compared in constant time.
///
/// # Errors
/// `401 credential_invalid` without the right token.
pub async fn require_admin(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if presented.is_empty() || !state.keys.admin_token.ct_eq(presented.as_bytes()) {
        return Err(ApiError::credential("admin bearer token required"));
    }
    Ok(next.run(req).await)
}
