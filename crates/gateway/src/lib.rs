//! The gateway (PROTOCOL sections 4 and 8): `[[route]]` entries with an `upstream` put Moat in
//! front of an existing backend or a third-party API.
//!
//! A request reaches [`forward`] only after the route's policy passed (the same middleware as
//! Moat's own endpoints, so signatures, device keys, user tokens, JWE bodies and rate limits
//! all apply). Forwarding then:
//! - joins the path after the prefix onto the fixed upstream base, refusing traversal,
//!   encoded slashes and absolute-form targets ([`path`]);
//! - removes hop-by-hop headers, the client's `Moat-Device`/`Moat-User` (then sets the verified
//!   ones), the device's own credentials (unless `forward_credentials`), and untrusted
//!   `Forwarded`/`X-Forwarded-*` (then adds this hop) ([`headers`]);
//! - injects the route's third-party secrets (`inject_headers`, `inject_query`, from `env:` or
//!   `file:` references), replacing anything the client sent under those names;
//! - optionally signs the request (RFC 9421, Ed25519 gateway key) so the upstream can check it
//!   came through Moat;
//! - streams successful responses back; redirects and error responses are checked for the
//!   injected secrets, which are removed, so an upstream that echoes its API key cannot hand
//!   it to the phone.
//!
//! The upstream client is hyper-util's pooled client with rustls (HTTP/2 by ALPN to TLS
//! upstreams, Mozilla's roots): no redirects, no system proxy, and none of the per-request
//! layers a general HTTP client adds (measured: reqwest cost noticeably more CPU per request).

mod forward;
pub mod headers;
pub mod path;

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use axum::body::Body;
use axum::http::uri::{Authority, Scheme};
use axum::http::{HeaderName, HeaderValue, Method};
use moat_core::dpop::InstallationKey;
use moat_core::secret::SecretBytes;

use moat_policy::Requirement;

pub use forward::Peer;
use forward::secrets_of;

/// Largest error or redirect body inspected for leaked secrets; larger ones are refused.
pub const MAX_INSPECTED_BODY: usize = 1024 * 1024;
/// `keyid` of the gateway's forwarding signatures.
pub const GATEWAY_KEY_ID: &str = "moat-gateway";

pub use moat_policy::{RateKey, RateLimit};

/// An upstream route as configured (secrets still as references).
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// Path prefix, e.g. `/proxy/maps`.
    pub prefix: String,
    /// Upstream base URL.
    pub upstream: reqwest::Url,
    /// Requirements.
    pub require: Vec<Requirement>,
    /// Allowed methods (all if `None`).
    pub methods: Option<Vec<Method>>,
    /// Header name → secret reference.
    pub inject_headers: Vec<(HeaderName, String)>,
    /// Query parameter → secret reference.
    pub inject_query: Vec<(String, String)>,
    /// Rate limit.
    pub rate_limit: Option<RateLimit>,
    /// Upstream timeout.
    pub timeout: Duration,
    /// Pass the device's credential headers upstream.
    pub forward_credentials: bool,
    /// Sign forwarded requests with the gateway key.
    pub sign: bool,
    /// The route's own body limit (`max_body_bytes`), else `server.max_body_bytes`.
    pub max_body_bytes: Option<usize>,
    /// Pass the upstream's `Server` and `X-Powered-By` headers to the client
    /// (`pass_server_header`); by default they are removed, as they tell an attacker what
    /// runs behind the gateway.
    pub pass_server_header: bool,
}

/// An upstream route ready to serve (secrets resolved).
pub struct Upstream {
    /// The configuration.
    pub config: UpstreamConfig,
    headers: Vec<(HeaderName, SecretBytes)>,
    query: Vec<(String, SecretBytes)>,
    /// The upstream's scheme, authority and base path (no trailing `/`), split once so a
    /// forwarded request's URI is one string join, not a URL parse.
    scheme: Scheme,
    authority: Authority,
    base_path: String,
    /// The injected secrets as they could appear in a response, for the leak check.
    secrets: Vec<Vec<u8>>,
    /// The names of the injected headers: a client's header of one of these names, in any
    /// spelling, never reaches the upstream beside the injected value.
    injected_names: Vec<HeaderName>,
}

/// Deployment-wide values the gateway needs on every forwarded request.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `http` or `https`, of `server.public_base_url`: the scheme upstreams are told.
    pub public_scheme: &'static str,
    /// The host (and non-default port) of `server.public_base_url`: the host upstreams are
    /// told, never the client's `Host`.
    pub public_authority: String,
    /// `server.max_body_bytes`, for routes without a `max_body_bytes` of their own.
    pub max_body_bytes: usize,
}

/// Why a request was not forwarded, or its answer not passed on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request target Moat and the upstream could read differently, or that leaves the
    /// route: the reason is safe to show.
    #[error("request target refused: {0}")]
    Refused(&'static str),
    /// The route allows other methods only (`allow` lists them, for RFC 9110's `Allow`).
    #[error("method not allowed on this route")]
    MethodNotAllowed {
        /// The route's methods, comma-separated.
        allow: String,
    },
    /// The body is over the route's limit (bytes).
    #[error("request body exceeds {0} bytes")]
    BodyTooLarge(usize),
    /// The upstream did not answer within the route's timeout.
    #[error("the upstream did not answer in time")]
    UpstreamTimeout,
    /// The upstream could not be reached, or its answer could not be passed on safely.
    #[error("{0}")]
    BadGateway(&'static str),
    /// Signing the forwarded request failed.
    #[error(transparent)]
    Core(#[from] moat_core::Error),
    /// A failure inside the gateway (logged, never shown).
    #[error("{0}")]
    Internal(String),
}

type UpstreamClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Body,
>;

/// The gateway: its routes, upstream client and signing key.
pub struct Gateway {
    /// Routes, in configuration order.
    pub routes: Vec<Arc<Upstream>>,
    settings: Settings,
    http: UpstreamClient,
    signer: InstallationKey,
    jwks: serde_json::Value,
}

impl Gateway {
    /// Resolves the routes' secrets with `resolve` (the server's `env:`/`file:` references)
    /// and derives the gateway signing key from the data key.
    ///
    /// # Errors
    /// A message naming the route and reference that cannot be read.
    pub fn new(
        configs: &[UpstreamConfig],
        data_key: &[u8],
        settings: Settings,
        resolve: &dyn Fn(&str) -> Result<SecretBytes, String>,
    ) -> Result<Self, String> {
        let mut routes = Vec::new();
        for c in configs {
            let mut headers = Vec::new();
            for (name, reference) in &c.inject_headers {
                let value = resolve(reference)
                    .map_err(|e| format!("route {}: inject_headers.{name}: {e}", c.prefix))?;
                HeaderValue::from_bytes(value.expose()).map_err(|_| {
                    format!(
                        "route {}: inject_headers.{name}: not a valid header value",
                        c.prefix
                    )
                })?;
                headers.push((name.clone(), value));
            }
            let mut query = Vec::new();
            for (name, reference) in &c.inject_query {
                let value = resolve(reference)
                    .map_err(|e| format!("route {}: inject_query.{name}: {e}", c.prefix))?;
                query.push((name.clone(), value));
            }
            let url = &c.upstream;
            let scheme = Scheme::try_from(url.scheme())
                .map_err(|_| format!("route {}: upstream scheme", c.prefix))?;
            // `host_str` keeps the brackets of an IPv6 literal.
            let host = url
                .host_str()
                .ok_or_else(|| format!("route {}: upstream has no host", c.prefix))?
                .to_owned();
            let authority = match url.port() {
                Some(p) => format!("{host}:{p}"),
                None => host,
            };
            let authority = Authority::try_from(authority.as_str())
                .map_err(|_| format!("route {}: upstream authority", c.prefix))?;
            routes.push(Arc::new(Upstream {
                config: c.clone(),
                secrets: secrets_of(&headers, &query),
                // Dash-spelled, as client names are judged: an injected `x_api_key` and a
                // client's `X-Api-Key` are one header to CGI, PHP and nginx with underscores.
                injected_names: headers
                    .iter()
                    .filter_map(|(n, _)| {
                        HeaderName::from_bytes(n.as_str().replace('_', "-").as_bytes()).ok()
                    })
                    .collect(),
                headers,
                query,
                scheme,
                authority,
                base_path: url.path().trim_end_matches('/').to_owned(),
            }));
        }
        // The gateway key is derived from the data key (one secret to back up): the Ed25519
        // seed is HMAC-SHA-256(data key, label).
        let seed = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, data_key),
            b"moat gateway signing key v1",
        );
        let pair = Ed25519KeyPair::from_seed_unchecked(seed.as_ref())
            .map_err(|_| "gateway key".to_owned())?;
        let mut x = [0u8; 32];
        x.copy_from_slice(pair.public_key().as_ref());
        let mut jwk = moat_core::jwk::PublicJwk::Ed25519 { x }.to_json();
        jwk["kid"] = GATEWAY_KEY_ID.into();
        jwk["alg"] = "EdDSA".into();
        jwk["use"] = "sig".into();
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut plain = hyper_util::client::legacy::connect::HttpConnector::new();
        plain.set_connect_timeout(Some(Duration::from_secs(5)));
        plain.set_nodelay(true);
        plain.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(plain);
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_max_idle_per_host(256)
                .build(https);
        Ok(Self {
            routes,
            settings,
            http,
            signer: InstallationKey::Ed25519(pair),
            jwks: serde_json::json!({"keys": [jwk]}),
        })
    }

    /// The public key upstreams use to check forwarded requests (`keyid` `moat-gateway`).
    pub fn jwks(&self) -> serde_json::Value {
        self.jwks.clone()
    }
}
