//! The store check: reachable, and its migrations in the state this build expects.

use std::path::Path;

use moat_store::schema::{MigrationStatus, StatusError};

use super::outcome::{Outcome, chain, fail, location, ok, redact, warn};

pub async fn check_store(url: String) -> Outcome {
    let (status, detail) = if url.starts_with("sqlite:") {
        check_sqlite(&url).await
    } else {
        check_postgres(&url).await
    };
    (status, redact(&detail, &url))
}

pub async fn check_sqlite(url: &str) -> Outcome {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let path = rest.split('?').next().unwrap_or(rest);
    if path == ":memory:" || rest.contains("mode=memory") {
        return warn("in-memory SQLite: nothing survives a restart");
    }
    let file = Path::new(path);
    if !file.exists() {
        return ok(format!(
            "SQLite {path} does not exist yet; the server creates and migrates it on first start"
        ));
    }
    if let Err(e) = std::fs::OpenOptions::new().write(true).open(file) {
        return fail(format!("SQLite {path} is not writable: {e}"));
    }
    match moat_store::schema::migration_status(url, "moat-doctor").await {
        Ok(status) => judge_migrations(&format!("SQLite {path}"), &status),
        Err(StatusError::Url(e)) => fail(format!("store.url: {e}")),
        Err(StatusError::Read(e)) => fail(format!(
            "SQLite {path}: cannot read its migrations: {}",
            chain(e.as_ref())
        )),
        Err(e) => fail(format!(
            "SQLite {path} cannot be opened: {}",
            e.cause().map_or_else(|| e.to_string(), |c| chain(c))
        )),
    }
}

pub async fn check_postgres(url: &str) -> Outcome {
    let at = location(url);
    match moat_store::schema::migration_status(url, "moat-doctor").await {
        Ok(status) => judge_migrations(&at, &status),
        Err(StatusError::Url(_) | StatusError::Scheme) => {
            fail("store.url is not a valid PostgreSQL URL")
        }
        Err(StatusError::Read(e)) => fail(format!(
            "{at}: cannot read its migrations: {}",
            chain(e.as_ref())
        )),
        Err(e) => fail(format!(
            "{at}: cannot connect: {}",
            e.cause().map_or_else(|| e.to_string(), |c| chain(c))
        )),
    }
}

/// The verdict on a database's migrations: failed or unknown ones fail, pending ones warn.
pub fn judge_migrations(what: &str, status: &MigrationStatus) -> Outcome {
    // "migration 5 is" or "migrations 4, 5 are".
    let list = |v: &[i64]| {
        let numbers = v
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        if v.len() == 1 {
            format!("migration {numbers} is")
        } else {
            format!("migrations {numbers} are")
        }
    };
    let dirty = status.failed();
    if !dirty.is_empty() {
        return fail(format!(
            "{what}: {} marked failed (it stopped part-way); repair the database before \
             starting the server",
            list(&dirty)
        ));
    }
    let unknown = status.unknown();
    if !unknown.is_empty() {
        return fail(format!(
            "{what}: {} unknown to this moat (the database was used by a newer version)",
            list(&unknown)
        ));
    }
    let pending = status.pending();
    if status.applied.is_empty() {
        ok(format!(
            "{what}: reachable, empty; the server applies {} migrations on first start",
            status.known.len()
        ))
    } else if pending.is_empty() {
        ok(format!(
            "{what}: reachable, all {} migrations applied",
            status.applied.len()
        ))
    } else {
        warn(format!(
            "{what}: reachable, {} pending (the server applies pending migrations when it \
             starts)",
            list(&pending)
        ))
    }
}
