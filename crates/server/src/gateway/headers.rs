//! Header hygiene between client and upstream.

use axum::http::{HeaderMap, HeaderName, HeaderValue};

/// Hop-by-hop headers (RFC 9110 section 7.6.1), never forwarded in either direction.
const HOP_BY_HOP: [&str; 9] = [
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade",
];

/// Moat's own credential headers: verified here, not passed upstream unless the route says
/// so.
pub const CREDENTIALS: [&str; 5] = ["moat-device-key", "signature", "signature-input", "dpop", "moat-integrity"];

/// Identity headers that only Moat may set.
pub const IDENTITY: [&str; 2] = ["moat-device", "moat-user"];

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

/// Builds the forwarding headers: drops what the client sent (`Forwarded`, `X-Forwarded-*`)
/// unless it came through a trusted proxy, then appends this hop.
pub fn set_forwarded(headers: &mut HeaderMap, client_ip: std::net::IpAddr, proto: &str, host: Option<&str>, trusted_chain: bool) {
    if !trusted_chain {
        for name in ["forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-real-ip"] {
            headers.remove(name);
        }
    }
    let ip = client_ip.to_string();
    let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {ip}"),
        None => ip.clone(),
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert("x-forwarded-for", v);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_str(proto).unwrap_or(HeaderValue::from_static("http")));
    let for_value = if client_ip.is_ipv6() { format!("\"[{ip}]\"") } else { ip };
    let mut forwarded = format!("for={for_value};proto={proto}");
    if let Some(h) = host.filter(|h| h.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b';' && b != b',')) {
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
