//! The Moat HTTP server.
//!
//! # Layout
//! - [`config`]: two-phase configuration (raw TOML + environment → validated [`Config`]).
//! - [`secrets`]: server secrets generated into the data directory on first start.
//! - [`state`]: [`AppState`], shared by handlers and middleware.
//! - [`enroll`]: the open enrollment endpoint, OTP confirmation and the built-in mailbox.
//! - [`middleware::protect`]: route policies (`device`, `signature`), JWE bodies.
//! - [`device`]: the diagnostic endpoints.
//! - [`admin`]: the admin listener.
//! - [`cleanup`]: the periodic cleanup job.
//! - [`error`]: the single mapping of failures to `application/problem+json`.
//!
//! [`app`] and [`admin_app`] build the routers from state, so tests drive them without a
//! socket; [`run`] serves both on listeners the caller bound (port 0 in tests).

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::State;
use axum::http::{HeaderName, StatusCode};
use axum::middleware::{from_fn_with_state};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi as _;

pub mod admin;
pub mod cleanup;
pub mod clock;
pub mod config;
pub mod device;
pub mod enroll;
pub mod error;
pub mod extract;
pub mod middleware;
pub mod openapi;
pub mod replay;
pub mod rsa_pool;
pub mod secrets;
pub mod state;
pub mod usage;

pub use config::Config;
pub use state::AppState;

use crate::clock::Clock;
use crate::error::ApiError;
use crate::middleware::protect::{Protect, protect};

/// Header carrying the request id, set if the client did not send one and echoed back.
pub const REQUEST_ID: &str = "x-request-id";

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    state.store.ping().await?;
    Ok(axum::Json(serde_json::json!({"status": "ready"})))
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this path")
}

async fn timeout_error(err: tower::BoxError) -> ApiError {
    if err.is::<tower::timeout::error::Elapsed>() {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "request timed out").retry_after(1)
    } else {
        ApiError::internal(&err)
    }
}

fn protected(state: &AppState, path: &str) -> Protect {
    Protect { state: state.clone(), policy: Arc::from(state.config.policy(path)) }
}

/// Headers that carry credentials: marked sensitive so no trace layer or debug print shows
/// their values.
const SENSITIVE: [&str; 5] = ["authorization", "moat-device-key", "dpop", "signature", "moat-integrity"];

/// Shared outer layers, outermost first: sensitive-header marking (before anything can log),
/// request id (so every log line and response carries it), tracing, panic to 500, then the
/// request timeout.
fn edge<S: Clone + Send + Sync + 'static>(router: Router<S>, timeout: std::time::Duration) -> Router<S> {
    let request_id = HeaderName::from_static(REQUEST_ID);
    router.layer(
        ServiceBuilder::new()
            .layer(SetSensitiveRequestHeadersLayer::new(SENSITIVE.map(HeaderName::from_static)))
            .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
            .layer(PropagateRequestIdLayer::new(request_id))
            .layer(TraceLayer::new_for_http())
            .layer(CatchPanicLayer::custom(|_| ApiError::internal(&"handler panicked").into_response()))
            .layer(HandleErrorLayer::new(timeout_error))
            .layer(tower::timeout::TimeoutLayer::new(timeout)),
    )
}

/// The public router.
pub fn app(state: AppState) -> Router {
    let device = get(device::device).route_layer(from_fn_with_state(protected(&state, "/v1/device"), protect));
    let echo = post(device::echo).route_layer(from_fn_with_state(protected(&state, "/v1/device/echo"), protect));
    let timeout = state.config.request_timeout;
    let router = Router::new()
        .route("/v1/enroll", post(enroll::enroll))
        .route("/v1/enroll/confirm", post(enroll::confirm))
        .route("/v1/mailbox", get(enroll::mailbox))
        .route("/v1/device", device)
        .route("/v1/device/echo", echo)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(|| async { axum::Json(openapi::ApiDoc::openapi()) }))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    edge(router, timeout)
}

/// The admin router (bearer `admin.token` on everything but the health checks).
pub fn admin_app(state: AppState) -> Router {
    let timeout = state.config.request_timeout;
    let authed = Router::new()
        .route("/admin/v1/devices", get(admin::list_devices))
        .route("/admin/v1/devices/{id}", get(admin::get_device))
        .route("/admin/v1/devices/{id}/revoke", post(admin::revoke_device))
        .route("/admin/v1/cleanup", post(admin::cleanup))
        .route_layer(from_fn_with_state(state.clone(), middleware::admin_auth::require_admin));
    let router = Router::new()
        .merge(authed)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    edge(router, timeout)
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Secrets file problem.
    #[error(transparent)]
    Secrets(#[from] secrets::SecretsError),
    /// Store could not be opened.
    #[error("store: {0}")]
    Store(#[from] moat_store::StoreError),
    /// Key material problem.
    #[error("keys: {0}")]
    Keys(#[from] moat_core::Error),
    /// Socket error.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Opens the store and loads (or creates) the secrets.
///
/// # Errors
/// [`ServerError`] if the data directory, secrets or store cannot be used.
pub async fn build_state(config: Config, clock: Arc<dyn Clock>) -> Result<AppState, ServerError> {
    let secrets = secrets::load_or_create(&config.data_dir)?;
    let keys = state::Keys::new(&secrets, &config)?;
    let store = moat_store::sqlite::SqliteStore::open(&config.store_url, &moat_store::sqlite::SqliteOptions::default()).await?;
    Ok(AppState::new(config, Arc::new(store), keys, clock))
}

/// Serves the public and admin routers until `shutdown` resolves, then drains in-flight
/// requests and flushes last-use times.
///
/// # Errors
/// [`ServerError::Io`] if serving fails.
pub async fn run(
    state: AppState,
    public: TcpListener,
    admin: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    tracing::info!(public = %public.local_addr()?, admin = %admin.local_addr()?, mode = state.config.mode.as_str(), "moat listening");
    let jobs = tokio::spawn(cleanup::run_periodic(state.clone(), wait(rx.clone())));
    let public_srv = axum::serve(public, app(state.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(wait(rx.clone()));
    let admin_srv = axum::serve(admin, admin_app(state.clone())).with_graceful_shutdown(wait(rx.clone()));
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: draining in-flight requests");
        let _ = tx.send(true);
    });
    let (a, b) = tokio::join!(public_srv.into_future(), admin_srv.into_future());
    let _ = jobs.await;
    a?;
    b?;
    Ok(())
}
