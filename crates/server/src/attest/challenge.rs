//! Attestation challenges: a nonce and random byte ranges of the app package, kept for 60 s
//! and usable once; in memory, or in Redis when instances share one (a challenge issued by
//! one instance can be answered on another).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::cluster::{Redis, Unavailable};

/// Challenge lifetime, seconds.
pub const TTL: i64 = 60;
/// Ranges per challenge.
pub const RANGES: usize = 8;
/// Length of each range, bytes (smaller packages get one range covering all of it).
pub const RANGE_LEN: u64 = 4096;
/// The size assumed for unknown apps, so their challenges look like real ones.
pub const DECOY_SIZE: u64 = 24 * 1024 * 1024;
/// Most challenges held at once.
pub const MAX_PENDING: usize = 200_000;

/// A pending challenge.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Challenge {
    /// The device it was issued to.
    pub device: String,
    /// App id asked for.
    pub app_id: String,
    /// Version asked for.
    pub version: String,
    /// 32 random bytes.
    pub nonce: [u8; 32],
    /// `(offset, length)` ranges, in order.
    pub ranges: Vec<(u64, u64)>,
    /// Whether the app and version are registered and active.
    pub known: bool,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
}

/// The pending challenges.
#[derive(Default)]
pub struct Challenges {
    map: Mutex<HashMap<String, Challenge>>,
    redis: Option<Arc<Redis>>,
}

/// Random ranges over a package of `size` bytes.
///
/// # Errors
/// If the RNG fails.
pub fn ranges(size: u64) -> Result<Vec<(u64, u64)>, moat_core::Error> {
    if size <= RANGE_LEN * RANGES as u64 {
        return Ok(vec![(0, size)]);
    }
    // Draw the start from [-(len-1), size-1] and clamp it into the package, so the first and
    // last bytes are as likely to be challenged as any other: over many challenges every byte
    // is covered.
    let mut out = Vec::with_capacity(RANGES);
    let max_start = size - RANGE_LEN;
    for _ in 0..RANGES {
        let r = u64::from_be_bytes(moat_core::random::array::<8>()?) % (size + RANGE_LEN - 1);
        out.push((r.saturating_sub(RANGE_LEN - 1).min(max_start), RANGE_LEN));
    }
    Ok(out)
}

impl Challenges {
    /// Challenges kept in Redis if there is one, else in memory.
    pub fn new(redis: Option<Arc<Redis>>) -> Self {
        Self {
            map: Mutex::default(),
            redis,
        }
    }

    /// Stores a challenge under `id`; false when full (refuse, do not forget older ones) or
    /// when Redis cannot take it.
    pub async fn put(&self, id: String, c: Challenge, now: i64) -> bool {
        if let Some(redis) = &self.redis {
            let Ok(value) = serde_json::to_vec(&c) else {
                return false;
            };
            let ttl_ms = u64::try_from(c.expires_at - now).unwrap_or(0) * 1000;
            return matches!(
                redis.set_once("ch", id.as_bytes(), &value, ttl_ms).await,
                Ok(true)
            );
        }
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= MAX_PENDING {
            map.retain(|_, c| c.expires_at > now);
            if map.len() >= MAX_PENDING {
                return false;
            }
        }
        map.insert(id, c);
        true
    }

    /// Removes and returns the challenge (used once), if unexpired.
    ///
    /// # Errors
    /// [`Unavailable`] if Redis cannot answer.
    pub async fn take(&self, id: &str, now: i64) -> Result<Option<Challenge>, Unavailable> {
        if let Some(redis) = &self.redis {
            let value = redis.take("ch", id.as_bytes()).await?;
            return Ok(value
                .and_then(|v| serde_json::from_slice::<Challenge>(&v).ok())
                .filter(|c| c.expires_at > now));
        }
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(map.remove(id).filter(|c| c.expires_at > now))
    }

    /// Drops expired challenges.
    pub fn purge(&self, now: i64) -> usize {
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = map.len();
        map.retain(|_, c| c.expires_at > now);
        before - map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_stay_inside_and_cover_the_package_over_many_challenges() {
        let size = 200_000u64;
        let mut covered = vec![false; size as usize];
        for _ in 0..2000 {
            for (off, len) in ranges(size).expect("ranges") {
                assert!(off + len <= size);
                for b in &mut covered[off as usize..(off + len) as usize] {
                    *b = true;
                }
            }
        }
        assert!(
            covered.iter().all(|b| *b),
            "every byte is eventually challenged"
        );
        assert_eq!(ranges(100).expect("ranges"), vec![(0, 100)]);
    }
}
