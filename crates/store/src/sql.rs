//! The SQL both backends share.
//!
//! SQLite and PostgreSQL run the same statements: every query uses `$N` placeholders (which
//! sqlx's SQLite driver reads as positional too) and only SQL both engines accept
//! (`ON CONFLICT … DO UPDATE … WHERE`, `RETURNING`, `CASE` instead of the two-argument `MAX`,
//! explicit `CAST`s where PostgreSQL would not convert a `BIGINT` parameter). The
//! implementations of [`Store`](crate::Store), [`AccountStore`](crate::accounts::AccountStore)
//! and [`AttestStore`](crate::attest::AttestStore) are therefore written once, here, and
//! stamped out for each backend's pool and row types by [`sql_backend!`]: a macro rather than
//! generic code because sqlx's executor bounds over a generic `Database` make every method
//! signature several lines of `for<'c>` clauses, while the per-backend types are all that
//! differs.
//!
//! What does differ per backend stays in its module: connection options, error mapping
//! (which driver errors mean "unavailable"), migrations and column types.
//!
//! Concurrency: every "use once" operation is a single conditional statement
//! (`UPDATE … WHERE used_at IS NULL`, `DELETE … RETURNING`), so of concurrent callers on any
//! instance exactly one succeeds. Under PostgreSQL's READ COMMITTED a concurrent update makes
//! the losing statement re-check its `WHERE` on the new row version, which is why claims
//! repeat their conditions in the outer `WHERE` rather than relying on a sub-select alone.

/// Implements the three storage traits for `$store` (a struct with a `pool: sqlx::Pool<$db>`
/// field), decoding rows of type `$row`, mapping driver errors with `$map_err`.
macro_rules! sql_backend {
    ($store:ty, $db:ty, $row:ty, $map_err:path) => {
        use async_trait::async_trait;
        use sqlx::Row as _;
        use uuid::Uuid;

        use $crate::accounts::{
            AccountStore, NewSms, RefreshToken, SigningKeyRecord, SmsCode, SmsMessage,
            SmsOutcome, User,
        };
        use $crate::attest::{AttestKey, AttestStore, IntegrityKey, Release};
        use $crate::ops::{
            AuditEvent, AuditQuery, MAX_AUDIT_PAGE, NewAuditEvent, OpsStore, StatDelta, StatRow,
        };
        use $crate::{
            Attempt, CleanupReport, Credential, Device, DeviceStatus, MAILBOX_CAP, MAX_PAGE,
            Channel, MailboxBuilder, MailboxItem, NewCredential, NewMailboxItem, OtpRecord,
            RemoteItem, Result, Store, StoreError,
        };

        fn get<'r, T: sqlx::Decode<'r, $db> + sqlx::Type<$db>>(
            row: &'r $row,
            col: &str,
        ) -> Result<T> {
            row.try_get(col)
                .map_err(|e| StoreError::Backend(Box::new(e)))
        }

        fn uuid(text: &str) -> Result<Uuid> {
            Uuid::parse_str(text).map_err(|e| StoreError::Backend(Box::new(e)))
        }

        const DEVICE_COLUMNS: &str = "id, identity, device_id, mode, platform, status, key_lookup, key_hash, \
             client_id, hmac_secret_sealed, rsa_kid, rsa_private_sealed, signing_jwk, created_at, rotated_at, \
             last_used_at, revoked_at";

        fn device_from_row(row: &$row) -> Result<Device> {
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

        fn sms_code_from_row(r: &$row) -> Result<SmsCode> {
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

        fn otp_from_row(row: &$row) -> Result<OtpRecord> {
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

        async fn insert_mailbox_item(
            tx: &mut sqlx::Transaction<'_, $db>,
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
                .bind(&item.identity)
                .bind(MAILBOX_CAP - 1)
                .execute(&mut **tx)
                .await
                .map_err($map_err)?;
            }
            sqlx::query(
                "INSERT INTO mailbox_items (id, identity, payload_sealed, created_at, expires_at, channel) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&item.id)
            .bind(&item.identity)
            .bind(&item.payload_sealed)
            .bind(now)
            .bind(item.expires_at)
            .bind(item.channel.as_str())
            .execute(&mut **tx)
            .await
            .map_err($map_err)?;
            Ok(())
        }

        impl $store {
            async fn device_where(&self, clause: &str, value: &str) -> Result<Option<Device>> {
                let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE {clause}");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(value)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($map_err)?;
                row.as_ref().map(device_from_row).transpose()
            }

            async fn execute_one(&self, sql: &'static str, bind: i64) -> Result<u64> {
                Ok(sqlx::query(sql)
                    .bind(bind)
                    .execute(&self.pool)
                    .await
                    .map_err($map_err)?
                    .rows_affected())
            }
        }

        #[async_trait]
        impl Store for $store {
            async fn ping(&self) -> Result<()> {
                sqlx::query("SELECT 1")
                    .execute(&self.pool)
                    .await
                    .map_err($map_err)?;
                Ok(())
            }

            async fn issue_credential(
                &self,
                cred: NewCredential,
                item: Option<MailboxBuilder>,
                now: i64,
            ) -> Result<Device> {
                let mut tx = self.pool.begin().await.map_err($map_err)?;
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
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err($map_err)?;
                let Some(row) = row else {
                    return Err(StoreError::Conflict("device revoked"));
                };
                let device = device_from_row(&row)?;
                if let Some(build) = item {
                    let item = build(&device)?;
                    insert_mailbox_item(&mut tx, &item, now).await?;
                }
                tx.commit().await.map_err($map_err)?;
                Ok(device)
            }

            async fn put_mailbox_item(&self, item: NewMailboxItem, now: i64) -> Result<()> {
                let mut tx = self.pool.begin().await.map_err($map_err)?;
                insert_mailbox_item(&mut tx, &item, now).await?;
                tx.commit().await.map_err($map_err)
            }

            async fn device(&self, id: Uuid) -> Result<Option<Device>> {
                self.device_where("id = $1", &id.to_string()).await
            }

            async fn device_by_identity(
                &self,
                identity: &str,
                device_id: &str,
            ) -> Result<Option<Device>> {
                let sql = format!(
                    "SELECT {DEVICE_COLUMNS} FROM devices WHERE identity = $1 AND device_id = $2"
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(identity)
                    .bind(device_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($map_err)?;
                row.as_ref().map(device_from_row).transpose()
            }

            async fn device_by_key_lookup(&self, lookup: &str) -> Result<Option<Device>> {
                self.device_where("key_lookup = $1", lookup).await
            }

            async fn device_by_client_id(&self, client_id: &str) -> Result<Option<Device>> {
                self.device_where("client_id = $1", client_id).await
            }

            async fn latest_active_device(&self, identity: &str) -> Result<Option<Device>> {
                self.device_where(
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
                    .bind(i64::from(limit.min(MAX_PAGE)))
                    .bind(i64::from(offset))
                    .fetch_all(&self.pool)
                    .await
                    .map_err($map_err)?;
                rows.iter().map(device_from_row).collect()
            }

            async fn search_devices(&self, q: &str, limit: u32) -> Result<Vec<Device>> {
                let sql = format!(
                    "SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1 OR device_id = $1 OR identity = $1 \
                     OR client_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(q)
                    .bind(i64::from(limit.min(MAX_PAGE)))
                    .fetch_all(&self.pool)
                    .await
                    .map_err($map_err)?;
                rows.iter().map(device_from_row).collect()
            }

            async fn revoke_device(&self, id: Uuid, now: i64) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE devices SET status = 'revoked', revoked_at = COALESCE(revoked_at, $1) WHERE id = $2",
                )
                .bind(now)
                .bind(id.to_string())
                .execute(&self.pool)
                .await
                .map_err($map_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn touch_devices(&self, seen: &[(Uuid, i64)]) -> Result<()> {
                if seen.is_empty() {
                    return Ok(());
                }
                let mut tx = self.pool.begin().await.map_err($map_err)?;
                for (id, at) in seen {
                    sqlx::query(
                        "UPDATE devices SET last_used_at = CASE WHEN last_used_at < $1 THEN $1 ELSE last_used_at END \
                         WHERE id = $2",
                    )
                    .bind(at)
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err($map_err)?;
                }
                tx.commit().await.map_err($map_err)
            }

            async fn put_enrollment_otp(
                &self,
                otp: OtpRecord,
                item: Option<NewMailboxItem>,
                now: i64,
            ) -> Result<()> {
                let mut tx = self.pool.begin().await.map_err($map_err)?;
                sqlx::query(
                    "INSERT INTO enrollment_otps (id, identity, device_id, platform, secret_sealed, step, attempts, \
                     created_at, expires_at, used_at) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, NULL) \
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
                .map_err($map_err)?;
                if let Some(item) = item {
                    insert_mailbox_item(&mut tx, &item, now).await?;
                }
                tx.commit().await.map_err($map_err)
            }

            async fn enrollment_otp(
                &self,
                identity: &str,
                device_id: &str,
            ) -> Result<Option<OtpRecord>> {
                let row = sqlx::query(
                    "SELECT id, identity, device_id, platform, secret_sealed, step, attempts, expires_at, used_at \
                     FROM enrollment_otps WHERE identity = $1 AND device_id = $2",
                )
                .bind(identity)
                .bind(device_id)
                .fetch_optional(&self.pool)
                .await
                .map_err($map_err)?;
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
                .bind(identity)
                .bind(device_id)
                .bind(max_attempts)
                .fetch_optional(&self.pool)
                .await
                .map_err($map_err)?;
                if let Some(row) = row {
                    return Ok(Attempt::Taken(otp_from_row(&row)?));
                }
                // No attempt left, or no unused code: which one only words the refusal.
                let locked = self
                    .enrollment_otp(identity, device_id)
                    .await?
                    .is_some_and(|r| r.used_at.is_none());
                Ok(if locked { Attempt::Locked } else { Attempt::Missing })
            }

            async fn consume_otp(&self, id: &str, now: i64, max_attempts: i64) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE enrollment_otps SET used_at = $1 WHERE id = $2 AND used_at IS NULL AND expires_at > $1 \
                     AND attempts <= $3",
                )
                .bind(now)
                .bind(id)
                .bind(max_attempts)
                .execute(&self.pool)
                .await
                .map_err($map_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn take_mailbox(
                &self,
                identity: &str,
                now: i64,
                limit: u32,
            ) -> Result<Vec<MailboxItem>> {
                let rows = sqlx::query(
                    "DELETE FROM mailbox_items WHERE id IN (SELECT id FROM mailbox_items WHERE identity = $1 \
                     AND channel = 'builtin' AND expires_at > $2 ORDER BY created_at, id LIMIT $3) \
                     RETURNING id, payload_sealed, created_at, expires_at",
                )
                .bind(identity)
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err($map_err)?;
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
                let revoked_credentials = self
                    .execute_one(
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
                .bind(dormant_before)
                .bind(revoked_before)
                .execute(&self.pool)
                .await
                .map_err($map_err)?
                .rows_affected();
                Ok(CleanupReport {
                    revoked_credentials,
                    expired_revocations,
                    mailbox_items: self
                        .execute_one(
                            "DELETE FROM mailbox_items WHERE expires_at <= $1 AND channel = 'builtin'",
                            now,
                        )
                        .await?,
                    otps: self
                        .execute_one(
                            "DELETE FROM enrollment_otps WHERE expires_at <= $1 OR used_at IS NOT NULL",
                            now,
                        )
                        .await?,
                    dormant_devices: self
                        .execute_one(
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
                .bind(channel.as_str())
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err($map_err)?;
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
                    .bind(id)
                    .execute(&self.pool)
                    .await
                    .map_err($map_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn acquire_lease(
                &self,
                name: &str,
                holder: &str,
                now: i64,
                until: i64,
            ) -> Result<bool> {
                // Taken if free, expired, or already ours (a renewal); one statement, so of
                // concurrent instances exactly one gets the row back.
                let row = sqlx::query(
                    "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
                     WHERE leases.expires_at <= $4 OR leases.holder = excluded.holder RETURNING holder",
                )
                .bind(name)
                .bind(holder)
                .bind(until)
                .bind(now)
                .fetch_optional(&self.pool)
                .await
                .map_err($map_err)?;
                Ok(row.is_some())
            }
        }

        const USER_COLUMNS: &str =
            "id, phone, password_hash, created_at, failed_logins, locked_until";

        fn user(row: &$row) -> Result<User> {
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

        fn sms(row: &$row) -> Result<SmsMessage> {
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

        fn refresh(row: &$row) -> Result<RefreshToken> {
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

        /// Deletes the code of `(phone, purpose)` if it is still the one created at
        /// `created_at`; returns whether it did (a code is consumed once, and a replaced code
        /// not at all).
        async fn consume_code(
            tx: &mut sqlx::Transaction<'_, $db>,
            phone: &str,
            purpose: &str,
            created_at: i64,
        ) -> Result<bool> {
            let done = sqlx::query(
                "DELETE FROM sms_codes WHERE phone = $1 AND purpose = $2 AND created_at = $3",
            )
            .bind(phone)
            .bind(purpose)
            .bind(created_at)
            .execute(&mut **tx)
            .await
            .map_err($map_err)?;
            Ok(done.rows_affected() == 1)
        }

        /// The statement storing a refresh token.
        fn insert_refresh(
            t: &RefreshToken,
        ) -> sqlx::query::Query<'_, $db, <$db as sqlx::Database>::Arguments> {
            sqlx::query(
                "INSERT INTO refresh_tokens (lookup, hash, family, user_id, device, status, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&t.lookup)
            .bind(&t.hash)
            .bind(&t.family)
            .bind(t.user_id.to_string())
            .bind(&t.device)
            .bind(&t.status)
            .bind(t.created_at)
            .bind(t.expires_at)
        }

        /// Retires the current key of `table` and inserts `new` as the current one.
        async fn rotate_key(
            pool: &sqlx::Pool<$db>,
            table: &'static str,
            insert: sqlx::query::Query<'_, $db, <$db as sqlx::Database>::Arguments>,
            now: i64,
        ) -> Result<()> {
            let mut tx = pool.begin().await.map_err($map_err)?;
            let retire = format!("UPDATE {table} SET retired_at = $1 WHERE retired_at IS NULL");
            sqlx::query(sqlx::AssertSqlSafe(retire))
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err($map_err)?;
            insert.execute(&mut *tx).await.map_err($map_err)?;
            tx.commit().await.map_err($map_err)
        }

        #[async_trait]
        impl AccountStore for $store {
            async fn user_by_phone(&self, phone: &str) -> Result<Option<User>> {
                let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE phone = $1");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(phone)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($map_err)?;
                row.as_ref().map(user).transpose()
            }

            async fn user(&self, id: Uuid) -> Result<Option<User>> {
                let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($map_err)?;
                row.as_ref().map(user).transpose()
            }

            async fn put_sms_code(
                &self,
                code: SmsCode,
                sms: Option<NewSms>,
                now: i64,
            ) -> Result<()> {
                let mut tx = self.pool.begin().await.map_err($map_err)?;
                sqlx::query(
                    "INSERT INTO sms_codes (phone, purpose, code_hash, device, pending_password, attempts, created_at, \
                     expires_at) VALUES ($1, $2, $3, $4, $5, 0, $6, $7) ON CONFLICT (phone, purpose) DO UPDATE SET \
                     code_hash = excluded.code_hash, device = excluded.device, \
                     pending_password = excluded.pending_password, attempts = 0, \
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
                .map_err($map_err)?;
                if let Some(m) = sms {
                    sqlx::query(
                        "INSERT INTO sms_messages (id, sender, phone, country, purpose, body_sealed, status, attempts, \
                         next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, 'queued', 0, $7, $7)",
                    )
                    .bind(&m.id)
                    .bind(&m.sender)
                    .bind(&m.phone)
                    .bind(&m.country)
                    .bind(&m.purpose)
                    .bind(&m.body_sealed)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err($map_err)?;
                }
                tx.commit().await.map_err($map_err)
            }

            async fn sms_code(&self, phone: &str, purpose: &str) -> Result<Option<SmsCode>> {
                let row = sqlx::query(
                    "SELECT phone, purpose, code_hash, device, pending_password, attempts, created_at, expires_at \
                     FROM sms_codes WHERE phone = $1 AND purpose = $2",
                )
                .bind(phone)
                .bind(purpose)
                .fetch_optional(&self.pool)
                .await
                .map_err($map_err)?;
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
                .bind(phone)
                .bind(purpose)
                .bind(device)
                .bind(max_attempts)
                .fetch_optional(&self.pool)
                .await
                .map_err($map_err)?;
                if let Some(r) = row {
                    return Ok(Attempt::Taken(sms_code_from_row(&r)?));
                }
                let locked = self
                    .sms_code(phone, purpose)
                    .await?
                    .is_some_and(|c| c.device.as_deref() == Some(device));
                Ok(if locked { Attempt::Locked } else { Attempt::Missing })
            }

            async fn create_user(
                &self,
                phone: &str,
                code_created_at: i64,
                id: Uuid,
                password_hash: &str,
                now: i64,
            ) -> Result<Option<User>> {
                let mut tx = self.pool.begin().await.map_err($map_err)?;
                if !consume_code(&mut tx, phone, "register", code_created_at).await? {
                    return Ok(None);
                }
                let sql = format!(
                    "INSERT INTO users (id, phone, password_hash, created_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (phone) DO NOTHING RETURNING {USER_COLUMNS}"
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id.to_string())
                    .bind(phone)
                    .bind(password_hash)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err($map_err)?;
                let Some(row) = row else {
                    return Err(StoreError::Conflict("phone already registered"));
                };
                let created = user(&row)?;
                tx.commit().await.map_err($map_err)?;
                Ok(Some(created))
            }

            async fn reset_password(
                &self,
                phone: &str,
                code_created_at: i64,
                user_id: Uuid,
                password_hash: &str,
            ) -> Result<bool> {
                let mut tx = self.pool.begin().await.map_err($map_err)?;
                if !consume_code(&mut tx, phone, "password_reset", code_created_at).await? {
                    return Ok(false);
                }
                sqlx::query(
                    "UPDATE users SET password_hash = $1, failed_logins = 0, locked_until = 0 WHERE id = $2",
                )
                .bind(password_hash)
                .bind(user_id.to_string())
                .execute(&mut *tx)
                .await
                .map_err($map_err)?;
                sqlx::query(
                    "UPDATE refresh_tokens SET status = 'revoked' WHERE user_id = $1 AND status = 'active'",
                )
                .bind(user_id.to_string())
                .execute(&mut *tx)
                .await
                .map_err($map_err)?;
                tx.commit().await.map_err($map_err)?;
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
                .bind(lock_after)
                .bind(now + lock_seconds)
                .bind(user_id.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err($map_err)?
                .ok_or(StoreError::NotFound)?;
                get(&row, "failed_logins")
            }

            async fn clear_login_failures(&self, user_id: Uuid) -> Result<()> {
                sqlx::query(
                    "UPDATE users SET failed_logins = 0, locked_until = 0 WHERE id = $1 AND failed_logins > 0",
                )
                .bind(user_id.to_string())
                .execute(&self.pool)
                .await
                .map_err($map_err)?;
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
                    .bind(now)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err($map_err)?;
                rows.iter().map(sms).collect()
            }

            async fn finish_sms(&self, id: &str, outcome: SmsOutcome, now: i64) -> Result<()> {
                let q = match &outcome {
                    SmsOutcome::Sent { provider_id } => sqlx::query(
                        "UPDATE sms_messages SET status = 'sent', sent_at = $1, provider_id = $2, last_error = NULL \
                         WHERE id = $3",
                    )
                    .bind(now)
                    .bind(provider_id.clone()),
                    SmsOutcome::Retry {
                        error,
                        next_attempt_at,
                    } => sqlx::query(
                        "UPDATE sms_messages SET status = 'queued', next_attempt_at = $1, last_error = $2 WHERE id = $3",
                    )
                    .bind(*next_attempt_at)
                    .bind(error.clone()),
                    SmsOutcome::Failed { error } => sqlx::query(
                        "UPDATE sms_messages SET status = 'failed', next_attempt_at = $1, last_error = $2 WHERE id = $3",
                    )
                    .bind(now)
                    .bind(error.clone()),
                };
                q.bind(id).execute(&self.pool).await.map_err($map_err)?;
                Ok(())
            }

            async fn requeue_stuck_sms(&self, claimed_before: i64) -> Result<u64> {
                self.execute_one(
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
                    .bind(phone)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err($map_err)?;
                rows.iter().map(sms).collect()
            }

            async fn insert_refresh_token(&self, t: RefreshToken) -> Result<()> {
                insert_refresh(&t)
                    .execute(&self.pool)
                    .await
                    .map_err($map_err)?;
                Ok(())
            }

            async fn refresh_token(&self, lookup: &str) -> Result<Option<RefreshToken>> {
                let row = sqlx::query(
                    "SELECT lookup, hash, family, user_id, device, status, created_at, expires_at \
                     FROM refresh_tokens WHERE lookup = $1",
                )
                .bind(lookup)
                .fetch_optional(&self.pool)
                .await
                .map_err($map_err)?;
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
                let mut tx = self.pool.begin().await.map_err($map_err)?;
                let done = sqlx::query(
                    "UPDATE refresh_tokens SET status = 'used', used_at = $1 WHERE lookup = $2 AND status = 'active'",
                )
                .bind(now)
                .bind(lookup)
                .execute(&mut *tx)
                .await
                .map_err($map_err)?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                if let Some(t) = &next {
                    insert_refresh(t).execute(&mut *tx).await.map_err($map_err)?;
                }
                tx.commit().await.map_err($map_err)?;
                Ok(true)
            }

            async fn revoke_refresh_family(&self, family: &str) -> Result<u64> {
                let done = sqlx::query(
                    "UPDATE refresh_tokens SET status = 'revoked' WHERE family = $1 AND status = 'active'",
                )
                .bind(family)
                .execute(&self.pool)
                .await
                .map_err($map_err)?;
                Ok(done.rows_affected())
            }

            async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
                let rows = sqlx::query(
                    "SELECT kid, private_sealed, public_jwk, created_at, retired_at FROM signing_keys \
                     ORDER BY created_at DESC, kid DESC LIMIT 16",
                )
                .fetch_all(&self.pool)
                .await
                .map_err($map_err)?;
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
                .bind(key.kid)
                .bind(key.private_sealed)
                .bind(key.public_jwk)
                .bind(key.created_at);
                rotate_key(&self.pool, "signing_keys", insert, now).await
            }

            async fn cleanup_accounts(&self, now: i64, messages_before: i64) -> Result<u64> {
                Ok(self
                    .execute_one("DELETE FROM sms_codes WHERE expires_at <= $1", now)
                    .await?
                    + self
                        .execute_one("DELETE FROM refresh_tokens WHERE expires_at <= $1", now)
                        .await?
                    + self
                        .execute_one(
                            "DELETE FROM sms_messages WHERE status IN ('sent', 'failed') AND created_at < $1",
                            messages_before,
                        )
                        .await?)
            }
        }

        const RELEASE_COLUMNS: &str = "app_id, version, sha256, size, status, created_at";

        fn release(r: &$row) -> Result<Release> {
            Ok(Release {
                app_id: get(r, "app_id")?,
                version: get(r, "version")?,
                sha256: get(r, "sha256")?,
                size: get(r, "size")?,
                status: get(r, "status")?,
                created_at: get(r, "created_at")?,
            })
        }

        #[async_trait]
        impl AttestStore for $store {
            async fn put_release(
                &self,
                app_id: &str,
                version: &str,
                package: &[u8],
                sha256: &[u8],
                now: i64,
            ) -> Result<Release> {
                let sql = format!(
                    "INSERT INTO app_releases (app_id, version, sha256, size, package, status, created_at) \
                     VALUES ($1, $2, $3, $4, $5, 'active', $6) ON CONFLICT (app_id, version) DO NOTHING \
                     RETURNING {RELEASE_COLUMNS}"
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(app_id)
                    .bind(version)
                    .bind(sha256)
                    .bind(i64::try_from(package.len()).unwrap_or(i64::MAX))
                    .bind(package)
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($map_err)?
                    .ok_or(StoreError::Conflict(
                        "this app id and version are registered",
                    ))?;
                release(&row)
            }

            async fn releases(&self, limit: u32) -> Result<Vec<Release>> {
                let sql = format!(
                    "SELECT {RELEASE_COLUMNS} FROM app_releases ORDER BY created_at DESC LIMIT $1"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err($map_err)?;
                rows.iter().map(release).collect()
            }

            async fn release(&self, app_id: &str, version: &str) -> Result<Option<Release>> {
                let sql = format!(
                    "SELECT {RELEASE_COLUMNS} FROM app_releases WHERE app_id = $1 AND version = $2"
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(app_id)
                    .bind(version)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($map_err)?;
                row.as_ref().map(release).transpose()
            }

            async fn retire_release(&self, app_id: &str, version: &str) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE app_releases SET status = 'retired' WHERE app_id = $1 AND version = $2",
                )
                .bind(app_id)
                .bind(version)
                .execute(&self.pool)
                .await
                .map_err($map_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn release_ranges(
                &self,
                app_id: &str,
                version: &str,
                ranges: &[(u64, u64)],
            ) -> Result<Vec<Vec<u8>>> {
                // substr() reads just that slice of the package (1-based offset); both engines
                // define it on BLOB/BYTEA with INTEGER arguments.
                let mut out = Vec::with_capacity(ranges.len());
                let mut conn = self.pool.acquire().await.map_err($map_err)?;
                for (offset, len) in ranges {
                    let row = sqlx::query(
                        "SELECT substr(package, CAST($1 AS INTEGER), CAST($2 AS INTEGER)) AS part \
                         FROM app_releases WHERE app_id = $3 AND version = $4",
                    )
                    .bind(
                        i64::try_from(*offset)
                            .unwrap_or(i64::MAX)
                            .saturating_add(1)
                            .min(i64::from(i32::MAX)),
                    )
                    .bind(i64::try_from(*len).unwrap_or(0).min(i64::from(i32::MAX)))
                    .bind(app_id)
                    .bind(version)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err($map_err)?
                    .ok_or(StoreError::NotFound)?;
                    out.push(get::<Vec<u8>>(&row, "part")?);
                }
                Ok(out)
            }

            async fn integrity_keys(&self) -> Result<Vec<IntegrityKey>> {
                let rows = sqlx::query(
                    "SELECT kid, secret_sealed, created_at, retired_at FROM integrity_keys \
                     ORDER BY created_at DESC, kid DESC LIMIT 16",
                )
                .fetch_all(&self.pool)
                .await
                .map_err($map_err)?;
                rows.iter()
                    .map(|r| {
                        Ok(IntegrityKey {
                            kid: get(r, "kid")?,
                            secret_sealed: get(r, "secret_sealed")?,
                            created_at: get(r, "created_at")?,
                            retired_at: get(r, "retired_at")?,
                        })
                    })
                    .collect()
            }

            async fn rotate_integrity_key(&self, key: IntegrityKey, now: i64) -> Result<()> {
                let insert = sqlx::query(
                    "INSERT INTO integrity_keys (kid, secret_sealed, created_at, retired_at) VALUES ($1, $2, $3, NULL)",
                )
                .bind(key.kid)
                .bind(key.secret_sealed)
                .bind(key.created_at);
                rotate_key(&self.pool, "integrity_keys", insert, now).await
            }

            async fn put_attest_key(&self, key: AttestKey, now: i64) -> Result<()> {
                sqlx::query(
                    "INSERT INTO app_attest_keys (key_id, device, public_key, counter, environment, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key_id) DO UPDATE SET device = excluded.device, \
                     public_key = excluded.public_key, counter = excluded.counter, environment = excluded.environment",
                )
                .bind(&key.key_id)
                .bind(&key.device)
                .bind(&key.public_key)
                .bind(key.counter)
                .bind(&key.environment)
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err($map_err)?;
                Ok(())
            }

            async fn attest_key(&self, key_id: &str) -> Result<Option<AttestKey>> {
                let row = sqlx::query(
                    "SELECT key_id, device, public_key, counter, environment FROM app_attest_keys WHERE key_id = $1",
                )
                .bind(key_id)
                .fetch_optional(&self.pool)
                .await
                .map_err($map_err)?;
                row.map(|r| {
                    Ok(AttestKey {
                        key_id: get(&r, "key_id")?,
                        device: get(&r, "device")?,
                        public_key: get(&r, "public_key")?,
                        counter: get(&r, "counter")?,
                        environment: get(&r, "environment")?,
                    })
                })
                .transpose()
            }

            async fn advance_attest_counter(
                &self,
                key_id: &str,
                old: i64,
                new: i64,
            ) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE app_attest_keys SET counter = $1 WHERE key_id = $2 AND counter = $3 AND $1 > counter",
                )
                .bind(new)
                .bind(key_id)
                .bind(old)
                .execute(&self.pool)
                .await
                .map_err($map_err)?;
                Ok(done.rows_affected() == 1)
            }
        }

        #[async_trait]
        impl OpsStore for $store {
            async fn append_audit(&self, events: &[NewAuditEvent]) -> Result<()> {
                let mut tx = self.pool.begin().await.map_err($map_err)?;
                for e in events {
                    sqlx::query(
                        "INSERT INTO audit_log (id, at, kind, actor, subject, ip, detail) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(Uuid::now_v7().to_string())
                    .bind(e.at)
                    .bind(&e.kind)
                    .bind(&e.actor)
                    .bind(&e.subject)
                    .bind(&e.ip)
                    .bind(&e.detail)
                    .execute(&mut *tx)
                    .await
                    .map_err($map_err)?;
                }
                tx.commit().await.map_err($map_err)?;
                Ok(())
            }

            async fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditEvent>> {
                // One statement for every combination of filters: an absent filter is a NULL
                // parameter that makes its condition true (the CASTs give PostgreSQL the
                // parameter types).
                let rows = sqlx::query(
                    "SELECT id, at, kind, actor, subject, ip, detail FROM audit_log \
                     WHERE (CAST($1 AS TEXT) IS NULL OR kind = $1) \
                     AND (CAST($2 AS TEXT) IS NULL OR subject = $2) \
                     AND (CAST($3 AS BIGINT) IS NULL OR at >= $3) \
                     AND (CAST($4 AS BIGINT) IS NULL OR at < $4) \
                     AND (CAST($5 AS TEXT) IS NULL OR id < $5) \
                     ORDER BY id DESC LIMIT $6",
                )
                .bind(&q.kind)
                .bind(&q.subject)
                .bind(q.since)
                .bind(q.until)
                .bind(&q.before_id)
                .bind(i64::from(q.limit.min(MAX_AUDIT_PAGE)))
                .fetch_all(&self.pool)
                .await
                .map_err($map_err)?;
                rows.iter()
                    .map(|r| {
                        Ok(AuditEvent {
                            id: get(r, "id")?,
                            event: NewAuditEvent {
                                at: get(r, "at")?,
                                kind: get(r, "kind")?,
                                actor: get(r, "actor")?,
                                subject: get(r, "subject")?,
                                ip: get(r, "ip")?,
                                detail: get(r, "detail")?,
                            },
                        })
                    })
                    .collect()
            }

            async fn add_stats(&self, deltas: &[StatDelta]) -> Result<()> {
                let mut tx = self.pool.begin().await.map_err($map_err)?;
                for d in deltas {
                    sqlx::query(
                        "INSERT INTO daily_stats (day, metric, label, value) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (day, metric, label) DO UPDATE SET value = daily_stats.value + excluded.value",
                    )
                    .bind(d.day)
                    .bind(&d.metric)
                    .bind(&d.label)
                    .bind(d.value)
                    .execute(&mut *tx)
                    .await
                    .map_err($map_err)?;
                }
                tx.commit().await.map_err($map_err)?;
                Ok(())
            }

            async fn stats(&self, metric: &str, from_day: i64, to_day: i64) -> Result<Vec<StatRow>> {
                let rows = sqlx::query(
                    "SELECT day, metric, label, value FROM daily_stats \
                     WHERE metric = $1 AND day >= $2 AND day <= $3 ORDER BY day, label LIMIT 10000",
                )
                .bind(metric)
                .bind(from_day)
                .bind(to_day)
                .fetch_all(&self.pool)
                .await
                .map_err($map_err)?;
                rows.iter()
                    .map(|r| {
                        Ok(StatRow {
                            day: get(r, "day")?,
                            metric: get(r, "metric")?,
                            label: get(r, "label")?,
                            value: get(r, "value")?,
                        })
                    })
                    .collect()
            }

            async fn top_stats(
                &self,
                metric: &str,
                from_day: i64,
                to_day: i64,
                limit: u32,
            ) -> Result<Vec<(String, i64)>> {
                let rows = sqlx::query(
                    "SELECT label, CAST(SUM(value) AS BIGINT) AS total FROM daily_stats \
                     WHERE metric = $1 AND day >= $2 AND day <= $3 \
                     GROUP BY label ORDER BY total DESC, label LIMIT $4",
                )
                .bind(metric)
                .bind(from_day)
                .bind(to_day)
                .bind(i64::from(limit.min(MAX_PAGE)))
                .fetch_all(&self.pool)
                .await
                .map_err($map_err)?;
                rows.iter()
                    .map(|r| Ok((get(r, "label")?, get(r, "total")?)))
                    .collect()
            }

            async fn mailbox_backlog(&self) -> Result<i64> {
                let row = sqlx::query(
                    "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM mailbox_items WHERE channel = 'builtin'",
                )
                .fetch_one(&self.pool)
                .await
                .map_err($map_err)?;
                get(&row, "n")
            }

            async fn purge_ops(&self, audit_before: i64, stats_before_day: i64) -> Result<u64> {
                Ok(self
                    .execute_one("DELETE FROM audit_log WHERE at < $1", audit_before)
                    .await?
                    + self
                        .execute_one("DELETE FROM daily_stats WHERE day < $1", stats_before_day)
                        .await?)
            }
        }
    };
}

pub(crate) use sql_backend;
