//! `GET /healthz` and `GET /readyz`, on both listeners.

use axum::extract::State;
use axum::response::IntoResponse;

use crate::AppState;
use crate::error::ApiError;

/// `GET /healthz`: the process answers.
#[utoipa::path(get, path = crate::routes::HEALTHZ, responses((status = 200, body = crate::schemas::Health)))]
pub(crate) async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// Ready when the store and (if configured) Redis answer: a load balancer stops sending
/// traffic to an instance that would only answer 503.
#[utoipa::path(get, path = crate::routes::READYZ, responses((status = 200, body = crate::schemas::Health)))]
pub(crate) async fn readyz(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    state.store.ping().await?;
    if let Some(redis) = &state.redis {
        redis
            .ping()
            .await
            .map_err(|_| ApiError::unavailable().with_member("dependency", "redis"))?;
    }
    Ok(axum::Json(serde_json::json!({"status": "ready"})))
}
