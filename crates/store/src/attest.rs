//! Storage of the attestation feature: genuine app packages, integrity-token secrets and
//! App Attest keys.

use async_trait::async_trait;

use crate::Result;

/// A registered app package (without its bytes).
#[derive(Clone, Debug)]
pub struct Release {
    /// App id (package name / bundle id).
    pub app_id: String,
    /// Version label.
    pub version: String,
    /// SHA-256 of the package.
    pub sha256: Vec<u8>,
    /// Size in bytes.
    pub size: i64,
    /// `active` or `retired`.
    pub status: String,
    /// Registration, Unix seconds.
    pub created_at: i64,
}

/// An integrity-token secret.
#[derive(Clone, Debug)]
pub struct IntegrityKey {
    /// Key id (the token header's `kid`).
    pub kid: String,
    /// Sealed secret.
    pub secret_sealed: Vec<u8>,
    /// Creation, Unix seconds.
    pub created_at: i64,
    /// Retirement, Unix seconds.
    pub retired_at: Option<i64>,
}

/// An attested App Attest key.
#[derive(Clone, Debug)]
pub struct AttestKey {
    /// base64url of SHA-256 of the public key.
    pub key_id: String,
    /// Device uuid that attested it.
    pub device: String,
    /// Uncompressed P-256 point.
    pub public_key: Vec<u8>,
    /// Last accepted counter.
    pub counter: i64,
    /// `production` or `development`.
    pub environment: String,
}

/// Attestation storage.
#[async_trait]
pub trait AttestStore: Send + Sync + 'static {
    /// Registers a package.
    ///
    /// # Errors
    /// [`crate::StoreError::Conflict`] if this app id and version exist.
    async fn put_release(
        &self,
        app_id: &str,
        version: &str,
        package: &[u8],
        sha256: &[u8],
        now: i64,
    ) -> Result<Release>;
    /// Registered packages, newest first.
    async fn releases(&self, limit: u32) -> Result<Vec<Release>>;
    /// One package's metadata.
    async fn release(&self, app_id: &str, version: &str) -> Result<Option<Release>>;
    /// Retires a package; false if unknown.
    async fn retire_release(&self, app_id: &str, version: &str) -> Result<bool>;
    /// Bytes of the package at `(offset, length)` ranges, in order.
    async fn release_ranges(
        &self,
        app_id: &str,
        version: &str,
        ranges: &[(u64, u64)],
    ) -> Result<Vec<Vec<u8>>>;

    /// Integrity secrets, newest first.
    async fn integrity_keys(&self) -> Result<Vec<IntegrityKey>>;
    /// Retires the current secret and makes `key` current.
    async fn rotate_integrity_key(&self, key: IntegrityKey, now: i64) -> Result<()>;

    /// Stores an attested key (replacing one with the same id).
    async fn put_attest_key(&self, key: AttestKey, now: i64) -> Result<()>;
    /// An attested key.
    async fn attest_key(&self, key_id: &str) -> Result<Option<AttestKey>>;
    /// Moves the counter from `old` to `new` (only forward); false if it moved meanwhile.
    async fn advance_attest_counter(&self, key_id: &str, old: i64, new: i64) -> Result<bool>;
}
