//! [`AccountStore`] (users, SMS codes and messages, refresh tokens, signing keys) in the shared SQL.

use async_trait::async_trait;
use uuid::Uuid;

use super::{
    Affected as _, Arg as _, Db, Decodes, SqlStore, Statement, execute_one, get, on, rotate_key,
    uuid,
};
use crate::accounts::{
    AccountStore, NewSms, RefreshToken, SigningKeyRecord, SmsCode, SmsMessage, SmsOutcome, User,
};
use crate::{Attempt, Result, StoreError};

const USER_COLUMNS: &str = "id, phone, password_hash, created_at, failed_logins, locked_until";

fn user(row: &impl Decodes) -> Result<User> {
    Ok(User {
        id: uuid(&get::<String>(row, "id")?)?,
        phone: get(row, "phone")?,
        password_hash: get(row, "password_hash")?,
        created_at: get(row, "created_at")?,
        failed_logins: get(row, "failed_logins")?,
        locked_until: get(row, "locked_until")?,
    })
}

const SMS_COLUMNS: &str = "id, sender, phone, country, purpose, body_sealed, status, attempts, last_error, \
     provider_id, created_at, sent_at";

fn sms(row: &impl Decodes) -> Result<SmsMessage> {
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

fn refresh(row: &impl Decodes) -> Result<RefreshToken> {
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

fn sms_code_from_row(r: &impl Decodes) -> Result<SmsCode> {
    Ok(SmsCode {
        phone: get(r, "phone")?,
        purpose: get(r, "purpose")?,
        code_hash: get(r, "code_hash")?,
        device: get(r, "device")?,
        pending_password: get(r, "pending_password")?,
        attempts: get(r, "attempts")?,
        created_at: get(r, "created_at")?,
        expires_at: get(r, "expires_at")?,
    })
}

/// Deletes the code of `(phone, purpose)` if it is still the one created at
/// `created_at`; returns whether it did (a code is consumed once, and a replaced code
/// not at all).
async fn consume_code<DB: Db>(
    tx: &mut sqlx::Transaction<'_, DB>,
    phone: &str,
    purpose: &str,
    created_at: i64,
) -> Result<bool> {
    let done =
        sqlx::query("DELETE FROM sms_codes WHERE phone = $1 AND purpose = $2 AND created_at = $3")
            .arg(phone)
            .arg(purpose)
            .arg(created_at)
            .execute(DB::conn(tx))
            .await
            .map_err(DB::map_err)?;
    Ok(done.rows_affected() == 1)
}

/// The statement storing a refresh token.
fn insert_refresh<DB: Db>(t: &RefreshToken) -> Statement<'_, DB> {
    sqlx::query(
        "INSERT INTO refresh_tokens (lookup, hash, family, user_id, device, status, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .arg(&t.lookup)
    .arg(&t.hash)
    .arg(&t.family)
    .arg(t.user_id.to_string())
    .arg(&t.device)
    .arg(&t.status)
    .arg(t.created_at)
    .arg(t.expires_at)
}

#[async_trait]
impl<S: SqlStore> AccountStore for S {
    async fn user_by_phone(&self, phone: &str) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE phone = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .arg(phone)
            .fetch_optional(self.exec())
            .await
            .map_err(S::err)?;
        row.as_ref().map(user).transpose()
    }

    async fn user(&self, id: Uuid) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .arg(id.to_string())
            .fetch_optional(self.exec())
            .await
            .map_err(S::err)?;
        row.as_ref().map(user).transpose()
    }

    async fn put_sms_code(&self, code: SmsCode, sms: Option<NewSms>, now: i64) -> Result<()> {
        let mut tx = self.pool().begin().await.map_err(S::err)?;
        sqlx::query(
            "INSERT INTO sms_codes (phone, purpose, code_hash, device, pending_password, attempts, created_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5, 0, $6, $7) ON CONFLICT (phone, purpose) DO UPDATE SET \
             code_hash = excluded.code_hash, device = excluded.device, \
             pending_password = excluded.pending_password, attempts = 0, \
             created_at = excluded.created_at, expires_at = excluded.expires_at",
        )
        .arg(&code.phone)
        .arg(&code.purpose)
        .arg(&code.code_hash)
        .arg(&code.device)
        .arg(&code.pending_password)
        .arg(code.created_at)
        .arg(code.expires_at)
        .execute(on(&mut tx))
        .await
        .map_err(S::err)?;
        if let Some(m) = sms {
            sqlx::query(
                "INSERT INTO sms_messages (id, sender, phone, country, purpose, body_sealed, status, attempts, \
                 next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, 'queued', 0, $7, $7)",
            )
            .arg(&m.id)
            .arg(&m.sender)
            .arg(&m.phone)
            .arg(&m.country)
            .arg(&m.purpose)
            .arg(&m.body_sealed)
            .arg(now)
            .execute(on(&mut tx))
            .await
            .map_err(S::err)?;
        }
        tx.commit().await.map_err(S::err)
    }

    async fn sms_code(&self, phone: &str, purpose: &str) -> Result<Option<SmsCode>> {
        let row = sqlx::query(
            "SELECT phone, purpose, code_hash, device, pending_password, attempts, created_at, expires_at \
             FROM sms_codes WHERE phone = $1 AND purpose = $2",
        )
        .arg(phone)
        .arg(purpose)
        .fetch_optional(self.exec())
        .await
        .map_err(S::err)?;
        row.as_ref().map(sms_code_from_row).transpose()
    }

    async fn take_sms_code_attempt(
        &self,
        phone: &str,
        purpose: &str,
        device: &str,
        max_attempts: i64,
    ) -> Result<Attempt<SmsCode>> {
        // Check and count in one statement (see take_otp_attempt).
        let row = sqlx::query(
            "UPDATE sms_codes SET attempts = attempts + 1 \
             WHERE phone = $1 AND purpose = $2 AND device = $3 AND attempts < $4 \
             RETURNING phone, purpose, code_hash, device, pending_password, attempts, created_at, expires_at",
        )
        .arg(phone)
        .arg(purpose)
        .arg(device)
        .arg(max_attempts)
        .fetch_optional(self.exec())
        .await
        .map_err(S::err)?;
        if let Some(r) = row {
            return Ok(Attempt::Taken(sms_code_from_row(&r)?));
        }
        let locked = self
            .sms_code(phone, purpose)
            .await?
            .is_some_and(|c| c.device.as_deref() == Some(device));
        Ok(if locked {
            Attempt::Locked
        } else {
            Attempt::Missing
        })
    }

    async fn create_user(
        &self,
        phone: &str,
        code_created_at: i64,
        id: Uuid,
        password_hash: &str,
        now: i64,
    ) -> Result<Option<User>> {
        let mut tx = self.pool().begin().await.map_err(S::err)?;
        if !consume_code(&mut tx, phone, "register", code_created_at).await? {
            return Ok(None);
        }
        let sql = format!(
            "INSERT INTO users (id, phone, password_hash, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (phone) DO NOTHING RETURNING {USER_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .arg(id.to_string())
            .arg(phone)
            .arg(password_hash)
            .arg(now)
            .fetch_optional(on(&mut tx))
            .await
            .map_err(S::err)?;
        let Some(row) = row else {
            return Err(StoreError::Conflict("phone already registered"));
        };
        let created = user(&row)?;
        tx.commit().await.map_err(S::err)?;
        Ok(Some(created))
    }

    async fn reset_password(
        &self,
        phone: &str,
        code_created_at: i64,
        user_id: Uuid,
        password_hash: &str,
    ) -> Result<bool> {
        let mut tx = self.pool().begin().await.map_err(S::err)?;
        if !consume_code(&mut tx, phone, "password_reset", code_created_at).await? {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE users SET password_hash = $1, failed_logins = 0, locked_until = 0 WHERE id = $2",
        )
        .arg(password_hash)
        .arg(user_id.to_string())
        .execute(on(&mut tx))
        .await
        .map_err(S::err)?;
        sqlx::query(
            "UPDATE refresh_tokens SET status = 'revoked' WHERE user_id = $1 AND status = 'active'",
        )
        .arg(user_id.to_string())
        .execute(on(&mut tx))
        .await
        .map_err(S::err)?;
        tx.commit().await.map_err(S::err)?;
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
             locked_until = CASE WHEN failed_logins + 1 >= $1 THEN $2 ELSE locked_until END \
             WHERE id = $3 RETURNING failed_logins",
        )
        .arg(lock_after)
        .arg(now + lock_seconds)
        .arg(user_id.to_string())
        .fetch_optional(self.exec())
        .await
        .map_err(S::err)?
        .ok_or(StoreError::NotFound)?;
        get(&row, "failed_logins")
    }

    async fn clear_login_failures(&self, user_id: Uuid) -> Result<()> {
        sqlx::query(
            "UPDATE users SET failed_logins = 0, locked_until = 0 WHERE id = $1 AND failed_logins > 0",
        )
        .arg(user_id.to_string())
        .execute(self.exec())
        .await
        .map_err(S::err)?;
        Ok(())
    }

    async fn claim_due_sms(&self, now: i64, limit: u32) -> Result<Vec<SmsMessage>> {
        // The claim time goes into next_attempt_at, so that a message left `sending`
        // by a crashed instance can be told from one another instance is sending now.
        let sql = format!(
            "UPDATE sms_messages SET status = 'sending', attempts = attempts + 1, next_attempt_at = $1 \
             WHERE status = 'queued' AND next_attempt_at <= $1 AND id IN \
             (SELECT id FROM sms_messages WHERE status = 'queued' AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at LIMIT $2) RETURNING {SMS_COLUMNS}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .arg(now)
            .arg(i64::from(limit))
            .fetch_all(self.exec())
            .await
            .map_err(S::err)?;
        rows.iter().map(sms).collect()
    }

    async fn finish_sms(&self, id: &str, outcome: SmsOutcome, now: i64) -> Result<()> {
        let q = match &outcome {
            SmsOutcome::Sent { provider_id } => sqlx::query(
                "UPDATE sms_messages SET status = 'sent', sent_at = $1, provider_id = $2, last_error = NULL \
                 WHERE id = $3",
            )
            .arg(now)
            .arg(provider_id.clone()),
            SmsOutcome::Retry {
                error,
                next_attempt_at,
            } => sqlx::query(
                "UPDATE sms_messages SET status = 'queued', next_attempt_at = $1, last_error = $2 WHERE id = $3",
            )
            .arg(*next_attempt_at)
            .arg(error.clone()),
            SmsOutcome::Failed { error } => sqlx::query(
                "UPDATE sms_messages SET status = 'failed', next_attempt_at = $1, last_error = $2 WHERE id = $3",
            )
            .arg(now)
            .arg(error.clone()),
        };
        q.arg(id).execute(self.exec()).await.map_err(S::err)?;
        Ok(())
    }

    async fn requeue_stuck_sms(&self, claimed_before: i64) -> Result<u64> {
        execute_one(self.pool(),
            "UPDATE sms_messages SET status = 'queued' WHERE status = 'sending' AND next_attempt_at < $1",
            claimed_before,
        )
        .await
    }

    async fn list_sms(&self, phone: Option<&str>, limit: u32) -> Result<Vec<SmsMessage>> {
        let sql = format!(
            "SELECT {SMS_COLUMNS} FROM sms_messages WHERE ($1 IS NULL OR phone = $1) \
             ORDER BY created_at DESC, id DESC LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .arg(phone)
            .arg(i64::from(limit))
            .fetch_all(self.exec())
            .await
            .map_err(S::err)?;
        rows.iter().map(sms).collect()
    }

    async fn insert_refresh_token(&self, t: RefreshToken) -> Result<()> {
        insert_refresh(&t)
            .execute(self.exec())
            .await
            .map_err(S::err)?;
        Ok(())
    }

    async fn refresh_token(&self, lookup: &str) -> Result<Option<RefreshToken>> {
        let row = sqlx::query(
            "SELECT lookup, hash, family, user_id, device, status, created_at, expires_at \
             FROM refresh_tokens WHERE lookup = $1",
        )
        .arg(lookup)
        .fetch_optional(self.exec())
        .await
        .map_err(S::err)?;
        row.as_ref().map(refresh).transpose()
    }

    async fn rotate_refresh_token(
        &self,
        lookup: &str,
        now: i64,
        next: Option<RefreshToken>,
    ) -> Result<bool> {
        // The conditional update comes first: it holds the old row until the commit,
        // so a concurrent presenter of the same token waits for it (PostgreSQL) or for
        // the write lock (SQLite), and then sees the token used and its successor
        // stored.
        let mut tx = self.pool().begin().await.map_err(S::err)?;
        let done = sqlx::query(
            "UPDATE refresh_tokens SET status = 'used', used_at = $1 WHERE lookup = $2 AND status = 'active'",
        )
        .arg(now)
        .arg(lookup)
        .execute(on(&mut tx))
        .await
        .map_err(S::err)?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        if let Some(t) = &next {
            insert_refresh(t)
                .execute(on(&mut tx))
                .await
                .map_err(S::err)?;
        }
        tx.commit().await.map_err(S::err)?;
        Ok(true)
    }

    async fn revoke_refresh_family(&self, family: &str) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE refresh_tokens SET status = 'revoked' WHERE family = $1 AND status = 'active'",
        )
        .arg(family)
        .execute(self.exec())
        .await
        .map_err(S::err)?;
        Ok(done.rows_affected())
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        let rows = sqlx::query(
            "SELECT kid, private_sealed, public_jwk, created_at, retired_at FROM signing_keys \
             ORDER BY created_at DESC, kid DESC LIMIT 16",
        )
        .fetch_all(self.exec())
        .await
        .map_err(S::err)?;
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
        let insert = sqlx::query(
            "INSERT INTO signing_keys (kid, private_sealed, public_jwk, created_at, retired_at) \
             VALUES ($1, $2, $3, $4, NULL)",
        )
        .arg(key.kid)
        .arg(key.private_sealed)
        .arg(key.public_jwk)
        .arg(key.created_at);
        rotate_key(self.pool(), "signing_keys", insert, now).await
    }

    async fn cleanup_accounts(&self, now: i64, messages_before: i64) -> Result<u64> {
        Ok(execute_one(
            self.pool(),
            "DELETE FROM sms_codes WHERE expires_at <= $1",
            now,
        )
        .await?
            + execute_one(
                self.pool(),
                "DELETE FROM refresh_tokens WHERE expires_at <= $1",
                now,
            )
            .await?
            + execute_one(
                self.pool(),
                "DELETE FROM sms_messages WHERE status IN ('sent', 'failed') AND created_at < $1",
                messages_before,
            )
            .await?)
    }
}
