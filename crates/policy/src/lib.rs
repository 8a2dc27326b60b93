//! Route policy, the hot path: what a route requires of a request ([`Requirement`], PROTOCOL
//! section 4), how its rate limit counts ([`RateLimit`]), who the request was verified to
//! come from ([`Principal`]), which handlers and the gateway receive, and the [`Verifier`]
//! that checks a request against its [`Route`]'s policy.
//!
//! The verifier works on a request's head (`http::request::Parts`) and its whole body; it
//! knows nothing of HTTP responses: a refusal is an [`Error`] saying what went wrong, which
//! the server maps to its problem response in one place, and its middleware reads the body
//! (within the route's limit) and passes the [`Principal`] on.
//!
//! Order of the checks: the credential headers first, each at most once
//! ([`Verifier::screen`], before the body is read); then the device, from an RFC 9421
//! signature or a `Moat-Device-Key`; then each other requirement (user access token,
//! integrity token); then a JWE body is decrypted; then the route's rate limit counts the
//! verified caller.
//!
//! Order of the signature checks, and why:
//! 1. parse the fields and find the key named by `keyid` (unknown: `credential_invalid`);
//! 2. coverage and time window (cheap, before any crypto);
//! 3. the signature itself;
//! 4. device status: only after the signature, so nobody without the key learns whether a
//!    device is revoked;
//! 5. `Content-Digest` against the body;
//! 6. the nonce, recorded last so that requests failing earlier cannot burn a client's nonces.

mod body;
mod check;
mod credential;
mod device;
mod error;
mod headers;
mod principal;
mod requirement;
mod route;
mod user;
mod verifier;

pub use credential::CachedCredential;
pub use error::{Credential, Error};
pub use principal::{Principal, UserPrincipal, Via};
pub use requirement::{RateKey, RateLimit, Requirement};
pub use route::Route;
pub use verifier::{KeyRing, Now, RateLimitHeaders, Services, Settings, Verified, Verifier};
