//! Route policies (PROTOCOL section 4) as axum middleware.
//!
//! The checks themselves, and their order with its rationale, are `moat_policy::Verifier`'s
//! (see the `moat_policy` crate documentation). This middleware only feeds them: the
//! credential headers are screened before the body is read, the body is read within the
//! route's limit, the verifier checks every requirement of the route's policy, and only then
//! is the handler called, with a [`Principal`] in the request extensions (and the decrypted
//! body, when a JWE was sent). A request that fails any check never reaches the handler.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use moat_core::names;
use moat_gateway::RateLimit;
use moat_policy::{Now, RateLimitHeaders, Route};

use crate::config::Requirement;
use crate::error::ApiError;
use crate::extract::{body_bytes, client_ip};
use crate::state::AppState;

pub use moat_policy::{Principal, UserPrincipal, Via};

pub use moat_policy::CachedCredential;

/// Middleware state: the app state plus this route's policy.
#[derive(Clone)]
pub struct Protect {
    /// App state.
    pub state: AppState,
    /// The route's requirements, rate limit and name.
    pub route: Route,
    /// Largest request body, bytes: the route's own limit or `server.max_body_bytes`.
    body_limit: usize,
}

impl Protect {
    /// The same policy with its own body limit (a gateway route's `max_body_bytes`).
    #[must_use]
    pub fn with_body_limit(mut self, limit: usize) -> Self {
        self.body_limit = limit;
        self
    }

    /// The policy of `route`: every requirement in `policy`, then `rate_limit`.
    pub fn new(
        state: AppState,
        policy: Arc<[Requirement]>,
        rate_limit: Option<RateLimit>,
        route: Arc<str>,
    ) -> Self {
        Self {
            body_limit: state.config.max_body_bytes,
            state,
            route: Route::new(policy, rate_limit, route),
        }
    }
}

/// The middleware function.
///
/// # Errors
/// The problem of the first failed requirement.
pub async fn protect(State(p): State<Protect>, req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let mut proven = None;
    let outcome = checked(&p, req, &mut proven).await;
    p.state
        .metrics
        .verification
        .observe(started.elapsed().as_secs_f64());
    match outcome {
        Ok((req, limit_headers)) => {
            let mut response = next.run(req).await;
            if let Some(RateLimitHeaders { policy, remaining }) = limit_headers {
                response
                    .headers_mut()
                    .insert(names::RATELIMIT_POLICY.clone(), policy);
                response
                    .headers_mut()
                    .insert(names::RATELIMIT.clone(), remaining);
            }
            response
        }
        Err(e) => {
            let mut response = axum::response::IntoResponse::into_response(e);
            if let Some(id) = proven {
                response.extensions_mut().insert(RefusedDevice(id));
            }
            response
        }
    }
}

/// On a refusal: the device whose credential was proven before a later check refused the
/// request (revoked, replayed, rate limited, missing integrity…). Never set from an unproven
/// claim, so nobody can make another device look abusive.
#[derive(Clone, Copy, Debug)]
pub struct RefusedDevice(pub uuid::Uuid);

/// Screens the headers, reads the body, has the verifier check the route's policy; the
/// request to pass on, or the refusal.
async fn checked(
    p: &Protect,
    req: Request,
    proven: &mut Option<uuid::Uuid>,
) -> Result<(Request, Option<RateLimitHeaders>), ApiError> {
    let state = &p.state;
    let verifier = &state.verifier;
    let (mut parts, body) = req.into_parts();
    verifier.screen(&parts.headers)?;
    let body = body_bytes(body, p.body_limit).await?;
    // One clock read: `now_ms` is the clock's seconds times 1000 plus the sub-second part.
    let millis = state.now_ms();
    let now = Now {
        secs: millis.div_euclid(1000),
        millis,
    };
    let trusted = &state.config.trusted_proxies;
    let verified = verifier
        .verify(
            &p.route,
            &parts,
            body,
            now,
            || client_ip(&parts.headers, &parts.extensions, trusted),
            proven,
        )
        .await?;
    if verified.decrypted {
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        parts.headers.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from(verified.body.len()),
        );
    }
    parts.extensions.insert(verified.principal);
    Ok((
        Request::from_parts(parts, Body::from(verified.body)),
        verified.rate_limit,
    ))
}
