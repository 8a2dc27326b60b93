//! The embedded SQLite backend (sqlx, WAL mode).
//!
//! sqlx runs each SQLite connection on its own worker thread, so nothing here blocks the
//! async runtime; every statement costs a channel round trip (~20 µs), which is why the
//! server batches last-use updates and keeps replay caches in memory instead of here.

use std::borrow::Cow;
use std::str::FromStr as _;
use std::time::Duration;

use sqlx::SqlSafeStr as _;
use sqlx::SqlitePool;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::{Result, StoreError};

pub(crate) const MIGRATIONS: &[(i64, &str, &str)] = &[
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
    (
        4,
        "leases",
        include_str!("../migrations/sqlite/0004_leases.sql"),
    ),
    (
        5,
        "mailbox channel",
        include_str!("../migrations/sqlite/0005_mailbox_channel.sql"),
    ),
    (
        6,
        "audit log and daily stats",
        include_str!("../migrations/sqlite/0006_ops.sql"),
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

fn map_err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(Box::new(e))
        }
        // Locked or busy: another writer holds the database. Full or I/O error: the disk
        // cannot take the write (nothing was committed; SQLite rolls the transaction back).
        // Either way the request cannot be served now, and is answered 503.
        sqlx::Error::Database(ref db)
            if ["locked", "busy", "disk is full", "disk I/O error"]
                .iter()
                .any(|m| db.message().contains(m)) =>
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
        let connect =
            SqliteConnectOptions::from_str(url).map_err(|e| StoreError::Backend(Box::new(e)))?;
        if !(url.contains(":memory:") || url.contains("mode=memory")) {
            create_private(connect.get_filename())?;
        }
        let connect = connect
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(options.busy_timeout)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            // A connection must not go back to the pool with a transaction SQLite still holds
            // open: seen after a full disk, when later writes ran inside it, answered as
            // committed, and were lost at the next crash, while every other connection waited
            // on its write lock. A `ROLLBACK` that succeeds means one was open: that
            // connection is closed instead of reused.
            .after_release(|conn, _| {
                Box::pin(async move {
                    let dangling = sqlx::query("ROLLBACK").execute(&mut *conn).await.is_ok();
                    Ok(!dangling)
                })
            })
            .connect_with(connect)
            .await
            .map_err(map_err)?;
        migrator(MIGRATIONS)
            .run(&pool)
            .await
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        Ok(Self { pool })
    }
}

/// Creates the database file 0600 if it does not exist yet, and narrows an existing database,
/// `-wal` or `-shm` file that group or others can read to 0600.
///
/// SQLite creates a new database 0644 (less the umask), and gives its `-wal` and `-shm` files
/// the database file's mode: a file made here first, 0600, makes all three private. An empty
/// file is a valid empty database. Existing files are narrowed rather than refused: they are
/// Moat's own, and earlier versions let SQLite create them 0644.
fn create_private(path: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let backend = |e: std::io::Error| StoreError::Backend(Box::new(e));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(backend(e)),
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = std::path::Path::new(&name);
        let mode = match std::fs::metadata(file) {
            Ok(meta) => meta.permissions().mode() & 0o777,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(backend(e)),
        };
        if mode & 0o077 != 0 {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
                .map_err(backend)?;
            tracing::warn!(
                path = %file.display(),
                was = %format_args!("{mode:03o}"),
                "database file was readable by group or others; narrowed to 0600"
            );
        }
    }
    Ok(())
}

impl SqliteStore {
    /// SQLite's own consistency check (`PRAGMA integrity_check`): `"ok"` when the file is
    /// sound, else the problems it found.
    ///
    /// # Errors
    /// [`StoreError`] if the check cannot run.
    pub async fn integrity_check(&self) -> Result<String> {
        use sqlx::Row as _;
        let rows = sqlx::query("PRAGMA integrity_check")
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(map_err))
            .collect::<Result<Vec<_>>>()
            .map(|lines| lines.join("\n"))
    }
}

/// A migrator for embedded `(version, description, sql)` migrations.
pub(crate) fn migrator(migrations: &'static [(i64, &'static str, &'static str)]) -> Migrator {
    Migrator::with_migrations(
        migrations
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
            .collect(),
    )
}

/// The shared SQL's view of Sqlite: this backend's error mapping.
impl crate::sql::Db for sqlx::Sqlite {
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
impl crate::sql::SqlStore for SqliteStore {
    type Db = sqlx::Sqlite;

    fn pool(&self) -> &sqlx::Pool<Self::Db> {
        &self.pool
    }
}
