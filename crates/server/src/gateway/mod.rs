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

pub mod headers;
pub mod path;

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::uri::{Authority, PathAndQuery, Scheme};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version, header};
use axum::response::{IntoResponse, Response};
use moat_core::dpop::InstallationKey;
use moat_core::httpsig::{self, Message, Params, SigningKey};
use moat_core::secret::SecretBytes;

use crate::config::Requirement;
use crate::error::ApiError;
use crate::extract::ClientIp;
use crate::middleware::protect::Principal;
use crate::names;
use crate::state::AppState;

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

type UpstreamClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Body,
>;

/// The gateway: its routes, upstream client and signing key.
pub struct Gateway {
    /// Routes, in configuration order.
    pub routes: Vec<Arc<Upstream>>,
    http: UpstreamClient,
    signer: InstallationKey,
    jwks: serde_json::Value,
}

impl Gateway {
    /// Resolves the routes' secrets and derives the gateway signing key from the data key.
    ///
    /// # Errors
    /// A message naming the route and reference that cannot be read.
    pub fn new(configs: &[UpstreamConfig], data_key: &[u8]) -> Result<Self, String> {
        let mut routes = Vec::new();
        for c in configs {
            let mut headers = Vec::new();
            for (name, reference) in &c.inject_headers {
                let value = crate::secret_ref::resolve(reference)
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
                let value = crate::secret_ref::resolve(reference)
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

/// Whether a query or form name, percent-decoded as frameworks decode it, is `_method` in
/// any letter case (`_METHOD`, `%5Fmethod`, `_m%65thod`). Decoded on the fly: no allocation
/// on the request path.
fn is_method_param(name: &[u8]) -> bool {
    const TARGET: &[u8] = b"_method";
    let mut decoded = 0;
    let mut i = 0;
    while i < name.len() {
        let byte = match name[i] {
            b'%' => {
                let hex = |j: usize| name.get(j).and_then(|b| char::from(*b).to_digit(16));
                let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
                    return false;
                };
                i += 3;
                u8::try_from(hi << 4 | lo).unwrap_or(0)
            }
            b => {
                i += 1;
                b
            }
        };
        if TARGET
            .get(decoded)
            .is_none_or(|t| !t.eq_ignore_ascii_case(&byte))
        {
            return false;
        }
        decoded += 1;
    }
    decoded == TARGET.len()
}

/// Whether a query string or form body names `_method`. Pairs are split on `&` and on `;`,
/// which some parsers also take as a separator.
fn names_method(pairs: &[u8]) -> bool {
    pairs
        .split(|b| *b == b'&' || *b == b';')
        .filter_map(|pair| pair.split(|b| *b == b'=').next())
        .any(is_method_param)
}

/// Whether a form or multipart body carries a `_method` field.
fn has_method_field(headers: &HeaderMap, body: &[u8]) -> bool {
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if kind.starts_with("application/x-www-form-urlencoded") {
        return names_method(body);
    }
    if kind.starts_with("multipart/form-data") {
        // A part named `_method`; quoted or not, in any case (compared in place, not on a
        // lower-cased copy of a body that may be megabytes).
        return [&b"name=\"_method\""[..], b"name=_method"]
            .iter()
            .any(|needle| {
                body.windows(needle.len())
                    .any(|w| w.eq_ignore_ascii_case(needle))
            });
    }
    false
}

/// `400 malformed` for a request target the gateway will not forward.
pub fn refuse(detail: &str) -> ApiError {
    ApiError::malformed(format!("request target refused: {detail}"))
}

/// The injected secrets as they could appear in a response: as resolved, and
/// form-encoded when that differs.
fn secrets_of(
    headers: &[(HeaderName, SecretBytes)],
    query: &[(String, SecretBytes)],
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for v in headers
        .iter()
        .map(|(_, v)| v)
        .chain(query.iter().map(|(_, v)| v))
    {
        out.push(v.expose().to_vec());
        let encoded: String =
            serde_urlencoded::to_string([("", String::from_utf8_lossy(v.expose()))])
                .unwrap_or_default();
        if let Some(e) = encoded.strip_prefix('=')
            && e.as_bytes() != v.expose()
        {
            out.push(e.as_bytes().to_vec());
        }
    }
    out.retain(|s| s.len() >= 4);
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn redact(body: &[u8], secrets: &[Vec<u8>]) -> (Vec<u8>, bool) {
    let mut out = body.to_vec();
    let mut changed = false;
    for s in secrets {
        let mut i = 0;
        let mut next = Vec::with_capacity(out.len());
        while i < out.len() {
            if out.len() - i >= s.len() && out[i..i + s.len()] == s[..] {
                next.extend_from_slice(b"[redacted]");
                i += s.len();
                changed = true;
            } else {
                next.push(out[i]);
                i += 1;
            }
        }
        out = next;
    }
    (out, changed)
}

/// Forwards one request that passed the route's policy.
///
/// # Errors
/// `400` for refused targets, `405` for methods not allowed, `502`/`504` for upstream
/// failures.
pub async fn forward(
    state: AppState,
    gateway: Arc<Gateway>,
    route: Arc<Upstream>,
    ip: ClientIp,
    req: Request,
) -> Result<Response, ApiError> {
    let cfg = &route.config;
    let (parts, body) = req.into_parts();
    if let Some(methods) = &cfg.methods
        && !methods.contains(&parts.method)
    {
        // RFC 9110 section 15.5.6: a 405 lists the methods the target allows.
        let allow = methods
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let mut refused = ApiError::new(
            crate::error::Code::MethodNotAllowed,
            "method not allowed on this route",
        );
        if let Ok(v) = HeaderValue::from_str(&allow) {
            refused = refused.with_header("allow", v);
        }
        return Err(refused);
    }
    // An absolute-form target (`GET http://other/ HTTP/1.1`) would let a client name its own
    // upstream; HTTP/2 always carries scheme and authority, which Moat ignores.
    if parts.version <= Version::HTTP_11 && parts.uri.authority().is_some() {
        return Err(refuse("absolute-form request target"));
    }
    if cfg.methods.is_some()
        && parts
            .uri
            .query()
            .is_some_and(|q| names_method(q.as_bytes()))
    {
        // Laravel, Symfony and Express's method-override read `_method` from the query (or a
        // form body, checked below) and run that method instead.
        return Err(refuse("`_method` on a route limited to some methods"));
    }
    let path = parts.uri.path();
    let rest = path
        .strip_prefix(cfg.prefix.as_str())
        .ok_or_else(|| refuse("path outside the route"))?;
    path::check_rest(rest).map_err(|e| refuse(e.0))?;

    let query: Option<std::borrow::Cow<'_, str>> = if route.query.is_empty() {
        // Nothing to inject: pass the client's query through as sent.
        parts.uri.query().map(std::borrow::Cow::Borrowed)
    } else {
        let injected: Vec<&str> = route.query.iter().map(|(n, _)| n.as_str()).collect();
        // The client's query is decoded and written again, so the upstream reads the pairs
        // Moat read. Two spellings survive that: `;`, a pair separator to some parsers
        // (older Python, some Java), refused; and case, which ASP.NET and others ignore in
        // names, so a client's `KEY` is dropped beside an injected `key`.
        if parts.uri.query().is_some_and(|q| q.contains(';')) {
            return Err(refuse(
                "`;` in the query of a route that injects parameters",
            ));
        }
        let client_pairs: Vec<(String, String)> = match parts.uri.query() {
            Some(q) => serde_urlencoded::from_str(q)
                .map_err(|_| refuse("query is not valid form encoding"))?,
            None => Vec::new(),
        };
        let mut pairs: Vec<(&str, std::borrow::Cow<'_, str>)> = client_pairs
            .iter()
            .filter(|(k, _)| !injected.iter().any(|i| i.eq_ignore_ascii_case(k)))
            .map(|(k, v)| (k.as_str(), std::borrow::Cow::Borrowed(v.as_str())))
            .collect();
        for (k, v) in &route.query {
            pairs.push((k, String::from_utf8_lossy(v.expose())));
        }
        Some(std::borrow::Cow::Owned(
            serde_urlencoded::to_string(&pairs).map_err(|e| ApiError::internal(&e))?,
        ))
    };
    let mut target = String::with_capacity(
        route.base_path.len() + rest.len() + query.as_ref().map_or(0, |q| q.len() + 1) + 1,
    );
    target.push_str(&route.base_path);
    target.push_str(rest);
    if target.is_empty() {
        target.push('/');
    }
    let path_end = target.len();
    if let Some(q) = &query {
        target.push('?');
        target.push_str(q);
    }

    let principal = parts.extensions.get::<Principal>();
    let trusted = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .is_some_and(|c| state.config.trusted_proxies.contains(&c.0.ip()));
    let mut out = headers::for_upstream(
        &parts.headers,
        cfg.forward_credentials,
        trusted,
        &route.injected_names,
    );
    // The host upstreams are told is the deployment's (server.public_base_url), never the
    // client's `Host`: a backend that builds links or redirects from it would otherwise
    // build them to wherever the client said.
    headers::set_forwarded(
        &mut out,
        ip.0,
        state.config.public_scheme,
        Some(&state.config.public_authority),
    );
    if !route.secrets.is_empty() {
        // Error and redirect bodies of these routes are searched for the injected secrets,
        // which cannot be done on compressed bytes: ask for the body as it is. A response
        // encoded anyway is refused in `respond`, never passed on uninspected.
        out.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
    }
    if let Some(p) = principal {
        if let Some(d) = &p.device {
            let mut buf = uuid::Uuid::encode_buffer();
            let id = d.id.hyphenated().encode_lower(&mut buf);
            out.insert(
                names::MOAT_DEVICE.clone(),
                HeaderValue::from_str(id).map_err(|e| ApiError::internal(&e))?,
            );
        }
        if let Some(u) = &p.user
            && let Ok(v) = HeaderValue::from_str(&u.id)
        {
            out.insert(names::MOAT_USER.clone(), v);
        }
    }
    for (name, value) in &route.headers {
        out.insert(
            name.clone(),
            HeaderValue::from_bytes(value.expose()).map_err(|e| ApiError::internal(&e))?,
        );
    }
    let limit = cfg.max_body_bytes.unwrap_or(state.config.max_body_bytes);
    let body: Bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::too_large(limit))?;
    if cfg.methods.is_some() && has_method_field(&out, &body) {
        return Err(refuse("`_method` on a route limited to some methods"));
    }
    if cfg.sign {
        let target = Target {
            scheme: route.scheme.as_str(),
            authority: route.authority.as_str(),
            path: &target[..path_end],
            query: query.as_deref(),
        };
        sign_forwarded(
            &gateway,
            &parts.method,
            &target,
            &mut out,
            &body,
            state.now(),
        )?;
    }
    let mut uri = axum::http::uri::Parts::default();
    uri.scheme = Some(route.scheme.clone());
    uri.authority = Some(route.authority.clone());
    uri.path_and_query =
        Some(PathAndQuery::from_maybe_shared(Bytes::from(target)).map_err(|_| refuse("path"))?);
    let mut request = axum::http::Request::new(Body::from(body));
    *request.method_mut() = parts.method;
    *request.uri_mut() = Uri::from_parts(uri).map_err(|e| ApiError::internal(&e))?;
    *request.headers_mut() = out;
    let upstream = match tokio::time::timeout(cfg.timeout, gateway.http.request(request)).await {
        Err(_) => {
            return Err(ApiError::new(
                crate::error::Code::UpstreamTimeout,
                "the upstream did not answer in time",
            ));
        }
        Ok(Err(e)) => {
            tracing::warn!(route = %cfg.prefix, error = %e, "upstream unreachable");
            return Err(ApiError::new(
                crate::error::Code::BadGateway,
                "the upstream could not be reached",
            ));
        }
        Ok(Ok(r)) => r,
    };
    respond(&route, upstream, cfg.timeout).await
}

/// Where a forwarded request goes, as the gateway signature covers it.
struct Target<'a> {
    scheme: &'a str,
    authority: &'a str,
    path: &'a str,
    query: Option<&'a str>,
}

fn sign_forwarded(
    gateway: &Gateway,
    method: &Method,
    url: &Target<'_>,
    out: &mut HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), ApiError> {
    if !body.is_empty() {
        let field = moat_core::digest::sha256_field(body);
        out.insert(
            names::CONTENT_DIGEST.clone(),
            HeaderValue::from_str(&field).map_err(|e| ApiError::internal(&e))?,
        );
    } else {
        out.remove(&names::CONTENT_DIGEST);
    }
    let mut components = vec!["@method", "@authority", "@path"];
    if url.query.is_some() {
        components.push("@query");
    }
    for name in [
        &names::MOAT_DEVICE,
        &names::MOAT_USER,
        &names::CONTENT_DIGEST,
    ] {
        if out.contains_key(name) {
            components.push(name.as_str());
        }
    }
    let msg = Message {
        method: method.as_str(),
        scheme: url.scheme,
        authority: url.authority,
        path: url.path,
        query: url.query,
        headers: out,
    };
    let params = Params {
        created: Some(now),
        nonce: Some(moat_core::random::token(16)?),
        keyid: Some(GATEWAY_KEY_ID.into()),
        alg: Some("ed25519".into()),
        ..Params::default()
    };
    let signed = httpsig::sign(
        "moat",
        &components,
        &params,
        &msg,
        SigningKey::Installation(&gateway.signer),
    )?;
    out.insert(
        names::SIGNATURE_INPUT.clone(),
        HeaderValue::from_str(&signed.signature_input).map_err(|e| ApiError::internal(&e))?,
    );
    out.insert(
        names::SIGNATURE.clone(),
        HeaderValue::from_str(&signed.signature).map_err(|e| ApiError::internal(&e))?,
    );
    Ok(())
}

async fn respond(
    route: &Upstream,
    upstream: axum::http::Response<hyper::body::Incoming>,
    timeout: Duration,
) -> Result<Response, ApiError> {
    use http_body_util::BodyExt as _;
    let (head, incoming) = upstream.into_parts();
    let status = head.status;
    let mut headers = head.headers;
    let secrets = &route.secrets;
    let inspect = !secrets.is_empty()
        && (status.is_redirection() || status.is_client_error() || status.is_server_error());
    // Bytes that cannot be searched for the secrets do not go to the client: a content coding
    // (asked for `identity` and got one anyway), or a transfer coding other than chunked
    // (`gzip, chunked`: still compressed once the hop-by-hop header is gone). Read before the
    // hop-by-hop strip, and only for bodies that are inspected.
    let encoded = inspect
        && (headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|c| !c.trim().eq_ignore_ascii_case("chunked"))
            || headers
                .get_all(header::CONTENT_ENCODING)
                .iter()
                .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity")));
    headers::strip_hop_by_hop(&mut headers);
    headers.remove(header::CONTENT_LENGTH);
    if !route.config.pass_server_header {
        headers.remove(header::SERVER);
        headers.remove(&names::X_POWERED_BY);
    }
    if !secrets.is_empty() {
        let leaking: Vec<HeaderName> = headers
            .iter()
            .filter(|(_, v)| secrets.iter().any(|s| contains(v.as_bytes(), s)))
            .map(|(n, _)| n.clone())
            .collect();
        for name in leaking {
            tracing::warn!(route = %route.config.prefix, header = %name, "upstream response header carried an injected secret; removed");
            headers.remove(name);
        }
    }
    if encoded {
        tracing::warn!(route = %route.config.prefix, status = status.as_u16(), "upstream encoded an error body on a route with secrets; refused");
        return Err(ApiError::new(
            crate::error::Code::BadGateway,
            "upstream error body was encoded and could not be inspected",
        ));
    }
    let body = if inspect {
        let bad = || {
            ApiError::new(
                crate::error::Code::BadGateway,
                "upstream error body failed or too large",
            )
        };
        let limited = http_body_util::Limited::new(incoming, MAX_INSPECTED_BODY);
        // Boxed: only error bodies of routes with secrets take this path; inline, its state
        // would make every forwarded request's future larger.
        let bytes = Box::pin(tokio::time::timeout(timeout, limited.collect()))
            .await
            .map_err(|_| bad())?
            .map_err(|_| bad())?
            .to_bytes();
        let (clean, changed) = redact(&bytes, secrets);
        if changed {
            tracing::warn!(route = %route.config.prefix, status = status.as_u16(), "upstream response body carried an injected secret; redacted");
        }
        Body::from(clean)
    } else {
        Body::new(incoming)
    };
    let mut response = (status, body).into_response();
    *response.headers_mut() = headers;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_override_names_are_found_in_every_spelling() {
        for q in [
            "_method=DELETE",
            "a=1&_METHOD=x",
            "%5Fmethod=x",
            "_m%65thod=x",
            "%5f%4D%45THOD",
            "a=1;_method=x",
        ] {
            assert!(names_method(q.as_bytes()), "{q}");
        }
        for q in [
            "method=x",
            "_methods=x",
            "x_method=x",
            "_meth%6=x",
            "a=_method",
        ] {
            assert!(!names_method(q.as_bytes()), "{q}");
        }
    }

    #[test]
    fn redaction_replaces_every_occurrence() {
        let (out, changed) = redact(
            b"key=sk_live_123 and sk_live_123!",
            &[b"sk_live_123".to_vec()],
        );
        assert!(changed);
        assert_eq!(out, b"key=[redacted] and [redacted]!");
        let (out, changed) = redact(b"nothing here", &[b"sk_live_123".to_vec()]);
        assert!(!changed);
        assert_eq!(out, b"nothing here");
    }
}
