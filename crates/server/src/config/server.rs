//! `[server]`: the public listener, its URL as clients see it, TLS, body and time limits.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::errors::{Errors, is_reference};

/// Default public listener.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "./moat-data";
/// Default largest request body, bytes.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
/// Largest `server.max_body_bytes` (and route `max_body_bytes`) accepted: 64 MiB.
pub(crate) const MAX_BODY_LIMIT: usize = 64 * 1024 * 1024;
/// Default `server.request_timeout`, seconds.
const DEFAULT_REQUEST_TIMEOUT: u64 = 30;
/// Default `server.header_timeout`, seconds.
const DEFAULT_HEADER_TIMEOUT: u64 = 30;
/// Accepted `server.header_timeout`, seconds.
const HEADER_TIMEOUT_RANGE: std::ops::RangeInclusive<u64> = 1..=600;

/// `[server]` as written. No `Debug`: `data_key` may hold the key itself by mistake.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawServer {
    pub trusted_proxies: Option<Vec<String>>,
    pub listen: Option<String>,
    pub public_base_url: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub max_body_bytes: Option<usize>,
    pub request_timeout: Option<u64>,
    pub header_timeout: Option<u64>,
    pub tls: Option<toml::Table>,
    /// Secret reference (`env:`/`file:`) of the data key (PROTOCOL section 11).
    pub data_key: Option<String>,
}

/// TLS termination files.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// `[server]` validated; its fields are `Config`'s of the same names.
pub(crate) struct Server {
    pub(crate) listen: SocketAddr,
    pub(crate) public_base_url: String,
    pub(crate) public_scheme: &'static str,
    pub(crate) public_authority: String,
    pub(crate) data_dir: PathBuf,
    pub(crate) max_body_bytes: usize,
    pub(crate) request_timeout: Duration,
    pub(crate) header_timeout: Duration,
    pub(crate) tls: Option<TlsConfig>,
    pub(crate) trusted_proxies: Vec<IpAddr>,
    pub(crate) data_key: Option<String>,
}

/// Parses `value` (else `default`) as an address:port; a problem of `key` otherwise.
pub(crate) fn socket_addr(
    value: Option<String>,
    default: &str,
    key: &str,
    errors: &mut Errors,
) -> SocketAddr {
    let text = value.unwrap_or_else(|| default.to_owned());
    text.parse::<SocketAddr>().unwrap_or_else(|_| {
        errors.push(format!("{key}: `{text}` is not an address:port"));
        SocketAddr::from(([127, 0, 0, 1], 0))
    })
}

/// Validates `[server]`.
pub(crate) fn validate(raw: RawServer, errors: &mut Errors) -> Server {
    let listen = socket_addr(raw.listen, DEFAULT_LISTEN, "server.listen", errors);
    // With TLS on the public listener, clients call https://: a default of http:// would
    // make every DPoP `htu` and signature authority check fail.
    let default_scheme = if raw.tls.is_some() { "https" } else { "http" };
    let public_base_url = raw
        .public_base_url
        .unwrap_or_else(|| format!("{default_scheme}://{listen}"))
        .trim_end_matches('/')
        .to_owned();
    if !(public_base_url.starts_with("http://") || public_base_url.starts_with("https://"))
        || public_base_url.contains(['?', '#'])
    {
        errors.push(format!(
            "server.public_base_url: `{public_base_url}` must be an http(s) URL without query"
        ));
    }
    // Several instances (PROTOCOL section 11): the data key as a secret reference.
    if let Some(reference) = &raw.data_key
        && !is_reference(reference)
    {
        errors.push("server.data_key: must be a reference (env:NAME or file:PATH), not the key");
    }
    let tls = raw.tls.as_ref().and_then(|t| tls(t, errors));
    let mut trusted_proxies = Vec::new();
    for p in raw.trusted_proxies.unwrap_or_default() {
        match p.parse() {
            Ok(ip) => trusted_proxies.push(ip),
            Err(_) => errors.push(format!(
                "server.trusted_proxies: `{p}` is not an IP address"
            )),
        }
    }
    let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY);
    if max_body_bytes == 0 || max_body_bytes > MAX_BODY_LIMIT {
        errors.push("server.max_body_bytes: must be between 1 and 64 MiB");
    }
    let request_timeout = Duration::from_secs(
        raw.request_timeout
            .unwrap_or(DEFAULT_REQUEST_TIMEOUT)
            .max(1),
    );
    let header_timeout = Duration::from_secs(raw.header_timeout.unwrap_or(DEFAULT_HEADER_TIMEOUT));
    if !HEADER_TIMEOUT_RANGE.contains(&header_timeout.as_secs()) {
        errors.push("server.header_timeout: must be 1 to 600 seconds");
    }
    Server {
        listen,
        public_scheme: if public_base_url.starts_with("https://") {
            "https"
        } else {
            "http"
        },
        public_authority: authority_of(&public_base_url),
        public_base_url,
        data_dir: raw
            .data_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        max_body_bytes,
        request_timeout,
        header_timeout,
        tls,
        trusted_proxies,
        data_key: raw.data_key,
    }
}

/// `[server.tls]`: exactly a `cert` and a `key` path.
fn tls(t: &toml::Table, errors: &mut Errors) -> Option<TlsConfig> {
    match (
        t.get("cert").and_then(|v| v.as_str()),
        t.get("key").and_then(|v| v.as_str()),
    ) {
        (Some(cert), Some(key)) if t.len() == 2 => Some(TlsConfig {
            cert: cert.into(),
            key: key.into(),
        }),
        _ => {
            errors.push("server.tls: needs exactly `cert` and `key` (PEM file paths)");
            None
        }
    }
}

/// The authority of a base URL as clients put it in `@authority` and `htu`: lower case, and
/// without the scheme's default port (`https://h:443` is `h`, as URL parsers write it).
fn authority_of(base: &str) -> String {
    let Some((scheme, rest)) = base.split_once("://") else {
        return String::new();
    };
    let authority = rest.split('/').next().unwrap_or(rest).to_ascii_lowercase();
    let default = if scheme.eq_ignore_ascii_case("https") {
        ":443"
    } else {
        ":80"
    };
    match authority.strip_suffix(default) {
        Some(host) if !host.is_empty() => host.to_owned(),
        _ => authority,
    }
}
