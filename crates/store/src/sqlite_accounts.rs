//! [`AccountStore`] on SQLite.

use async_trait::async_trait;
use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use crate::accounts::{
    AccountStore, NewSms, RefreshToken, SigningKeyRecord, SmsCode, SmsMessage, SmsOutcome, User,
};
use crate::sqlite::{SqliteStore, map_err};
use crate::{Result, StoreError};

fn get<'r, T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>>(
    row: &'r SqliteRow,
    col: &str,
) -> Result<T> {
    row.try_get(col)
        .map_err(|e| StoreError::Backend(Box::new(e)))
}

fn uuid(text: &str) -> Result<Uuid> {
    Uuid::parse_str(text).map_err(|e| StoreError::Backend(Box::new(e)))
}

const USER_COLUMNS: &str = "id, phone, password_hash, created_at, failed_logins, locked_until";

fn user(row: &SqliteRow) -> Result<User> {
    Ok(User {
        id: uuid(&get::<String>(row, "id")?)?,
        phone: get(row, "phone")?,
        password_hash: get(row, "password_hash")?,
        created_at: get(row, "created_at")?,
        failed_logins: get(row, "failed_logins")?,
        locked_until: get(row, "locked_until")?,
    })
}

const SMS_COLUMNS: &str = "id, sender, phone, country, purpose, body_sealed, status, attempts, last_error, provider_id, created_at, sent_at";

fn sms(row: &SqliteRow) -> Result<SmsMessage> {
    Ok(SmsMessage {
        id: get(row, "id")?,
        sender: get(row, "sender")?,
        phone: get(row, "phone")?,
        country: get(row, "country")?,
        purpose: get(row, "purpose")?,
        body_sealed: get(row, "body_sealed")?,
        status: get(row, "status")?,
        attempts: get(row, "attempts")?,
        last_error: get(row, "last_error")?,
        provider_id: get(row, "provider_id")?,
        created_at: get(row, "created_at")?,
        sent_at: get(row, "sent_at")?,
    })
}

fn refresh(row: &SqliteRow) -> Result<RefreshToken> {
    Ok(RefreshToken {
        lookup: get(row, "lookup")?,
        hash: get(row, "hash")?,
        family: get(row, "family")?,
        user_id: uuid(&get::<String>(row, "user_id")?)?,
        device: get(row, "device")?,
        status: get(row, "status")?,
        created_at: get(row, "created_at")?,
        expires_at: get(row, "expires_at")?,
    })
}

/// Deletes the code of `(phone, purpose)` if it is still the one created at `created_at`;
/// returns whether it did (a code is consumed once, and a replaced code not at all).
async fn consume_code(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    phone: &str,
    purpose: &str,
    created_at: i64,
) -> Result<bool> {
    let done =
        sqlx::query("DELETE FROM sms_codes WHERE phone = ? AND purpose = ? AND created_at = ?")
            .bind(phone)
            .bind(purpose)
            .bind(created_at)
            .execute(&mut **tx)
            .await
            .map_err(map_err)?;
    Ok(done.rows_affected() == 1)
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn user_by_phone(&self, phone: &str) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE phone = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(phone)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(user).transpose()
    }

    async fn user(&self, id: Uuid) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(user).transpose()
    }

    async fn put_sms_code(&self, code: SmsCode, sms: Option<NewSms>, now: i64) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        sqlx::query(
            "INSERT INTO sms_codes (phone, purpose, code_hash, device, pending_password, attempts, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?, 0, ?, ?) ON CONFLICT (phone, purpose) DO UPDATE SET code_hash = excluded.code_hash, \
             device = excluded.device, pending_password = excluded.pending_password, attempts = 0, \
             created_at = excluded.created_at, expires_at = excluded.expires_at",
        )
        .bind(&code.phone)
        .bind(&code.purpose)
        .bind(&code.code_hash)
        .bind(&code.device)
        .bind(&code.pending_password)
        .bind(code.created_at)
        .bind(code.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if let Some(m) = sms {
            sqlx::query(
                "INSERT INTO sms_messages (id, sender, phone, country, purpose, body_sealed, status, attempts, next_attempt_at, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, 'queued', 0, ?, ?)",
            )
            .bind(&m.id)
            .bind(&m.sender)
            .bind(&m.phone)
            .bind(&m.country)
            .bind(&m.purpose)
            .bind(&m.body_sealed)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)
    }

    async fn sms_code(&self, phone: &str, purpose: &str) -> Result<Option<SmsCode>> {
        let row = sqlx::query(
            "SELECT phone, purpose, code_hash, device, pending_password, attempts, created_at, expires_at \
             FROM sms_codes WHERE phone = ? AND purpose = ?",
        )
        .bind(phone)
        .bind(purpose)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        row.map(|r| {
            Ok(SmsCode {
                phone: get(&r, "phone")?,
                purpose: get(&r, "purpose")?,
                code_hash: get(&r, "code_hash")?,
                device: get(&r, "device")?,
                pending_password: get(&r, "pending_password")?,
                attempts: get(&r, "attempts")?,
                created_at: get(&r, "created_at")?,
                expires_at: get(&r, "expires_at")?,
            })
        })
        .transpose()
    }

    async fn record_sms_code_failure(&self, phone: &str, purpose: &str) -> Result<i64> {
        let row = sqlx::query("UPDATE sms_codes SET attempts = attempts + 1 WHERE phone = ? AND purpose = ? RETURNING attempts")
            .bind(phone)
            .bind(purpose)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .ok_or(StoreError::NotFound)?;
        get(&row, "attempts")
    }

    async fn create_user(
        &self,
        phone: &str,
        code_created_at: i64,
        id: Uuid,
        password_hash: &str,
        now: i64,
    ) -> Result<Option<User>> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        if !consume_code(&mut tx, phone, "register", code_created_at).await? {
            return Ok(None);
        }
        let sql = format!(
            "INSERT INTO users (id, phone, password_hash, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (phone) DO NOTHING RETURNING {USER_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .bind(phone)
            .bind(password_hash)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?;
        let Some(row) = row else {
            return Err(StoreError::Conflict("phone already registered"));
        };
        let created = user(&row)?;
        tx.commit().await.map_err(map_err)?;
        Ok(Some(created))
    }

    async fn reset_password(
        &self,
        phone: &str,
        code_created_at: i64,
        user_id: Uuid,
        password_hash: &str,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        if !consume_code(&mut tx, phone, "password_reset", code_created_at).await? {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE users SET password_hash = ?, failed_logins = 0, locked_until = 0 WHERE id = ?",
        )
        .bind(password_hash)
        .bind(user_id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        sqlx::query(
            "UPDATE refresh_tokens SET status = 'revoked' WHERE user_id = ? AND status = 'active'",
        )
        .bind(user_id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(true)
    }

    async fn record_login_failure(
        &self,
        user_id: Uuid,
        now: i64,
        lock_after: i64,
        lock_seconds: i64,
    ) -> Result<i64> {
        let row = sqlx::query(
            "UPDATE users SET failed_logins = failed_logins + 1, \
             locked_until = CASE WHEN failed_logins + 1 >= ? THEN ? ELSE locked_until END \
             WHERE id = ? RETURNING failed_logins",
        )
        .bind(lock_after)
        .bind(now + lock_seconds)
        .bind(user_id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?
        .ok_or(StoreError::NotFound)?;
        get(&row, "failed_logins")
    }

    async fn clear_login_failures(&self, user_id: Uuid) -> Result<()> {
        sqlx::query("UPDATE users SET failed_logins = 0, locked_until = 0 WHERE id = ? AND failed_logins > 0")
            .bind(user_id.to_string())
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn claim_due_sms(&self, now: i64, limit: u32) -> Result<Vec<SmsMessage>> {
        let sql = format!(
            "UPDATE sms_messages SET status = 'sending', attempts = attempts + 1 WHERE id IN \
             (SELECT id FROM sms_messages WHERE status = 'queued' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?) \
             RETURNING {SMS_COLUMNS}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(sms).collect()
    }

    async fn finish_sms(&self, id: &str, outcome: SmsOutcome, now: i64) -> Result<()> {
        let q = match &outcome {
            SmsOutcome::Sent { provider_id } => sqlx::query(
                "UPDATE sms_messages SET status = 'sent', sent_at = ?, provider_id = ?, last_error = NULL WHERE id = ?",
            )
            .bind(now)
            .bind(provider_id.clone()),
            SmsOutcome::Retry { error, next_attempt_at } => {
                sqlx::query("UPDATE sms_messages SET status = 'queued', next_attempt_at = ?, last_error = ? WHERE id = ?")
                    .bind(*next_attempt_at)
                    .bind(error.clone())
            }
            SmsOutcome::Failed { error } => {
                sqlx::query("UPDATE sms_messages SET status = 'failed', last_error = ?, next_attempt_at = ? WHERE id = ?")
                    .bind(error.clone())
                    .bind(now)
            }
        };
        q.bind(id).execute(&self.pool).await.map_err(map_err)?;
        Ok(())
    }

    async fn requeue_stuck_sms(&self) -> Result<u64> {
        let done =
            sqlx::query("UPDATE sms_messages SET status = 'queued' WHERE status = 'sending'")
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
        Ok(done.rows_affected())
    }

    async fn list_sms(&self, phone: Option<&str>, limit: u32) -> Result<Vec<SmsMessage>> {
        let sql = format!(
            "SELECT {SMS_COLUMNS} FROM sms_messages WHERE (?1 IS NULL OR phone = ?1) ORDER BY created_at DESC, id DESC LIMIT ?2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(phone)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(sms).collect()
    }

    async fn insert_refresh_token(&self, t: RefreshToken) -> Result<()> {
        sqlx::query(
            "INSERT INTO refresh_tokens (lookup, hash, family, user_id, device, status, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&t.lookup)
        .bind(&t.hash)
        .bind(&t.family)
        .bind(t.user_id.to_string())
        .bind(&t.device)
        .bind(&t.status)
        .bind(t.created_at)
        .bind(t.expires_at)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn refresh_token(&self, lookup: &str) -> Result<Option<RefreshToken>> {
        let row = sqlx::query(
            "SELECT lookup, hash, family, user_id, device, status, created_at, expires_at FROM refresh_tokens WHERE lookup = ?",
        )
        .bind(lookup)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        row.as_ref().map(refresh).transpose()
    }

    async fn use_refresh_token(&self, lookup: &str, now: i64) -> Result<bool> {
        let done = sqlx::query("UPDATE refresh_tokens SET status = 'used', used_at = ? WHERE lookup = ? AND status = 'active'")
            .bind(now)
            .bind(lookup)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_refresh_family(&self, family: &str) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE refresh_tokens SET status = 'revoked' WHERE family = ? AND status = 'active'",
        )
        .bind(family)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected())
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        let rows = sqlx::query(
            "SELECT kid, private_sealed, public_jwk, created_at, retired_at FROM signing_keys ORDER BY created_at DESC, kid DESC LIMIT 16",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(|r| {
                Ok(SigningKeyRecord {
                    kid: get(r, "kid")?,
                    private_sealed: get(r, "private_sealed")?,
                    public_jwk: get(r, "public_jwk")?,
                    created_at: get(r, "created_at")?,
                    retired_at: get(r, "retired_at")?,
                })
            })
            .collect()
    }

    async fn rotate_signing_key(&self, key: SigningKeyRecord, now: i64) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        sqlx::query("UPDATE signing_keys SET retired_at = ? WHERE retired_at IS NULL")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        sqlx::query("INSERT INTO signing_keys (kid, private_sealed, public_jwk, created_at, retired_at) VALUES (?, ?, ?, ?, NULL)")
            .bind(&key.kid)
            .bind(&key.private_sealed)
            .bind(&key.public_jwk)
            .bind(key.created_at)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }

    async fn cleanup_accounts(&self, now: i64, messages_before: i64) -> Result<u64> {
        let mut removed = 0;
        for (sql, bind) in [
            ("DELETE FROM sms_codes WHERE expires_at <= ?", now),
            ("DELETE FROM refresh_tokens WHERE expires_at <= ?", now),
            (
                "DELETE FROM sms_messages WHERE status IN ('sent', 'failed') AND created_at < ?",
                messages_before,
            ),
        ] {
            removed += sqlx::query(sql)
                .bind(bind)
                .execute(&self.pool)
                .await
                .map_err(map_err)?
                .rows_affected();
        }
        Ok(removed)
    }
}
