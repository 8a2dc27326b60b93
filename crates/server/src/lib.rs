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
use axum::http::HeaderName;
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi as _;

pub mod accounts;
// Moved to their own crates; re-exported under their old names while the server is split.
pub use moat_cluster::redis as cluster;
pub use moat_cluster::{cache, ratelimit, replay};
pub use moat_core::{clock, names};
pub use moat_enroll::firebase;
pub use moat_gateway as gateway;
pub use moat_identity::{issuers, jwt};
pub use moat_observe::{audit, metrics, stats, usage};
pub mod admin;
pub mod attest;
pub mod cleanup;
pub mod config;
pub mod dashboard;
pub mod device;
pub mod enroll;
pub mod error;
pub mod extract;
pub mod middleware;
pub mod openapi;
pub mod secret_ref;
pub mod secrets;
pub mod serve;
pub mod sms;
pub mod state;
pub mod tokens;

pub use config::Config;
pub use state::AppState;

use crate::clock::Clock;
use crate::error::ApiError;
use crate::middleware::protect::{Protect, protect};

/// Header carrying the request id, set if the client did not send one and echoed back.
pub const REQUEST_ID: &str = "x-request-id";

/// `GET /healthz`: the process answers.
#[utoipa::path(get, path = "/healthz", responses((status = 200, body = openapi::Health)))]
async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// Ready when the store and (if configured) Redis answer: a load balancer stops sending
/// traffic to an instance that would only answer 503.
#[utoipa::path(get, path = "/readyz", responses((status = 200, body = openapi::Health)))]
async fn readyz(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    state.store.ping().await?;
    if let Some(redis) = &state.redis {
        redis
            .ping()
            .await
            .map_err(|_| ApiError::unavailable().with_member("dependency", "redis"))?;
    }
    Ok(axum::Json(serde_json::json!({"status": "ready"})))
}

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
    let device = get(device::device).route_layer(guard("/v1/device"));
    let echo = post(device::echo).route_layer(guard("/v1/device/echo"));
    let timeout = state.config.request_timeout;
    let router = Router::new()
        .route(
            "/api/register",
            post(accounts::register).route_layer(guard("/api/register")),
        )
        .route(
            "/api/register/confirm",
            post(accounts::register_confirm).route_layer(guard("/api/register/confirm")),
        )
        .route(
            "/api/resend_otp",
            post(accounts::resend).route_layer(guard("/api/resend_otp")),
        )
        .route(
            "/api/password/reset",
            post(accounts::reset).route_layer(guard("/api/password/reset")),
        )
        .route(
            "/api/password/reset/confirm",
            post(accounts::reset_confirm).route_layer(guard("/api/password/reset/confirm")),
        )
        .route(
            "/api/token",
            post(accounts::token).route_layer(guard("/api/token")),
        )
        .route("/api/me", get(accounts::me).route_layer(guard("/api/me")))
        .route(
            "/v1/attest/challenge",
            post(attest::challenge).route_layer(guard("/v1/attest/challenge")),
        )
        .route(
            "/v1/attest",
            post(attest::attest).route_layer(guard("/v1/attest")),
        )
        .route("/.well-known/jwks.json", get(accounts::jwks))
        .route(
            "/.well-known/moat-gateway-jwks.json",
            get(|State(st): State<AppState>| async move { axum::Json(st.gateway.jwks()) }),
        )
        .route("/v1/enroll", post(enroll::enroll))
        .route("/v1/enroll/confirm", post(enroll::confirm))
        .route("/v1/mailbox", get(enroll::mailbox))
        .route("/v1/device", device)
        .route("/v1/device/echo", echo)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route(
            "/openapi.json",
            get(|| async { axum::Json(openapi::ApiDoc::openapi()) }),
        )
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

/// Builds the configured SMS sender, resolving its secret references.
///
/// # Errors
/// [`ServerError::Setup`] naming the reference that cannot be read.
pub fn sms_sender(config: &Config) -> Result<Arc<dyn sms::sender::SmsSender>, ServerError> {
    use config::SmsSenderConfig as C;
    Ok(match &config.sms.sender {
        C::Outbox => Arc::new(sms::sender::Outbox),
        C::Twilio {
            base_url,
            account_sid,
            auth_token,
            from,
            messaging_service_sid,
            status_callback,
        } => Arc::new(sms::sender::Twilio {
            base_url: base_url.clone(),
            account_sid: account_sid.clone(),
            auth_token: secret_ref::resolve(auth_token)
                .map_err(|e| ServerError::Setup(format!("sms.twilio.auth_token: {e}")))?,
            from: from.clone(),
            messaging_service_sid: messaging_service_sid.clone(),
            status_callback: status_callback.clone(),
            http: sms::sender::http_client(),
        }),
        C::Webhook { url, secret } => Arc::new(sms::sender::Webhook {
            url: url.clone(),
            secret: secret_ref::resolve(secret)
                .map_err(|e| ServerError::Setup(format!("sms.webhook.secret: {e}")))?,
            http: sms::sender::http_client(),
        }),
    })
}

/// What a state is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Purpose {
    /// `moat serve`: everything; the store and the secrets are created on first start.
    Serve,
    /// Operator commands run against the store: gateway routes, the SMS sender and the
    /// attestation platforms' keys are left out (their secret references are not resolved),
    /// and unless `create` the store and a data key must exist already.
    Admin {
        /// Create the store and the secrets when there are none.
        create: bool,
    },
}

/// The lease held while an instance checks its data key against the store and creates the
/// first sealed keys: instances starting together on an empty store take turns, so the
/// second finds the first's keys (and refuses a different data key) instead of adding its
/// own.
const INIT_LEASE: &str = "init";
/// How long the init lease is held at most (a crashed holder frees it after this).
const INIT_LEASE_SECONDS: i64 = 30;
/// How long a start waits for another instance's init lease.
const INIT_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Where the deployment's data key is documented, for error messages.
const DATA_KEY_HELP: &str = "set server.data_key = \"env:NAME\" (or \"file:PATH\") on every \
     instance to the deployment's data key (base64url of 32 bytes; a single instance's is the \
     data_key of its secrets.json); see docs/deploy.md, \"Several instances\"";

/// Opens the store and loads (or creates) the secrets, for `moat serve`.
///
/// # Errors
/// [`ServerError`] if the data directory, secrets or store cannot be used.
pub async fn build_state(config: Config, clock: Arc<dyn Clock>) -> Result<AppState, ServerError> {
    build_state_for(config, clock, Purpose::Serve).await
}

/// Resolves `server.data_key`: base64url (padding allowed) of 32 bytes.
///
/// # Errors
/// [`ServerError::DataKey`] naming the reference (never the value) when it cannot be read or
/// is not a 32-byte key.
pub fn configured_data_key(reference: &str) -> Result<moat_core::secret::SecretBytes, ServerError> {
    let text = secret_ref::resolve(reference)
        .map_err(|e| ServerError::DataKey(format!("server.data_key: {e}")))?;
    let trimmed = String::from_utf8_lossy(text.expose())
        .trim()
        .trim_end_matches('=')
        .to_owned();
    match moat_core::b64::url_decode(&trimmed) {
        Ok(key) if key.len() == 32 => Ok(moat_core::secret::SecretBytes::new(key)),
        _ => Err(ServerError::DataKey(format!(
            "server.data_key: {reference} is not base64url of 32 bytes \
             (make one with `head -c 32 /dev/urandom | basenc --base64url`)"
        ))),
    }
}

/// One sealed record of the store (a token signing key, else an integrity secret), with
/// the associated data it was sealed with: what a data key must open.
async fn sealed_sample(
    opened: &moat_store::Opened,
) -> Result<Option<(String, Vec<u8>)>, ServerError> {
    if let Some(r) = opened.accounts.signing_keys().await?.into_iter().next() {
        return Ok(Some((r.kid, r.private_sealed)));
    }
    Ok(opened
        .attest
        .integrity_keys()
        .await?
        .into_iter()
        .next()
        .map(|r| (r.kid, r.secret_sealed)))
}

/// Opens the store and loads (or creates) the secrets.
///
/// The data key comes from `server.data_key` or the data dir's secrets file. A key is
/// generated (into the secrets file) only for a store that holds no sealed data; a key that
/// does not open what the store holds is refused (PROTOCOL section 11). The check and the
/// creation of the first sealed keys happen under the store's `init` lease, so instances
/// starting together on an empty store agree.
///
/// # Errors
/// [`ServerError`] if the data directory, secrets or store cannot be used,
/// [`ServerError::Missing`] for an admin state without `create` when there is no store or
/// no data key, [`ServerError::DataKey`] when the data key is missing or wrong.
#[allow(clippy::too_many_lines)]
pub async fn build_state_for(
    mut config: Config,
    clock: Arc<dyn Clock>,
    purpose: Purpose,
) -> Result<AppState, ServerError> {
    let shown = moat_store::shown_url(&config.store_url);
    let dir = config.data_dir.clone();
    let secrets_path = dir.join(secrets::FILE);
    // An admin command that may not create anything writes nothing into the data dir.
    let read_only = purpose == (Purpose::Admin { create: false });
    if read_only {
        if !moat_store::exists(&config.store_url).await? {
            return Err(ServerError::Missing(format!(
                "there is no store at {shown}: nothing was created (pass --config with the \
                 server's configuration, run where its data directory is, or add --create to \
                 create an empty store)"
            )));
        }
        if config.data_key.is_none() && !secrets_path.exists() {
            return Err(ServerError::Missing(format!(
                "the store at {shown} exists but this command has no data key: \
                 server.data_key is not set and there is no {} (pass --config with the \
                 server's configuration; nothing was created)",
                secrets_path.display()
            )));
        }
    }
    if let Purpose::Admin { .. } = purpose {
        // Admin commands use neither the gateway nor an SMS provider nor attestation keys:
        // an unset `env:MAPS_KEY` of a route must not stop a revocation.
        config.upstreams.clear();
        config.play_integrity = None;
    }
    // One crypto backend for JWTs too; the error only means it was installed already.
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    // rustls (Redis over TLS, PostgreSQL over TLS) uses the one crypto backend too.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let sender: Arc<dyn sms::sender::SmsSender> = match purpose {
        Purpose::Serve => sms_sender(&config)?,
        Purpose::Admin { .. } => Arc::new(sms::sender::Outbox),
    };
    let configured = config
        .data_key
        .as_deref()
        .map(configured_data_key)
        .transpose()?;
    // The data directory first (the SQLite store lives in it), then the store: no key is
    // generated before the store has been looked at.
    if !read_only || dir.exists() {
        secrets::prepare_dir(&dir)?;
    }
    let opened = moat_store::open(&config.store_url, &config.store_pool).await?;
    let holder = moat_core::random::token(12)
        .map_err(|_| ServerError::Setup("random generator failed".into()))?;
    let waited = std::time::Instant::now();
    loop {
        let now = clock.now();
        if opened
            .store
            .acquire_lease(INIT_LEASE, &holder, now, now + INIT_LEASE_SECONDS)
            .await?
        {
            break;
        }
        if waited.elapsed() > INIT_WAIT {
            return Err(ServerError::Setup(format!(
                "another instance has been setting up the store at {shown} for over a minute \
                 (its `init` lease); try again"
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let built = async {
        let sealed = sealed_sample(&opened).await?;
        let (secrets, created) = if read_only && !secrets_path.exists() {
            // `server.data_key` is set (checked above): the file's other values are not used.
            (secrets::unsaved()?, false)
        } else if configured.is_some() || sealed.is_none() || secrets_path.exists() {
            secrets::load_or_create_with(&dir, configured.is_none())?
        } else {
            return Err(ServerError::DataKey(format!(
                "the store at {shown} already holds sealed data, and this instance has no data \
                 key (server.data_key is not set and there is no {}); it will not generate a \
                 second key for that store: {DATA_KEY_HELP}",
                secrets_path.display()
            )));
        };
        let (data_key, source) = match configured {
            Some(key) => (
                key,
                format!(
                    "server.data_key ({})",
                    config.data_key.as_deref().unwrap_or("")
                ),
            ),
            None if secrets.data_key.is_empty() => {
                return Err(ServerError::DataKey(format!(
                    "{} holds no data key (it was written by an instance given \
                     server.data_key), and server.data_key is not set: {DATA_KEY_HELP}",
                    secrets_path.display()
                )));
            }
            None => (
                moat_core::secret::SecretBytes::new(moat_core::b64::url_decode(&secrets.data_key)?),
                if created {
                    format!("{}, generated at this start", secrets_path.display())
                } else {
                    secrets_path.display().to_string()
                },
            ),
        };
        let id = secrets::data_key_id(data_key.expose());
        let keys = state::Keys::new(&data_key, &secrets, &config)?;
        if let Some((kid, sealed)) = &sealed
            && keys.data.open(kid.as_bytes(), sealed).is_err()
        {
            return Err(ServerError::DataKey(format!(
                "the store at {shown} holds data sealed with another data key than this \
                 instance's ({id}, from {source}); this instance will not start with it: \
                 {DATA_KEY_HELP}"
            )));
        }
        tracing::info!(data_key = %id, source = %source, store = %shown, "data key");
        let redis = match &config.redis {
            Some(r) => Some(Arc::new(
                cluster::Redis::connect(r)
                    .await
                    .map_err(|e| ServerError::Setup(format!("redis: {e}")))?,
            )),
            None => None,
        };
        let state = AppState::new(
            config,
            opened.store.clone(),
            opened.accounts.clone(),
            opened.attest.clone(),
            opened.ops.clone(),
            sender,
            keys,
            clock.clone(),
            redis,
        )
        .map_err(|e| match e {
            ServerError::Setup(m) => ServerError::Setup(format!("starting: {m}")),
            other => other,
        })?;
        state
            .tokens
            .reload(&*state.accounts, &state.keys, state.now())
            .await
            .map_err(|e| ServerError::Setup(format!("loading token signing keys: {}", e.code())))?;
        state
            .integrity
            .reload(
                &*state.attest,
                &state.keys,
                state.keys.initial_integrity_secret.expose(),
                state.now(),
            )
            .await
            .map_err(|e| ServerError::Setup(format!("loading integrity secrets: {}", e.code())))?;
        Ok::<AppState, ServerError>(state)
    }
    .await;
    // Free the lease for the next instance (it expires by itself if this fails).
    let now = clock.now();
    if let Err(e) = opened
        .store
        .acquire_lease(INIT_LEASE, &holder, now, now)
        .await
    {
        tracing::warn!(error = %e, "could not free the init lease; it expires by itself");
    }
    let state = built?;
    state
        .decoys
        .reload(&*state.attest)
        .await
        .map_err(|e| ServerError::Setup(format!("loading registered package sizes: {e}")))?;
    Ok(state)
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
    let sms_worker = tokio::spawn(sms::worker::run(
        state.clone(),
        state.sms_sender.clone(),
        state.sms_notify.clone(),
        wait(rx.clone()),
    ));
    let public_srv: std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>> =
        match &state.config.tls {
            None => Box::pin(serve::serve(
                public,
                app(state.clone()),
                state.config.header_timeout,
                wait(rx.clone()),
            )),
            Some(tls) => {
                let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
                let config =
                    axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key)
                        .await
                        .map_err(|e| ServerError::Setup(format!("server.tls: {e}")))?;
                let handle = axum_server::Handle::new();
                let stopper = handle.clone();
                let mut stop_rx = rx.clone();
                tokio::spawn(async move {
                    let _ = stop_rx.wait_for(|stop| *stop).await;
                    stopper.graceful_shutdown(Some(std::time::Duration::from_secs(30)));
                });
                let mut server =
                    axum_server::from_tcp_rustls(public.into_std()?, config)?.handle(handle);
                // As in `serve`: without a timer hyper's header-read timeout never fires.
                server
                    .http_builder()
                    .http1()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(state.config.header_timeout);
                let make = app(state.clone())
                    .into_make_service_with_connect_info::<std::net::SocketAddr>();
                Box::pin(async move { server.serve(make).await })
            }
        };
    let admin_srv = serve::serve(
        admin,
        admin_app(state.clone()),
        state.config.header_timeout,
        wait(rx.clone()),
    );
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: draining in-flight requests");
        let _ = tx.send(true);
    });
    let (a, b) = tokio::join!(public_srv, admin_srv);
    let _ = jobs.await;
    let _ = sms_worker.await;
    a?;
    b?;
    Ok(())
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
