//! Replay caches: each DPoP `jti` and each signature `nonce` is accepted once within its
//! window.
//!
//! The in-memory cache is sharded (16 mutex-guarded maps selected by the key hash) so that
//! concurrent requests rarely contend. Each entry is 20 bytes: the first 128 bits of the key's
//! SHA-256 (an attacker's long strings cost fixed memory; a collision needs about 2^64 keys)
//! and the expiry as seconds since the cache started. At the default capacity of 8 million
//! live entries that is about 27,000 signed requests a second, sustained, over the 301 s a
//! nonce is kept; the 10-minute soak in `bench/soak.sh` found the former 4 million (45-byte
//! entries) too small at 14,600 a second. Each shard is bounded: when one is full even after
//! dropping expired entries, the cache refuses (fail closed) rather than forget entries.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_lc_rs::digest;

/// The cache is full or its backend is down: the request must be refused.
#[derive(Debug, thiserror::Error)]
#[error("replay cache unavailable")]
pub struct ReplayUnavailable;

/// A set of one-time values with expiry.
#[async_trait]
pub trait ReplayCache: Send + Sync + 'static {
    /// Records `key` until `expires_at`; returns false if it was already recorded and has not
    /// expired (a replay).
    async fn insert_once(
        &self,
        key: &[u8],
        expires_at: i64,
        now: i64,
    ) -> Result<bool, ReplayUnavailable>;
    /// Drops expired entries; returns how many.
    async fn purge(&self, now: i64) -> usize;

    /// Values made before this time (Unix seconds) may have been used while the cache was not
    /// there to record them: an in-memory cache starts empty at every restart, so a signature
    /// or proof created before the start could be a replay of one the previous process
    /// accepted. Callers refuse such values rather than let them through.
    fn horizon(&self) -> i64;
}

const SHARDS: usize = 16;

/// In-process replay cache (one instance).
pub struct MemoryReplayCache {
    shards: [Mutex<HashMap<[u8; 16], u32>>; SHARDS],
    per_shard_cap: usize,
    started: i64,
}

impl MemoryReplayCache {
    /// A cache holding at most `capacity` live entries, empty as of `started` (Unix seconds).
    pub fn new(capacity: usize, started: i64) -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            per_shard_cap: (capacity / SHARDS).max(1),
            started,
        }
    }

    /// `t` as seconds since the cache started (entries never outlive 2^32 seconds of it).
    fn offset(&self, t: i64) -> u32 {
        u32::try_from(t.saturating_sub(self.started).max(0)).unwrap_or(u32::MAX)
    }
}

#[async_trait]
impl ReplayCache for MemoryReplayCache {
    async fn insert_once(
        &self,
        key: &[u8],
        expires_at: i64,
        now: i64,
    ) -> Result<bool, ReplayUnavailable> {
        let d = digest::digest(&digest::SHA256, key);
        let mut k = [0u8; 16];
        k.copy_from_slice(&d.as_ref()[..16]);
        let (now, expires_at) = (self.offset(now), self.offset(expires_at));
        let shard = &self.shards[usize::from(k[0]) % SHARDS];
        // A poisoned lock means a panic while holding it; the map itself is still consistent
        // (every operation on it is a single call), so keep using it.
        let mut map = shard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(existing) = map.get(&k)
            && *existing > now
        {
            return Ok(false);
        }
        if map.len() >= self.per_shard_cap {
            map.retain(|_, exp| *exp > now);
            if map.len() >= self.per_shard_cap {
                return Err(ReplayUnavailable);
            }
        }
        map.insert(k, expires_at);
        Ok(true)
    }

    fn horizon(&self) -> i64 {
        self.started
    }

    async fn purge(&self, now: i64) -> usize {
        let now = self.offset(now);
        let mut removed = 0;
        for shard in &self.shards {
            let mut map = shard
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let before = map.len();
            map.retain(|_, exp| *exp > now);
            removed += before - map.len();
        }
        removed
    }
}

/// Replay cache shared by every instance through Redis: `SET NX PX`, so a value seen by any
/// instance is refused by all of them.
pub struct RedisReplayCache(pub std::sync::Arc<crate::redis::Redis>);

#[async_trait]
impl ReplayCache for RedisReplayCache {
    async fn insert_once(
        &self,
        key: &[u8],
        expires_at: i64,
        now: i64,
    ) -> Result<bool, ReplayUnavailable> {
        let ttl_ms = u64::try_from(expires_at.saturating_sub(now))
            .unwrap_or(0)
            .saturating_mul(1000);
        self.0
            .set_once("rp", key, b"1", ttl_ms)
            .await
            .map_err(|_| ReplayUnavailable)
    }

    async fn purge(&self, _now: i64) -> usize {
        // Redis expires entries by itself.
        0
    }

    fn horizon(&self) -> i64 {
        // Shared by every instance and kept across their restarts (a Redis restart without
        // persistence forgets too: see the deployment guide).
        i64::MIN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn once_until_expiry_and_bounded() {
        let cache = MemoryReplayCache::new(SHARDS * 2, 0);
        assert!(cache.insert_once(b"a", 100, 10).await.expect("ok"));
        assert!(
            !cache.insert_once(b"a", 100, 50).await.expect("ok"),
            "replay refused"
        );
        assert!(
            cache.insert_once(b"a", 300, 100).await.expect("ok"),
            "expired entries free the key"
        );
        let mut refused = false;
        for i in 0..1000u32 {
            if cache
                .insert_once(&i.to_be_bytes(), 10_000, 100)
                .await
                .is_err()
            {
                refused = true;
                break;
            }
        }
        assert!(refused, "a full cache fails closed");
        assert!(cache.purge(20_000).await > 0);
    }
}
