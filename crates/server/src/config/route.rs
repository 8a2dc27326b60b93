//! `[[route]]`: the policy of a built-in endpoint (`path`), or a gateway route to an
//! upstream (`prefix` and `upstream`).

use std::time::Duration;

use serde::Deserialize;

use super::errors::{Errors, is_reference};
use super::server::MAX_BODY_LIMIT;
use moat_gateway::{RateKey, RateLimit, UpstreamConfig};

/// The keys of a route's `rate_limit` table.
const RATE_LIMIT_KEYS: [&str; 3] = ["key", "per_second", "burst"];
/// Default `rate_limit.key`.
const DEFAULT_RATE_KEY: &str = "device";
/// Largest `rate_limit.per_second` and `rate_limit.burst`.
const MAX_RATE: i64 = 1_000_000;
/// Default upstream `timeout`, seconds.
const DEFAULT_UPSTREAM_TIMEOUT: u64 = 30;
/// Longest upstream `timeout`, seconds: a longer one is lowered to it.
const MAX_UPSTREAM_TIMEOUT: u64 = 300;

/// One `[[route]]` as written. No `Debug`: its injected values may be secrets by mistake.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawRoute {
    pub path: Option<String>,
    pub prefix: Option<String>,
    pub upstream: Option<String>,
    pub require: Option<Vec<String>>,
    pub methods: Option<Vec<String>>,
    pub inject_headers: Option<toml::Table>,
    pub inject_query: Option<toml::Table>,
    pub rate_limit: Option<toml::Table>,
    pub timeout: Option<u64>,
    pub forward_credentials: Option<bool>,
    pub sign_upstream: Option<bool>,
    pub max_body_bytes: Option<usize>,
    pub pass_server_header: Option<bool>,
}

pub use moat_policy::Requirement;

/// A built-in endpoint's policy set by a `[[route]]` entry.
#[derive(Clone, Debug)]
pub struct RoutePolicy {
    /// Exact path.
    pub path: String,
    /// Requirements, all of which must hold.
    pub require: Vec<Requirement>,
    /// Rate limit.
    pub rate_limit: Option<RateLimit>,
}

/// The `[[route]]` entries validated: `Config::routes` and `Config::upstreams`.
pub(crate) struct Routes {
    pub(crate) policies: Vec<RoutePolicy>,
    pub(crate) upstreams: Vec<UpstreamConfig>,
}

/// Validates the `[[route]]` entries.
pub(crate) fn validate(raw: Vec<RawRoute>, errors: &mut Errors) -> Routes {
    let mut policies = Vec::new();
    let mut upstreams = Vec::new();
    for (i, mut r) in raw.into_iter().enumerate() {
        let require = requirements(i, r.require.take().unwrap_or_default(), errors);
        let rate_limit = r
            .rate_limit
            .take()
            .and_then(|t| rate_limit(&t, &format!("route[{i}].rate_limit"), errors));
        match (r.path.take(), r.prefix.take(), r.upstream.take()) {
            (Some(path), None, None) => {
                policies.extend(policy(i, path, require, rate_limit, &r, errors));
            }
            (None, Some(prefix), Some(url)) => {
                upstreams.extend(upstream(i, prefix, &url, require, rate_limit, r, errors));
            }
            _ => errors.push(format!(
                "route[{i}]: needs either `path` (a built-in endpoint) or `prefix` and `upstream`"
            )),
        }
    }
    let mut prefixes: Vec<&str> = upstreams.iter().map(|u| u.prefix.as_str()).collect();
    prefixes.sort_unstable();
    if prefixes.windows(2).any(|w| w[0] == w[1]) {
        errors.push("route: two upstream routes have the same prefix");
    }
    Routes {
        policies,
        upstreams,
    }
}

/// `require`: the requirements named, each known one once it is named.
fn requirements(i: usize, names: Vec<String>, errors: &mut Errors) -> Vec<Requirement> {
    let mut require = Vec::new();
    for name in names {
        match name.as_str() {
            "device" => require.push(Requirement::Device),
            "signature" => require.push(Requirement::Signature),
            "user" => require.push(Requirement::User),
            "integrity" => require.push(Requirement::Integrity),
            other => errors.push(format!("route[{i}]: unknown requirement `{other}`")),
        }
    }
    require
}

/// A `path` route: the policy of a built-in endpoint.
fn policy(
    i: usize,
    path: String,
    require: Vec<Requirement>,
    rate_limit: Option<RateLimit>,
    r: &RawRoute,
    errors: &mut Errors,
) -> Option<RoutePolicy> {
    if r.inject_headers.is_some()
        || r.inject_query.is_some()
        || r.methods.is_some()
        || r.timeout.is_some()
        || r.max_body_bytes.is_some()
        || r.pass_server_header.is_some()
    {
        errors.push(format!("route[{i}]: inject_*, methods, timeout, max_body_bytes and pass_server_header need an upstream route"));
    }
    if !crate::routes::protected().any(|p| p == path) {
        errors.push(format!(
            "route[{i}]: `{path}` is not a built-in endpoint whose policy can be set ({})",
            crate::routes::protected().collect::<Vec<_>>().join(", ")
        ));
        return None;
    }
    if require.is_empty() {
        errors.push(format!(
            "route[{i}]: `require` must name at least one requirement"
        ));
    }
    Some(RoutePolicy {
        path,
        require,
        rate_limit,
    })
}

/// A route's `rate_limit` table; each problem is reported as one of `key`.
fn rate_limit(t: &toml::Table, key: &str, errors: &mut Errors) -> Option<RateLimit> {
    let mut ok = true;
    let mut problem = |message: &str| {
        errors.push(format!("{key}: {message}"));
        ok = false;
    };
    let rate_key = match t
        .get("key")
        .and_then(|v| v.as_str())
        .unwrap_or(DEFAULT_RATE_KEY)
    {
        "device" => RateKey::Device,
        "user" => RateKey::User,
        "ip" => RateKey::Ip,
        "route" => RateKey::Route,
        other => {
            problem(&format!("key `{other}` is not device, user, ip or route"));
            RateKey::Device
        }
    };
    let per_second = match t.get("per_second") {
        Some(toml::Value::Integer(n)) => Some(*n as f64),
        Some(toml::Value::Float(f)) => Some(*f),
        _ => {
            problem("per_second is required");
            None
        }
    };
    // The burst defaults to one second's worth, so it is checked only with a rate.
    let mut burst = 1;
    if let Some(per_second) = per_second {
        burst = t
            .get("burst")
            .and_then(toml::Value::as_integer)
            .unwrap_or(per_second.ceil() as i64);
        if !(per_second > 0.0 && per_second <= MAX_RATE as f64 && (1..=MAX_RATE).contains(&burst)) {
            problem("per_second and burst must be positive");
        }
    }
    if t.keys().any(|k| !RATE_LIMIT_KEYS.contains(&k.as_str())) {
        problem("only key, per_second and burst are allowed");
    }
    match per_second {
        Some(per_second) if ok => Some(RateLimit {
            key: rate_key,
            per_second,
            burst: u32::try_from(burst).unwrap_or(1),
        }),
        _ => None,
    }
}

/// A `prefix` route: the gateway forwards under `prefix` to `url`.
fn upstream(
    i: usize,
    prefix: String,
    url: &str,
    require: Vec<Requirement>,
    rate_limit: Option<RateLimit>,
    r: RawRoute,
    errors: &mut Errors,
) -> Option<UpstreamConfig> {
    // Not among the problems that drop the route: a route whose only problem is its body
    // limit still counts when prefixes are compared.
    if r.max_body_bytes
        .is_some_and(|n| n == 0 || n > MAX_BODY_LIMIT)
    {
        errors.push(format!(
            "route[{i}].max_body_bytes: must be between 1 and 64 MiB"
        ));
    }
    let mut problems = Errors::default();
    let prefix_ok = prefix.starts_with('/')
        && prefix.len() > 1
        && !prefix.ends_with('/')
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b))
        && moat_gateway::path::check_rest(&prefix).is_ok();
    if !prefix_ok {
        problems.push(format!("route[{i}]: prefix `{prefix}` must start with /, not end with /, and use plain path characters"));
    }
    if crate::routes::reserved(&prefix) {
        problems.push(format!(
            "route[{i}]: prefix `{prefix}` is reserved for Moat's own endpoints"
        ));
    }
    let url = match reqwest::Url::parse(url) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some()
                && u.query().is_none()
                && u.fragment().is_none()
                && u.username().is_empty()
                && u.password().is_none() =>
        {
            Some(u)
        }
        _ => {
            problems.push(format!(
                "route[{i}]: upstream must be an http(s) URL without credentials, query or fragment"
            ));
            None
        }
    };
    if require.is_empty() {
        problems.push(format!("route[{i}]: `require` must name at least one requirement (the gateway is not an open proxy)"));
    }
    let methods = r.methods.map(|list| {
        list.iter()
            .filter_map(|m| {
                match axum::http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                    Ok(m) => Some(m),
                    Err(_) => {
                        problems.push(format!("route[{i}]: `{m}` is not a method"));
                        None
                    }
                }
            })
            .collect()
    });
    let mut headers = Vec::new();
    for (name, value) in r.inject_headers.unwrap_or_default() {
        match (axum::http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()), value.as_str()) {
            (Ok(n), Some(v)) if is_reference(v) => headers.push((n, v.to_owned())),
            _ => problems.push(format!("route[{i}]: inject_headers.{name} must be a header name = \"env:NAME\" or \"file:PATH\"")),
        }
    }
    let mut query = Vec::new();
    for (name, value) in r.inject_query.unwrap_or_default() {
        match value.as_str() {
            Some(v) if is_reference(v) => query.push((name, v.to_owned())),
            _ => problems.push(format!(
                "route[{i}]: inject_query.{name} must be \"env:NAME\" or \"file:PATH\""
            )),
        }
    }
    let ok = problems.is_empty();
    errors.append(problems);
    Some(UpstreamConfig {
        prefix,
        upstream: url.filter(|_| ok)?,
        require,
        methods,
        inject_headers: headers,
        inject_query: query,
        rate_limit,
        timeout: Duration::from_secs(
            r.timeout
                .unwrap_or(DEFAULT_UPSTREAM_TIMEOUT)
                .clamp(1, MAX_UPSTREAM_TIMEOUT),
        ),
        forward_credentials: r.forward_credentials.unwrap_or(false),
        sign: r.sign_upstream.unwrap_or(false),
        max_body_bytes: r.max_body_bytes,
        pass_server_header: r.pass_server_header.unwrap_or(false),
    })
}
