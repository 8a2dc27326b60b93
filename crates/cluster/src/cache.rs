//! Caches on the verification path.
//!
//! - [`TtlCache`]: a sharded map from a 32-byte key (a SHA-256) to a value with an expiry.
//!   Sixteen mutex-guarded shards picked by the key's first byte keep contention low; each
//!   shard is bounded and simply cleared when full (entries are cheap to recompute).
//! - Device credentials (key lookup → device and its verifying key) are cached for
//!   `cache.device_ttl_ms` (default 1000 ms). That is the bound on how long a revocation or a
//!   key rotation made on *another* instance can take to be seen here; a revocation through
//!   this instance clears the cache at once.
//! - Verified access and integrity tokens are cached by SHA-256 of the token until they
//!   expire, so an ES256 verification is paid once per token, not once per request. Tokens
//!   are never revoked individually, so this changes nothing a client can observe.

use std::collections::HashMap;
use std::sync::Mutex;

const SHARDS: usize = 16;

/// A key over several parts: SHA-256 of each part preceded by its length, so different part
/// lists never give the same input, and nothing is formatted or allocated.
pub fn parts_key(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in parts {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    let mut k = [0u8; 32];
    k.copy_from_slice(ctx.finish().as_ref());
    k
}

type Shard<V> = Mutex<HashMap<[u8; 32], (V, i64)>>;

/// A sharded, bounded, expiring map.
pub struct TtlCache<V> {
    shards: [Shard<V>; SHARDS],
    per_shard: usize,
}

impl<V: Clone> TtlCache<V> {
    /// A cache holding about `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            per_shard: (capacity / SHARDS).max(16),
        }
    }

    /// The key for `bytes`.
    pub fn key(bytes: &[u8]) -> [u8; 32] {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
        let mut k = [0u8; 32];
        k.copy_from_slice(d.as_ref());
        k
    }

    fn shard(&self, key: &[u8; 32]) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (V, i64)>> {
        self.shards[usize::from(key[0]) % SHARDS]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The value for `key` if it has not expired at `now_ms`.
    pub fn get(&self, key: &[u8; 32], now_ms: i64) -> Option<V> {
        let shard = self.shard(key);
        shard
            .get(key)
            .filter(|(_, exp)| *exp > now_ms)
            .map(|(v, _)| v.clone())
    }

    /// Stores `value` until `expires_ms`.
    pub fn put(&self, key: [u8; 32], value: V, expires_ms: i64) {
        let mut shard = self.shard(&key);
        if shard.len() >= self.per_shard {
            shard.clear();
        }
        shard.insert(key, (value, expires_ms));
    }

    /// The cached value for `key`, or the result of `make` (a value and its expiry,
    /// milliseconds), which is cached on success.
    ///
    /// # Errors
    /// Whatever `make` returns; errors are not cached.
    pub fn get_or_try_insert<E>(
        &self,
        key: [u8; 32],
        now_ms: i64,
        make: impl FnOnce() -> Result<(V, i64), E>,
    ) -> Result<V, E> {
        if let Some(v) = self.get(&key, now_ms) {
            return Ok(v);
        }
        let (value, expires_ms) = make()?;
        self.put(key, value.clone(), expires_ms);
        Ok(value)
    }

    /// Drops one entry.
    pub fn remove(&self, key: &[u8; 32]) {
        self.shard(key).remove(key);
    }

    /// Drops everything (e.g. after a revocation).
    pub fn clear(&self) {
        for s in &self.shards {
            s.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_and_bound() {
        let c: TtlCache<u32> = TtlCache::new(16 * 16);
        let k = TtlCache::<u32>::key(b"a");
        c.put(k, 7, 1000);
        assert_eq!(c.get(&k, 999), Some(7));
        assert_eq!(c.get(&k, 1000), None);
        for i in 0..10_000u32 {
            c.put(TtlCache::<u32>::key(&i.to_be_bytes()), i, 5000);
        }
        let total: usize = c.shards.iter().map(|s| s.lock().expect("lock").len()).sum();
        assert!(total <= 16 * 16, "bounded: {total}");
        c.clear();
        assert_eq!(
            c.get(&TtlCache::<u32>::key(&9999u32.to_be_bytes()), 0),
            None
        );
    }
}
