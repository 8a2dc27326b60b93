//! Moving a deployment from SQLite to PostgreSQL (`moat admin migrate`).
//!
//! Both stores are opened (so both schemas are current), the target must be empty, and every
//! table is copied in one PostgreSQL transaction, in batches of multi-row `INSERT`s: either
//! the whole deployment arrives or nothing does. Values are copied as they are stored: sealed
//! secrets stay sealed (the same data key opens them on the new backend), hashes stay hashes.
//! Row counts are compared per table before the transaction commits.

use futures::TryStreamExt as _;
use sqlx::{QueryBuilder, Row as _};

use crate::postgres::PgStore;
use crate::sqlite::SqliteStore;
use crate::{PoolOptions, Result, StoreError};

#[derive(Clone, Copy)]
enum Col {
    Text,
    Int,
    Blob,
}

use Col::{Blob, Int, Text};

/// A table: name, columns with their types, and an `ORDER BY` giving a stable order.
type Table = (&'static str, &'static [(&'static str, Col)], &'static str);

/// Every table with data. Leases are not copied: they only mean something to running
/// instances.
const TABLES: &[Table] = &[
    (
        "devices",
        &[
            ("id", Text),
            ("identity", Text),
            ("device_id", Text),
            ("mode", Text),
            ("platform", Text),
            ("status", Text),
            ("key_lookup", Text),
            ("key_hash", Blob),
            ("client_id", Text),
            ("hmac_secret_sealed", Blob),
            ("rsa_kid", Text),
            ("rsa_private_sealed", Blob),
            ("signing_jwk", Text),
            ("created_at", Int),
            ("rotated_at", Int),
            ("last_used_at", Int),
            ("revoked_at", Int),
        ],
        "id",
    ),
    (
        "enrollment_otps",
        &[
            ("id", Text),
            ("identity", Text),
            ("device_id", Text),
            ("platform", Text),
            ("secret_sealed", Blob),
            ("step", Int),
            ("attempts", Int),
            ("created_at", Int),
            ("expires_at", Int),
            ("used_at", Int),
        ],
        "id",
    ),
    (
        "mailbox_items",
        &[
            ("id", Text),
            ("identity", Text),
            ("payload_sealed", Blob),
            ("created_at", Int),
            ("expires_at", Int),
            ("channel", Text),
        ],
        "id",
    ),
    (
        "users",
        &[
            ("id", Text),
            ("phone", Text),
            ("password_hash", Text),
            ("created_at", Int),
            ("failed_logins", Int),
            ("locked_until", Int),
        ],
        "id",
    ),
    (
        "sms_codes",
        &[
            ("phone", Text),
            ("purpose", Text),
            ("code_hash", Blob),
            ("device", Text),
            ("pending_password", Text),
            ("attempts", Int),
            ("created_at", Int),
            ("expires_at", Int),
        ],
        "phone, purpose",
    ),
    (
        "sms_messages",
        &[
            ("id", Text),
            ("sender", Text),
            ("phone", Text),
            ("country", Text),
            ("purpose", Text),
            ("body_sealed", Blob),
            ("status", Text),
            ("attempts", Int),
            ("next_attempt_at", Int),
            ("last_error", Text),
            ("provider_id", Text),
            ("created_at", Int),
            ("sent_at", Int),
        ],
        "id",
    ),
    (
        "refresh_tokens",
        &[
            ("lookup", Text),
            ("hash", Blob),
            ("family", Text),
            ("user_id", Text),
            ("device", Text),
            ("status", Text),
            ("created_at", Int),
            ("expires_at", Int),
            ("used_at", Int),
        ],
        "lookup",
    ),
    (
        "signing_keys",
        &[
            ("kid", Text),
            ("private_sealed", Blob),
            ("public_jwk", Text),
            ("created_at", Int),
            ("retired_at", Int),
        ],
        "kid",
    ),
    (
        "app_releases",
        &[
            ("app_id", Text),
            ("version", Text),
            ("sha256", Blob),
            ("size", Int),
            ("package", Blob),
            ("status", Text),
            ("created_at", Int),
        ],
        "app_id, version",
    ),
    (
        "integrity_keys",
        &[
            ("kid", Text),
            ("secret_sealed", Blob),
            ("created_at", Int),
            ("retired_at", Int),
        ],
        "kid",
    ),
    (
        "app_attest_keys",
        &[
            ("key_id", Text),
            ("device", Text),
            ("public_key", Blob),
            ("counter", Int),
            ("environment", Text),
            ("created_at", Int),
        ],
        "key_id",
    ),
    (
        "audit_log",
        &[
            ("id", Text),
            ("at", Int),
            ("kind", Text),
            ("actor", Text),
            ("subject", Text),
            ("ip", Text),
            ("detail", Text),
        ],
        "id",
    ),
    (
        "daily_stats",
        &[
            ("day", Int),
            ("metric", Text),
            ("label", Text),
            ("value", Int),
        ],
        "day, metric, label",
    ),
];

/// Rows per `INSERT` (PostgreSQL allows 65 535 parameters per statement; the widest table
/// has 17 columns).
const BATCH: usize = 500;

enum Value {
    Text(Option<String>),
    Int(Option<i64>),
    Blob(Option<Vec<u8>>),
}

/// Rows copied from one table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Copied {
    /// Table name.
    pub table: &'static str,
    /// Rows.
    pub rows: u64,
}

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend(Box::new(e))
}

/// Copies every table of the SQLite store at `from` into the empty PostgreSQL store at `to`.
/// `progress(table, rows_so_far)` is called after each batch.
///
/// # Errors
/// [`StoreError::Conflict`] if the target already holds data; [`StoreError`] if either store
/// cannot be opened or a copy fails (then nothing is committed).
pub async fn sqlite_to_postgres(
    from: &str,
    to: &str,
    mut progress: impl FnMut(&str, u64),
) -> Result<Vec<Copied>> {
    let source = SqliteStore::open(from, &crate::sqlite::SqliteOptions::default()).await?;
    let target = PgStore::open(to, &PoolOptions::default()).await?;
    let mut tx = target.pool.begin().await.map_err(backend)?;
    for (table, _, _) in TABLES {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {table})");
        let busy: bool = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?
            .try_get(0)
            .map_err(backend)?;
        if busy {
            return Err(StoreError::Conflict(
                "the target database already holds Moat data",
            ));
        }
    }
    let mut report = Vec::with_capacity(TABLES.len());
    for (table, columns, order) in TABLES {
        let names = columns
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ");
        let select = format!("SELECT {names} FROM {table} ORDER BY {order}");
        let mut rows = sqlx::query(sqlx::AssertSqlSafe(select)).fetch(&source.pool);
        let mut batch: Vec<Vec<Value>> = Vec::with_capacity(BATCH);
        let mut copied = 0u64;
        loop {
            let row = rows.try_next().await.map_err(backend)?;
            if let Some(row) = &row {
                let mut values = Vec::with_capacity(columns.len());
                for (i, (_, col)) in columns.iter().enumerate() {
                    values.push(match col {
                        Text => Value::Text(row.try_get(i).map_err(backend)?),
                        Int => Value::Int(row.try_get(i).map_err(backend)?),
                        Blob => Value::Blob(row.try_get(i).map_err(backend)?),
                    });
                }
                batch.push(values);
            }
            if batch.len() == BATCH || (row.is_none() && !batch.is_empty()) {
                let mut insert = QueryBuilder::new(format!("INSERT INTO {table} ({names}) "));
                insert.push_values(batch.drain(..), |mut b, values| {
                    for v in values {
                        match v {
                            Value::Text(t) => b.push_bind(t),
                            Value::Int(n) => b.push_bind(n),
                            Value::Blob(x) => b.push_bind(x),
                        };
                    }
                });
                let done = insert.build().execute(&mut *tx).await.map_err(backend)?;
                copied += done.rows_affected();
                progress(table, copied);
            }
            if row.is_none() {
                break;
            }
        }
        let count = |sql: String| sqlx::query(sqlx::AssertSqlSafe(sql));
        let in_source: i64 = count(format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&source.pool)
            .await
            .map_err(backend)?
            .try_get(0)
            .map_err(backend)?;
        if i64::try_from(copied).ok() != Some(in_source) {
            return Err(StoreError::Backend(
                format!("{table}: copied {copied} rows of {in_source}; nothing committed").into(),
            ));
        }
        report.push(Copied {
            table,
            rows: copied,
        });
    }
    tx.commit().await.map_err(backend)?;
    Ok(report)
}
