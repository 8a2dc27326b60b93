//! Bearer-token authentication of the admin listener.

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::error::ApiError;
use crate::state::AppState;
use moat_observe::audit;

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
    let now = state.now();
    if presented.is_empty() || !state.keys.admin_token.ct_eq(presented.as_bytes()) {
        // Anyone can send these: aggregated per address and window, never one row each.
        let ip = crate::extract::client_ip(
            req.headers(),
            req.extensions(),
            &state.config.trusted_proxies,
        );
        state
            .audit
            .admin_denied(now, ip, req.method().as_str(), req.uri().path())
            .await;
        return Err(ApiError::credential("admin bearer token required"));
    }
    // Reads are not audited (the dashboard polls); every other call is.
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(next.run(req).await);
    }
    let event = audit::event(now, audit::kind::ADMIN_CALL, "admin").ip(crate::extract::client_ip(
        req.headers(),
        req.extensions(),
        &state.config.trusted_proxies,
    ));
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let response = next.run(req).await;
    let detail = serde_json::json!({"method": method.as_str(), "path": audit::client_text(&path), "status": response.status().as_u16()});
    state.audit.record(event.detail(&detail)).await;
    Ok(response)
}
