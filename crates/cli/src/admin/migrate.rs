//! `moat admin migrate`: copying a SQLite deployment into PostgreSQL.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::json;

use super::output::emit;

/// Copies the SQLite store at `from` into the empty PostgreSQL store at `to`, with progress
/// on stderr and the copied rows per table on stdout.
pub async fn migrate(from: &str, to: &str, json: bool) -> Result<()> {
    if !from.starts_with("sqlite:") {
        bail!("--from must be a sqlite:// URL");
    }
    if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
        bail!("--to must be a postgres:// URL");
    }
    let started = Instant::now();
    // Rows are counted as they are copied; the totals are not known in advance, so people
    // watching get a spinner, logs a plain line a second.
    let spinner = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let mut last = Instant::now();
    let copied = moat_store::migrate::sqlite_to_postgres(from, to, |table, rows| {
        if let Some(bar) = &spinner {
            bar.set_message(format!("copying {table}: {rows} rows"));
        } else if last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            eprintln!("copying {table}: {rows} rows");
        }
    })
    .await;
    if let Some(bar) = spinner {
        bar.finish_and_clear();
    }
    let copied = copied.context("migrating (nothing was committed)")?;
    let total: u64 = copied.iter().map(|c| c.rows).sum();
    let seconds = started.elapsed().as_secs_f64();
    let hint = "now set store.url to the new database, and give every instance this deployment's \
                data key: server.data_key = \"env:…\" holding the data_key of the old secrets \
                file (or a copy of that file)";
    if json {
        eprintln!("copied {total} rows in {seconds:.1} s; {hint}");
    }
    let value = json!({
        "tables": copied.iter().map(|c| (c.table, c.rows)).collect::<std::collections::BTreeMap<_, _>>(),
        "rows": total,
    });
    emit(json, &value, || {
        let mut out = format!("copied {total} rows in {seconds:.1} s:\n");
        for c in &copied {
            out += &format!("  {:<24} {:>10}\n", c.table, c.rows);
        }
        out + hint
    })
}
