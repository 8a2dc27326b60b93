//! What a route asks of a request (PROTOCOL section 4) and how its rate limit counts.

/// What a route requires of a request (PROTOCOL section 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// The device's own credential: an API key or a valid signature.
    Device,
    /// An RFC 9421 signature from the device.
    Signature,
    /// A user access token (Moat's own, bound to the device, or an external issuer's).
    User,
    /// A valid integrity token for the same device (`Moat-Integrity`).
    Integrity,
}

/// Rate-limit key of a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateKey {
    /// Per device.
    Device,
    /// Per user.
    User,
    /// Per client IP.
    Ip,
    /// One budget for the whole route.
    Route,
}

/// `rate_limit = { key, per_second, burst }`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// What is counted.
    pub key: RateKey,
    /// Sustained rate.
    pub per_second: f64,
    /// Burst.
    pub burst: u32,
}
