//! RFC 9421 signatures of requests, as Moat verifies them.

use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, Method};
use moat_core::httpsig::{self, Message, Params, SigningKey};
use moat_core::{digest, random};

use crate::error::{Error, Result};

/// The headers an RFC 9421 signature adds to a request.
#[derive(Clone, Debug)]
pub struct SignedHeaders {
    /// `(name, value)` pairs: `signature-input`, `signature`, and `content-digest` if a body
    /// was given.
    pub headers: Vec<(&'static str, String)>,
}

/// Signs a request the way Moat expects: covers `@method`, `@authority`, `@path`, `@query`
/// (when there is one), `content-digest` (when there is a body) and `authorization` (when
/// sent), with `created`, a fresh 16-byte `nonce`, `keyid` and `alg`.
///
/// # Errors
/// [`Error::Invalid`] for an unusable URL, [`Error::Protocol`] if signing fails.
pub fn sign_request(
    method: &Method,
    url: &reqwest::Url,
    headers: &HeaderMap,
    body: Option<&[u8]>,
    keyid: &str,
    key: SigningKey<'_>,
    now: i64,
) -> Result<SignedHeaders> {
    let mut headers = headers.clone();
    let mut out = Vec::new();
    if let Some(body) = body.filter(|b| !b.is_empty()) {
        let field = digest::sha256_field(body);
        headers.insert(
            "content-digest",
            HeaderValue::from_str(&field).map_err(|e| Error::Invalid(e.to_string()))?,
        );
        out.push(("content-digest", field));
    }
    let host = url
        .host_str()
        .ok_or_else(|| Error::Invalid("URL has no host".into()))?;
    let authority = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    let msg = Message {
        method: method.as_str(),
        scheme: url.scheme(),
        authority: &authority,
        path: url.path(),
        query: url.query(),
        headers: &headers,
    };
    let mut components = vec!["@method", "@authority", "@path"];
    if url.query().is_some() {
        components.push("@query");
    }
    if headers.contains_key("content-digest") {
        components.push("content-digest");
    }
    if headers.contains_key(http::header::AUTHORIZATION) {
        components.push("authorization");
    }
    let params = Params {
        created: Some(now),
        nonce: Some(random::token(16)?),
        keyid: Some(keyid.to_owned()),
        alg: Some(key.algorithm().name().to_owned()),
        ..Params::default()
    };
    let signed = httpsig::sign("moat", &components, &params, &msg, key)?;
    out.push(("signature-input", signed.signature_input));
    out.push(("signature", signed.signature));
    Ok(SignedHeaders { headers: out })
}

/// Current Unix time.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
