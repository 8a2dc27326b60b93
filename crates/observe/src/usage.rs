//! Last-use tracking for the dormant-device cleanup, batched.
//!
//! Writing `last_used_at` on every request would put a store write (tens of microseconds on
//! SQLite) on the hot path. Instead the middleware records the time in memory and a task
//! flushes the map every minute in one transaction. A crash loses at most one interval of
//! last-use times, which only delays when a device counts as dormant.

use std::collections::HashMap;
use std::sync::Mutex;

use moat_store::Store;
use uuid::Uuid;

/// Pending last-use times.
#[derive(Default)]
pub struct UsageTracker {
    pending: Mutex<HashMap<Uuid, i64>>,
}

/// Most pending entries; beyond this, new devices' uses wait for the next flush.
const MAX_PENDING: usize = 1_000_000;

impl UsageTracker {
    /// Records a use.
    pub fn record(&self, device: Uuid, now: i64) {
        let mut map = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() < MAX_PENDING || map.contains_key(&device) {
            map.insert(device, now);
        }
    }

    /// Writes pending uses to the store.
    pub async fn flush(&self, store: &dyn Store) {
        let batch: Vec<(Uuid, i64)> = {
            let mut map = self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            map.drain().collect()
        };
        for chunk in batch.chunks(500) {
            if let Err(e) = store.touch_devices(chunk).await {
                tracing::warn!(error = %e, devices = chunk.len(), "could not record device last-use times");
                // Put them back for the next flush.
                let mut map = self
                    .pending
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for (id, at) in chunk {
                    map.entry(*id).or_insert(*at);
                }
            }
        }
    }
}
