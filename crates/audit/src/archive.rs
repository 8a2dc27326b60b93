//! Reading packages: zip walking under hard limits, parallel over entries.
//!
//! The package is never loaded whole. Each rayon worker reads entries through its own clone of
//! the archive (the parsed central directory is shared; every clone reads the file with
//! positioned reads), and holds at most one entry of at most `max_entry_size` bytes at a time.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rayon::prelude::*;

use crate::error::AuditError;
use crate::finding::{Finding, Severity};
use crate::scan::{FileOut, scan_file};

/// Hard limits. A package over an archive-wide limit is refused; an entry over a per-entry
/// limit is skipped with a finding.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Entries in one archive.
    pub max_entries: usize,
    /// Decompressed size of one entry that will be read.
    pub max_entry_size: u64,
    /// Decompressed bytes read across the package, nested archives included.
    pub max_total_size: u64,
    /// Decompressed/compressed ratio above which an entry (larger than 1 MiB) is a bomb.
    pub max_ratio: u64,
    /// Nesting of archives inside archives (an AAR inside an APK is depth 1).
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            max_entry_size: 64 << 20,
            max_total_size: 4 << 30,
            // Deflate tops out near 1032:1; real files, even sparse ones, stay far below 200:1
            // except runs of one byte, which hold nothing to find.
            max_ratio: 200,
            max_depth: 2,
        }
    }
}

/// Progress of a scan: compressed bytes of the top-level entries done, out of the total.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Bytes done.
    pub done: u64,
    /// Bytes in all.
    pub total: u64,
}

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

pub(crate) struct Ctx {
    pub limits: Limits,
    pub read_total: AtomicU64,
    pub over_budget: AtomicBool,
    pub progress: Option<ProgressFn>,
    pub progress_done: AtomicU64,
}

/// A file opened once and read with positioned reads, so clones share it without sharing a
/// cursor (one per rayon worker).
#[derive(Clone)]
pub(crate) struct SharedFile {
    file: Arc<std::fs::File>,
    pos: u64,
    len: u64,
}

impl SharedFile {
    pub fn new(file: std::fs::File) -> std::io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(Self {
            file: Arc::new(file),
            pos: 0,
            len,
        })
    }
}

impl Read for SharedFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        #[cfg(unix)]
        let n = std::os::unix::fs::FileExt::read_at(&*self.file, buf, self.pos)?;
        #[cfg(windows)]
        let n = std::os::windows::fs::FileExt::seek_read(&*self.file, buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for SharedFile {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        let next = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = next.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before start")
        })?;
        Ok(self.pos)
    }
}

struct EntryMeta {
    index: usize,
    name: String,
    size: u64,
    compressed: u64,
    is_dir: bool,
    encrypted: bool,
}

/// Names that would land outside the extraction directory (or that no packager writes).
pub(crate) fn escapes_root(name: &str) -> bool {
    let unified = name.replace('\\', "/");
    unified.starts_with('/')
        || unified.as_bytes().get(1) == Some(&b':')
        || name.contains('\0')
        || unified.split('/').any(|c| c == "..")
}

fn note(rule: &'static str, severity: Severity, path: &str, message: String) -> Finding {
    Finding {
        rule,
        severity,
        confidence: 1.0,
        path: path.to_owned(),
        offset: 0,
        length: 0,
        preview: String::new(),
        fingerprint: None,
        message,
        provider: None,
        upstream: None,
    }
}

/// Entries, their count and the top-level progress total.
pub(crate) fn open<R: Read + Seek + Clone>(reader: R) -> Result<zip::ZipArchive<R>, AuditError> {
    zip::ZipArchive::new(reader).map_err(|e| AuditError::Malformed(e.to_string()))
}

/// Scans every entry of an archive. Top level (`depth` 0) runs in parallel; nested archives
/// run on the worker that found them.
pub(crate) fn scan_archive<R: Read + Seek + Clone + Send + Sync>(
    archive: zip::ZipArchive<R>,
    prefix: &str,
    depth: usize,
    ctx: &Ctx,
) -> Result<FileOut, AuditError> {
    let limits = ctx.limits;
    if archive.len() > limits.max_entries {
        return Err(AuditError::Refused(format!(
            "{} entries (limit {})",
            archive.len(),
            limits.max_entries
        )));
    }
    let mut metas = Vec::with_capacity(archive.len());
    for index in 0..archive.len() {
        let entry = archive
            .by_index_data(index)
            .map_err(|e| AuditError::Malformed(e.to_string()))?;
        metas.push(EntryMeta {
            index,
            name: String::from_utf8_lossy(entry.name_raw()).into_owned(),
            size: entry.size(),
            compressed: entry.compressed_size(),
            is_dir: entry.is_dir(),
            encrypted: entry.encrypted(),
        });
    }
    let declared: u64 = metas
        .iter()
        .filter(|m| m.size <= limits.max_entry_size)
        .map(|m| m.size)
        .fold(0u64, u64::saturating_add);
    if declared > limits.max_total_size {
        return Err(AuditError::Refused(format!(
            "{declared} bytes to decompress (limit {})",
            limits.max_total_size
        )));
    }
    // Largest first, so the big DEX and native files start early and the workers finish
    // together.
    metas.sort_by_key(|m| std::cmp::Reverse(m.compressed));
    let progress_total: u64 = metas
        .iter()
        .map(|m| m.compressed)
        .fold(0, u64::saturating_add);
    let run = |archive: &mut zip::ZipArchive<R>, meta: &EntryMeta| -> FileOut {
        let out = scan_entry(archive, meta, prefix, depth, ctx);
        if depth == 0
            && let Some(progress) = &ctx.progress
        {
            let done = ctx
                .progress_done
                .fetch_add(meta.compressed, Ordering::Relaxed)
                + meta.compressed;
            progress(Progress {
                done,
                total: progress_total,
            });
        }
        out
    };
    let mut total = if depth == 0 {
        metas
            .par_iter()
            .map_init(|| archive.clone(), |a, meta| run(a, meta))
            .reduce(FileOut::default, |mut a, b| {
                a.merge(b);
                a
            })
    } else {
        let mut archive = archive;
        let mut acc = FileOut::default();
        for meta in &metas {
            acc.merge(run(&mut archive, meta));
        }
        acc
    };
    if ctx.over_budget.load(Ordering::Relaxed) {
        return Err(AuditError::Refused(format!(
            "more than {} bytes decompressed (overlapping entries or nested bombs)",
            limits.max_total_size
        )));
    }
    total
        .findings
        .sort_by(|a, b| a.path.cmp(&b.path).then(a.offset.cmp(&b.offset)));
    Ok(total)
}

fn scan_entry<R: Read + Seek + Clone + Send + Sync>(
    archive: &mut zip::ZipArchive<R>,
    meta: &EntryMeta,
    prefix: &str,
    depth: usize,
    ctx: &Ctx,
) -> FileOut {
    let limits = ctx.limits;
    let mut out = FileOut::default();
    let path = format!("{prefix}{}", meta.name);
    if ctx.over_budget.load(Ordering::Relaxed) {
        return out;
    }
    if escapes_root(&meta.name) {
        out.findings.push(note(
            "archive-path-traversal",
            Severity::High,
            &path,
            format!(
                "entry name {:?} escapes the archive root; not scanned",
                meta.name
            ),
        ));
        return out;
    }
    if meta.is_dir {
        return out;
    }
    let skipped = |why: String| note("archive-entry-skipped", Severity::Info, &path, why);
    if meta.encrypted {
        out.findings.push(skipped("encrypted entry".into()));
        return out;
    }
    if meta.size > 1 << 20 && meta.size / meta.compressed.max(1) > limits.max_ratio {
        out.findings.push(note(
            "archive-compression-bomb",
            Severity::High,
            &path,
            format!(
                "{} bytes compressed to {} (ratio over {}:1); not decompressed",
                meta.size, meta.compressed, limits.max_ratio
            ),
        ));
        return out;
    }
    if meta.size > limits.max_entry_size {
        out.findings.push(skipped(format!(
            "{} bytes, over the {} byte limit per entry",
            meta.size, limits.max_entry_size
        )));
        return out;
    }
    let mut file = match archive.by_index(meta.index) {
        Ok(f) => f,
        Err(e) => {
            out.findings.push(skipped(format!("cannot read: {e}")));
            return out;
        }
    };
    // Read one byte past the declared size: a stream that goes on is lying about its size.
    let cap = meta.size.min(limits.max_entry_size);
    let mut data = Vec::with_capacity(
        usize::try_from(cap)
            .unwrap_or(0)
            .min(limits.max_entry_size as usize),
    );
    let read = (&mut file).take(cap + 1).read_to_end(&mut data);
    drop(file);
    let spent = ctx
        .read_total
        .fetch_add(data.len() as u64, Ordering::Relaxed)
        + data.len() as u64;
    if spent > limits.max_total_size {
        ctx.over_budget.store(true, Ordering::Relaxed);
        return out;
    }
    // The zip reader checks the declared size itself and fails the read; either way the
    // stream goes on past what the header promised.
    let overran = read
        .as_ref()
        .is_err_and(|e| e.to_string().contains("larger than its declared"));
    if data.len() as u64 > cap || overran {
        out.findings.push(note(
            "archive-compression-bomb",
            Severity::High,
            &path,
            format!("expands past its declared {} bytes; not scanned", meta.size),
        ));
        return out;
    }
    if let Err(e) = read {
        // What was read before a corrupt block is still worth scanning.
        out.findings.push(skipped(format!(
            "read error after {} bytes: {e}",
            data.len()
        )));
    }
    let nested = |inner_path: &str, bytes: &[u8], into: &mut FileOut| {
        if depth + 1 > limits.max_depth {
            into.findings.push(note(
                "archive-entry-skipped",
                Severity::Info,
                inner_path,
                format!("archive nested deeper than {} levels", limits.max_depth),
            ));
            return;
        }
        let cursor = std::io::Cursor::new(bytes);
        match open(cursor).and_then(|a| scan_archive(a, &format!("{inner_path}!/"), depth + 1, ctx))
        {
            Ok(inner) => into.merge(inner),
            Err(AuditError::Refused(why)) => {
                ctx.over_budget.store(
                    ctx.over_budget.load(Ordering::Relaxed) || why.contains("decompressed"),
                    Ordering::Relaxed,
                );
                into.findings.push(note(
                    "archive-compression-bomb",
                    Severity::High,
                    inner_path,
                    format!("nested archive refused: {why}"),
                ));
            }
            Err(e) => into.findings.push(note(
                "archive-entry-skipped",
                Severity::Info,
                inner_path,
                format!("nested archive: {e}"),
            )),
        }
    };
    scan_file(&path, &data, &nested, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::escapes_root;

    #[test]
    fn names_that_escape() {
        for bad in ["../a", "a/../../b", "/etc/passwd", "C:\\x", "..\\x", "a\0b"] {
            assert!(escapes_root(bad), "{bad}");
        }
        for ok in [
            "classes.dex",
            "res/a..b.xml",
            "assets/.hidden",
            "lib/arm64-v8a/libx.so",
        ] {
            assert!(!escapes_root(ok), "{ok}");
        }
    }
}
