//! `moat audit`: finds what an app package gives away to anyone who downloads it.
//!
//! Seed 002: any secret shipped in a mobile app can be extracted with stock tools (Apktool, a
//! decompiler, TruffleHog, MobSF), so developers should probe their own builds the way an
//! attacker would. This crate is that probe, joined to the fix Moat offers: for each
//! third-party credential it finds, it prints the gateway route that keeps the credential on
//! the server ([`remediation`]).
//!
//! # What is read
//! - APK/AAB/IPA (zip) entries, in parallel, under hard limits ([`Limits`]): entry count,
//!   per-entry and total decompressed size, compression ratio, nesting depth. Names that
//!   escape the archive root are reported, not read.
//! - DEX string tables, Mach-O C-string sections (thin and fat), ELF data sections, Android
//!   binary XML and `resources.arsc` string pools, binary and XML property lists; other files
//!   as raw bytes. Images and fonts are skipped.
//! - Known credential formats, each confirmed by its own check (token boundaries, GitHub
//!   checksums, JWT header JSON, PEM/DER key structure), and random-looking strings, minus
//!   decoys (UUIDs, digests, base64 images, certificates and public keys, identifiers).
//! - The settings the seeds warn about: cleartext traffic, missing certificate pins,
//!   `debuggable`, `allowBackup`, ATS exceptions, `get-task-allow`.
//!
//! Findings carry a severity, a confidence, the file inside the package and the byte offset in
//! it, and a redacted preview; the secret itself is never stored, only its SHA-256.
//!
//! No network I/O, no unsafe code, and no panics on hostile input: every parser checks its
//! offsets and answers `None` for what it cannot read.
#![forbid(unsafe_code)]

mod archive;
mod bytes;
mod checks;
mod credentials;
mod der;
mod detect;
mod entropy;
pub mod error;
pub mod finding;
mod formats;
mod hit;
pub mod remediation;
pub mod report;
pub mod rules;
mod scan;
mod segment;
mod token;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Instant;

pub use archive::{Limits, Progress, ProgressFn};
pub use error::AuditError;
pub use finding::{Finding, Severity};
pub use rules::{RULES, Rule};

use archive::Ctx;
use scan::FileOut;

/// How to scan.
#[derive(Clone, Default)]
pub struct Options {
    /// Hard limits (defaults suit real packages).
    pub limits: Limits,
    /// Called as top-level entries finish.
    pub progress: Option<ProgressFn>,
}

/// What kind of package was scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageKind {
    /// Android APK (or an APK set).
    Apk,
    /// Android App Bundle.
    Aab,
    /// iOS app archive.
    Ipa,
    /// Some other zip.
    Zip,
    /// A single DEX, Mach-O, ELF, binary XML or plist file.
    File,
}

impl PackageKind {
    /// Lower-case name, as in the JSON report.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            PackageKind::Apk => "apk",
            PackageKind::Aab => "aab",
            PackageKind::Ipa => "ipa",
            PackageKind::Zip => "zip",
            PackageKind::File => "file",
        }
    }
}

/// The result of a scan.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// The package as named by the caller.
    pub package: String,
    /// What kind of package it is.
    pub kind: PackageKind,
    /// Its size in bytes.
    pub size: u64,
    /// Entries in the archive (1 for a single file).
    pub entries: usize,
    /// Files read, nested archives included.
    pub scanned_files: usize,
    /// Decompressed bytes read.
    pub scanned_bytes: u64,
    /// Wall time of the scan.
    pub elapsed_ms: u64,
    /// Findings, most severe first.
    pub findings: Vec<Finding>,
}

/// Scans a package file (APK, AAB, IPA, any zip) or a single DEX/Mach-O/ELF/AXML/plist file.
///
/// # Errors
/// [`AuditError`] when the file cannot be read, is not a package, is malformed at the archive
/// level, or exceeds an archive-wide limit.
pub fn scan_path(path: &Path, options: &Options) -> Result<Report, AuditError> {
    let started = Instant::now();
    let io = |source| AuditError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let reader = archive::SharedFile::new(file).map_err(io)?;
    let size = std::fs::metadata(path).map_err(io)?.len();
    let mut head = [0u8; 4];
    let head_len = {
        use std::io::Read as _;
        let mut r = reader.clone();
        let mut n = 0;
        while n < head.len() {
            match r.read(head.get_mut(n..).unwrap_or_default()).map_err(io)? {
                0 => break,
                k => n += k,
            }
        }
        n
    };
    let name = path.display().to_string();
    if head.get(..head_len).is_some_and(|h| h.starts_with(b"PK")) {
        return scan_zip(reader, name, size, options, started);
    }
    // A single file is read whole, within the per-entry limit.
    if size > options.limits.max_entry_size {
        return Err(AuditError::NotAPackage(format!(
            "{name} is not a zip package, and too large ({size} bytes) to scan as a single file"
        )));
    }
    let data = std::fs::read(path).map_err(io)?;
    scan_single(&name, &data, options, started)
}

/// Scans a package held in memory: the entry point for fuzzing and for callers that already
/// have the bytes.
///
/// # Errors
/// As [`scan_path`].
pub fn scan_bytes(name: &str, data: &[u8], options: &Options) -> Result<Report, AuditError> {
    let started = Instant::now();
    if data.starts_with(b"PK") {
        return scan_zip(
            std::io::Cursor::new(data),
            name.to_owned(),
            data.len() as u64,
            options,
            started,
        );
    }
    scan_single(name, data, options, started)
}

fn context(options: &Options) -> Ctx {
    Ctx {
        limits: options.limits,
        read_total: AtomicU64::new(0),
        over_budget: AtomicBool::new(false),
        progress: options.progress.clone(),
        progress_done: AtomicU64::new(0),
    }
}

fn scan_zip<R: std::io::Read + std::io::Seek + Clone + Send + Sync>(
    reader: R,
    name: String,
    size: u64,
    options: &Options,
    started: Instant,
) -> Result<Report, AuditError> {
    let archive = archive::open(reader)?;
    let entries = archive.len();
    let names: Vec<String> = archive
        .file_names_raw()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    let kind = if names
        .iter()
        .any(|n| n == "base/manifest/AndroidManifest.xml")
    {
        PackageKind::Aab
    } else if names
        .iter()
        .any(|n| n == "AndroidManifest.xml" || n.ends_with(".apk"))
    {
        PackageKind::Apk
    } else if names.iter().any(|n| n.starts_with("Payload/")) {
        PackageKind::Ipa
    } else {
        PackageKind::Zip
    };
    let ctx = context(options);
    let out = archive::scan_archive(archive, "", 0, &ctx)?;
    Ok(finish(name, kind, size, entries, out, started))
}

fn scan_single(
    name: &str,
    data: &[u8],
    _options: &Options,
    started: Instant,
) -> Result<Report, AuditError> {
    let known = formats::dex::is_dex(data)
        || formats::macho::is_macho(data)
        || formats::elf::is_elf(data)
        || formats::axml::is_axml(data)
        || formats::axml::is_arsc(data)
        || formats::plist::is_plist(data);
    if !known {
        return Err(AuditError::NotAPackage(format!(
            "{name} is neither a zip package (APK, AAB, IPA) nor a DEX, Mach-O, ELF, binary XML or plist file"
        )));
    }
    let file_name = Path::new(name)
        .file_name()
        .map_or_else(|| name.to_owned(), |n| n.to_string_lossy().into_owned());
    let mut out = FileOut::default();
    let nested = |_: &str, _: &[u8], _: &mut FileOut| {};
    scan::scan_file(&file_name, data, &nested, &mut out);
    Ok(finish(
        name.to_owned(),
        PackageKind::File,
        data.len() as u64,
        1,
        out,
        started,
    ))
}

fn finish(
    package: String,
    kind: PackageKind,
    size: u64,
    entries: usize,
    mut out: FileOut,
    started: Instant,
) -> Report {
    checks::android_pins(&out.android, &mut out.findings);
    let mut findings = out.findings;
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.path.cmp(&b.path))
            .then(a.offset.cmp(&b.offset))
            .then(a.rule.cmp(b.rule))
    });
    Report {
        package,
        kind,
        size,
        entries,
        scanned_files: out.scanned,
        scanned_bytes: out.bytes,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        findings,
    }
}

impl Report {
    /// Findings at or above a confidence.
    #[must_use]
    pub fn filtered(&self, min_confidence: f32) -> Vec<&Finding> {
        self.findings
            .iter()
            .filter(|f| f.confidence >= min_confidence)
            .collect()
    }

    /// The distinct route snippets for the findings given, in order.
    #[must_use]
    pub fn route_snippets<'a>(findings: impl IntoIterator<Item = &'a Finding>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for f in findings {
            if let Some(s) = f.route_snippet()
                && !out.contains(&s)
            {
                out.push(s);
            }
        }
        out
    }
}
