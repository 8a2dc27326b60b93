//! The routers of the public and admin listeners: the route table bound to its handlers, the
//! policy middleware on each protected endpoint and gateway route, and the layers every
//! request passes (sensitive-header marking, request id, tracing, panic to 500, timeout,
//! metrics and the target check).

use std::sync::Arc;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::State;
use axum::http::HeaderName;
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use moat_core::names;

use crate::error::{self, ApiError};
use crate::middleware::protect::{Protect, protect};
use crate::{AppState, admin, dashboard, extract, health, middleware};
use moat_gateway as gateway;
use moat_observe::{metrics, stats};

/// Header carrying the request id, set if the client did not send one and echoed back.
pub const REQUEST_ID: &str = "x-request-id";

/// Counts every public response by route and status (and problem code), and for the
/// dashboard: requests, latency and refusals per route, refusals by reason (problem code),
/// by client IP and by proven device. A refusal is Moat's own 401, 403 or 429 problem
/// response; an upstream's answer passed through is traffic, not a refusal.
async fn observe(
    State(state): State<AppState>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let route = state.metrics.route(
        req.extensions()
            .get::<axum::extract::MatchedPath>()
            .map(axum::extract::MatchedPath::as_str),
    );
    let ip = extract::client_ip(
        req.headers(),
        req.extensions(),
        &state.config.trusted_proxies,
    );
    req.extensions_mut().insert(extract::ClientIp(ip));
    // Before any policy runs: a path spelled so that Moat and an upstream would read it
    // differently is refused, so the policy is always that of the path the upstream serves.
    let checked = gateway::path::check_target(
        req.uri().path(),
        state
            .gateway
            .routes
            .iter()
            .map(|r| r.config.prefix.as_str()),
    );
    let response = match checked {
        Ok(()) => next.run(req).await,
        Err(refused) => ApiError::from(gateway::Error::Refused(refused.0)).into_response(),
    };
    let status = response.status().as_u16();
    let code = response
        .extensions()
        .get::<error::ProblemCode>()
        .map(|c| c.0.as_str());
    state.metrics.request(route, status, code);
    if let Some(code) = code
        && response.status().is_client_error()
    {
        // In the request's span (method, path, request id): an operator can find why a
        // client was refused from the id it reports.
        tracing::info!(status, code, "request refused");
    }
    let refused = code.filter(|_| stats::is_refusal(status));
    let now = state.now();
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    state.stats.request(now, route, micros, refused);
    if refused.is_some() {
        state
            .stats
            .add(now, stats::metric::REFUSED_IP, &ip.to_string(), 1);
        if let Some(device) = response
            .extensions()
            .get::<middleware::protect::RefusedDevice>()
        {
            state
                .stats
                .add(now, stats::metric::REFUSED_DEVICE, &device.0.to_string(), 1);
        }
    }
    response
}

/// `GET /metrics`: Prometheus text format, or OpenMetrics when `Accept` asks for it. The
/// mailbox backlog is sampled here, so it costs one count per scrape.
async fn metrics(
    State(state): State<AppState>,
    headers: http::HeaderMap,
) -> axum::response::Response {
    let backlog = metrics::timed(&state.metrics.store_latency, state.ops.mailbox_backlog());
    if let Ok(n) = backlog.await {
        state.metrics.mailbox_backlog.set(n);
    }
    let openmetrics = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let content_type = if openmetrics {
        metrics::OPENMETRICS_TYPE
    } else {
        metrics::PROMETHEUS_TYPE
    };
    (
        [(http::header::CONTENT_TYPE, content_type)],
        state.metrics.render(openmetrics),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        crate::error::Code::MethodNotAllowed,
        "method not allowed on this path",
    )
}

async fn timeout_error(err: tower::BoxError) -> ApiError {
    if err.is::<tower::timeout::error::Elapsed>() {
        ApiError::new(crate::error::Code::Unavailable, "request timed out").retry_after(1)
    } else {
        ApiError::internal(&err)
    }
}

fn protected(state: &AppState, path: &str) -> Protect {
    Protect::new(
        state.clone(),
        Arc::from(state.config.policy(path)),
        state.config.rate_limit(path),
        Arc::from(path),
    )
}

/// Adds the gateway's upstream routes: `prefix` and `prefix/…`, each behind its policy.
fn upstream_routes(mut router: Router<AppState>, state: &AppState) -> Router<AppState> {
    for route in &state.gateway.routes {
        let cfg = &route.config;
        let guard = Protect::new(
            state.clone(),
            Arc::from(cfg.require.clone()),
            cfg.rate_limit,
            Arc::from(cfg.prefix.as_str()),
        )
        .with_body_limit(cfg.max_body_bytes.unwrap_or(state.config.max_body_bytes));
        let (gateway, route) = (state.gateway.clone(), route.clone());
        let handler = move |State(st): State<AppState>,
                            ip: extract::ClientIp,
                            req: axum::extract::Request| {
            let (gateway, route) = (gateway.clone(), route.clone());
            async move {
                let trusted_proxy = req
                    .extensions()
                    .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                    .is_some_and(|c| st.config.trusted_proxies.contains(&c.0.ip()));
                let peer = gateway::Peer {
                    ip: ip.0,
                    trusted_proxy,
                };
                gateway
                    .forward(&route, peer, st.now(), req)
                    .await
                    .map_err(ApiError::from)
            }
        };
        // `any` is a fallback-style method router, so the policy layer goes on a sub-router
        // holding just this route's two paths.
        // `prefix/` is a route of its own: the catch-all needs at least one character, and
        // without it `/events/admin/` fell to the weaker `/events` route.
        let sub = Router::new()
            .route(&cfg.prefix, axum::routing::any(handler.clone()))
            .route(
                &format!("{}/", cfg.prefix),
                axum::routing::any(handler.clone()),
            )
            .route(
                &format!("{}/{{*rest}}", cfg.prefix),
                axum::routing::any(handler),
            )
            .route_layer(from_fn_with_state(guard, protect));
        router = router.merge(sub);
    }
    router
}

/// Request ids: a random per-process prefix and a counter. Unique within a deployment with
/// overwhelming probability, and free of the syscall a random UUID per request costs.
#[derive(Clone)]
struct MakeId {
    prefix: Arc<str>,
    counter: Arc<std::sync::atomic::AtomicU64>,
}

impl MakeId {
    fn new() -> Self {
        let prefix = moat_core::random::token(6).unwrap_or_else(|_| "moat".into());
        Self {
            prefix: Arc::from(prefix),
            counter: Arc::default(),
        }
    }
}

impl MakeRequestId for MakeId {
    fn make_request_id<B>(&mut self, _request: &http::Request<B>) -> Option<RequestId> {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        http::HeaderValue::from_str(&format!("{}-{n:x}", self.prefix))
            .ok()
            .map(RequestId::new)
    }
}

/// The span every log line of a request is written in: method, path (never the query, which
/// may carry a code) and the request id also returned in `x-request-id`, so a client's report
/// of a failure leads to its log lines.
fn request_span<B>(req: &http::Request<B>) -> tracing::Span {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        request_id = %id,
    )
}

/// Headers that carry credentials: marked sensitive so no trace layer or debug print shows
/// their values.
static SENSITIVE: [&HeaderName; 5] = [
    &http::header::AUTHORIZATION,
    &names::MOAT_DEVICE_KEY,
    &names::DPOP,
    &names::SIGNATURE,
    &names::MOAT_INTEGRITY,
];

/// Marks [`SENSITIVE`] headers in one pass over the request's headers (tower-http's layer
/// looks each name up in turn, several hash lookups per request).
fn mark_sensitive<B>(mut req: http::Request<B>) -> http::Request<B> {
    for (name, value) in req.headers_mut().iter_mut() {
        if SENSITIVE.contains(&name) {
            value.set_sensitive(true);
        }
    }
    req
}

/// Shared outer layers, outermost first: sensitive-header marking (before anything can log),
/// request id (so every log line and response carries it), tracing, panic to 500, then the
/// request timeout.
fn edge<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    timeout: std::time::Duration,
) -> Router<S> {
    let request_id = HeaderName::from_static(REQUEST_ID);
    router.layer(
        ServiceBuilder::new()
            .layer(tower::util::MapRequestLayer::new(mark_sensitive))
            .layer(SetRequestIdLayer::new(request_id.clone(), MakeId::new()))
            .layer(PropagateRequestIdLayer::new(request_id))
            .layer(TraceLayer::new_for_http().make_span_with(request_span))
            .layer(CatchPanicLayer::custom(|_| {
                ApiError::internal(&"handler panicked").into_response()
            }))
            .layer(HandleErrorLayer::new(timeout_error))
            .layer(tower::timeout::TimeoutLayer::new(timeout)),
    )
}

/// The public router.
pub fn app(state: AppState) -> Router {
    let guard = |path: &str| from_fn_with_state(protected(&state, path), protect);
    let timeout = state.config.request_timeout;
    let mut router = Router::new();
    for binding in crate::endpoints::bindings() {
        let handler = match crate::routes::find(&binding.path).map(|e| e.guard) {
            Some(crate::routes::Guard::Policy(_)) => {
                binding.handler.route_layer(guard(&binding.path))
            }
            Some(_) => binding.handler,
            // A handler whose annotation names a path the table does not know: a build
            // mistake the endpoints test catches; never serve it unguarded.
            None => panic!("{} is not in the route table", binding.path),
        };
        router = router.route(&binding.path, handler);
    }
    let router = router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    let router = upstream_routes(router, &state)
        .layer(from_fn_with_state(state.clone(), observe))
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
        .route("/admin/v1/sms/outbox", get(admin::sms_outbox))
        .route("/admin/v1/sms/messages", get(admin::sms_messages))
        .route("/admin/v1/keys/rotate", post(admin::rotate_keys))
        .route("/admin/v1/apps", get(admin::list_apps))
        .route(
            "/admin/v1/apps/{app_id}/{version}",
            axum::routing::put(admin::register_app)
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route(
            "/admin/v1/apps/{app_id}/{version}/retire",
            post(admin::retire_app),
        )
        .route("/admin/v1/integrity/rotate", post(admin::rotate_integrity))
        .route("/admin/v1/audit", get(admin::audit_log))
        .route("/admin/v1/stats", get(admin::stats))
        .route_layer(from_fn_with_state(
            state.clone(),
            middleware::admin_auth::require_admin,
        ));
    let router = Router::new()
        .merge(authed)
        .route("/metrics", get(metrics))
        .route("/admin", get(dashboard::redirect))
        .route("/admin/", get(dashboard::index))
        .route("/admin/dashboard.js", get(dashboard::script))
        .route("/admin/dashboard.css", get(dashboard::style))
        .route("/admin/favicon.svg", get(dashboard::icon))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    edge(router, timeout)
}

#[cfg(test)]
mod tests {
    #[test]
    fn credential_headers_are_marked_sensitive_and_others_are_not() {
        let req = http::Request::builder()
            .header("authorization", "Bearer t")
            .header("moat-device-key", "k")
            .header("signature", "moat=:AA==:")
            .header("moat-integrity", "i")
            .header("dpop", "p")
            .header("accept", "*/*")
            .body(())
            .expect("request");
        let req = super::mark_sensitive(req);
        for (name, value) in req.headers() {
            assert_eq!(value.is_sensitive(), name != "accept", "{name}");
        }
    }
}
