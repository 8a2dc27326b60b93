//! Extractors whose rejections are Moat problems, not axum's plain-text ones.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Largest JSON body of Moat's own endpoints (enroll, confirm), bytes.
pub const MAX_JSON_BODY: usize = 16 * 1024;

/// A JSON body: `415` without a JSON content type, `413` over the limit, `400` when it is not
/// JSON, `422` when it is JSON of the wrong shape.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

/// Parses JSON bytes into `T` with Moat's error mapping.
///
/// # Errors
/// `400 malformed` for syntax errors, `422 validation` for a wrong shape.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        if e.is_data() {
            ApiError::validation(format!("body does not match the schema: {e}"))
        } else {
            ApiError::malformed("body is not valid JSON")
        }
    })
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                let essence = v.split(';').next().unwrap_or("").trim();
                essence.eq_ignore_ascii_case("application/json")
            });
        if !is_json {
            return Err(ApiError::new(
                crate::error::Code::UnsupportedMediaType,
                "expected Content-Type: application/json",
            ));
        }
        let body = axum::body::to_bytes(req.into_body(), MAX_JSON_BODY)
            .await
            .map_err(|_| ApiError::too_large(MAX_JSON_BODY))?;
        parse_json(&body).map(ApiJson)
    }
}

/// Reads a whole body up to `limit` bytes.
///
/// # Errors
/// `413` over the limit.
pub async fn body_bytes(body: axum::body::Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::too_large(limit))
}

/// The client's IP: the socket peer, or, when the peer is a configured trusted proxy, the
/// right-most `X-Forwarded-For` entry that is not itself a trusted proxy.
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub std::net::IpAddr);

/// The time of the request, Unix seconds, from the server's clock.
#[derive(Clone, Copy, Debug)]
pub struct Now(pub i64);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Now
where
    std::sync::Arc<dyn moat_core::clock::Clock>: axum::extract::FromRef<S>,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        _parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let clock =
            <std::sync::Arc<dyn moat_core::clock::Clock> as axum::extract::FromRef<S>>::from_ref(
                state,
            );
        Ok(Self(clock.now()))
    }
}

/// When this process started, Unix seconds (the shared static key's `created_at`).
#[derive(Clone, Copy, Debug)]
pub struct StartedAt(pub i64);

/// The trusted proxies (`server.trusted_proxies`), for extractors that need them.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(pub Vec<std::net::IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp
where
    TrustedProxies: axum::extract::FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        // Set by the public listener's outermost middleware: no lookup of the proxies then.
        if let Some(ip) = parts.extensions.get::<ClientIp>() {
            return Ok(*ip);
        }
        let trusted = <TrustedProxies as axum::extract::FromRef<S>>::from_ref(state);
        Ok(Self(client_ip(
            &parts.headers,
            &parts.extensions,
            &trusted.0,
        )))
    }
}

/// The client's IP from a request's headers and extensions (see [`ClientIp`]). The public
/// listener's outermost middleware stores it in the extensions once per request; later
/// callers read it from there.
pub fn client_ip(
    headers: &axum::http::HeaderMap,
    extensions: &axum::http::Extensions,
    trusted_proxies: &[std::net::IpAddr],
) -> std::net::IpAddr {
    if let Some(ClientIp(ip)) = extensions.get::<ClientIp>() {
        return *ip;
    }
    let peer = extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    forwarded_client(peer, headers, trusted_proxies)
}

/// `peer` itself unless it is a trusted proxy; then the right-most `X-Forwarded-For` hop
/// (across every such header, in order) that is not trusted, or `peer` if there is none.
fn forwarded_client(
    peer: std::net::IpAddr,
    headers: &axum::http::HeaderMap,
    trusted: &[std::net::IpAddr],
) -> std::net::IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    // Right to left, without collecting the hops: this runs for every request.
    headers
        .get_all(&moat_core::names::X_FORWARDED_FOR)
        .iter()
        .rev()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|text| text.rsplit(','))
        .filter_map(|hop| hop.trim().parse::<std::net::IpAddr>().ok())
        .find(|ip| !trusted.contains(ip))
        .unwrap_or(peer)
}

/// A rate-limit key for client IP `ip` under `scope`: an IPv4 address as it is, an IPv6
/// address by its /64, since one host commonly holds a whole /64 and would otherwise rotate
/// through budgets without limit.
pub fn ip_rate_key(scope: &str, ip: std::net::IpAddr) -> String {
    use std::fmt::Write as _;
    let mut key = String::with_capacity(scope.len() + 48);
    key.push_str(scope);
    key.push('\0');
    let _ = match ip {
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            write!(key, "{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        v4 => write!(key, "{v4}"),
    };
    key
}

#[cfg(test)]
mod tests {
    use super::{forwarded_client, ip_rate_key};
    use axum::http::{HeaderMap, HeaderValue};

    fn ip(s: &str) -> std::net::IpAddr {
        s.parse().expect("ip")
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn forwarded_for_is_read_only_from_trusted_proxies_right_to_left() {
        let proxies = [ip("10.0.0.1"), ip("10.0.0.2")];
        let (proxy, stranger) = (ip("10.0.0.1"), ip("198.51.100.9"));
        // An untrusted peer's header is ignored.
        assert_eq!(
            forwarded_client(stranger, &xff(&["6.6.6.6"]), &proxies),
            stranger
        );
        // Right-most untrusted hop, across headers in order and comma lists.
        let h = xff(&["6.6.6.6, 203.0.113.5", "10.0.0.2, 10.0.0.1"]);
        assert_eq!(forwarded_client(proxy, &h, &proxies), ip("203.0.113.5"));
        // Entries that are not addresses, and non-ASCII values, are skipped.
        let mut h = xff(&["203.0.113.7, junk", "10.0.0.2"]);
        h.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff").expect("opaque value"),
        );
        assert_eq!(forwarded_client(proxy, &h, &proxies), ip("203.0.113.7"));
        // Only proxies, or no header: the peer.
        assert_eq!(
            forwarded_client(proxy, &xff(&["10.0.0.2"]), &proxies),
            proxy
        );
        assert_eq!(forwarded_client(proxy, &HeaderMap::new(), &proxies), proxy);
        // IPv6 hops parse too.
        assert_eq!(
            forwarded_client(proxy, &xff(&["2001:db8::1"]), &proxies),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn ip_rate_keys_group_an_ipv6_host_by_its_64() {
        assert_eq!(
            ip_rate_key("enroll", ip("192.0.2.7")),
            "enroll\u{0}192.0.2.7"
        );
        assert_eq!(
            ip_rate_key("enroll", ip("2001:db8:1:2:aaaa::1")),
            ip_rate_key("enroll", ip("2001:db8:1:2:ffff:1:2:3"))
        );
        assert_ne!(
            ip_rate_key("enroll", ip("2001:db8:1:2::1")),
            ip_rate_key("enroll", ip("2001:db8:1:3::1"))
        );
    }
}
