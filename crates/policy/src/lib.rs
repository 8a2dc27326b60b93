//! Route policy, the vocabulary of the hot path: what a route requires of a request
//! ([`Requirement`], PROTOCOL section 4), how its rate limit counts ([`RateLimit`]), and who
//! the request was verified to come from ([`Principal`]), which handlers and the gateway
//! receive.

mod credential;
mod principal;
mod requirement;

pub use credential::CachedCredential;
pub use principal::{Principal, UserPrincipal, Via};
pub use requirement::{RateKey, RateLimit, Requirement};
