//! Forwarding one request: the target is checked and joined onto the upstream base, headers
//! are cleaned and the route's secrets injected, the request is optionally signed, and the
//! answer is passed back, searched for the injected secrets when it is an error or redirect.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::uri::PathAndQuery;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version, header};
use axum::response::{IntoResponse, Response};
use moat_core::httpsig::{self, Message, Params, SigningKey};
use moat_core::names;
use moat_core::secret::SecretBytes;
use moat_policy::Principal;

use crate::{Error, GATEWAY_KEY_ID, Gateway, MAX_INSPECTED_BODY, Upstream, headers, path};

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

/// The injected secrets as they could appear in a response: as resolved, and
/// form-encoded when that differs.
pub(crate) fn secrets_of(
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

/// Who sent a request, as the server established it.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    /// The client's IP (behind trusted proxies: the one they name).
    pub ip: std::net::IpAddr,
    /// Whether the socket peer is a trusted proxy, whose forwarding headers are kept.
    pub trusted_proxy: bool,
}

impl Gateway {
    /// Forwards one request that passed the route's policy (its [`Principal`], if any, in
    /// the request's extensions), at `now` (Unix seconds, for the gateway signature).
    ///
    /// # Errors
    /// [`Error::Refused`] for targets not forwarded, [`Error::MethodNotAllowed`],
    /// [`Error::BodyTooLarge`], and [`Error::BadGateway`]/[`Error::UpstreamTimeout`] for
    /// upstream failures.
    pub async fn forward(
        &self,
        route: &Upstream,
        peer: Peer,
        now: i64,
        req: Request,
    ) -> Result<Response, Error> {
        forward(self, route, peer, now, req).await
    }
}

async fn forward(
    gateway: &Gateway,
    route: &Upstream,
    peer: Peer,
    now: i64,
    req: Request,
) -> Result<Response, Error> {
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
        return Err(Error::MethodNotAllowed { allow });
    }
    // An absolute-form target (`GET http://other/ HTTP/1.1`) would let a client name its own
    // upstream; HTTP/2 always carries scheme and authority, which Moat ignores.
    if parts.version <= Version::HTTP_11 && parts.uri.authority().is_some() {
        return Err(Error::Refused("absolute-form request target"));
    }
    if cfg.methods.is_some()
        && parts
            .uri
            .query()
            .is_some_and(|q| names_method(q.as_bytes()))
    {
        // Laravel, Symfony and Express's method-override read `_method` from the query (or a
        // form body, checked below) and run that method instead.
        return Err(Error::Refused(
            "`_method` on a route limited to some methods",
        ));
    }
    let path = parts.uri.path();
    let rest = path
        .strip_prefix(cfg.prefix.as_str())
        .ok_or(Error::Refused("path outside the route"))?;
    path::check_rest(rest).map_err(|e| Error::Refused(e.0))?;

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
            return Err(Error::Refused(
                "`;` in the query of a route that injects parameters",
            ));
        }
        let client_pairs: Vec<(String, String)> = match parts.uri.query() {
            Some(q) => serde_urlencoded::from_str(q)
                .map_err(|_| Error::Refused("query is not valid form encoding"))?,
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
            serde_urlencoded::to_string(&pairs).map_err(|e| Error::Internal(e.to_string()))?,
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
    let mut out = headers::for_upstream(
        &parts.headers,
        cfg.forward_credentials,
        peer.trusted_proxy,
        &route.injected_names,
    );
    // The host upstreams are told is the deployment's (server.public_base_url), never the
    // client's `Host`: a backend that builds links or redirects from it would otherwise
    // build them to wherever the client said.
    headers::set_forwarded(
        &mut out,
        peer.ip,
        gateway.settings.public_scheme,
        Some(&gateway.settings.public_authority),
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
                HeaderValue::from_str(id).map_err(|e| Error::Internal(e.to_string()))?,
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
            HeaderValue::from_bytes(value.expose()).map_err(|e| Error::Internal(e.to_string()))?,
        );
    }
    let limit = cfg
        .max_body_bytes
        .unwrap_or(gateway.settings.max_body_bytes);
    let body: Bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| Error::BodyTooLarge(limit))?;
    if cfg.methods.is_some() && has_method_field(&out, &body) {
        return Err(Error::Refused(
            "`_method` on a route limited to some methods",
        ));
    }
    if cfg.sign {
        let target = Target {
            scheme: route.scheme.as_str(),
            authority: route.authority.as_str(),
            path: &target[..path_end],
            query: query.as_deref(),
        };
        sign_forwarded(gateway, &parts.method, &target, &mut out, &body, now)?;
    }
    let mut uri = axum::http::uri::Parts::default();
    uri.scheme = Some(route.scheme.clone());
    uri.authority = Some(route.authority.clone());
    uri.path_and_query = Some(
        PathAndQuery::from_maybe_shared(Bytes::from(target)).map_err(|_| Error::Refused("path"))?,
    );
    let mut request = axum::http::Request::new(Body::from(body));
    *request.method_mut() = parts.method;
    *request.uri_mut() = Uri::from_parts(uri).map_err(|e| Error::Internal(e.to_string()))?;
    *request.headers_mut() = out;
    let upstream = match tokio::time::timeout(cfg.timeout, gateway.http.request(request)).await {
        Err(_) => {
            return Err(Error::UpstreamTimeout);
        }
        Ok(Err(e)) => {
            tracing::warn!(route = %cfg.prefix, error = %e, "upstream unreachable");
            return Err(Error::BadGateway("the upstream could not be reached"));
        }
        Ok(Ok(r)) => r,
    };
    respond(route, upstream, cfg.timeout).await
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
) -> Result<(), Error> {
    if !body.is_empty() {
        let field = moat_core::digest::sha256_field(body);
        out.insert(
            names::CONTENT_DIGEST.clone(),
            HeaderValue::from_str(&field).map_err(|e| Error::Internal(e.to_string()))?,
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
        HeaderValue::from_str(&signed.signature_input)
            .map_err(|e| Error::Internal(e.to_string()))?,
    );
    out.insert(
        names::SIGNATURE.clone(),
        HeaderValue::from_str(&signed.signature).map_err(|e| Error::Internal(e.to_string()))?,
    );
    Ok(())
}

async fn respond(
    route: &Upstream,
    upstream: axum::http::Response<hyper::body::Incoming>,
    timeout: Duration,
) -> Result<Response, Error> {
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
        return Err(Error::BadGateway(
            "upstream error body was encoded and could not be inspected",
        ));
    }
    let body = if inspect {
        let bad = || Error::BadGateway("upstream error body failed or too large");
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
