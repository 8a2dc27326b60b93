//! Quotas and refusals, the vocabulary shared by the in-memory limiter ([`crate::ratelimit`])
//! and the Redis one ([`crate::redis`]).

use std::time::Duration;

/// A quota: `burst` requests, refilled evenly over `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Requests allowed at once.
    pub burst: u32,
    /// Time to refill the whole burst.
    pub period: Duration,
}

impl Quota {
    /// `n` per hour.
    pub fn per_hour(n: u32) -> Self {
        Self {
            burst: n,
            period: Duration::from_secs(3600),
        }
    }

    /// One per `seconds` (a cooldown).
    pub fn cooldown(seconds: u64) -> Self {
        Self {
            burst: 1,
            period: Duration::from_secs(seconds),
        }
    }

    /// Emission interval in microseconds (milliseconds would truncate to 0 above 1000/s).
    pub(crate) fn interval_us(self) -> i64 {
        i64::try_from(self.period.as_micros() / u128::from(self.burst.max(1)))
            .unwrap_or(i64::MAX)
            .max(1)
    }
}

/// Why a check did not pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Over quota on `key`; retry after this many seconds.
    Limited {
        /// The first key that refused.
        key: String,
        /// Seconds until every refusing key allows again.
        retry_after: u64,
    },
    /// The limiter is full and cannot track more keys, or its shared backend (Redis) is
    /// down: refuse (fail closed).
    Unavailable,
}

/// Seconds to wait, rounded up, at least 1, from a wait in microseconds.
pub(crate) fn retry_after(wait_us: i64) -> u64 {
    u64::try_from((wait_us + 999_999) / 1_000_000)
        .unwrap_or(u64::MAX)
        .max(1)
}
