//! Header names on the request path, built once.
//!
//! Looking a header up by `&str` parses and lower-cases the name on every call (measured with
//! callgrind: about 7% of the instructions of a device-key request went to that); a
//! `HeaderName` is used as it is.

use http::HeaderName;

/// `Signature` (RFC 9421).
pub static SIGNATURE: HeaderName = HeaderName::from_static("signature");
/// `Signature-Input` (RFC 9421).
pub static SIGNATURE_INPUT: HeaderName = HeaderName::from_static("signature-input");
/// `Content-Digest` (RFC 9530).
pub static CONTENT_DIGEST: HeaderName = HeaderName::from_static("content-digest");
/// `Moat-Device-Key`.
pub static MOAT_DEVICE_KEY: HeaderName = HeaderName::from_static("moat-device-key");
/// `Moat-Integrity`.
pub static MOAT_INTEGRITY: HeaderName = HeaderName::from_static("moat-integrity");
/// `Moat-Device`, set by the gateway for the upstream.
pub static MOAT_DEVICE: HeaderName = HeaderName::from_static("moat-device");
/// `Moat-User`, set by the gateway for the upstream.
pub static MOAT_USER: HeaderName = HeaderName::from_static("moat-user");
/// `DPoP` (RFC 9449).
pub static DPOP: HeaderName = HeaderName::from_static("dpop");
/// `RateLimit-Policy`.
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// `Forwarded` (RFC 7239).
pub static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
/// `X-Forwarded-For`.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// `Keep-Alive` (hop-by-hop).
pub static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
/// `Proxy-Connection` (hop-by-hop, non-standard).
pub static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
/// `X-Powered-By` (an upstream's framework, removed from gateway responses).
pub static X_POWERED_BY: HeaderName = HeaderName::from_static("x-powered-by");
