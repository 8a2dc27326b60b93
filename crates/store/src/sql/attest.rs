//! [`AttestStore`] (app releases, integrity keys, App Attest keys) in the shared SQL.

use async_trait::async_trait;

use super::{Affected as _, Arg as _, Db as _, Decodes, SqlStore, get, rotate_key};
use crate::attest::{AttestKey, AttestStore, IntegrityKey, Release};
use crate::{Result, StoreError};

const RELEASE_COLUMNS: &str = "app_id, version, sha256, size, status, created_at";

fn release(r: &impl Decodes) -> Result<Release> {
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
impl<S: SqlStore> AttestStore for S {
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
            .arg(app_id)
            .arg(version)
            .arg(sha256)
            .arg(i64::try_from(package.len()).unwrap_or(i64::MAX))
            .arg(package)
            .arg(now)
            .fetch_optional(self.exec())
            .await
            .map_err(S::err)?
            .ok_or(StoreError::Conflict(
                "this app id and version are registered",
            ))?;
        release(&row)
    }

    async fn releases(&self, limit: u32) -> Result<Vec<Release>> {
        let sql =
            format!("SELECT {RELEASE_COLUMNS} FROM app_releases ORDER BY created_at DESC LIMIT $1");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .arg(i64::from(limit))
            .fetch_all(self.exec())
            .await
            .map_err(S::err)?;
        rows.iter().map(release).collect()
    }

    async fn release(&self, app_id: &str, version: &str) -> Result<Option<Release>> {
        let sql = format!(
            "SELECT {RELEASE_COLUMNS} FROM app_releases WHERE app_id = $1 AND version = $2"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .arg(app_id)
            .arg(version)
            .fetch_optional(self.exec())
            .await
            .map_err(S::err)?;
        row.as_ref().map(release).transpose()
    }

    async fn retire_release(&self, app_id: &str, version: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE app_releases SET status = 'retired' WHERE app_id = $1 AND version = $2",
        )
        .arg(app_id)
        .arg(version)
        .execute(self.exec())
        .await
        .map_err(S::err)?;
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
        let mut conn = self.pool().acquire().await.map_err(S::err)?;
        for (offset, len) in ranges {
            let row = sqlx::query(
                "SELECT substr(package, CAST($1 AS INTEGER), CAST($2 AS INTEGER)) AS part \
                 FROM app_releases WHERE app_id = $3 AND version = $4",
            )
            .arg(
                i64::try_from(*offset)
                    .unwrap_or(i64::MAX)
                    .saturating_add(1)
                    .min(i64::from(i32::MAX)),
            )
            .arg(i64::try_from(*len).unwrap_or(0).min(i64::from(i32::MAX)))
            .arg(app_id)
            .arg(version)
            .fetch_optional(S::Db::conn(&mut conn))
            .await
            .map_err(S::err)?
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
        .fetch_all(self.exec())
        .await
        .map_err(S::err)?;
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
        .arg(key.kid)
        .arg(key.secret_sealed)
        .arg(key.created_at);
        rotate_key(self.pool(), "integrity_keys", insert, now).await
    }

    async fn put_attest_key(&self, key: AttestKey, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO app_attest_keys (key_id, device, public_key, counter, environment, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key_id) DO UPDATE SET device = excluded.device, \
             public_key = excluded.public_key, counter = excluded.counter, environment = excluded.environment",
        )
        .arg(&key.key_id)
        .arg(&key.device)
        .arg(&key.public_key)
        .arg(key.counter)
        .arg(&key.environment)
        .arg(now)
        .execute(self.exec())
        .await
        .map_err(S::err)?;
        Ok(())
    }

    async fn attest_key(&self, key_id: &str) -> Result<Option<AttestKey>> {
        let row = sqlx::query(
            "SELECT key_id, device, public_key, counter, environment FROM app_attest_keys WHERE key_id = $1",
        )
        .arg(key_id)
        .fetch_optional(self.exec())
        .await
        .map_err(S::err)?;
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
        let done = sqlx::query(
            "UPDATE app_attest_keys SET counter = $1 WHERE key_id = $2 AND counter = $3 AND $1 > counter",
        )
        .arg(new)
        .arg(key_id)
        .arg(old)
        .execute(self.exec())
        .await
        .map_err(S::err)?;
        Ok(done.rows_affected() == 1)
    }
}
