//! A device credential as the policy looked it up, kept briefly so that a device's next
//! requests skip the store (`device_cache_ttl_ms`).

use std::sync::Arc;

use moat_core::httpsig::VerifyingKey;
use moat_store::Device;

use crate::Via;

/// A device credential as looked up (before the per-request checks), cached briefly.
#[derive(Clone)]
pub struct CachedCredential {
    /// The device.
    pub device: Arc<Device>,
    /// Its verifying key (signature credentials).
    pub key: Option<Arc<VerifyingKey>>,
    /// Which kind of credential.
    pub via: Via,
}

impl CachedCredential {
    /// The cache key of the device holding API key `lookup`.
    pub fn api_key_cache_key(lookup: &str) -> [u8; 32] {
        moat_cluster::cache::parts_key(&[b"key", lookup.as_bytes()])
    }

    /// The cache key of the device signing with `keyid`.
    pub fn signature_cache_key(keyid: &str) -> [u8; 32] {
        moat_cluster::cache::parts_key(&[b"sig", keyid.as_bytes()])
    }
}
