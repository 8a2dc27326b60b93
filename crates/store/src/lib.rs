//! Moat's storage: one trait, its records, and its backends.
//!
//! # Design
//! The [`Store`] trait is shaped by what the server must do *atomically*, not by tables:
//! "issue this credential and put it in the mailbox" is one method, so that no backend can
//! leave a credential in a mailbox without its device row, or the reverse. Reads on the hot
//! path (find a device by key lookup id, by client id, by installation key) are single-row
//! lookups on unique or indexed columns.
//!
//! Every method takes the current time as an argument; no backend reads the clock. Backends
//! map their driver errors to [`StoreError`], whose `Unavailable` variant is what the server
//! turns into `503 unavailable`: Moat fails closed when its store is down.
//!
//! Backends: [`sqlite`] (the embedded default, one machine) and [`postgres`] (several
//! instances). Both run the same SQL, written once in `sql/`; one conformance suite
//! (`tests/conformance.rs`) runs unchanged against each. [`open`] picks the backend from the
//! URL.

use async_trait::async_trait;
use uuid::Uuid;

pub mod accounts;
pub mod attest;
pub mod migrate;
pub mod ops;
pub mod otp;
pub mod postgres;
pub mod schema;
mod sql;
pub mod sqlite;

/// Errors of the storage layer.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record does not exist.
    #[error("not found")]
    NotFound,
    /// The write conflicts with existing state (for example a revoked device).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The backend cannot be reached or timed out: the caller must fail closed.
    #[error("store unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Any other backend error.
    #[error("store error")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Result type of the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Lifecycle of a device.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceStatus {
    /// Its credential is accepted.
    Active,
    /// Revoked by an operator: refused, and re-enrollment of the same identity and
    /// `device_id` is refused too, for as long as the row is kept (see [`Store::cleanup`]).
    Revoked,
}

impl DeviceStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
        }
    }
}

/// A device and its credential (secrets sealed or hashed).
#[derive(Clone, Debug)]
pub struct Device {
    /// Moat's id of the device, sent upstream as `Moat-Device`.
    pub id: Uuid,
    /// `inst:<thumbprint>` or `fb:<uid>`.
    pub identity: String,
    /// The app's own device id.
    pub device_id: String,
    /// Enrollment mode that issued the credential (`dynamic`, `otp`).
    pub mode: String,
    /// `android`, `ios`, `other`.
    pub platform: Option<String>,
    /// Active or revoked.
    pub status: DeviceStatus,
    /// Credential fields.
    pub credential: Credential,
    /// First enrollment, Unix seconds.
    pub created_at: i64,
    /// Last credential rotation, Unix seconds.
    pub rotated_at: i64,
    /// Last accepted request (flushed in batches), Unix seconds.
    pub last_used_at: i64,
    /// When it was revoked.
    pub revoked_at: Option<i64>,
}

/// The credential columns of a device.
#[derive(Clone, Debug, Default)]
pub struct Credential {
    /// Public lookup id of the API key (dynamic mode).
    pub key_lookup: Option<String>,
    /// Keyed hash of the API key secret.
    pub key_hash: Option<Vec<u8>>,
    /// Client id (otp mode), the RFC 9421 `keyid`.
    pub client_id: Option<String>,
    /// Sealed HMAC secret (otp mode).
    pub hmac_secret_sealed: Option<Vec<u8>>,
    /// `kid` of the device's RSA encryption key (otp mode).
    pub rsa_kid: Option<String>,
    /// Sealed PKCS#8 RSA private key (otp mode).
    pub rsa_private_sealed: Option<Vec<u8>>,
    /// Public JWK of the installation key (built-in identity), for `ecdsa-p256-sha256` and
    /// `ed25519` request signatures.
    pub signing_jwk: Option<String>,
}

/// A credential to issue to (identity, device_id).
#[derive(Clone, Debug)]
pub struct NewCredential {
    /// Id to use if the device is new; an existing device keeps its id.
    pub id: Uuid,
    /// Identity.
    pub identity: String,
    /// App device id.
    pub device_id: String,
    /// Mode.
    pub mode: String,
    /// Platform.
    pub platform: Option<String>,
    /// Credential fields.
    pub credential: Credential,
}

/// A mailbox item to store (payload sealed by the caller).
#[derive(Clone, Debug)]
pub struct NewMailboxItem {
    /// Item id.
    pub id: String,
    /// Recipient identity.
    pub identity: String,
    /// Sealed JSON payload (empty for items delivered elsewhere: see [`Channel`]).
    pub payload_sealed: Vec<u8>,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
    /// Where the item is delivered.
    pub channel: Channel,
}

/// Where a mailbox item lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// Here, read with `GET /v1/mailbox` (and removed on read).
    Builtin,
    /// In the Firebase Realtime Database; the row is only an index for the cleanup job.
    Firebase,
}

impl Channel {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Builtin => "builtin",
            Self::Firebase => "firebase",
        }
    }
}

/// A mailbox item delivered elsewhere, due for deletion there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteItem {
    /// Item id.
    pub id: String,
    /// Recipient identity.
    pub identity: String,
}

/// A stored mailbox item.
#[derive(Clone, Debug)]
pub struct MailboxItem {
    /// Item id.
    pub id: String,
    /// Sealed JSON payload.
    pub payload_sealed: Vec<u8>,
    /// Creation, Unix seconds.
    pub created_at: i64,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
}

/// A pending enrollment OTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtpRecord {
    /// Record id.
    pub id: String,
    /// Identity.
    pub identity: String,
    /// App device id.
    pub device_id: String,
    /// Platform given at enrollment.
    pub platform: Option<String>,
    /// Sealed TOTP secret.
    pub secret_sealed: Vec<u8>,
    /// TOTP time step the code was issued at.
    pub step: i64,
    /// Attempts taken so far (each compared one code).
    pub attempts: i64,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
    /// When it was accepted, if it was.
    pub used_at: Option<i64>,
}

/// The outcome of taking an attempt at a code (an enrollment OTP or an SMS code).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt<T> {
    /// The attempt was counted; the record carries the count including it.
    Taken(T),
    /// Every attempt was already taken: the code is locked.
    Locked,
    /// No such code (or it was used).
    Missing,
}

/// What a cleanup pass removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Expired mailbox items.
    pub mailbox_items: u64,
    /// Expired or used enrollment OTPs.
    pub otps: u64,
    /// Active devices unused since the dormancy cut-off.
    pub dormant_devices: u64,
    /// Revoked devices unused since the dormancy cut-off whose credential columns were
    /// dropped (their rows stay, as tombstones).
    pub revoked_credentials: u64,
    /// Revoked devices whose tombstone outlived its retention, deleted.
    pub expired_revocations: u64,
}

/// Builds the mailbox item for a credential once the device row is written (so the item can
/// name the device id the transaction actually used). Called inside the transaction.
pub type MailboxBuilder = Box<dyn FnOnce(&Device) -> Result<NewMailboxItem> + Send>;

/// Most mailbox items kept per identity; older ones are dropped when a new one arrives.
pub const MAILBOX_CAP: i64 = 16;
/// Most devices returned by one listing page.
pub const MAX_PAGE: u32 = 500;

/// Moat's persistent state.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Checks the backend answers.
    async fn ping(&self) -> Result<()>;

    /// Issues (first enrollment) or rotates (re-enrollment) the credential of
    /// `(identity, device_id)` and, in the same transaction, stores `item` in the mailbox.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] if that device is revoked.
    async fn issue_credential(
        &self,
        cred: NewCredential,
        item: Option<MailboxBuilder>,
        now: i64,
    ) -> Result<Device>;

    /// Stores a mailbox item on its own (static mode, where no device row exists).
    async fn put_mailbox_item(&self, item: NewMailboxItem, now: i64) -> Result<()>;

    /// The device with this id.
    async fn device(&self, id: Uuid) -> Result<Option<Device>>;
    /// The device of `(identity, device_id)`, whatever its status.
    async fn device_by_identity(&self, identity: &str, device_id: &str) -> Result<Option<Device>>;
    /// The device whose API key has this lookup id.
    async fn device_by_key_lookup(&self, lookup: &str) -> Result<Option<Device>>;
    /// The device with this client id.
    async fn device_by_client_id(&self, client_id: &str) -> Result<Option<Device>>;
    /// The most recently rotated active device of an identity (for installation-key
    /// signatures, whose `keyid` names the identity).
    async fn latest_active_device(&self, identity: &str) -> Result<Option<Device>>;
    /// Devices ordered by creation, newest first.
    async fn list_devices(&self, limit: u32, offset: u32) -> Result<Vec<Device>>;
    /// Devices whose uuid, app device id, identity or client id is exactly `q`, newest first.
    async fn search_devices(&self, q: &str, limit: u32) -> Result<Vec<Device>>;
    /// Revokes a device. Returns false if it does not exist.
    async fn revoke_device(&self, id: Uuid, now: i64) -> Result<bool>;
    /// Records last-use times, batched by the caller.
    async fn touch_devices(&self, seen: &[(Uuid, i64)]) -> Result<()>;

    /// Stores a new enrollment OTP for `(identity, device_id)`, replacing any pending one, and
    /// puts `item` in the mailbox, in one transaction (no item: it was delivered elsewhere).
    async fn put_enrollment_otp(
        &self,
        otp: OtpRecord,
        item: Option<NewMailboxItem>,
        now: i64,
    ) -> Result<()>;
    /// The enrollment OTP of `(identity, device_id)`, if any.
    async fn enrollment_otp(&self, identity: &str, device_id: &str) -> Result<Option<OtpRecord>>;
    /// Takes one of the `max_attempts` attempts at the unused enrollment OTP of
    /// `(identity, device_id)`, in one conditional update: the count is checked and raised by
    /// the same statement, so of any number of concurrent callers at most `max_attempts` ever
    /// get the record (with `attempts` counting theirs) and compare a code.
    async fn take_otp_attempt(
        &self,
        identity: &str,
        device_id: &str,
        max_attempts: i64,
    ) -> Result<Attempt<OtpRecord>>;
    /// Marks the OTP used if it is unused, unexpired and was reached within `max_attempts`
    /// attempts. Returns whether this call consumed it: of concurrent callers, exactly one gets
    /// `true`.
    async fn consume_otp(&self, id: &str, now: i64, max_attempts: i64) -> Result<bool>;

    /// Removes and returns up to `limit` unexpired built-in items for `identity`, oldest first.
    async fn take_mailbox(&self, identity: &str, now: i64, limit: u32) -> Result<Vec<MailboxItem>>;

    /// Up to `limit` expired items of `channel` (delivered elsewhere), oldest first: the
    /// cleanup job deletes each where it lives, then its row with [`Self::remove_mailbox_item`].
    async fn expired_items(
        &self,
        channel: Channel,
        now: i64,
        limit: u32,
    ) -> Result<Vec<RemoteItem>>;

    /// Removes one mailbox item row; false if it did not exist.
    async fn remove_mailbox_item(&self, id: &str) -> Result<bool>;

    /// Deletes expired built-in mailbox items, expired or used OTPs, and active devices not
    /// used since `dormant_before`. Items of other channels are left to
    /// [`Self::expired_items`].
    ///
    /// A revoked device is not deleted for dormancy: its row is the tombstone that keeps
    /// [`Self::issue_credential`] refusing its identity and `device_id`, and deleting it would
    /// let the revoked installation enroll again. Once unused since `dormant_before` it only
    /// loses its credential columns (nothing left in it can authenticate or be unsealed); it is
    /// deleted once also revoked before `revoked_before`, the tombstones' retention, so the
    /// table stays bounded by the revocations of that period.
    async fn cleanup(
        &self,
        now: i64,
        dormant_before: i64,
        revoked_before: i64,
    ) -> Result<CleanupReport>;

    /// Takes the lease `name` for `holder` until `until` if it is free, expired, or held by
    /// `holder` already (a renewal). Returns whether `holder` now holds it: of instances asking
    /// at once, one does. Jobs that must run on one instance at a time (cleanup) run only while
    /// they hold their lease.
    async fn acquire_lease(&self, name: &str, holder: &str, now: i64, until: i64) -> Result<bool>;
}

/// A backend implementing all three storage traits.
pub trait Backend: Store + accounts::AccountStore + attest::AttestStore + ops::OpsStore {}
impl<T: Store + accounts::AccountStore + attest::AttestStore + ops::OpsStore> Backend for T {}

/// Pool and timeout settings shared by both backends.
#[derive(Clone, Debug)]
pub struct PoolOptions {
    /// Most pooled connections.
    pub max_connections: u32,
    /// How long a caller waits for a connection (and, on PostgreSQL, for a statement) before
    /// the store counts as unavailable.
    pub timeout: std::time::Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            timeout: std::time::Duration::from_secs(3),
        }
    }
}

/// The three views of one opened backend.
#[derive(Clone)]
pub struct Opened {
    /// Devices, mailbox, OTPs.
    pub store: std::sync::Arc<dyn Store>,
    /// Users, codes, SMS, tokens.
    pub accounts: std::sync::Arc<dyn accounts::AccountStore>,
    /// Releases, integrity keys, App Attest keys.
    pub attest: std::sync::Arc<dyn attest::AttestStore>,
    /// Audit log and daily counters.
    pub ops: std::sync::Arc<dyn ops::OpsStore>,
}

impl Opened {
    fn of<T: Backend>(backend: T) -> Self {
        let backend = std::sync::Arc::new(backend);
        Self {
            store: backend.clone(),
            accounts: backend.clone(),
            attest: backend.clone(),
            ops: backend,
        }
    }
}

/// `url` as it may be shown to people and logs: a password in it is replaced by `***`.
pub fn shown_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***{}", &rest[at..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Whether the store at `url` exists and has been set up (migrated at least once), found
/// without creating or changing anything: a SQLite file that is not there is not created.
///
/// # Errors
/// [`StoreError`] for an unknown scheme or a database that cannot be reached.
pub async fn exists(url: &str) -> Result<bool> {
    use sqlx::Connection as _;
    use std::str::FromStr as _;
    const TABLE: &str = "_sqlx_migrations";
    let backend = |e: sqlx::Error| StoreError::Backend(Box::new(e));
    if url.starts_with("sqlite:") {
        if url.contains(":memory:") || url.contains("mode=memory") {
            return Ok(false);
        }
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
            .map_err(backend)?
            .read_only(true)
            .create_if_missing(false);
        if !options.get_filename().exists() {
            return Ok(false);
        }
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .map_err(backend)?;
        let found: Option<(String,)> =
            sqlx::query_as("SELECT name FROM sqlite_master WHERE type = 'table' AND name = $1")
                .bind(TABLE)
                .fetch_optional(&mut conn)
                .await
                .map_err(backend)?;
        let _ = conn.close().await;
        Ok(found.is_some())
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let options = sqlx::postgres::PgConnectOptions::from_str(url)
            .map_err(backend)?
            .application_name("moat-admin");
        let mut conn = sqlx::PgConnection::connect_with(&options)
            .await
            .map_err(backend)?;
        let (found,): (bool,) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = $1)",
        )
        .bind(TABLE)
        .fetch_one(&mut conn)
        .await
        .map_err(backend)?;
        let _ = conn.close().await;
        Ok(found)
    } else {
        Err(StoreError::Backend(
            "store.url must start with sqlite:, postgres:// or postgresql://".into(),
        ))
    }
}

/// Opens the store at `url` (`sqlite://…`, `sqlite::memory:`, `postgres://…` or
/// `postgresql://…`) and applies its migrations.
///
/// # Errors
/// [`StoreError`] for an unknown scheme, an unreachable database or a failed migration.
pub async fn open(url: &str, options: &PoolOptions) -> Result<Opened> {
    if url.starts_with("sqlite:") {
        let sqlite = sqlite::SqliteOptions {
            acquire_timeout: options.timeout,
            ..sqlite::SqliteOptions::default()
        };
        Ok(Opened::of(sqlite::SqliteStore::open(url, &sqlite).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Opened::of(postgres::PgStore::open(url, options).await?))
    } else {
        Err(StoreError::Backend(
            "store.url must start with sqlite:, postgres:// or postgresql://".into(),
        ))
    }
}

#[cfg(test)]
mod shown_url_tests {
    #[test]
    fn the_password_is_hidden() {
        assert_eq!(
            super::shown_url("postgres://moat:s3cret@db:5432/moat"),
            "postgres://moat:***@db:5432/moat"
        );
        assert_eq!(
            super::shown_url("sqlite://./d/moat.db"),
            "sqlite://./d/moat.db"
        );
        assert_eq!(super::shown_url("postgres://db/x"), "postgres://db/x");
    }
}
