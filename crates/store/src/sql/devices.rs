//! [`Store`] (devices, enrollment codes, the mailbox, cleanup and leases) in the shared SQL.

use async_trait::async_trait;
use uuid::Uuid;

use super::{Affected as _, Arg as _, Db, Decodes, SqlStore, execute_one, get, on, uuid};
use crate::{
    Attempt, Channel, CleanupReport, Credential, Device, DeviceStatus, MAILBOX_CAP, MAX_PAGE,
    MailboxBuilder, MailboxItem, NewCredential, NewMailboxItem, OtpRecord, RemoteItem, Result,
    Store, StoreError,
};

const DEVICE_COLUMNS: &str = "id, identity, device_id, mode, platform, status, key_lookup, key_hash, \
     client_id, hmac_secret_sealed, rsa_kid, rsa_private_sealed, signing_jwk, created_at, rotated_at, \
     last_used_at, revoked_at";

fn device_from_row(row: &impl Decodes) -> Result<Device> {
    let status: String = get(row, "status")?;
    Ok(Device {
        id: uuid(&get::<String>(row, "id")?)?,
        identity: get(row, "identity")?,
        device_id: get(row, "device_id")?,
        mode: get(row, "mode")?,
        platform: get(row, "platform")?,
        status: if status == "active" {
            DeviceStatus::Active
        } else {
            DeviceStatus::Revoked
        },
        credential: Credential {
            key_lookup: get(row, "key_lookup")?,
            key_hash: get(row, "key_hash")?,
            client_id: get(row, "client_id")?,
            hmac_secret_sealed: get(row, "hmac_secret_sealed")?,
            rsa_kid: get(row, "rsa_kid")?,
            rsa_private_sealed: get(row, "rsa_private_sealed")?,
            signing_jwk: get(row, "signing_jwk")?,
        },
        created_at: get(row, "created_at")?,
        rotated_at: get(row, "rotated_at")?,
        last_used_at: get(row, "last_used_at")?,
        revoked_at: get(row, "revoked_at")?,
    })
}

fn otp_from_row(row: &impl Decodes) -> Result<OtpRecord> {
    Ok(OtpRecord {
        id: get(row, "id")?,
        identity: get(row, "identity")?,
        device_id: get(row, "device_id")?,
        platform: get(row, "platform")?,
        secret_sealed: get(row, "secret_sealed")?,
        step: get(row, "step")?,
        attempts: get(row, "attempts")?,
        expires_at: get(row, "expires_at")?,
        used_at: get(row, "used_at")?,
    })
}

async fn insert_mailbox_item<DB: Db>(
    tx: &mut sqlx::Transaction<'_, DB>,
    item: &NewMailboxItem,
    now: i64,
) -> Result<()> {
    // Keep at most MAILBOX_CAP built-in items per identity: drop the oldest beyond the
    // cap. (Rows of other channels index items living elsewhere: they go only once
    // the item there is deleted.)
    if item.channel == Channel::Builtin {
        sqlx::query(
            "DELETE FROM mailbox_items WHERE identity = $1 AND channel = 'builtin' AND id NOT IN \
             (SELECT id FROM mailbox_items WHERE identity = $1 AND channel = 'builtin' \
             ORDER BY created_at DESC, id DESC LIMIT $2)",
        )
        .arg(&item.identity)
        .arg(MAILBOX_CAP - 1)
        .execute(DB::conn(tx))
        .await
        .map_err(DB::map_err)?;
    }
    sqlx::query(
        "INSERT INTO mailbox_items (id, identity, payload_sealed, created_at, expires_at, channel) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .arg(&item.id)
    .arg(&item.identity)
    .arg(&item.payload_sealed)
    .arg(now)
    .arg(item.expires_at)
    .arg(item.channel.as_str())
    .execute(DB::conn(tx))
    .await
    .map_err(DB::map_err)?;
    Ok(())
}

/// The device matching `clause`, whose one parameter is `value`.
async fn device_where<DB: Db>(
    pool: &sqlx::Pool<DB>,
    clause: &str,
    value: &str,
) -> Result<Option<Device>> {
    let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE {clause}");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .arg(value)
        .fetch_optional(DB::pool(pool))
        .await
        .map_err(DB::map_err)?;
    row.as_ref().map(device_from_row).transpose()
}

#[async_trait]
impl<S: SqlStore> Store for S {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(self.exec())
            .await
            .map_err(S::err)?;
        Ok(())
    }

    async fn issue_credential(
        &self,
        cred: NewCredential,
        item: Option<MailboxBuilder>,
        now: i64,
    ) -> Result<Device> {
        let mut tx = self.pool().begin().await.map_err(S::err)?;
        let c = &cred.credential;
        // One statement: insert, or rotate the credential of an active device in
        // place. A revoked device matches the conflict target but not the WHERE, so
        // nothing returns.
        let sql = format!(
            "INSERT INTO devices (id, identity, device_id, mode, platform, status, key_lookup, key_hash, \
             client_id, hmac_secret_sealed, rsa_kid, rsa_private_sealed, signing_jwk, created_at, rotated_at, \
             last_used_at) VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $8, $9, $10, $11, $12, $13, $13, $13) \
             ON CONFLICT (identity, device_id) DO UPDATE SET mode = excluded.mode, platform = excluded.platform, \
             key_lookup = excluded.key_lookup, key_hash = excluded.key_hash, client_id = excluded.client_id, \
             hmac_secret_sealed = excluded.hmac_secret_sealed, rsa_kid = excluded.rsa_kid, \
             rsa_private_sealed = excluded.rsa_private_sealed, signing_jwk = excluded.signing_jwk, \
             rotated_at = excluded.rotated_at, last_used_at = excluded.last_used_at \
             WHERE devices.status = 'active' RETURNING {DEVICE_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .arg(cred.id.to_string())
            .arg(&cred.identity)
            .arg(&cred.device_id)
            .arg(&cred.mode)
            .arg(&cred.platform)
            .arg(&c.key_lookup)
            .arg(&c.key_hash)
            .arg(&c.client_id)
            .arg(&c.hmac_secret_sealed)
            .arg(&c.rsa_kid)
            .arg(&c.rsa_private_sealed)
            .arg(&c.signing_jwk)
            .arg(now)
            .fetch_optional(on(&mut tx))
            .await
            .map_err(S::err)?;
        let Some(row) = row else {
            return Err(StoreError::Conflict("device revoked"));
        };
        let device = device_from_row(&row)?;
        if let Some(build) = item {
            let item = build(&device)?;
            insert_mailbox_item(&mut tx, &item, now).await?;
        }
        tx.commit().await.map_err(S::err)?;
        Ok(device)
    }

    async fn put_mailbox_item(&self, item: NewMailboxItem, now: i64) -> Result<()> {
        let mut tx = self.pool().begin().await.map_err(S::err)?;
        insert_mailbox_item(&mut tx, &item, now).await?;
        tx.commit().await.map_err(S::err)
    }

    async fn device(&self, id: Uuid) -> Result<Option<Device>> {
        device_where(self.pool(), "id = $1", &id.to_string()).await
    }

    async fn device_by_identity(&self, identity: &str, device_id: &str) -> Result<Option<Device>> {
        let sql =
            format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE identity = $1 AND device_id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .arg(identity)
            .arg(device_id)
            .fetch_optional(self.exec())
            .await
            .map_err(S::err)?;
        row.as_ref().map(device_from_row).transpose()
    }

    async fn device_by_key_lookup(&self, lookup: &str) -> Result<Option<Device>> {
        device_where(self.pool(), "key_lookup = $1", lookup).await
    }

    async fn device_by_client_id(&self, client_id: &str) -> Result<Option<Device>> {
        device_where(self.pool(), "client_id = $1", client_id).await
    }

    async fn latest_active_device(&self, identity: &str) -> Result<Option<Device>> {
        device_where(
            self.pool(),
            "identity = $1 AND status = 'active' ORDER BY rotated_at DESC, id DESC LIMIT 1",
            identity,
        )
        .await
    }

    async fn list_devices(&self, limit: u32, offset: u32) -> Result<Vec<Device>> {
        let sql = format!(
            "SELECT {DEVICE_COLUMNS} FROM devices ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .arg(i64::from(limit.min(MAX_PAGE)))
            .arg(i64::from(offset))
            .fetch_all(self.exec())
            .await
            .map_err(S::err)?;
        rows.iter().map(device_from_row).collect()
    }

    async fn search_devices(&self, q: &str, limit: u32) -> Result<Vec<Device>> {
        let sql = format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1 OR device_id = $1 OR identity = $1 \
             OR client_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .arg(q)
            .arg(i64::from(limit.min(MAX_PAGE)))
            .fetch_all(self.exec())
            .await
            .map_err(S::err)?;
        rows.iter().map(device_from_row).collect()
    }

    async fn revoke_device(&self, id: Uuid, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE devices SET status = 'revoked', revoked_at = COALESCE(revoked_at, $1) WHERE id = $2",
        )
        .arg(now)
        .arg(id.to_string())
        .execute(self.exec())
        .await
        .map_err(S::err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn touch_devices(&self, seen: &[(Uuid, i64)]) -> Result<()> {
        if seen.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool().begin().await.map_err(S::err)?;
        for (id, at) in seen {
            sqlx::query(
                "UPDATE devices SET last_used_at = CASE WHEN last_used_at < $1 THEN $1 ELSE last_used_at END \
                 WHERE id = $2",
            )
            .arg(at)
            .arg(id.to_string())
            .execute(on(&mut tx))
            .await
            .map_err(S::err)?;
        }
        tx.commit().await.map_err(S::err)
    }

    async fn put_enrollment_otp(
        &self,
        otp: OtpRecord,
        item: Option<NewMailboxItem>,
        now: i64,
    ) -> Result<()> {
        let mut tx = self.pool().begin().await.map_err(S::err)?;
        sqlx::query(
            "INSERT INTO enrollment_otps (id, identity, device_id, platform, secret_sealed, step, attempts, \
             created_at, expires_at, used_at) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, NULL) \
             ON CONFLICT (identity, device_id) DO UPDATE SET id = excluded.id, platform = excluded.platform, \
             secret_sealed = excluded.secret_sealed, step = excluded.step, attempts = 0, \
             created_at = excluded.created_at, expires_at = excluded.expires_at, used_at = NULL",
        )
        .arg(&otp.id)
        .arg(&otp.identity)
        .arg(&otp.device_id)
        .arg(&otp.platform)
        .arg(&otp.secret_sealed)
        .arg(otp.step)
        .arg(now)
        .arg(otp.expires_at)
        .execute(on(&mut tx))
        .await
        .map_err(S::err)?;
        if let Some(item) = item {
            insert_mailbox_item(&mut tx, &item, now).await?;
        }
        tx.commit().await.map_err(S::err)
    }

    async fn enrollment_otp(&self, identity: &str, device_id: &str) -> Result<Option<OtpRecord>> {
        let row = sqlx::query(
            "SELECT id, identity, device_id, platform, secret_sealed, step, attempts, expires_at, used_at \
             FROM enrollment_otps WHERE identity = $1 AND device_id = $2",
        )
        .arg(identity)
        .arg(device_id)
        .fetch_optional(self.exec())
        .await
        .map_err(S::err)?;
        row.as_ref().map(otp_from_row).transpose()
    }

    async fn take_otp_attempt(
        &self,
        identity: &str,
        device_id: &str,
        max_attempts: i64,
    ) -> Result<Attempt<OtpRecord>> {
        // Check and count in one statement: a read, a compare and a separate increment
        // let a burst of guesses all read the same count and all be compared.
        let row = sqlx::query(
            "UPDATE enrollment_otps SET attempts = attempts + 1 \
             WHERE identity = $1 AND device_id = $2 AND used_at IS NULL AND attempts < $3 \
             RETURNING id, identity, device_id, platform, secret_sealed, step, attempts, expires_at, used_at",
        )
        .arg(identity)
        .arg(device_id)
        .arg(max_attempts)
        .fetch_optional(self.exec())
        .await
        .map_err(S::err)?;
        if let Some(row) = row {
            return Ok(Attempt::Taken(otp_from_row(&row)?));
        }
        // No attempt left, or no unused code: which one only words the refusal.
        let locked = self
            .enrollment_otp(identity, device_id)
            .await?
            .is_some_and(|r| r.used_at.is_none());
        Ok(if locked {
            Attempt::Locked
        } else {
            Attempt::Missing
        })
    }

    async fn consume_otp(&self, id: &str, now: i64, max_attempts: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE enrollment_otps SET used_at = $1 WHERE id = $2 AND used_at IS NULL AND expires_at > $1 \
             AND attempts <= $3",
        )
        .arg(now)
        .arg(id)
        .arg(max_attempts)
        .execute(self.exec())
        .await
        .map_err(S::err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn take_mailbox(&self, identity: &str, now: i64, limit: u32) -> Result<Vec<MailboxItem>> {
        let rows = sqlx::query(
            "DELETE FROM mailbox_items WHERE id IN (SELECT id FROM mailbox_items WHERE identity = $1 \
             AND channel = 'builtin' AND expires_at > $2 ORDER BY created_at, id LIMIT $3) \
             RETURNING id, payload_sealed, created_at, expires_at",
        )
        .arg(identity)
        .arg(now)
        .arg(i64::from(limit))
        .fetch_all(self.exec())
        .await
        .map_err(S::err)?;
        let mut items = rows
            .iter()
            .map(|r| {
                Ok(MailboxItem {
                    id: get(r, "id")?,
                    payload_sealed: get(r, "payload_sealed")?,
                    created_at: get(r, "created_at")?,
                    expires_at: get(r, "expires_at")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // RETURNING order is unspecified.
        items.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(items)
    }

    async fn cleanup(
        &self,
        now: i64,
        dormant_before: i64,
        revoked_before: i64,
    ) -> Result<CleanupReport> {
        // Revoked rows are the tombstones that refuse re-enrollment (see the trait):
        // past dormancy they lose their credential, past the retention they go.
        let revoked_credentials = execute_one(self.pool(),
                "UPDATE devices SET key_lookup = NULL, key_hash = NULL, client_id = NULL, \
                 hmac_secret_sealed = NULL, rsa_kid = NULL, rsa_private_sealed = NULL, signing_jwk = NULL \
                 WHERE status = 'revoked' AND last_used_at < $1 AND (key_lookup IS NOT NULL \
                 OR key_hash IS NOT NULL OR client_id IS NOT NULL OR hmac_secret_sealed IS NOT NULL \
                 OR rsa_kid IS NOT NULL OR rsa_private_sealed IS NOT NULL OR signing_jwk IS NOT NULL)",
                dormant_before,
            )
            .await?;
        let expired_revocations = sqlx::query(
            "DELETE FROM devices WHERE status = 'revoked' AND last_used_at < $1 \
             AND COALESCE(revoked_at, last_used_at) < $2",
        )
        .arg(dormant_before)
        .arg(revoked_before)
        .execute(self.exec())
        .await
        .map_err(S::err)?
        .rows_affected();
        Ok(CleanupReport {
            revoked_credentials,
            expired_revocations,
            mailbox_items: execute_one(
                self.pool(),
                "DELETE FROM mailbox_items WHERE expires_at <= $1 AND channel = 'builtin'",
                now,
            )
            .await?,
            otps: execute_one(
                self.pool(),
                "DELETE FROM enrollment_otps WHERE expires_at <= $1 OR used_at IS NOT NULL",
                now,
            )
            .await?,
            dormant_devices: execute_one(
                self.pool(),
                "DELETE FROM devices WHERE last_used_at < $1 AND status = 'active'",
                dormant_before,
            )
            .await?,
        })
    }

    async fn expired_items(
        &self,
        channel: Channel,
        now: i64,
        limit: u32,
    ) -> Result<Vec<RemoteItem>> {
        let rows = sqlx::query(
            "SELECT id, identity FROM mailbox_items WHERE channel = $1 AND expires_at <= $2 \
             ORDER BY expires_at, id LIMIT $3",
        )
        .arg(channel.as_str())
        .arg(now)
        .arg(i64::from(limit))
        .fetch_all(self.exec())
        .await
        .map_err(S::err)?;
        rows.iter()
            .map(|r| {
                Ok(RemoteItem {
                    id: get(r, "id")?,
                    identity: get(r, "identity")?,
                })
            })
            .collect()
    }

    async fn remove_mailbox_item(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM mailbox_items WHERE id = $1")
            .arg(id)
            .execute(self.exec())
            .await
            .map_err(S::err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn acquire_lease(&self, name: &str, holder: &str, now: i64, until: i64) -> Result<bool> {
        // Taken if free, expired, or already ours (a renewal); one statement, so of
        // concurrent instances exactly one gets the row back.
        let row = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.expires_at <= $4 OR leases.holder = excluded.holder RETURNING holder",
        )
        .arg(name)
        .arg(holder)
        .arg(until)
        .arg(now)
        .fetch_optional(self.exec())
        .await
        .map_err(S::err)?;
        Ok(row.is_some())
    }
}
