//! [`AttestStore`] on SQLite.

use async_trait::async_trait;
use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;

use crate::attest::{AttestKey, AttestStore, IntegrityKey, Release};
use crate::sqlite::{SqliteStore, map_err};
use crate::{Result, StoreError};

fn get<'r, T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>>(
    row: &'r SqliteRow,
    col: &str,
) -> Result<T> {
    row.try_get(col)
        .map_err(|e| StoreError::Backend(Box::new(e)))
}

const RELEASE_COLUMNS: &str = "app_id, version, sha256, size, status, created_at";

fn release(r: &SqliteRow) -> Result<Release> {
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
impl AttestStore for SqliteStore {
    async fn put_release(
        &self,
        app_id: &str,
        version: &str,
        package: &[u8],
        sha256: &[u8],
        now: i64,
    ) -> Result<Release> {
        let sql = format!(
            "INSERT INTO app_releases (app_id, version, sha256, size, package, status, created_at) VALUES (?, ?, ?, ?, ?, 'active', ?) \
             ON CONFLICT (app_id, version) DO NOTHING RETURNING {RELEASE_COLUMNS}"
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
            .map_err(map_err)?
            .ok_or(StoreError::Conflict(
                "this app id and version are registered",
            ))?;
        release(&row)
    }

    async fn releases(&self, limit: u32) -> Result<Vec<Release>> {
        let sql =
            format!("SELECT {RELEASE_COLUMNS} FROM app_releases ORDER BY created_at DESC LIMIT ?");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(release).collect()
    }

    async fn release(&self, app_id: &str, version: &str) -> Result<Option<Release>> {
        let sql =
            format!("SELECT {RELEASE_COLUMNS} FROM app_releases WHERE app_id = ? AND version = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(app_id)
            .bind(version)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(release).transpose()
    }

    async fn retire_release(&self, app_id: &str, version: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE app_releases SET status = 'retired' WHERE app_id = ? AND version = ?",
        )
        .bind(app_id)
        .bind(version)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_ranges(
        &self,
        app_id: &str,
        version: &str,
        ranges: &[(u64, u64)],
    ) -> Result<Vec<Vec<u8>>> {
        // substr() on a BLOB reads just that slice (1-based offset).
        let mut out = Vec::with_capacity(ranges.len());
        let mut conn = self.pool.acquire().await.map_err(map_err)?;
        for (offset, len) in ranges {
            let row = sqlx::query("SELECT substr(package, ?, ?) AS part FROM app_releases WHERE app_id = ? AND version = ?")
                .bind(i64::try_from(*offset).unwrap_or(i64::MAX).saturating_add(1))
                .bind(i64::try_from(*len).unwrap_or(0))
                .bind(app_id)
                .bind(version)
                .fetch_optional(&mut *conn)
                .await
                .map_err(map_err)?
                .ok_or(StoreError::NotFound)?;
            out.push(get::<Vec<u8>>(&row, "part")?);
        }
        Ok(out)
    }

    async fn integrity_keys(&self) -> Result<Vec<IntegrityKey>> {
        let rows = sqlx::query("SELECT kid, secret_sealed, created_at, retired_at FROM integrity_keys ORDER BY created_at DESC, kid DESC LIMIT 16")
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
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
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        sqlx::query("UPDATE integrity_keys SET retired_at = ? WHERE retired_at IS NULL")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        sqlx::query("INSERT INTO integrity_keys (kid, secret_sealed, created_at, retired_at) VALUES (?, ?, ?, NULL)")
            .bind(&key.kid)
            .bind(&key.secret_sealed)
            .bind(key.created_at)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }

    async fn put_attest_key(&self, key: AttestKey, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO app_attest_keys (key_id, device, public_key, counter, environment, created_at) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (key_id) DO UPDATE SET device = excluded.device, public_key = excluded.public_key, \
             counter = excluded.counter, environment = excluded.environment",
        )
        .bind(&key.key_id)
        .bind(&key.device)
        .bind(&key.public_key)
        .bind(key.counter)
        .bind(&key.environment)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn attest_key(&self, key_id: &str) -> Result<Option<AttestKey>> {
        let row = sqlx::query("SELECT key_id, device, public_key, counter, environment FROM app_attest_keys WHERE key_id = ?")
            .bind(key_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
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

    async fn advance_attest_counter(&self, key_id: &str, old: i64, new: i64) -> Result<bool> {
        let done = sqlx::query("UPDATE app_attest_keys SET counter = ? WHERE key_id = ? AND counter = ? AND ? > counter")
            .bind(new)
            .bind(key_id)
            .bind(old)
            .bind(new)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }
}
