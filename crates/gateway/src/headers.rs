//! Header hygiene between client and upstream.

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};

use moat_core::names;

/// Whether `name` is hop-by-hop (RFC 9110 section 7.6.1): never forwarded in either
/// direction.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    *name == header::CONNECTION
        || *name == header::TE
        || *name == header::TRAILER
        || *name == header::TRANSFER_ENCODING
        || *name == header::UPGRADE
        || *name == header::PROXY_AUTHENTICATE
        || *name == header::PROXY_AUTHORIZATION
        || *name == names::KEEP_ALIVE
        || *name == names::PROXY_CONNECTION
}

/// The header names a `Connection` field lists (hop-by-hop for this message).
fn connection_named(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty())
}

/// Method-override headers. Express's method-override, Rails, Symfony, Spring's
/// HiddenHttpMethodFilter and others let one of these replace the request method, which would
/// get around a route's `methods`; no client is let to send one upstream.
fn is_method_override(name: &str) -> bool {
    matches!(
        name,
        "x-http-method-override" | "x-http-method" | "x-method-override"
    )
}

/// Client-address headers that CDNs and proxies set and backends read as the caller's IP.
fn is_client_ip(name: &str) -> bool {
    matches!(
        name,
        "x-real-ip"
            | "true-client-ip"
            | "x-client-ip"
            | "client-ip"
            | "cf-connecting-ip"
            | "x-cluster-client-ip"
            | "fastly-client-ip"
    )
}

/// Whether a client header of this name (lower case, dash-spelled) is one the gateway
/// removes whatever the route: hop-by-hop, framing, the `moat-` namespace (identity headers
/// Moat sets, and its credentials unless `keep_credentials`), untrusted forwarding headers,
/// method overrides, the route's injected secrets (replaced, not merged), and anything
/// `Connection` names.
fn refused(
    name: &HeaderName,
    keep_credentials: bool,
    trusted_chain: bool,
    injected: &[HeaderName],
    connection: &[&str],
) -> bool {
    if is_hop_by_hop(name) || *name == header::HOST || *name == header::CONTENT_LENGTH {
        return true;
    }
    let text = name.as_str();
    if *name == names::SIGNATURE
        || *name == names::SIGNATURE_INPUT
        || *name == names::DPOP
        || *name == names::MOAT_DEVICE_KEY
        || *name == names::MOAT_INTEGRITY
    {
        return !keep_credentials;
    }
    if text.starts_with("moat-") {
        // Moat-Device, Moat-User and whatever Moat sets later: only Moat speaks in its
        // namespace.
        return true;
    }
    if *name == names::FORWARDED || text.starts_with("x-forwarded-") || is_client_ip(text) {
        // Every forwarding header (`X-Forwarded-Prefix` and `-Port` build links as `-Host`
        // does) and every client-address header a backend may trust.
        return !trusted_chain;
    }
    is_method_override(text)
        || injected.contains(name)
        || connection.iter().any(|c| c.eq_ignore_ascii_case(text))
}

/// Copies the client's headers for the upstream in one pass, leaving out those [`refused`]
/// names.
///
/// A name spelled with `_` is judged as its `-` spelling, and dropped (even where that
/// spelling would be kept) if that spelling is refused: CGI, WSGI, PHP and nginx with
/// `underscores_in_headers` read `Moat_User` as `Moat-User` and merge the two, so a client's
/// `Moat_User` would otherwise reach the backend beside (and before) the verified one.
pub fn for_upstream(
    client: &HeaderMap,
    keep_credentials: bool,
    trusted_chain: bool,
    injected: &[HeaderName],
) -> HeaderMap {
    // Allocates nothing when there is no `Connection` header (HTTP/1.1 clients rarely send
    // one; HTTP/2 forbids it).
    let named: Vec<&str> = connection_named(client).collect();
    let mut out = HeaderMap::with_capacity(client.len() + 8);
    for (name, value) in client {
        let skip = if name.as_str().contains('_') {
            let dashed = name.as_str().replace('_', "-");
            HeaderName::from_bytes(dashed.as_bytes()).map_or(true, |dashed| {
                refused(&dashed, false, false, injected, &named)
            })
        } else {
            refused(name, keep_credentials, trusted_chain, injected, &named)
        };
        if !skip {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// Removes hop-by-hop headers, including those the `Connection` header names. One pass over
/// the headers when there is nothing to remove (the usual case).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = connection_named(headers)
        .filter_map(|n| HeaderName::from_bytes(n.to_ascii_lowercase().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    let hop: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_hop_by_hop(n))
        .cloned()
        .collect();
    for name in hop {
        headers.remove(name);
    }
}

/// Appends this hop to the forwarding headers ([`for_upstream`] has already dropped the
/// client's own unless they came through a trusted proxy).
pub fn set_forwarded(
    headers: &mut HeaderMap,
    client_ip: std::net::IpAddr,
    proto: &'static str,
    host: Option<&str>,
) {
    use std::fmt::Write as _;
    // One buffer for the three values; the IP is formatted once.
    let mut buf = String::with_capacity(128);
    let _ = write!(buf, "{client_ip}");
    let ip_end = buf.len();
    let append = |headers: &mut HeaderMap, name: &HeaderName, value: &str| {
        let joined;
        let value = match headers.get(name).and_then(|v| v.to_str().ok()) {
            Some(prev) => {
                joined = [prev, value].join(", ");
                joined.as_str()
            }
            None => value,
        };
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name.clone(), v);
        }
    };
    append(headers, &names::X_FORWARDED_FOR, &buf[..ip_end]);
    headers.insert(
        names::X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(proto),
    );
    let for_start = buf.len();
    if client_ip.is_ipv6() {
        let _ = write!(buf, "for=\"[{client_ip}]\"");
    } else {
        let _ = write!(buf, "for={client_ip}");
    }
    buf.push_str(";proto=");
    buf.push_str(proto);
    if let Some(h) = host.filter(|h| {
        h.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b';' && b != b',')
    }) {
        buf.push_str(";host=\"");
        buf.push_str(h);
        buf.push('"');
        if let Ok(v) = HeaderValue::from_str(h) {
            headers.insert(names::X_FORWARDED_HOST.clone(), v);
        }
    }
    append(headers, &names::FORWARDED, &buf[for_start..]);
}
