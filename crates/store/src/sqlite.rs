//! The embedded SQLite backend (sqlx, WAL mode).
//!
//! sqlx runs each SQLite connection on its own worker thread, so nothing here blocks the
//! async runtime; every statement costs a channel round trip (~20 µs), which is why the
//! server batches last-use updates and keeps replay caches in memory instead of here.

use std::borrow::Cow;
use std::str::FromStr as _;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row as _, SqlSafeStr as _, SqlitePool};
use uuid::Uuid;

use crate::{
    CleanupReport, Credential, Device, DeviceStatus, MAILBOX_CAP, MAX_PAGE, MailboxBuilder,
    MailboxItem, NewCredential, NewMailboxItem, OtpRecord, Result, Store, StoreError,
};

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "accounts",
        include_str!("../migrations/sqlite/0002_accounts.sql"),
    ),
    (
        3,
        "attestation",
        include_str!("../migrations/sqlite/0003_attestation.sql"),
    ),
];

/// Options for opening the SQLite store.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// Most pooled connections.
    pub max_connections: u32,
    /// How long a caller waits for a connection before the store counts as unavailable.
    pub acquire_timeout: Duration,
    /// How long SQLite waits on a locked database.
    pub busy_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            max_connections: 4,
            acquire_timeout: Duration::from_secs(3),
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// The SQLite store.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
}

pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(Box::new(e))
        }
        sqlx::Error::Database(ref db)
            if db.message().contains("locked") || db.message().contains("busy") =>
        {
            StoreError::Unavailable(Box::new(e))
        }
        other => StoreError::Backend(Box::new(other)),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://path` or `sqlite::memory:`)
    /// and applies migrations.
    ///
    /// # Errors
    /// [`StoreError`] if the file cannot be opened or a migration fails.
    pub async fn open(url: &str, options: &SqliteOptions) -> Result<Self> {
        let connect = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Backend(Box::new(e)))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(options.busy_timeout)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(map_err)?;
        let migrations = MIGRATIONS
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect();
        Migrator::with_migrations(migrations)
            .run(&pool)
            .await
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        Ok(Self { pool })
    }
}

const DEVICE_COLUMNS: &str = "id, identity, device_id, mode, platform, status, key_lookup, key_hash, client_id, \
     hmac_secret_sealed, rsa_kid, rsa_private_sealed, signing_jwk, created_at, rotated_at, last_used_at, revoked_at";

fn device_from_row(row: &SqliteRow) -> Result<Device> {
    let get_err = |e: sqlx::Error| StoreError::Backend(Box::new(e));
    let id: String = row.try_get("id").map_err(get_err)?;
    let status: String = row.try_get("status").map_err(get_err)?;
    Ok(Device {
        id: Uuid::parse_str(&id).map_err(|e| StoreError::Backend(Box::new(e)))?,
        identity: row.try_get("identity").map_err(get_err)?,
        device_id: row.try_get("device_id").map_err(get_err)?,
        mode: row.try_get("mode").map_err(get_err)?,
        platform: row.try_get("platform").map_err(get_err)?,
        status: if status == "active" {
            DeviceStatus::Active
        } else {
            DeviceStatus::Revoked
        },
        credential: Credential {
            key_lookup: row.try_get("key_lookup").map_err(get_err)?,
            key_hash: row.try_get("key_hash").map_err(get_err)?,
            client_id: row.try_get("client_id").map_err(get_err)?,
            hmac_secret_sealed: row.try_get("hmac_secret_sealed").map_err(get_err)?,
            rsa_kid: row.try_get("rsa_kid").map_err(get_err)?,
            rsa_private_sealed: row.try_get("rsa_private_sealed").map_err(get_err)?,
            signing_jwk: row.try_get("signing_jwk").map_err(get_err)?,
        },
        created_at: row.try_get("created_at").map_err(get_err)?,
        rotated_at: row.try_get("rotated_at").map_err(get_err)?,
        last_used_at: row.try_get("last_used_at").map_err(get_err)?,
        revoked_at: row.try_get("revoked_at").map_err(get_err)?,
    })
}

fn otp_from_row(row: &SqliteRow) -> Result<OtpRecord> {
    let get_err = |e: sqlx::Error| StoreError::Backend(Box::new(e));
    Ok(OtpRecord {
        id: row.try_get("id").map_err(get_err)?,
        identity: row.try_get("identity").map_err(get_err)?,
        device_id: row.try_get("device_id").map_err(get_err)?,
        platform: row.try_get("platform").map_err(get_err)?,
        secret_sealed: row.try_get("secret_sealed").map_err(get_err)?,
        step: row.try_get("step").map_err(get_err)?,
        attempts: row.try_get("attempts").map_err(get_err)?,
        expires_at: row.try_get("expires_at").map_err(get_err)?,
        used_at: row.try_get("used_at").map_err(get_err)?,
    })
}

async fn insert_mailbox_item<'c>(
    tx: &mut sqlx::Transaction<'c, sqlx::Sqlite>,
    item: &NewMailboxItem,
    now: i64,
) -> Result<()> {
    // Keep at most MAILBOX_CAP items per identity: drop the oldest beyond the cap.
    sqlx::query(
        "DELETE FROM mailbox_items WHERE identity = ?1 AND id NOT IN \
         (SELECT id FROM mailbox_items WHERE identity = ?1 ORDER BY created_at DESC, id DESC LIMIT ?2)",
    )
    .bind(&item.identity)
    .bind(MAILBOX_CAP - 1)
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    sqlx::query(
        "INSERT INTO mailbox_items (id, identity, payload_sealed, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&item.id)
    .bind(&item.identity)
    .bind(&item.payload_sealed)
    .bind(now)
    .bind(item.expires_at)
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(())
}

impl SqliteStore {
    async fn device_where(&self, clause: &str, value: &str) -> Result<Option<Device>> {
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE {clause}");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(value)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(device_from_row).transpose()
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn issue_credential(
        &self,
        cred: NewCredential,
        item: Option<MailboxBuilder>,
        now: i64,
    ) -> Result<Device> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let c = &cred.credential;
        // One statement: insert, or rotate the credential of an active device in place. A
        // revoked device matches the conflict target but not the WHERE, so nothing returns.
        let sql = format!(
            "INSERT INTO devices (id, identity, device_id, mode, platform, status, key_lookup, key_hash, client_id, \
             hmac_secret_sealed, rsa_kid, rsa_private_sealed, signing_jwk, created_at, rotated_at, last_used_at) \
             VALUES (?, ?, ?, ?, ?, 'active', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (identity, device_id) DO UPDATE SET mode = excluded.mode, platform = excluded.platform, \
             key_lookup = excluded.key_lookup, key_hash = excluded.key_hash, client_id = excluded.client_id, \
             hmac_secret_sealed = excluded.hmac_secret_sealed, rsa_kid = excluded.rsa_kid, \
             rsa_private_sealed = excluded.rsa_private_sealed, signing_jwk = excluded.signing_jwk, \
             rotated_at = excluded.rotated_at, last_used_at = excluded.last_used_at \
             WHERE devices.status = 'active' RETURNING {DEVICE_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(cred.id.to_string())
            .bind(&cred.identity)
            .bind(&cred.device_id)
            .bind(&cred.mode)
            .bind(&cred.platform)
            .bind(&c.key_lookup)
            .bind(&c.key_hash)
            .bind(&c.client_id)
            .bind(&c.hmac_secret_sealed)
            .bind(&c.rsa_kid)
            .bind(&c.rsa_private_sealed)
            .bind(&c.signing_jwk)
            .bind(now)
            .bind(now)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?;
        let Some(row) = row else {
            return Err(StoreError::Conflict("device revoked"));
        };
        let device = device_from_row(&row)?;
        if let Some(build) = item {
            let item = build(&device)?;
            insert_mailbox_item(&mut tx, &item, now).await?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(device)
    }

    async fn put_mailbox_item(&self, item: NewMailboxItem, now: i64) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        insert_mailbox_item(&mut tx, &item, now).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn device(&self, id: Uuid) -> Result<Option<Device>> {
        self.device_where("id = ?", &id.to_string()).await
    }

    async fn device_by_identity(&self, identity: &str, device_id: &str) -> Result<Option<Device>> {
        let sql =
            format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE identity = ? AND device_id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(identity)
            .bind(device_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(device_from_row).transpose()
    }

    async fn device_by_key_lookup(&self, lookup: &str) -> Result<Option<Device>> {
        self.device_where("key_lookup = ?", lookup).await
    }

    async fn device_by_client_id(&self, client_id: &str) -> Result<Option<Device>> {
        self.device_where("client_id = ?", client_id).await
    }

    async fn latest_active_device(&self, identity: &str) -> Result<Option<Device>> {
        self.device_where(
            "identity = ? AND status = 'active' ORDER BY rotated_at DESC, id DESC LIMIT 1",
            identity,
        )
        .await
    }

    async fn list_devices(&self, limit: u32, offset: u32) -> Result<Vec<Device>> {
        let sql = format!(
            "SELECT {DEVICE_COLUMNS} FROM devices ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i64::from(limit.min(MAX_PAGE)))
            .bind(i64::from(offset))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(device_from_row).collect()
    }

    async fn revoke_device(&self, id: Uuid, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE devices SET status = 'revoked', revoked_at = COALESCE(revoked_at, ?) WHERE id = ?",
        )
        .bind(now)
        .bind(id.to_string())
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn touch_devices(&self, seen: &[(Uuid, i64)]) -> Result<()> {
        if seen.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        for (id, at) in seen {
            sqlx::query("UPDATE devices SET last_used_at = MAX(last_used_at, ?) WHERE id = ?")
                .bind(at)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)
    }

    async fn put_enrollment_otp(
        &self,
        otp: OtpRecord,
        item: NewMailboxItem,
        now: i64,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        sqlx::query(
            "INSERT INTO enrollment_otps (id, identity, device_id, platform, secret_sealed, step, attempts, created_at, expires_at, used_at) \
             VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, NULL) \
             ON CONFLICT (identity, device_id) DO UPDATE SET id = excluded.id, platform = excluded.platform, \
             secret_sealed = excluded.secret_sealed, step = excluded.step, attempts = 0, \
             created_at = excluded.created_at, expires_at = excluded.expires_at, used_at = NULL",
        )
        .bind(&otp.id)
        .bind(&otp.identity)
        .bind(&otp.device_id)
        .bind(&otp.platform)
        .bind(&otp.secret_sealed)
        .bind(otp.step)
        .bind(now)
        .bind(otp.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        insert_mailbox_item(&mut tx, &item, now).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn enrollment_otp(&self, identity: &str, device_id: &str) -> Result<Option<OtpRecord>> {
        let row = sqlx::query(
            "SELECT id, identity, device_id, platform, secret_sealed, step, attempts, expires_at, used_at \
             FROM enrollment_otps WHERE identity = ? AND device_id = ?",
        )
        .bind(identity)
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        row.as_ref().map(otp_from_row).transpose()
    }

    async fn record_otp_failure(&self, id: &str) -> Result<i64> {
        let row = sqlx::query(
            "UPDATE enrollment_otps SET attempts = attempts + 1 WHERE id = ? RETURNING attempts",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?
        .ok_or(StoreError::NotFound)?;
        row.try_get(0).map_err(|e| StoreError::Backend(Box::new(e)))
    }

    async fn consume_otp(&self, id: &str, now: i64, max_attempts: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE enrollment_otps SET used_at = ? WHERE id = ? AND used_at IS NULL AND expires_at > ? AND attempts < ?",
        )
        .bind(now)
        .bind(id)
        .bind(now)
        .bind(max_attempts)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn take_mailbox(&self, identity: &str, now: i64, limit: u32) -> Result<Vec<MailboxItem>> {
        let rows = sqlx::query(
            "DELETE FROM mailbox_items WHERE id IN (SELECT id FROM mailbox_items WHERE identity = ? AND expires_at > ? \
             ORDER BY created_at, id LIMIT ?) RETURNING id, payload_sealed, created_at, expires_at",
        )
        .bind(identity)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        let get_err = |e: sqlx::Error| StoreError::Backend(Box::new(e));
        let mut items = rows
            .iter()
            .map(|r| {
                Ok(MailboxItem {
                    id: r.try_get("id").map_err(get_err)?,
                    payload_sealed: r.try_get("payload_sealed").map_err(get_err)?,
                    created_at: r.try_get("created_at").map_err(get_err)?,
                    expires_at: r.try_get("expires_at").map_err(get_err)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // RETURNING order is unspecified in SQLite.
        items.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(items)
    }

    async fn cleanup(&self, now: i64, dormant_before: i64) -> Result<CleanupReport> {
        let mailbox = sqlx::query("DELETE FROM mailbox_items WHERE expires_at <= ?")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        let otps =
            sqlx::query("DELETE FROM enrollment_otps WHERE expires_at <= ? OR used_at IS NOT NULL")
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
        let devices = sqlx::query("DELETE FROM devices WHERE last_used_at < ?")
            .bind(dormant_before)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(CleanupReport {
            mailbox_items: mailbox.rows_affected(),
            otps: otps.rows_affected(),
            dormant_devices: devices.rows_affected(),
        })
    }
}
