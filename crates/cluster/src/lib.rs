//! Once-only and counted state, the part of Moat an attacker races: GCRA rate limits
//! ([`ratelimit`]), the replay cache of DPoP `jti`s and signature nonces ([`replay`]) and
//! bounded TTL caches ([`cache`]). Each works in memory for one instance, or through
//! [`redis`] when several instances must share one budget.
//!
//! Every operation is atomic (one lock, one Redis command or script) and fails closed: a
//! backend that cannot answer is a refusal, never a pass.

pub mod cache;
pub mod quota;
pub mod ratelimit;
pub mod redis;
pub mod replay;
