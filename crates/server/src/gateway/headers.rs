//! Header hygiene between client and upstream.

use axum::http::{HeaderMap, HeaderName, HeaderValue};

/// Hop-by-hop headers (RFC 9110 section 7.6.1), never forwarded in either direction.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Copies the client's headers for the upstream in one pass, leaving out hop-by-hop headers
/// (and those `Connection` names), `Host`, `Content-Length`, the identity headers only Moat
/// sets, the device's credentials (unless `keep_credentials`), and the client's forwarding
/// headers (unless they came through a trusted proxy).
pub fn for_upstream(client: &HeaderMap, keep_credentials: bool, trusted_chain: bool) -> HeaderMap {
    let named: Vec<&str> = client
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut out = HeaderMap::with_capacity(client.len() + 8);
    for (name, value) in client {
        let n = name.as_str();
        let skip = match n {
            "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
            | "moat-device"
            | "moat-user" => true,
            "moat-device-key" | "signature" | "signature-input" | "dpop" | "moat-integrity" => {
                !keep_credentials
            }
            "forwarded" | "x-forwarded-for" | "x-forwarded-proto" | "x-forwarded-host"
            | "x-real-ip" => !trusted_chain,
            _ => named.iter().any(|c| c.eq_ignore_ascii_case(n)),
        };
        if !skip {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// Removes hop-by-hop headers, including those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().to_ascii_lowercase().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Appends this hop to the forwarding headers ([`for_upstream`] has already dropped the
/// client's own unless they came through a trusted proxy).
pub fn set_forwarded(
    headers: &mut HeaderMap,
    client_ip: std::net::IpAddr,
    proto: &str,
    host: Option<&str>,
) {
    let ip = client_ip.to_string();
    let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {ip}"),
        None => ip.clone(),
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert("x-forwarded-for", v);
    }
    headers.insert(
        "x-forwarded-proto",
        HeaderValue::from_str(proto).unwrap_or(HeaderValue::from_static("http")),
    );
    let for_value = if client_ip.is_ipv6() {
        format!("\"[{ip}]\"")
    } else {
        ip
    };
    let mut forwarded = format!("for={for_value};proto={proto}");
    if let Some(h) = host.filter(|h| {
        h.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b';' && b != b',')
    }) {
        forwarded.push_str(&format!(";host=\"{h}\""));
        if let Ok(v) = HeaderValue::from_str(h) {
            headers.insert("x-forwarded-host", v);
        }
    }
    if let Some(prev) = headers.get("forwarded").and_then(|v| v.to_str().ok()) {
        forwarded = format!("{prev}, {forwarded}");
    }
    if let Ok(v) = HeaderValue::from_str(&forwarded) {
        headers.insert("forwarded", v);
    }
}
