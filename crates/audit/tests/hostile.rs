//! Malformed and hostile packages: refused or reported cleanly, within bounded memory and time,
//! never a panic.

mod common;

use common::*;
use moat_audit::{AuditError, Limits, Options, scan_bytes, scan_path};

const GIB: usize = 1024;

fn zeros_entry(name: &str, declared: u32) -> RawEntry {
    RawEntry {
        name: name.into(),
        method: 8,
        data: deflated_zeros(GIB),
        size: declared,
        crc: 0,
    }
}

#[test]
fn zip_bomb_is_not_decompressed() {
    // 1 GiB of zeros in about 1 MB, with its real size in the header (0xffffffff: the
    // largest a non-zip64 header can say, just under 4 GiB; the real stream is 1 GiB).
    let bomb = raw_zip(&[zeros_entry("assets/big.bin", u32::MAX)], 1);
    assert!(bomb.len() < 2 << 20);
    let started = std::time::Instant::now();
    let report = scan_bytes("bomb.apk", &bomb, &Options::default()).expect("scan");
    assert!(started.elapsed().as_secs() < 5);
    assert!(
        report.findings.iter().any(|f| f.path == "assets/big.bin"
            && (f.rule == "archive-entry-skipped" || f.rule == "archive-compression-bomb")),
        "{:?}",
        report.findings
    );
    assert_eq!(report.scanned_bytes, 0, "nothing was decompressed");

    // Under the per-entry limit but far over any real compression ratio.
    let limits = Limits {
        max_entry_size: u64::MAX,
        ..Limits::default()
    };
    let options = Options {
        limits,
        ..Options::default()
    };
    let honest = raw_zip(&[zeros_entry("assets/big.bin", 1 << 30)], 1);
    let report = scan_bytes("bomb.apk", &honest, &options).expect("scan");
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.rule == "archive-compression-bomb"),
        "{:?}",
        report.findings
    );
    assert_eq!(report.scanned_bytes, 0);
}

#[test]
fn zip_bomb_lying_about_its_size_stops_at_the_declared_size() {
    // The header says 4 KiB; the stream inflates to 1 GiB. Reading stops one byte past 4 KiB.
    let bomb = raw_zip(&[zeros_entry("classes.dex", 4096)], 1);
    let started = std::time::Instant::now();
    let report = scan_bytes("liar.apk", &bomb, &Options::default()).expect("scan");
    assert!(started.elapsed().as_secs() < 5);
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.rule == "archive-compression-bomb" && f.path == "classes.dex"),
        "{:?}",
        report.findings
    );
}

#[test]
fn overlapping_entries_exhaust_the_total_budget() {
    // One 1 MiB local file referenced by 64 central directory records: 64 MiB of reads from
    // 1 MiB of package (the overlapping-file bomb). The total budget refuses the package.
    let data = Rng::new(1).bytes(1 << 20);
    let crc = crc32fast::hash(&data);
    let entry = RawEntry {
        name: "assets/blob.bin".into(),
        method: 0,
        data,
        size: 1 << 20,
        crc,
    };
    let zip = raw_zip(&[entry], 64);
    let limits = Limits {
        max_total_size: 16 << 20,
        ..Limits::default()
    };
    let options = Options {
        limits,
        ..Options::default()
    };
    match scan_bytes("overlap.apk", &zip, &options) {
        Err(AuditError::Refused(why)) => assert!(why.contains("bytes"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn too_many_entries_are_refused() {
    let entries: Vec<RawEntry> = (0..50)
        .map(|i| RawEntry {
            name: format!("f{i}"),
            method: 0,
            data: vec![],
            size: 0,
            crc: 0,
        })
        .collect();
    let zip = raw_zip(&entries, 1);
    let limits = Limits {
        max_entries: 10,
        ..Limits::default()
    };
    let options = Options {
        limits,
        ..Options::default()
    };
    assert!(matches!(
        scan_bytes("many.apk", &zip, &options),
        Err(AuditError::Refused(_))
    ));
}

#[test]
fn path_traversal_names_are_reported_not_scanned() {
    let s = Secrets::new();
    let payload = format!("token={}", s.stripe_secret).into_bytes();
    let crc = crc32fast::hash(&payload);
    let names = [
        "../../etc/cron.d/evil",
        "/etc/passwd",
        "assets/../../escape.txt",
        "C:\\Windows\\evil.dll",
        "..\\..\\win.txt",
    ];
    let entries: Vec<RawEntry> = names
        .iter()
        .map(|n| RawEntry {
            name: (*n).into(),
            method: 0,
            data: payload.clone(),
            size: payload.len() as u32,
            crc,
        })
        .chain(std::iter::once(RawEntry {
            name: "assets/ok.txt".into(),
            method: 0,
            data: payload.clone(),
            size: payload.len() as u32,
            crc,
        }))
        .collect();
    let report =
        scan_bytes("traversal.apk", &raw_zip(&entries, 1), &Options::default()).expect("scan");
    for name in names {
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.rule == "archive-path-traversal" && f.path == name),
            "{name}: {:?}",
            report.findings
        );
    }
    // Only the well-named entry was scanned.
    let stripe: Vec<&str> = report
        .findings
        .iter()
        .filter(|f| f.rule == "stripe-secret-key")
        .map(|f| f.path.as_str())
        .collect();
    assert_eq!(stripe, ["assets/ok.txt"]);
}

#[test]
fn truncated_central_directory_is_a_clean_error() {
    let s = Secrets::new();
    let (dexfile, _) = dex(&[&s.google]);
    let good = zip(&[
        ("classes.dex", dexfile),
        ("assets/a.txt", b"hello".to_vec()),
    ]);
    // Cut inside the central directory, and just before the end record.
    for cut in [good.len() - 30, good.len() - 10, good.len() / 2, 10] {
        let bad = &good[..cut];
        match scan_bytes("cut.apk", bad, &Options::default()) {
            Err(AuditError::Malformed(_)) => {}
            other => panic!("cut at {cut}: expected Malformed, got {other:?}"),
        }
    }
    // The same through a file on disk.
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("cut.apk");
    std::fs::write(&path, &good[..good.len() - 30]).expect("write");
    assert!(matches!(
        scan_path(&path, &Options::default()),
        Err(AuditError::Malformed(_))
    ));
}

#[test]
fn non_zip_input_is_refused() {
    assert!(matches!(
        scan_bytes(
            "notes.txt",
            b"just some text, not a package\n",
            &Options::default()
        ),
        Err(AuditError::NotAPackage(_))
    ));
    assert!(matches!(
        scan_bytes("empty", b"", &Options::default()),
        Err(AuditError::NotAPackage(_))
    ));
    let dir = tempfile::tempdir().expect("tmp");
    assert!(matches!(
        scan_path(&dir.path().join("missing.apk"), &Options::default()),
        Err(AuditError::Io { .. })
    ));
}

#[test]
fn corrupt_entries_and_mangled_formats_never_panic() {
    let s = Secrets::new();
    let d = Decoys::new();
    let (dexfile, _) = dex(&[&s.google, &s.jwt, &d.uuid]);
    let (thin, _) = macho(&[&s.stripe_secret, "hello world"], &["sel"]);
    let (fatfile, _) = fat(&thin);
    let (axml, _) = Axml::default()
        .start("manifest", &[])
        .start(
            "application",
            &[(true, "debuggable", 0x0101_000f, AVal::Bool(true))],
        )
        .end("application")
        .end("manifest")
        .build();
    let (plist, _) = bplist(&P::Dict(vec![("k".into(), P::Str(s.google.clone()))]));
    let (so, _) = elf(&sec1_ec(1));
    let (arscfile, _) = arsc(&[&s.google]);
    let originals = [
        dexfile,
        fatfile,
        thin,
        axml,
        plist,
        so,
        arscfile,
        pkcs8_rsa(2),
    ];
    let mut rng = Rng::new(42);
    for original in &originals {
        for round in 0..300 {
            let mut m = original.clone();
            match round % 3 {
                // Flip bytes, including length and offset fields in headers.
                0 => {
                    for _ in 0..1 + rng.next() % 8 {
                        let i = (rng.next() as usize) % m.len();
                        m[i] = rng.next() as u8;
                    }
                }
                // Truncate.
                1 => m.truncate((rng.next() as usize) % m.len()),
                // Overwrite a 32-bit field with a huge value.
                _ => {
                    let i = (rng.next() as usize) % m.len().saturating_sub(4).max(1);
                    let end = (i + 4).min(m.len());
                    m[i..end].copy_from_slice(&[0xff, 0xff, 0xff, 0x7f][..end - i]);
                }
            }
            let _ = scan_bytes("fuzz", &m, &Options::default());
            let _ = scan_bytes(
                "fuzz.apk",
                &zip(&[("classes.dex", m.clone()), ("AndroidManifest.xml", m)]),
                &Options::default(),
            );
        }
    }
    // A deflate entry whose stream is garbage: reported as unreadable, the rest still scanned.
    let garbage = RawEntry {
        name: "classes.dex".into(),
        method: 8,
        data: vec![0xff; 64],
        size: 4096,
        crc: 0,
    };
    let text = format!("key={}", s.stripe_secret).into_bytes();
    let crc = crc32fast::hash(&text);
    let fine = RawEntry {
        name: "assets/a.txt".into(),
        method: 0,
        size: text.len() as u32,
        data: text,
        crc,
    };
    let report = scan_bytes(
        "corrupt.apk",
        &raw_zip(&[garbage, fine], 1),
        &Options::default(),
    )
    .expect("scan");
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.rule == "archive-entry-skipped" && f.path == "classes.dex"),
        "{:?}",
        report.findings
    );
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.rule == "stripe-secret-key")
    );
}

#[test]
fn nested_archives_stop_at_the_depth_limit() {
    let s = Secrets::new();
    let inner = zip(&[("secret.txt", format!("k={}", s.stripe_secret).into_bytes())]);
    let mid = zip(&[("inner.zip", inner)]);
    let outer = zip(&[("mid.zip", mid)]);
    let limits = Limits {
        max_depth: 1,
        ..Limits::default()
    };
    let report = scan_bytes(
        "nest.zip",
        &outer,
        &Options {
            limits,
            ..Options::default()
        },
    )
    .expect("scan");
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.rule == "archive-entry-skipped" && f.path == "mid.zip!/inner.zip"),
        "{:?}",
        report.findings
    );
    let report = scan_bytes("nest.zip", &outer, &Options::default()).expect("scan");
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.rule == "stripe-secret-key" && f.path == "mid.zip!/inner.zip!/secret.txt")
    );
}
