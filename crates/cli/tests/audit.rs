//! `moat audit` end to end: the built binary on packages made here, its JSON and SARIF output
//! parsed back, its exit codes, and the route snippets it prints loaded as Moat configuration.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn moat() -> Command {
    Command::new(env!("CARGO_BIN_EXE_moat"))
}

/// Secrets are assembled at run time so that this file holds none.
fn secrets() -> (String, String, String) {
    let google = format!("AI{}{}", "za", "SyB8fG3kL0pQ9wXz2Vt7Rn4Mh6Jc1Ds5Eyq");
    let stripe = format!("sk_{}_{}", "live", "51HxQ2eKc9TfWm3Ly7Nb4Pz8Rv6Ua0Sd");
    let user_pass_url = format!(
        "https://uploader:{}@files.partner.example.com/in",
        "g7Hq2LmZ9xKp"
    );
    (google, stripe, user_pass_url)
}

fn package(dir: &Path, name: &str, entries: &[(&str, &[u8])]) -> PathBuf {
    let path = dir.join(name);
    let file = std::fs::File::create(&path).expect("create");
    let mut w = zip::ZipWriter::new(file);
    for (entry, data) in entries {
        w.start_file(*entry, zip::write::SimpleFileOptions::default())
            .expect("start");
        w.write_all(data).expect("write");
    }
    w.finish().expect("finish");
    path
}

fn leaky(dir: &Path) -> (PathBuf, String) {
    let (google, stripe, url) = secrets();
    let config = format!(
        "{{\n  \"maps_key\": \"{google}\",\n  \"payments\": \"{stripe}\",\n  \"upload\": \"{url}\"\n}}\n"
    );
    let path = package(
        dir,
        "leaky.apk",
        &[
            ("assets/config.json", config.as_bytes()),
            ("assets/readme.txt", b"hello"),
        ],
    );
    (path, config)
}

fn run(args: &[&str]) -> Output {
    moat().args(args).output().expect("run moat")
}

#[track_caller]
fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn audit_json_report_and_route_snippets() {
    let dir = tempfile::tempdir().expect("tmp");
    let (apk, config) = leaky(dir.path());
    let out = run(&[
        "audit",
        apk.to_str().expect("path"),
        "--format",
        "json",
        "--fail-on",
        "never",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let report = json(&out);
    let findings = report["findings"].as_array().expect("findings");
    let (google, stripe, _) = secrets();
    let find = |rule: &str| {
        findings
            .iter()
            .find(|f| f["rule"] == rule)
            .unwrap_or_else(|| panic!("no {rule} in {report:#}"))
    };
    let g = find("google-api-key");
    assert_eq!(g["path"], "assets/config.json");
    assert_eq!(g["offset"].as_u64(), config.find(&google).map(|o| o as u64));
    assert_eq!(g["severity"], "high");
    assert_eq!(g["preview"].as_str().map(|p| p.chars().count()), Some(7));
    let s = find("stripe-secret-key");
    assert_eq!(s["offset"].as_u64(), config.find(&stripe).map(|o| o as u64));
    assert_eq!(s["severity"], "critical");
    find("basic-auth-url");
    assert_eq!(report["summary"]["critical"], 1);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&stripe));

    // The printed routes are valid Moat configuration.
    let routes: Vec<&str> = report["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .filter_map(|r| r.as_str())
        .collect();
    assert_eq!(routes.len(), 3, "{routes:?}");
    let toml = routes.join("\n");
    moat_server::Config::load(Some(&toml), &Vec::new())
        .unwrap_or_else(|e| panic!("routes do not load: {e}\n{toml}"));
}

#[test]
fn audit_sarif_report() {
    let dir = tempfile::tempdir().expect("tmp");
    let (apk, config) = leaky(dir.path());
    let sarif_path = dir.path().join("audit.sarif");
    let out = run(&[
        "audit",
        apk.to_str().expect("path"),
        "--format",
        "sarif",
        "--output",
        sarif_path.to_str().expect("path"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "critical findings fail the default --fail-on high"
    );
    assert!(
        out.stdout.is_empty(),
        "--output takes the report off stdout"
    );
    let sarif: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sarif_path).expect("sarif")).expect("json");
    assert_eq!(sarif["version"], "2.1.0");
    let run0 = &sarif["runs"][0];
    assert_eq!(run0["tool"]["driver"]["name"], "moat-audit");
    let rules = run0["tool"]["driver"]["rules"].as_array().expect("rules");
    assert!(
        rules
            .iter()
            .all(|r| r["id"].is_string() && r["shortDescription"]["text"].is_string())
    );
    let results = run0["results"].as_array().expect("results");
    assert!(!results.is_empty());
    for r in results {
        let index = r["ruleIndex"].as_u64().expect("ruleIndex") as usize;
        assert_eq!(rules[index]["id"], r["ruleId"]);
        assert!(["error", "warning", "note"].contains(&r["level"].as_str().expect("level")));
        let loc = &r["locations"][0]["physicalLocation"];
        assert!(loc["artifactLocation"]["uri"].is_string());
        assert!(loc["region"]["byteOffset"].is_u64());
        assert!(r["message"]["text"].is_string());
    }
    let stripe = results
        .iter()
        .find(|r| r["ruleId"] == "stripe-secret-key")
        .expect("stripe result");
    assert_eq!(stripe["level"], "error");
    let loc = &stripe["locations"][0]["physicalLocation"];
    assert_eq!(loc["artifactLocation"]["uri"], "assets/config.json");
    let (_, key, _) = secrets();
    assert_eq!(
        loc["region"]["byteOffset"].as_u64(),
        config.find(&key).map(|o| o as u64)
    );
    assert!(
        stripe["message"]["text"]
            .as_str()
            .expect("text")
            .contains("[[route]]")
    );
}

#[test]
fn audit_exit_codes() {
    let dir = tempfile::tempdir().expect("tmp");
    let (apk, _) = leaky(dir.path());
    let apk = apk.to_str().expect("path");
    let code = |args: &[&str]| run(args).status.code();
    // Table output, default --fail-on high: a critical finding fails.
    let out = run(&["audit", apk]);
    assert_eq!(out.status.code(), Some(3));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("CRITICAL (1)") && table.contains("[[route]]"),
        "{table}"
    );
    assert_eq!(code(&["audit", apk, "--fail-on", "never"]), Some(0));
    assert_eq!(code(&["audit", apk, "--fail-on", "critical"]), Some(3));

    // Only a medium finding: passes --fail-on high, fails --fail-on medium.
    let gs = format!(
        "{{\"api_key\": [{{\"current_key\": \"{}\"}}]}}",
        secrets().0
    );
    let medium = package(
        dir.path(),
        "medium.apk",
        &[("assets/google-services.json", gs.as_bytes())],
    );
    let medium = medium.to_str().expect("path");
    assert_eq!(code(&["audit", medium]), Some(0));
    assert_eq!(code(&["audit", medium, "--fail-on", "medium"]), Some(3));

    let clean = package(
        dir.path(),
        "clean.apk",
        &[("assets/a.txt", b"nothing to see")],
    );
    assert_eq!(
        code(&["audit", clean.to_str().expect("path"), "--fail-on", "info"]),
        Some(0)
    );

    // Usage errors are 64.
    assert_eq!(code(&["audit", apk, "--fail-on", "sometimes"]), Some(64));
    assert_eq!(code(&["audit", apk, "--min-confidence", "2"]), Some(64));
    assert_eq!(code(&["audit"]), Some(64));
}

#[test]
fn audit_refuses_broken_input_cleanly() {
    let dir = tempfile::tempdir().expect("tmp");
    let (apk, _) = leaky(dir.path());
    let bytes = std::fs::read(&apk).expect("read");
    let cut = dir.path().join("cut.apk");
    std::fs::write(&cut, &bytes[..bytes.len() - 20]).expect("write");
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a package").expect("write");
    for (path, expect) in [
        (cut.as_path(), "malformed package"),
        (text.as_path(), "not an app package"),
        (Path::new("/nonexistent/app.apk"), "cannot read"),
    ] {
        let out = run(&["audit", path.to_str().expect("path")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(expect), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// A zip whose one entry claims 4 KiB and inflates to 2 GiB of zeros (about 2 MB on disk).
fn lying_bomb(dir: &Path) -> PathBuf {
    use flate2::{Compress, Compression, FlushCompress};
    let mut c = Compress::new(Compression::best(), false);
    let mut chunk = Vec::with_capacity(1 << 16);
    c.compress_vec(&vec![0u8; 1 << 20], &mut chunk, FlushCompress::Full)
        .expect("deflate");
    let mut data = chunk.repeat(2048);
    data.extend([0x03, 0x00]);
    let name = b"classes.dex";
    let mut f = Vec::new();
    let header = |sig: u32, central: bool| {
        let mut h = Vec::new();
        h.extend(sig.to_le_bytes());
        if central {
            h.extend(20u16.to_le_bytes());
        }
        h.extend(20u16.to_le_bytes());
        h.extend(0u16.to_le_bytes());
        h.extend(8u16.to_le_bytes());
        h.extend([0u8; 8]);
        h.extend((data.len() as u32).to_le_bytes());
        h.extend(4096u32.to_le_bytes());
        h.extend((name.len() as u16).to_le_bytes());
        h.extend(0u16.to_le_bytes());
        if central {
            h.extend([0u8; 10]); // comment length, disk, internal and external attributes
            h.extend(0u32.to_le_bytes()); // local header offset
        }
        h.extend(name);
        h
    };
    f.extend(header(0x0403_4b50, false));
    f.extend(&data);
    let cd_off = f.len() as u32;
    let cd = header(0x0201_4b50, true);
    f.extend(&cd);
    f.extend(0x0605_4b50u32.to_le_bytes());
    f.extend([0u8; 4]);
    f.extend(1u16.to_le_bytes());
    f.extend(1u16.to_le_bytes());
    f.extend((cd.len() as u32).to_le_bytes());
    f.extend(cd_off.to_le_bytes());
    f.extend(0u16.to_le_bytes());
    let path = dir.join("bomb.apk");
    std::fs::write(&path, f).expect("write");
    path
}

#[test]
fn audit_zip_bomb_in_bounded_memory() {
    let dir = tempfile::tempdir().expect("tmp");
    let bomb = lying_bomb(dir.path());
    // 1 GiB of address space: decompressing the entry whole could not fit.
    let out = Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 1048576 && exec \"$0\" audit \"$1\" --format json")
        .arg(env!("CARGO_BIN_EXE_moat"))
        .arg(&bomb)
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out);
    assert_eq!(report["findings"][0]["rule"], "archive-compression-bomb");
    assert_eq!(report["findings"][0]["path"], "classes.dex");
}
