//! Migration status: which migrations this build knows, and which a database has applied.
//!
//! Read without changing anything (a SQLite file is opened read-only and never created), so
//! that `moat doctor` can report on a database the server has not opened yet. sqlx records
//! applied migrations in its `_sqlx_migrations` table; a database without that table has
//! none applied.

use std::str::FromStr as _;

use sqlx::Connection as _;

/// A migration of this build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Migration {
    /// Its version (both backends number their migrations alike).
    pub version: i64,
    /// What it does.
    pub description: &'static str,
}

/// A migration recorded in a database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedMigration {
    /// Its version.
    pub version: i64,
    /// Its description as recorded.
    pub description: String,
    /// False if it stopped part-way: the database needs repair before the server can start.
    pub success: bool,
}

/// The migrations of one database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationStatus {
    /// The migrations this build applies to that backend, in version order.
    pub known: Vec<Migration>,
    /// The migrations recorded in the database, in version order; empty if it was never
    /// migrated.
    pub applied: Vec<AppliedMigration>,
}

impl MigrationStatus {
    /// Applied migrations that stopped part-way.
    pub fn failed(&self) -> Vec<i64> {
        self.applied
            .iter()
            .filter(|m| !m.success)
            .map(|m| m.version)
            .collect()
    }

    /// Applied migrations this build does not know (the database was used by a newer one).
    pub fn unknown(&self) -> Vec<i64> {
        self.applied
            .iter()
            .map(|m| m.version)
            .filter(|v| !self.known.iter().any(|k| k.version == *v))
            .collect()
    }

    /// Known migrations the database has not applied (the server applies them when it
    /// starts).
    pub fn pending(&self) -> Vec<i64> {
        self.known
            .iter()
            .map(|k| k.version)
            .filter(|v| !self.applied.iter().any(|m| m.version == *v))
            .collect()
    }
}

/// The driver's error.
type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why the status could not be read; each carries the driver's error.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The URL is not one this backend accepts.
    #[error("invalid store URL")]
    Url(#[source] Cause),
    /// The database cannot be opened or reached.
    #[error("cannot connect")]
    Connect(#[source] Cause),
    /// It was reached, but its migrations cannot be read.
    #[error("cannot read the migrations")]
    Read(#[source] Cause),
    /// The URL names no backend.
    #[error("store.url must start with sqlite:, postgres:// or postgresql://")]
    Scheme,
}

impl StatusError {
    /// The driver's error, for messages that show it without this wrapper's words.
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        match self {
            Self::Url(e) | Self::Connect(e) | Self::Read(e) => Some(e.as_ref()),
            Self::Scheme => None,
        }
    }
}

/// The migrations this build applies to the backend of `url`, or `None` for an unknown
/// scheme.
pub fn known_migrations(url: &str) -> Option<Vec<Migration>> {
    let list = if url.starts_with("sqlite:") {
        crate::sqlite::MIGRATIONS
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        crate::postgres::MIGRATIONS
    } else {
        return None;
    };
    Some(
        list.iter()
            .map(|(version, description, _)| Migration {
                version: *version,
                description,
            })
            .collect(),
    )
}

/// The migration status of the database at `url`, read without changing it. On PostgreSQL
/// the connection is named `application_name` (what `pg_stat_activity` shows).
///
/// # Errors
/// [`StatusError`] naming the step that failed.
pub async fn migration_status(
    url: &str,
    application_name: &str,
) -> Result<MigrationStatus, StatusError> {
    let known = known_migrations(url).ok_or(StatusError::Scheme)?;
    let applied = if url.starts_with("sqlite:") {
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
            .map_err(|e| StatusError::Url(Box::new(e)))?
            .read_only(true)
            .create_if_missing(false);
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .map_err(|e| StatusError::Connect(Box::new(e)))?;
        let applied = sqlite_applied(&mut conn).await;
        let _ = conn.close().await;
        applied
    } else {
        let options = sqlx::postgres::PgConnectOptions::from_str(url)
            .map_err(|e| StatusError::Url(Box::new(e)))?
            .application_name(application_name);
        let mut conn = sqlx::PgConnection::connect_with(&options)
            .await
            .map_err(|e| StatusError::Connect(Box::new(e)))?;
        let applied = postgres_applied(&mut conn).await;
        let _ = conn.close().await;
        applied
    }
    .map_err(|e| StatusError::Read(Box::new(e)))?;
    Ok(MigrationStatus { known, applied })
}

type Row = (i64, String, bool);

const APPLIED: &str = "SELECT version, description, success FROM _sqlx_migrations ORDER BY version";

async fn sqlite_applied(
    conn: &mut sqlx::SqliteConnection,
) -> Result<Vec<AppliedMigration>, sqlx::Error> {
    let table: Option<(String,)> = sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_optional(&mut *conn)
    .await?;
    if table.is_none() {
        return Ok(Vec::new());
    }
    let rows: Vec<Row> = sqlx::query_as(APPLIED).fetch_all(&mut *conn).await?;
    Ok(rows.into_iter().map(applied).collect())
}

async fn postgres_applied(
    conn: &mut sqlx::PgConnection,
) -> Result<Vec<AppliedMigration>, sqlx::Error> {
    let (exists,): (bool,) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations')",
    )
    .fetch_one(&mut *conn)
    .await?;
    if !exists {
        return Ok(Vec::new());
    }
    let rows: Vec<Row> = sqlx::query_as(APPLIED).fetch_all(&mut *conn).await?;
    Ok(rows.into_iter().map(applied).collect())
}

fn applied((version, description, success): Row) -> AppliedMigration {
    AppliedMigration {
        version,
        description,
        success,
    }
}

#[cfg(test)]
mod tests {
    use super::{StatusError, migration_status};

    #[tokio::test]
    async fn a_fresh_store_has_every_migration_and_a_missing_file_is_not_created() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = format!("sqlite://{}", dir.path().join("missing.db").display());
        let err = migration_status(&missing, "test")
            .await
            .expect_err("no file");
        assert!(matches!(err, StatusError::Connect(_)), "{err:?}");
        assert!(!dir.path().join("missing.db").exists());

        let url = format!("sqlite://{}", dir.path().join("moat.db").display());
        drop(
            crate::sqlite::SqliteStore::open(&url, &crate::sqlite::SqliteOptions::default())
                .await
                .expect("open"),
        );
        let status = migration_status(&url, "test").await.expect("status");
        assert_eq!(status.applied.len(), status.known.len());
        assert!(status.pending().is_empty());
        assert!(status.failed().is_empty());
        assert!(status.unknown().is_empty());
        assert_eq!(status.applied[0].description, status.known[0].description);
    }
}
