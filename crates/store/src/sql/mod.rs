//! The SQL both backends share.
//!
//! SQLite and PostgreSQL run the same statements: every query uses `$N` placeholders (which
//! sqlx's SQLite driver reads as positional too) and only SQL both engines accept
//! (`ON CONFLICT … DO UPDATE … WHERE`, `RETURNING`, `CASE` instead of the two-argument `MAX`,
//! explicit `CAST`s where PostgreSQL would not convert a `BIGINT` parameter). The
//! implementations of [`Store`](crate::Store), [`AccountStore`](crate::accounts::AccountStore),
//! [`AttestStore`](crate::attest::AttestStore) and [`OpsStore`](crate::ops::OpsStore) are
//! therefore written once, as ordinary generic code over a [`SqlStore`] (a store holding a
//! sqlx pool), one module per trait: `devices`, `accounts`, `attest` and `ops`.
//!
//! # Why a [`Db`] trait
//! Generic sqlx code needs many bounds: the executor of a connection, the encoding of every
//! bound type, the decoding of every read column. Rust carries only *supertrait* bounds (and
//! bounds on associated types) from a trait to its users, so written as `where` clauses they
//! would have to be repeated on every function. [`Db`] states them once, in forms Rust does
//! carry: [`Bind`] supertraits for the parameters, a [`Decodes`] bound on the row type, and
//! two methods that hand out the executors of a pool and of a connection. A function that
//! needs the database then only asks for `DB: Db`. The price is small: parameters are bound
//! with [`Arg::arg`] instead of sqlx's `bind` (whose bound Rust cannot prove generically), and
//! statements run on [`SqlStore::exec`] or [`on`] instead of `&pool` or `&mut *tx`.
//!
//! What does differ per backend stays in its module: connection options, error mapping
//! (which driver errors mean "unavailable", [`Db::map_err`]), migrations and column types.
//!
//! Concurrency: every "use once" operation is a single conditional statement
//! (`UPDATE … WHERE used_at IS NULL`, `DELETE … RETURNING`), so of concurrent callers on any
//! instance exactly one succeeds. Under PostgreSQL's READ COMMITTED a concurrent update makes
//! the losing statement re-check its `WHERE` on the new row version, which is why claims
//! repeat their conditions in the outer `WHERE` rather than relying on a sub-select alone.

use sqlx::query::Query;

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};
use uuid::Uuid;

use crate::{Result, StoreError};

mod accounts;
mod attest;
mod devices;
mod ops;

/// A statement with its parameters, as the shared code builds it.
pub(crate) type Statement<'q, DB> = Query<'q, DB, <DB as Database>::Arguments>;

/// `DB` can bind a `T` (borrowed for `'a`) as a statement parameter.
pub trait Bind<'a, T>: Database {
    /// Appends `value` to the parameters of `query`.
    fn bind_to<'q>(query: Statement<'q, Self>, value: T) -> Statement<'q, Self>;
}

impl<'a, DB: Database, T: Encode<'a, DB> + Type<DB>> Bind<'a, T> for DB {
    fn bind_to<'q>(query: Statement<'q, Self>, value: T) -> Statement<'q, Self> {
        query.bind(value)
    }
}

/// A row from which a column of type `T` can be read by name.
pub trait Get<T> {
    /// The column `col`.
    ///
    /// # Errors
    /// The driver's error if the column is missing or of another type.
    fn column(&self, col: &str) -> Result<T, sqlx::Error>;
}

impl<R: Row, T> Get<T> for R
where
    for<'r> T: Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: ColumnIndex<R>,
{
    fn column(&self, col: &str) -> Result<T, sqlx::Error> {
        self.try_get(col)
    }
}

/// A row type from which every column type the stores use can be read.
pub trait Decodes:
    Row
    + Get<String>
    + Get<Option<String>>
    + Get<i64>
    + Get<Option<i64>>
    + Get<Vec<u8>>
    + Get<Option<Vec<u8>>>
{
}

impl<R> Decodes for R where
    R: Row
        + Get<String>
        + Get<Option<String>>
        + Get<i64>
        + Get<Option<i64>>
        + Get<Vec<u8>>
        + Get<Option<Vec<u8>>>
{
}

/// A statement's result (sqlx has `rows_affected` on each backend's type, not in a trait).
pub trait Affected {
    /// How many rows the statement changed.
    fn rows_affected(&self) -> u64;
}

impl Affected for sqlx::sqlite::SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

impl Affected for sqlx::postgres::PgQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

/// What the shared SQL needs of a sqlx database (see the module documentation).
pub trait Db:
    Database<Row: Decodes, Arguments: IntoArguments<Self>, QueryResult: Affected>
    + for<'a> Bind<'a, &'a str>
    + for<'a> Bind<'a, &'a String>
    + for<'a> Bind<'a, Option<&'a str>>
    + for<'a> Bind<'a, &'a Option<String>>
    + for<'a> Bind<'a, String>
    + for<'a> Bind<'a, Option<String>>
    + for<'a> Bind<'a, i64>
    + for<'a> Bind<'a, &'a i64>
    + for<'a> Bind<'a, Option<i64>>
    + for<'a> Bind<'a, &'a [u8]>
    + for<'a> Bind<'a, &'a Vec<u8>>
    + for<'a> Bind<'a, Vec<u8>>
    + for<'a> Bind<'a, &'a Option<Vec<u8>>>
{
    /// The backend's mapping of driver errors (which of them mean "unavailable").
    fn map_err(e: sqlx::Error) -> StoreError;

    /// `pool` as an executor.
    fn pool(pool: &Pool<Self>) -> impl Executor<'_, Database = Self>;

    /// `conn` (a pooled connection or a transaction) as an executor.
    fn conn(conn: &mut Self::Connection) -> impl Executor<'_, Database = Self>;
}

/// Binding a parameter through [`Bind`], which generic code can prove where sqlx's `bind`
/// bound cannot be.
pub trait Arg: Sized {
    /// The database the statement is for.
    type Db: Database;

    /// Appends `value` to the statement's parameters.
    fn arg<'a, T>(self, value: T) -> Self
    where
        Self::Db: Bind<'a, T>;
}

impl<'q, DB: Database> Arg for Statement<'q, DB> {
    type Db = DB;

    fn arg<'a, T>(self, value: T) -> Self
    where
        DB: Bind<'a, T>,
    {
        DB::bind_to(self, value)
    }
}

/// A store kept in a sqlx pool: the backends' structs, which get the storage traits from the
/// generic implementations in this module's children.
pub trait SqlStore: Send + Sync + 'static {
    /// Its database.
    type Db: Db;

    /// Its pool.
    fn pool(&self) -> &Pool<Self::Db>;

    /// Its pool as an executor.
    fn exec(&self) -> impl Executor<'_, Database = Self::Db> {
        Self::Db::pool(self.pool())
    }

    /// Maps a driver error the way its backend does.
    fn err(e: sqlx::Error) -> StoreError {
        Self::Db::map_err(e)
    }
}

/// The transaction `tx` as an executor.
pub(crate) fn on<'c, DB: Db>(
    tx: &'c mut sqlx::Transaction<'_, DB>,
) -> impl Executor<'c, Database = DB> {
    DB::conn(tx)
}

/// The column `col` of `row`.
pub(crate) fn get<T>(row: &impl Get<T>, col: &str) -> Result<T> {
    row.column(col)
        .map_err(|e| StoreError::Backend(Box::new(e)))
}

/// A UUID stored as text.
pub(crate) fn uuid(text: &str) -> Result<Uuid> {
    Uuid::parse_str(text).map_err(|e| StoreError::Backend(Box::new(e)))
}

/// Runs `sql` with the one parameter `bind`; returns the rows it affected.
pub(crate) async fn execute_one<DB: Db>(
    pool: &Pool<DB>,
    sql: &'static str,
    bind: i64,
) -> Result<u64> {
    Ok(sqlx::query(sql)
        .arg(bind)
        .execute(DB::pool(pool))
        .await
        .map_err(DB::map_err)?
        .rows_affected())
}

/// Retires the current key of `table` and inserts `new` as the current one.
pub(crate) async fn rotate_key<DB: Db>(
    pool: &Pool<DB>,
    table: &'static str,
    insert: Statement<'_, DB>,
    now: i64,
) -> Result<()> {
    let mut tx = pool.begin().await.map_err(DB::map_err)?;
    let retire = format!("UPDATE {table} SET retired_at = $1 WHERE retired_at IS NULL");
    sqlx::query(sqlx::AssertSqlSafe(retire))
        .arg(now)
        .execute(on(&mut tx))
        .await
        .map_err(DB::map_err)?;
    insert.execute(on(&mut tx)).await.map_err(DB::map_err)?;
    tx.commit().await.map_err(DB::map_err)
}
