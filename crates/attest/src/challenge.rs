//! Attestation challenges: a nonce and random byte ranges of the app package, kept for 60 s
//! and usable once; in memory, or in Redis when instances share one (a challenge issued by
//! one instance can be answered on another).
//!
//! An app or version that is not registered gets a challenge too, over a made-up package
//! size, so that challenges do not tell which apps are registered. The ranges betray the
//! size (the largest offset plus length approaches it), so the made-up size must look like a
//! real one: [`DecoySizes`] draws it from the sizes of the registered packages, keyed by a
//! server secret so that repeated challenges for one unknown app agree on one size, as they
//! would for a real package.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use aws_lc_rs::hmac;
use moat_cluster::redis::{Redis, Unavailable};
use moat_store::attest::AttestStore;
use serde::{Deserialize, Serialize};

/// Challenge lifetime, seconds.
pub const TTL: i64 = 60;
/// Ranges per challenge.
pub const RANGES: usize = 8;
/// Length of each range, bytes (smaller packages get one range covering all of it).
pub const RANGE_LEN: u64 = 4096;
/// The size unknown apps' challenges are drawn around while no package is registered.
pub const DECOY_SIZE: u64 = 24 * 1024 * 1024;
/// Most registered packages whose sizes unknown apps' challenges are drawn from (the newest).
pub const DECOY_SOURCES: u32 = 1_000;
/// How often each instance reloads the registered sizes (the instance that registers or
/// retires a package reloads at once).
pub const DECOY_RELOAD: std::time::Duration = std::time::Duration::from_secs(30);
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

/// The package sizes unknown apps' challenges are drawn from (see the module).
pub struct DecoySizes {
    /// HMAC key derived from the data key: every instance draws the same size for an app.
    key: hmac::Key,
    /// Sizes of the registered packages, oldest registration first, so that a new one is
    /// appended and [`jump`] moves few apps' decoys to it.
    sizes: RwLock<Vec<u64>>,
}

impl DecoySizes {
    /// No sizes yet (call [`Self::reload`]); `data_key` keys the draw.
    pub fn new(data_key: &[u8]) -> Self {
        let derived = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, data_key),
            b"moat decoy package sizes v1",
        );
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
            sizes: RwLock::default(),
        }
    }

    /// Reads the registered packages' sizes (retired ones too: a retirement then changes no
    /// unknown app's size).
    ///
    /// # Errors
    /// The store's, when it cannot answer; the sizes loaded before are kept.
    pub async fn reload(&self, store: &dyn AttestStore) -> Result<(), moat_store::StoreError> {
        let mut releases = store.releases(DECOY_SOURCES).await?;
        releases.sort_by(|a, b| {
            (a.created_at, &a.app_id, &a.version).cmp(&(b.created_at, &b.app_id, &b.version))
        });
        let sizes = releases
            .iter()
            .filter_map(|r| u64::try_from(r.size).ok())
            .filter(|size| *size > 0)
            .collect();
        *self
            .sizes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = sizes;
        Ok(())
    }

    /// The made-up package size for `(app_id, version)`: one of the registered sizes, picked
    /// and then scaled by 3/4 to 4/3 by a keyed hash of the app and version, so repeated
    /// asks agree, different apps spread over the registered sizes, and no decoy reproduces
    /// a registered package's exact size. Work is a few hashes whatever the number of sizes,
    /// as small as the lookup of a real package's size.
    pub fn size_for(&self, app_id: &str, version: &str) -> u64 {
        // Visible ASCII only on both sides (checked by the caller): NUL separates them.
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(app_id.as_bytes());
        ctx.update(&[0]);
        ctx.update(version.as_bytes());
        let tag = ctx.sign();
        let word = |i: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&tag.as_ref()[i * 8..(i + 1) * 8]);
            u64::from_be_bytes(bytes)
        };
        let base = {
            let sizes = self
                .sizes
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match sizes.len() {
                0 => DECOY_SIZE,
                n => sizes[jump(word(0), n)],
            }
        };
        // 768/1024 = 3/4 up to 1365/1024 ≈ 4/3.
        let scaled = u128::from(base) * u128::from(768 + word(1) % 598) / 1024;
        u64::try_from(scaled).unwrap_or(u64::MAX).max(1)
    }
}

/// Jump consistent hash (Lamping and Veach, 2014): `key` to a bucket in `0..buckets`; when
/// `buckets` grows by one, only a `1/buckets` share of the keys move, all to the new bucket.
fn jump(mut key: u64, buckets: usize) -> usize {
    let (mut b, mut j) = (0u64, 0u64);
    let n = buckets as u64;
    while j < n {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        // The algorithm's own floating-point step: j = (b + 1) * 2^31 / ((key >> 33) + 1).
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let next = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as u64;
        j = next;
    }
    usize::try_from(b).unwrap_or(0)
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

    #[test]
    fn jump_is_uniform_and_moves_few_keys_when_a_bucket_is_added() {
        let mut counts = [0usize; 10];
        let mut moved = 0;
        for key in 0..10_000u64 {
            let key = key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let b = jump(key, 10);
            counts[b] += 1;
            let after = jump(key, 11);
            if after != b {
                assert_eq!(after, 10, "a key only moves to the new bucket");
                moved += 1;
            }
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
        assert!((600..1200).contains(&moved), "about 1/11 move: {moved}");
    }

    #[test]
    fn decoy_sizes_agree_for_an_app_and_spread_over_the_registered_ones() {
        let decoys = DecoySizes::new(&[7; 32]);
        let first = decoys.size_for("com.example.a", "1");
        assert_eq!(first, decoys.size_for("com.example.a", "1"));
        assert!((DECOY_SIZE * 3 / 4..=DECOY_SIZE * 4 / 3).contains(&first));
        *decoys.sizes.write().expect("lock") = vec![50_000, 5_000_000];
        let mut near = [0usize; 2];
        for i in 0..200 {
            let size = decoys.size_for("com.example.a", &i.to_string());
            let which = usize::from(size > 1_000_000);
            let base = [50_000u64, 5_000_000][which];
            assert!((base * 3 / 4..=base * 4 / 3 + 1).contains(&size), "{size}");
            near[which] += 1;
        }
        assert!(near.iter().all(|n| *n > 60), "{near:?}");
        // Another data key draws other sizes.
        let other = DecoySizes::new(&[8; 32]);
        *other.sizes.write().expect("lock") = vec![50_000, 5_000_000];
        assert!(
            (0..50).any(
                |i| other.size_for("x", &i.to_string()) != decoys.size_for("x", &i.to_string())
            )
        );
    }
}
