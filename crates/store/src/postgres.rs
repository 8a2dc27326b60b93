//! The PostgreSQL backend, for several Moat instances sharing one database.
//!
//! Same statements as SQLite (see `sql/`), its own migrations (`migrations/postgres`). Every
//! connection sets `statement_timeout`, and the pool's acquire timeout bounds the wait for a
//! connection, so no request waits on the database longer than the configured timeout: past
//! it the store answers [`StoreError::Unavailable`] and the server fails closed (503). sqlx
//! prepares and caches each statement per connection, so the hot lookups are prepared once.
//! The pool reconnects by itself when the server comes back.

use std::str::FromStr as _;

use sqlx::ConnectOptions as _;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::{PoolOptions, Result, StoreError};

pub(crate) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "accounts",
        include_str!("../migrations/postgres/0002_accounts.sql"),
    ),
    (
        3,
        "attestation",
        include_str!("../migrations/postgres/0003_attestation.sql"),
    ),
    (
        4,
        "leases",
        include_str!("../migrations/postgres/0004_leases.sql"),
    ),
    (
        5,
        "mailbox channel",
        include_str!("../migrations/postgres/0005_mailbox_channel.sql"),
    ),
    (
        6,
        "audit log and daily stats",
        include_str!("../migrations/postgres/0006_ops.sql"),
    ),
];

/// The PostgreSQL store.
#[derive(Clone, Debug)]
pub struct PgStore {
    pub(crate) pool: PgPool,
}

/// Connection failures, timeouts, and the server's "cannot serve now" classes mean
/// unavailable; anything else is a backend error.
fn map_err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(Box::new(e)),
        sqlx::Error::Database(ref db)
            if db.code().is_some_and(|c| {
                // 08: connection exception; 57: operator intervention (shutdown, query
                // canceled by statement_timeout); 53: insufficient resources; 40001/40P01:
                // serialization failure, deadlock (retryable).
                c.starts_with("08")
                    || c.starts_with("57")
                    || c.starts_with("53")
                    || c == "40001"
                    || c == "40P01"
            }) =>
        {
            StoreError::Unavailable(Box::new(e))
        }
        other => StoreError::Backend(Box::new(other)),
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/db?sslmode=…`) and applies
    /// migrations (sqlx takes an advisory lock, so instances starting together migrate once).
    ///
    /// # Errors
    /// [`StoreError`] if the database cannot be reached or a migration fails.
    pub async fn open(url: &str, options: &PoolOptions) -> Result<Self> {
        let timeout_ms = options.timeout.as_millis().to_string();
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Backend(Box::new(e)))?
            .application_name("moat")
            .options([
                ("statement_timeout", timeout_ms.as_str()),
                ("lock_timeout", timeout_ms.as_str()),
                ("idle_in_transaction_session_timeout", "60000"),
            ])
            // Statements carry no secrets, but at debug level they would flood the log.
            .disable_statement_logging();
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .min_connections(1)
            .acquire_timeout(options.timeout)
            // Check a pooled connection before handing it out only if it sat idle a while:
            // after a database restart the first use of each stale connection fails fast and
            // the pool opens a new one.
            .test_before_acquire(false)
            .idle_timeout(std::time::Duration::from_secs(300))
            .connect_with(connect)
            .await
            .map_err(map_err)?;
        crate::sqlite::migrator(MIGRATIONS)
            .run(&pool)
            .await
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        Ok(Self { pool })
    }
}

/// The shared SQL's view of Postgres: this backend's error mapping.
impl crate::sql::Db for sqlx::Postgres {
    fn map_err(e: sqlx::Error) -> StoreError {
        map_err(e)
    }

    fn pool(pool: &sqlx::Pool<Self>) -> impl sqlx::Executor<'_, Database = Self> {
        pool
    }

    fn conn(conn: &mut Self::Connection) -> impl sqlx::Executor<'_, Database = Self> {
        conn
    }
}

/// The storage traits come from the SQL shared with the other backend.
impl crate::sql::SqlStore for PgStore {
    type Db = sqlx::Postgres;

    fn pool(&self) -> &sqlx::Pool<Self::Db> {
        &self.pool
    }
}
