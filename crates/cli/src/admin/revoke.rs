//! Revoking devices: one, or every device of a file of uuids with progress and a report.

use std::io::IsTerminal as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use moat_server::admin::DeviceView;

use super::ops::{Operations, is_not_found};
use super::output::emit;
use crate::usage::UsageError;

/// Revokes one device; `None` when there is no such device.
pub async fn revoke_one(ops: &impl Operations, id: uuid::Uuid) -> Result<Option<DeviceView>> {
    match ops.revoke(id).await {
        Ok(view) => Ok(Some(view)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// What a bulk revocation did.
#[derive(serde::Serialize)]
struct RevokeReport {
    revoked: usize,
    not_found: usize,
    failed: usize,
    duplicates: usize,
    not_found_ids: Vec<uuid::Uuid>,
    failed_ids: Vec<FailedRevoke>,
}

#[derive(serde::Serialize)]
struct FailedRevoke {
    id: uuid::Uuid,
    error: String,
}

/// Reads a file of device uuids, one a line. Any bad line is a [`UsageError`] naming it.
pub fn read_ids(path: &Path) -> Result<Vec<uuid::Uuid>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("--file {}: {e}", path.display())))?;
    let mut ids = Vec::new();
    let mut bad = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match uuid::Uuid::try_parse(line) {
            Ok(id) => ids.push(id),
            Err(_) => bad.push(n + 1),
        }
    }
    if let Some(first) = bad.first() {
        let more = match bad.len() {
            1 => String::new(),
            n => format!(" (and {} more bad lines)", n - 1),
        };
        return Err(UsageError(format!(
            "{} line {first}: not a device uuid{more}; nothing was revoked",
            path.display()
        ))
        .into());
    }
    Ok(ids)
}

/// Progress of a long operation on stderr: a bar when a person watches (stderr is a
/// terminal), else a plain line at most every few seconds.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    what: &'static str,
    total: u64,
    done: u64,
    last_line: Instant,
}

impl Progress {
    const PLAIN_EVERY: Duration = Duration::from_secs(2);

    fn new(what: &'static str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {msg} [{bar:30}] {pos}/{len} {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_message(what);
            bar
        });
        Self {
            bar,
            what,
            total,
            done: 0,
            last_line: Instant::now(),
        }
    }

    fn inc(&mut self) {
        self.done += 1;
        match &self.bar {
            Some(bar) => bar.inc(1),
            None if self.last_line.elapsed() >= Self::PLAIN_EVERY => {
                self.last_line = Instant::now();
                eprintln!("{}: {}/{}", self.what, self.done, self.total);
            }
            None => {}
        }
    }

    fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Revokes every device in `ids` (duplicates once) with the call the single form uses,
/// then reports revoked / not found / failed. Fails (exit 1) if any revocation failed.
pub async fn revoke_many(ops: &impl Operations, ids: &[uuid::Uuid], json: bool) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<uuid::Uuid> = ids.iter().copied().filter(|id| seen.insert(*id)).collect();
    let mut report = RevokeReport {
        revoked: 0,
        not_found: 0,
        failed: 0,
        duplicates: ids.len() - unique.len(),
        not_found_ids: Vec::new(),
        failed_ids: Vec::new(),
    };
    let mut progress = Progress::new("revoking devices", unique.len() as u64);
    for id in unique {
        match revoke_one(ops, id).await {
            Ok(Some(_)) => report.revoked += 1,
            Ok(None) => report.not_found_ids.push(id),
            Err(e) => report.failed_ids.push(FailedRevoke {
                id,
                error: format!("{e:#}"),
            }),
        }
        progress.inc();
    }
    progress.finish();
    report.not_found = report.not_found_ids.len();
    report.failed = report.failed_ids.len();
    emit(json, &report, || {
        let mut out = format!(
            "revoked {}, not found {}, failed {}",
            report.revoked, report.not_found, report.failed
        );
        if report.duplicates > 0 {
            out += &format!(" ({} duplicate lines skipped)", report.duplicates);
        }
        out.push('\n');
        for id in &report.not_found_ids {
            out += &format!("not found: {id}\n");
        }
        for f in &report.failed_ids {
            out += &format!("failed: {}: {}\n", f.id, f.error);
        }
        out
    })?;
    if report.failed > 0 {
        bail!(
            "{} of {} revocations failed (the others are done; run the file again to retry)",
            report.failed,
            report.revoked + report.not_found + report.failed
        );
    }
    Ok(())
}
