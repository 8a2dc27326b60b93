//! GCRA rate limiting (the generic cell rate algorithm), in memory or shared through Redis.
//!
//! A quota "N per period" lets a burst of N through, then one every period/N. Each key keeps
//! one number (its theoretical arrival time), so the cost is a map lookup. [`Limiter::check`]
//! takes several keys at once (per phone, per device, per IP, …) and consumes from all of them
//! only if all allow, so a refused request does not eat into the budgets it did pass.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::quota::retry_after;
pub use crate::quota::{Quota, Refusal};

/// In-memory keyed GCRA limiter.
pub struct Limiter {
    tats: Mutex<HashMap<String, i64>>,
    max_keys: usize,
}

/// One GCRA step for a key whose theoretical arrival time is `tat` (µs): the new arrival time
/// if a request is allowed now, else how long to wait (µs).
fn step(tat: Option<i64>, now_us: i64, quota: Quota) -> Result<i64, i64> {
    let interval = quota.interval_us();
    let limit = interval.saturating_mul(i64::from(quota.burst));
    let new_tat = tat.unwrap_or(now_us).max(now_us).saturating_add(interval);
    let wait = new_tat - now_us - limit;
    if wait > 0 { Err(wait) } else { Ok(new_tat) }
}

impl Limiter {
    /// A limiter tracking at most `max_keys` keys.
    pub fn new(max_keys: usize) -> Self {
        Self {
            tats: Mutex::new(HashMap::new()),
            max_keys,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        self.tats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Checks every `(key, quota)`; if all allow, counts one request against each.
    ///
    /// # Errors
    /// [`Refusal`] naming the first refusing key and the longest wait.
    pub fn check(&self, now_ms: i64, items: &[(String, Quota)]) -> Result<(), Refusal> {
        let now_us = now_ms.saturating_mul(1000);
        let mut tats = self.lock();
        self.check_locked(&mut tats, now_us, items)
    }

    fn check_locked(
        &self,
        tats: &mut HashMap<String, i64>,
        now_us: i64,
        items: &[(String, Quota)],
    ) -> Result<(), Refusal> {
        let mut refused: Option<(String, i64)> = None;
        let mut updates = Vec::with_capacity(items.len());
        for (key, quota) in items {
            match step(tats.get(key).copied(), now_us, *quota) {
                Ok(new_tat) => updates.push((key.clone(), new_tat)),
                Err(wait) => match &mut refused {
                    Some((_, w)) => *w = (*w).max(wait),
                    None => refused = Some((key.clone(), wait)),
                },
            }
        }
        if let Some((key, wait)) = refused {
            return Err(Refusal::Limited {
                key,
                retry_after: retry_after(wait),
            });
        }
        if tats.len() + updates.len() > self.max_keys {
            tats.retain(|_, tat| *tat > now_us);
            if tats.len() + updates.len() > self.max_keys {
                return Err(Refusal::Unavailable);
            }
        }
        tats.extend(updates);
        Ok(())
    }

    /// Whether one more request on `key` would be allowed now, without counting it.
    ///
    /// A peek and a later check are two steps: requests arriving together all pass the peek.
    /// To bound work that may or may not count, reserve with [`Self::check`] first and
    /// [`Self::refund`] the requests that turn out not to count.
    ///
    /// # Errors
    /// [`Refusal::Limited`] with the wait.
    pub fn peek(&self, now_ms: i64, key: &str, quota: Quota) -> Result<(), Refusal> {
        let now_us = now_ms.saturating_mul(1000);
        step(self.lock().get(key).copied(), now_us, quota)
            .map(|_| ())
            .map_err(|wait| Refusal::Limited {
                key: key.to_owned(),
                retry_after: retry_after(wait),
            })
    }

    /// Checks one key; on success returns how many more requests the burst allows now.
    ///
    /// # Errors
    /// [`Refusal`] with the wait.
    pub fn check_one(&self, now_ms: i64, key: &str, quota: Quota) -> Result<u32, Refusal> {
        let now_us = now_ms.saturating_mul(1000);
        let mut tats = self.lock();
        self.check_locked(&mut tats, now_us, &[(key.to_owned(), quota)])?;
        let tat = tats.get(key).copied().unwrap_or(now_us);
        let interval = quota.interval_us();
        let headroom = interval.saturating_mul(i64::from(quota.burst)) - (tat - now_us);
        Ok(u32::try_from(headroom / interval).unwrap_or(0))
    }

    /// Gives back one request counted on `key` by a check whose request, it turned out, must
    /// not count (a reservation made before the outcome was known).
    pub fn refund(&self, now_ms: i64, key: &str, quota: Quota) {
        let now_us = now_ms.saturating_mul(1000);
        let mut tats = self.lock();
        if let Some(tat) = tats.get_mut(key) {
            *tat = tat.saturating_sub(quota.interval_us());
            if *tat <= now_us {
                tats.remove(key);
            }
        }
    }

    /// Drops keys whose budgets are full again.
    pub fn purge(&self, now_ms: i64) -> usize {
        let now_us = now_ms.saturating_mul(1000);
        let mut tats = self.lock();
        let before = tats.len();
        tats.retain(|_, tat| *tat > now_us);
        before - tats.len()
    }
}

/// A rate limiter: in this process, or shared by every instance through Redis
/// (`redis.url`). Both run the same GCRA; the Redis one is a Lua script (see
/// [`crate::redis`]).
pub enum RateLimiter {
    /// This process only.
    Memory(Limiter),
    /// Shared through Redis, under the limiter's name.
    Redis {
        /// The connection.
        redis: std::sync::Arc<crate::redis::Redis>,
        /// Keys of different limiters never collide.
        name: &'static str,
    },
}

impl RateLimiter {
    /// In memory (one instance) or through Redis when there is one.
    pub fn new(
        redis: Option<&std::sync::Arc<crate::redis::Redis>>,
        name: &'static str,
        max_keys: usize,
    ) -> Self {
        match redis {
            Some(redis) => Self::Redis {
                redis: redis.clone(),
                name,
            },
            None => Self::Memory(Limiter::new(max_keys)),
        }
    }

    /// See [`Limiter::check`].
    ///
    /// # Errors
    /// [`Refusal`].
    pub async fn check(&self, now_ms: i64, items: &[(String, Quota)]) -> Result<(), Refusal> {
        match self {
            Self::Memory(l) => l.check(now_ms, items),
            Self::Redis { redis, name } => redis.gcra(name, items, true).await.map(|_| ()),
        }
    }

    /// See [`Limiter::peek`].
    ///
    /// # Errors
    /// [`Refusal`].
    pub async fn peek(&self, now_ms: i64, key: &str, quota: Quota) -> Result<(), Refusal> {
        match self {
            Self::Memory(l) => l.peek(now_ms, key, quota),
            Self::Redis { redis, name } => redis
                .gcra(name, &[(key.to_owned(), quota)], false)
                .await
                .map(|_| ()),
        }
    }

    /// See [`Limiter::check_one`].
    ///
    /// # Errors
    /// [`Refusal`].
    pub async fn check_one(&self, now_ms: i64, key: &str, quota: Quota) -> Result<u32, Refusal> {
        match self {
            Self::Memory(l) => l.check_one(now_ms, key, quota),
            // Boxed so the in-memory case, the common one, does not carry the Redis call's
            // large future state (measured: it doubled the size of every request's future).
            Self::Redis { redis, name } => {
                Box::pin(redis.gcra(name, &[(key.to_owned(), quota)], true)).await
            }
        }
    }

    /// See [`Limiter::refund`].
    ///
    /// # Errors
    /// [`Refusal::Unavailable`] if Redis cannot answer (the request stays counted).
    pub async fn refund(&self, now_ms: i64, key: &str, quota: Quota) -> Result<(), Refusal> {
        match self {
            Self::Memory(l) => {
                l.refund(now_ms, key, quota);
                Ok(())
            }
            Self::Redis { redis, name } => Box::pin(redis.gcra_refund(name, key, quota)).await,
        }
    }

    /// Drops keys whose budgets are full again (Redis expires them by itself).
    pub fn purge(&self, now_ms: i64) -> usize {
        match self {
            Self::Memory(l) => l.purge(now_ms),
            Self::Redis { .. } => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_steady_rate_and_all_or_nothing() {
        let l = Limiter::new(100);
        let five = Quota::per_hour(5);
        for _ in 0..5 {
            l.check(0, &[("p".into(), five)]).expect("within burst");
        }
        let Err(Refusal::Limited { key, retry_after }) = l.check(0, &[("p".into(), five)]) else {
            panic!("refused")
        };
        assert_eq!(
            (key.as_str(), retry_after),
            ("p", 720),
            "one every 12 minutes"
        );
        l.check(720_000, &[("p".into(), five)])
            .expect("refilled one");

        // A refusal on one key consumes nothing from the others.
        let cool = Quota::cooldown(30);
        l.check(0, &[("c".into(), cool)]).expect("first");
        assert!(
            l.check(1000, &[("x".into(), five), ("c".into(), cool)])
                .is_err()
        );
        for _ in 0..5 {
            l.check(31_000, &[("x".into(), five)])
                .expect("x untouched by the refusal");
        }
    }

    #[test]
    fn high_rates_are_not_truncated() {
        let l = Limiter::new(100);
        let q = Quota {
            burst: 1_000_000,
            period: Duration::from_secs(1),
        };
        for _ in 0..10_000 {
            l.check(0, &[("r".into(), q)])
                .expect("a million a second allows ten thousand at once");
        }
        let tiny = Quota {
            burst: 2,
            period: Duration::from_millis(1),
        };
        l.check(0, &[("t".into(), tiny)]).expect("1");
        l.check(0, &[("t".into(), tiny)]).expect("2");
        assert!(l.check(0, &[("t".into(), tiny)]).is_err());
        l.check(1, &[("t".into(), tiny)])
            .expect("refilled after 1 ms");
    }

    #[test]
    fn peek_does_not_count() {
        let l = Limiter::new(100);
        let q = Quota::per_hour(2);
        for _ in 0..10 {
            l.peek(0, "k", q).expect("peeking is free");
        }
        l.check(0, &[("k".into(), q)]).expect("1");
        l.check(0, &[("k".into(), q)]).expect("2");
        assert!(matches!(
            l.peek(0, "k", q),
            Err(Refusal::Limited {
                retry_after: 1800,
                ..
            })
        ));
    }

    #[test]
    fn a_refund_gives_back_one_request() {
        let l = Limiter::new(100);
        let q = Quota::per_hour(2);
        l.check(0, &[("k".into(), q)]).expect("1");
        l.check(0, &[("k".into(), q)]).expect("2");
        assert!(l.check(0, &[("k".into(), q)]).is_err());
        l.refund(0, "k", q);
        l.check(0, &[("k".into(), q)]).expect("the refunded one");
        assert!(l.check(0, &[("k".into(), q)]).is_err());
        l.refund(0, "unknown", q);
        l.refund(0, "k", q);
        l.refund(0, "k", q);
        assert_eq!(l.purge(0), 0, "a fully refunded key is dropped");
    }

    #[test]
    fn full_limiter_fails_closed() {
        let l = Limiter::new(2);
        let q = Quota::per_hour(1);
        l.check(0, &[("a".into(), q)]).expect("a");
        l.check(0, &[("b".into(), q)]).expect("b");
        assert_eq!(l.check(0, &[("c".into(), q)]), Err(Refusal::Unavailable));
        assert_eq!(l.purge(3_600_001), 2);
        l.check(3_600_001, &[("c".into(), q)]).expect("room again");
    }
}
