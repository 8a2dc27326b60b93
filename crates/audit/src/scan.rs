//! One file of a package: pick the parser by content, extract its strings, run the detectors.

use crate::checks::{self, AndroidFacts};
use crate::detect::{scan_der, scan_segment};
use crate::finding::{Finding, Severity};
use crate::formats::{axml, dex, elf, macho, plist};
use crate::hit::FileScan;
use crate::segment::Segment;

/// What one file contributed.
#[derive(Default)]
pub(crate) struct FileOut {
    pub findings: Vec<Finding>,
    pub android: AndroidFacts,
    /// Entries read (nested archives count theirs).
    pub scanned: usize,
    pub bytes: u64,
}

impl FileOut {
    pub fn merge(&mut self, other: FileOut) {
        self.findings.extend(other.findings);
        if self.android.manifest.is_none() {
            self.android.manifest = other.android.manifest;
            self.android.has_nsc_ref |= other.android.has_nsc_ref;
        }
        self.android.nsc.extend(other.android.nsc);
        self.scanned += other.scanned;
        self.bytes += other.bytes;
    }
}

const KEYSTORE_EXTENSIONS: &[&str] = &[".p12", ".pfx", ".jks", ".bks", ".keystore"];

/// Media and fonts: large, random-looking, never a place secrets are put in as text.
fn is_media(data: &[u8]) -> bool {
    const MAGICS: &[&[u8]] = &[
        b"\x89PNG\r\n\x1a\n",
        b"\xff\xd8\xff",
        b"GIF87a",
        b"GIF89a",
        b"OggS",
        b"ID3",
        b"fLaC",
        b"wOFF",
        b"wOF2",
        b"OTTO",
        b"\0\x01\0\0\0",
    ];
    MAGICS.iter().any(|m| data.starts_with(m))
        || (data.starts_with(b"RIFF")
            && data
                .get(8..12)
                .is_some_and(|t| t == b"WEBP" || t == b"WAVE"))
        || data.get(4..8).is_some_and(|t| t == b"ftyp")
}

/// The v1 signature files list digests and certificates: public by design.
fn is_signature_file(path: &str) -> bool {
    let upper = path.to_ascii_uppercase();
    upper.starts_with("META-INF/")
        && [".SF", ".MF", ".RSA", ".DSA", ".EC"]
            .iter()
            .any(|ext| upper.ends_with(ext))
}

fn file_name(path: &str) -> &str {
    path.rsplit(['/', '!']).next().unwrap_or(path)
}

fn parent_dir(path: &str) -> Option<&str> {
    let (dir, _) = path.rsplit_once('/')?;
    Some(dir.rsplit('/').next().unwrap_or(dir))
}

/// Scans one file's bytes. `nested` scans a zip found inside (an AAR, JAR or split APK).
pub(crate) fn scan_file(
    path: &str,
    data: &[u8],
    nested: &dyn Fn(&str, &[u8], &mut FileOut),
    out: &mut FileOut,
) {
    out.scanned += 1;
    out.bytes += data.len() as u64;
    let lower = path.to_ascii_lowercase();
    if KEYSTORE_EXTENSIONS.iter().any(|ext| lower.ends_with(ext)) {
        out.findings.push(Finding {
            rule: "bundled-keystore",
            severity: Severity::Medium,
            confidence: 0.8,
            path: path.to_owned(),
            offset: 0,
            length: data.len() as u64,
            preview: String::new(),
            fingerprint: Some(crate::finding::fingerprint(data)),
            message: format!("keystore file {} ({} bytes)", file_name(path), data.len()),
            provider: None,
            upstream: None,
        });
    }
    if is_signature_file(path) || is_media(data) {
        return;
    }
    if data.starts_with(b"PK\x03\x04") {
        nested(path, data, out);
        return;
    }
    let name = file_name(path);
    let mut scan = FileScan::new(path);
    let mut owned_segments: Vec<Segment<'static>> = Vec::new();
    let mut segments: Option<Vec<Segment<'_>>> = None;
    if dex::is_dex(data) {
        segments = dex::strings(data);
    } else if macho::is_macho(data) {
        segments = macho::cstrings(data);
    } else if elf::is_elf(data) {
        segments = elf::data_sections(data);
    } else if axml::is_axml(data) {
        if let Some(doc) = axml::parse(data) {
            if name == "AndroidManifest.xml" {
                checks::manifest(&doc, path, &mut out.findings, &mut out.android);
            }
            if doc.root() == Some("network-security-config") {
                checks::network_security_config(&doc, path, &mut out.findings, &mut out.android);
            }
            owned_segments = axml::pool_segments(&doc.strings);
            segments = Some(Vec::new());
        }
    } else if axml::is_arsc(data) {
        if let Some(pool) = axml::arsc_strings(data) {
            owned_segments = axml::pool_segments(&pool);
            segments = Some(Vec::new());
        }
    } else if plist::is_plist(data)
        && let Some(root) = plist::parse(data)
    {
        let app_dir = parent_dir(path).is_none_or(|d| d.ends_with(".app") || d.ends_with(".appex"));
        if name == "Info.plist" && app_dir {
            checks::info_plist(&root, path, &mut out.findings);
        }
        let mut strings = Vec::new();
        root.strings(&mut strings);
        owned_segments = strings
            .into_iter()
            .filter(|(t, _, _)| t.len() >= crate::formats::MIN_STRING)
            .map(|(text, offset, utf16)| {
                if utf16 {
                    Segment::utf16(offset, text)
                } else {
                    Segment::owned(offset, text.into_bytes())
                }
            })
            .collect();
        // Binary plists also hold data blobs and keys the tree does not keep; XML plists
        // are text and are scanned whole below.
        segments = data.starts_with(b"bplist").then(Vec::new);
    }
    if name == "embedded.mobileprovision" {
        checks::provisioning_profile(data, path, &mut out.findings);
    }
    let segments = segments.unwrap_or_else(|| vec![Segment::borrowed(0, data)]);
    for seg in segments.iter().chain(owned_segments.iter()) {
        scan_segment(seg, &mut scan);
    }
    scan_der(data, &mut scan);
    out.findings.extend(scan.finish());
}
