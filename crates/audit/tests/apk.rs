//! An APK built by the test: real DEX string tables, binary XML manifest and network security
//! config, `resources.arsc`, an ELF library, assets, a nested AAR; a secret of every kind
//! planted at a known offset, and decoys that must not be reported.

mod common;

use common::*;
use moat_audit::{Finding, Options, Report, Severity, scan_bytes};

struct Apk {
    bytes: Vec<u8>,
    /// (rule, path, offset) that must be reported.
    expected: Vec<(&'static str, String, u64)>,
    /// (path, offset, length) where nothing may be reported.
    decoys: Vec<(String, u64, u64)>,
}

fn build() -> Apk {
    let s = Secrets::new();
    let d = Decoys::new();
    let mut expected: Vec<(&'static str, String, u64)> = Vec::new();
    let mut decoys: Vec<(String, u64, u64)> = Vec::new();

    // classes.dex: string constants of the app's code.
    let authorization = format!("Bearer {}", s.github_classic);
    let dex1_strings: Vec<&str> = vec![
        &s.google,
        &s.stripe_secret,
        &s.stripe_publishable,
        &authorization,
        &s.jwt,
        &s.slack_token,
        &s.entropy_bare,
        &d.uuid,
        &d.sha256,
        &d.sha1,
        &d.pem_header_constant,
        &d.alphabet,
        &d.identifiers[0],
        &d.identifiers[1],
        &d.identifiers[2],
        &d.identifiers[3],
        &d.identifiers[4],
        "onCreate",
        "Landroid/app/Activity;",
        "caf\u{e9} \u{1F600} with a NUL \0 inside",
    ];
    let (dex1, off1) = dex(&dex1_strings);
    let at = |i: usize| off1[i] as u64;
    expected.push(("google-api-key", "classes.dex".into(), at(0)));
    expected.push(("stripe-secret-key", "classes.dex".into(), at(1)));
    expected.push(("stripe-publishable-key", "classes.dex".into(), at(2)));
    expected.push(("github-token", "classes.dex".into(), at(3) + 7));
    expected.push(("jwt", "classes.dex".into(), at(4)));
    expected.push(("slack-token", "classes.dex".into(), at(5)));
    expected.push(("high-entropy-string", "classes.dex".into(), at(6)));
    for (i, decoy) in dex1_strings.iter().enumerate().skip(7).take(10) {
        decoys.push(("classes.dex".into(), at(i), decoy.len() as u64));
    }

    // classes2.dex: AWS key id alone; a Twilio SID and, elsewhere in the sorted table, a token.
    let (dex2, off2) = dex(&[
        &s.aws_id,
        &s.twilio_sid,
        &s.twilio_token_dex,
        "Lcom/example/Sms;",
    ]);
    expected.push(("aws-access-key-id", "classes2.dex".into(), off2[0] as u64));
    expected.push(("twilio-account-sid", "classes2.dex".into(), off2[1] as u64));
    expected.push(("twilio-auth-token", "classes2.dex".into(), off2[2] as u64));

    // AndroidManifest.xml: the risky flags, and a Maps key in <meta-data>.
    let (manifest, mstr) = Axml::default()
        .start(
            "manifest",
            &[(false, "package", 0, AVal::Str("com.example.demo".into()))],
        )
        .start(
            "uses-sdk",
            &[
                (true, "minSdkVersion", 0x0101_020c, AVal::Int(24)),
                (true, "targetSdkVersion", 0x0101_0270, AVal::Int(34)),
            ],
        )
        .end("uses-sdk")
        .start(
            "application",
            &[
                (true, "debuggable", 0x0101_000f, AVal::Bool(true)),
                (true, "allowBackup", 0x0101_0280, AVal::Bool(true)),
                (true, "usesCleartextTraffic", 0x0101_04ec, AVal::Bool(true)),
                (
                    true,
                    "networkSecurityConfig",
                    0x0101_0527,
                    AVal::Ref(0x7f0f_0001),
                ),
            ],
        )
        .start(
            "meta-data",
            &[
                (
                    true,
                    "name",
                    0x0101_0003,
                    AVal::Str("com.google.android.geo.API_KEY".into()),
                ),
                (
                    true,
                    "value",
                    0x0101_0024,
                    AVal::Str(s.google_manifest.clone()),
                ),
            ],
        )
        .end("meta-data")
        .end("application")
        .end("manifest")
        .build();
    expected.push((
        "google-api-key",
        "AndroidManifest.xml".into(),
        mstr[&s.google_manifest] as u64,
    ));

    // The network security config: cleartext for all, user CAs trusted, no pins (and a pin
    // under debug-overrides, which does not count).
    let (nsc, _) = Axml::default()
        .start("network-security-config", &[])
        .start(
            "base-config",
            &[(false, "cleartextTrafficPermitted", 0, AVal::Bool(true))],
        )
        .start("trust-anchors", &[])
        .start(
            "certificates",
            &[(false, "src", 0, AVal::Str("system".into()))],
        )
        .end("certificates")
        .start(
            "certificates",
            &[(false, "src", 0, AVal::Str("user".into()))],
        )
        .end("certificates")
        .end("trust-anchors")
        .end("base-config")
        .start("debug-overrides", &[])
        .start("pin-set", &[])
        .start("pin", &[(false, "digest", 0, AVal::Str("SHA-256".into()))])
        .end("pin")
        .end("pin-set")
        .end("debug-overrides")
        .end("network-security-config")
        .build();

    // resources.arsc: strings.xml values.
    let (arsc, aoff) = arsc(&[
        "Demo",
        &s.firebase_url,
        &s.google_arsc,
        "https://example.com/help",
    ]);
    expected.push((
        "firebase-database-url",
        "resources.arsc".into(),
        aoff[1] as u64,
    ));
    expected.push(("google-api-key", "resources.arsc".into(), aoff[2] as u64));

    // A native library: a restricted Stripe key and a DER EC key in .rodata.
    let ec = sec1_ec(5);
    let mut rodata = b"libdemo 1.0\0".to_vec();
    let stripe_at = rodata.len();
    rodata.extend(s.stripe_restricted.as_bytes());
    rodata.push(0);
    let key_at = rodata.len();
    rodata.extend(&ec);
    rodata.extend(b"\0\0\0\0");
    let (so, ro) = elf(&rodata);
    expected.push((
        "stripe-restricted-key",
        "lib/arm64-v8a/libdemo.so".into(),
        (ro + stripe_at) as u64,
    ));
    expected.push((
        "private-key-der",
        "lib/arm64-v8a/libdemo.so".into(),
        (ro + key_at) as u64,
    ));

    // A JSON config asset.
    let config = format!(
        concat!(
            "{{\n  \"aws_access_key_id\": \"{}\",\n  \"aws_secret_access_key\": \"{}\",\n",
            "  \"twilio\": {{ \"account_sid\": \"{}\", \"auth_token\": \"{}\" }},\n",
            "  \"client_secret\": \"{}\",\n  \"alerts\": \"{}\",\n  \"upload\": \"{}\",\n",
            "  \"install_id\": \"{}\",\n  \"terms_sha256\": \"{}\",\n  \"logo\": \"data:image/png;base64,{}\",\n",
            "  \"server_pub\": \"{}\",\n  \"docs\": \"{}\"\n}}\n"
        ),
        s.aws_id,
        s.aws_secret,
        s.twilio_sid,
        s.twilio_token,
        s.entropy_named,
        s.slack_webhook,
        s.basic_url,
        d.uuid,
        d.sha256,
        d.png_base64,
        d.spki_base64,
        d.placeholder_url,
    );
    let cb = config.as_bytes();
    let cfg = "assets/config.json".to_owned();
    expected.push(("aws-access-key-id", cfg.clone(), find(cb, &s.aws_id) as u64));
    expected.push((
        "aws-secret-access-key",
        cfg.clone(),
        find(cb, &s.aws_secret) as u64,
    ));
    expected.push((
        "twilio-account-sid",
        cfg.clone(),
        find(cb, &s.twilio_sid) as u64,
    ));
    expected.push((
        "twilio-auth-token",
        cfg.clone(),
        find(cb, &s.twilio_token) as u64,
    ));
    expected.push((
        "high-entropy-string",
        cfg.clone(),
        find(cb, &s.entropy_named) as u64,
    ));
    expected.push((
        "slack-webhook",
        cfg.clone(),
        find(cb, &s.slack_webhook) as u64,
    ));
    expected.push(("basic-auth-url", cfg.clone(), find(cb, &s.basic_url) as u64));
    for decoy in [
        &d.uuid,
        &d.sha256,
        &d.png_base64,
        &d.spki_base64,
        &d.placeholder_url,
    ] {
        decoys.push((cfg.clone(), find(cb, decoy) as u64, decoy.len() as u64));
    }

    let gs = format!(
        "{{\"client\": [{{\"api_key\": [{{\"current_key\": \"{}\"}}]}}]}}",
        s.firebase_key
    );
    expected.push((
        "firebase-web-api-key",
        "assets/google-services.json".into(),
        find(gs.as_bytes(), &s.firebase_key) as u64,
    ));

    let pem_text = pem("PRIVATE KEY", &pkcs8_rsa(9));
    expected.push(("private-key-pem", "assets/keys/server.pem".into(), 0));

    // A PNG (skipped), signature files full of digests (skipped), a keystore, a nested AAR.
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(Rng::new(3).bytes(4096));
    let sf = format!(
        "Signature-Version: 1.0\nSHA-256-Digest-Manifest: {}\n",
        d.spki_base64
    );
    let aar_props = format!("sdk.version=2.1\nsdk.token={}\n", s.github_fine);
    let aar = zip(&[("config.properties", aar_props.clone().into_bytes())]);
    expected.push((
        "github-token",
        "libs/sdk.aar!/config.properties".into(),
        find(aar_props.as_bytes(), &s.github_fine) as u64,
    ));
    expected.push(("bundled-keystore", "res/raw/client.p12".into(), 0));

    let bytes = zip(&[
        ("AndroidManifest.xml", manifest),
        ("classes.dex", dex1),
        ("classes2.dex", dex2),
        ("resources.arsc", arsc),
        ("res/xml/network_security_config.xml", nsc),
        ("res/drawable/logo.png", png),
        ("res/raw/client.p12", Rng::new(11).bytes(2048)),
        ("lib/arm64-v8a/libdemo.so", so),
        ("assets/config.json", config.into_bytes()),
        ("assets/google-services.json", gs.into_bytes()),
        ("assets/keys/server.pem", pem_text.into_bytes()),
        ("libs/sdk.aar", aar),
        ("META-INF/CERT.SF", sf.into_bytes()),
    ]);
    Apk {
        bytes,
        expected,
        decoys,
    }
}

fn scan(apk: &Apk) -> Report {
    scan_bytes("demo.apk", &apk.bytes, &Options::default()).expect("scan")
}

fn describe(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| {
            format!(
                "  {} {} @{} {} ({:.2}) {}",
                f.severity, f.rule, f.offset, f.path, f.confidence, f.preview
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn planted_secrets_are_found_at_their_offsets() {
    let apk = build();
    let report = scan(&apk);
    assert_eq!(report.kind, moat_audit::PackageKind::Apk);
    for (rule, path, offset) in &apk.expected {
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.rule == *rule && f.path == *path && f.offset == *offset),
            "missing {rule} in {path} at {offset}; got:\n{}",
            describe(&report.findings)
        );
    }
}

#[test]
fn decoys_are_not_reported() {
    let apk = build();
    let report = scan(&apk);
    for (path, offset, len) in &apk.decoys {
        let hit: Vec<Finding> = report
            .findings
            .iter()
            .filter(|f| f.path == *path && f.offset >= *offset && f.offset < offset + len)
            .cloned()
            .collect();
        assert!(
            hit.is_empty(),
            "decoy in {path} at {offset} reported:\n{}",
            describe(&hit)
        );
    }
    // Nothing from the skipped image or signature file, and no line-noise rules at all.
    assert!(
        !report
            .findings
            .iter()
            .any(|f| f.path.ends_with(".png") || f.path.starts_with("META-INF/")),
        "{}",
        describe(&report.findings)
    );
    // Every finding is either expected or a setting/archive note: no stray false positives.
    let stray: Vec<Finding> = report
        .findings
        .iter()
        .filter(|f| f.fingerprint.is_some() && f.rule != "bundled-keystore")
        .filter(|f| {
            !apk.expected
                .iter()
                .any(|(r, p, o)| f.rule == *r && f.path == *p && f.offset == *o)
        })
        .cloned()
        .collect();
    assert!(
        stray.is_empty(),
        "unexpected findings:\n{}",
        describe(&stray)
    );
}

#[test]
fn secrets_are_never_printed_whole() {
    let apk = build();
    let report = scan(&apk);
    let s = Secrets::new();
    let json = moat_audit::report::json(&report, 0.0).to_string();
    let sarif = moat_audit::report::sarif(&report, 0.0).to_string();
    let table = moat_audit::report::table(&report, 0.0);
    for secret in [
        &s.google,
        &s.stripe_secret,
        &s.github_classic,
        &s.jwt,
        &s.aws_secret,
        &s.twilio_token,
        &s.basic_password,
        &s.entropy_named,
        &s.slack_webhook,
    ] {
        for (name, text) in [("json", &json), ("sarif", &sarif), ("table", &table)] {
            assert!(
                !text.contains(secret.as_str()),
                "{name} output contains a whole secret"
            );
        }
    }
    let google = report
        .findings
        .iter()
        .find(|f| f.rule == "google-api-key")
        .expect("google");
    assert_eq!(
        google.preview.chars().count(),
        7,
        "first 4, ellipsis, last 2: {}",
        google.preview
    );
    assert!(
        google
            .fingerprint
            .as_deref()
            .is_some_and(|f| f.starts_with("sha256:") && f.len() == 71)
    );
}

#[test]
fn android_settings_are_reported() {
    let apk = build();
    let report = scan(&apk);
    let has = |rule: &str, path: &str| {
        report
            .findings
            .iter()
            .any(|f| f.rule == rule && f.path == path)
    };
    assert!(has("android-debuggable", "AndroidManifest.xml"));
    assert!(has("android-allow-backup", "AndroidManifest.xml"));
    assert!(has("android-cleartext-traffic", "AndroidManifest.xml"));
    let nsc = "res/xml/network_security_config.xml";
    assert!(has("android-cleartext-traffic", nsc));
    assert!(has("android-user-ca-trusted", nsc));
    assert!(
        has("android-no-certificate-pins", nsc),
        "{}",
        describe(&report.findings)
    );
    let debuggable = report
        .findings
        .iter()
        .find(|f| f.rule == "android-debuggable")
        .expect("debuggable");
    assert_eq!(debuggable.severity, Severity::High);
}

#[test]
fn pins_and_safe_flags_are_not_reported() {
    let (manifest, _) = Axml::default()
        .start("manifest", &[])
        .start(
            "application",
            &[
                (true, "debuggable", 0x0101_000f, AVal::Bool(false)),
                (true, "allowBackup", 0x0101_0280, AVal::Bool(false)),
                (
                    true,
                    "networkSecurityConfig",
                    0x0101_0527,
                    AVal::Ref(0x7f0f_0001),
                ),
            ],
        )
        .end("application")
        .end("manifest")
        .build();
    let (nsc, _) = Axml::default()
        .start("network-security-config", &[])
        .start(
            "domain-config",
            &[(false, "cleartextTrafficPermitted", 0, AVal::Bool(false))],
        )
        .start("pin-set", &[])
        .start("pin", &[(false, "digest", 0, AVal::Str("SHA-256".into()))])
        .end("pin")
        .end("pin-set")
        .end("domain-config")
        .end("network-security-config")
        .build();
    // Resource shrinking renames files; the config is recognised by its root element.
    let apk = zip(&[("AndroidManifest.xml", manifest), ("res/Xy.xml", nsc)]);
    let report = scan_bytes("safe.apk", &apk, &Options::default()).expect("scan");
    assert!(report.findings.is_empty(), "{}", describe(&report.findings));
}

#[test]
fn route_snippets_for_third_party_credentials() {
    let apk = build();
    let report = scan(&apk);
    let snippet = |rule: &str| {
        report
            .findings
            .iter()
            .find(|f| f.rule == rule)
            .and_then(Finding::route_snippet)
            .unwrap_or_default()
    };
    let google = snippet("google-api-key");
    assert!(
        google.contains("[[route]]")
            && google.contains("upstream = \"https://maps.googleapis.com\"")
    );
    assert!(
        google.contains("inject_query = { \"key\" = \"env:GOOGLE_API_KEY\" }"),
        "{google}"
    );
    let stripe = snippet("stripe-secret-key");
    assert!(
        stripe.contains("https://api.stripe.com")
            && stripe
                .contains("inject_headers = { \"Authorization\" = \"env:STRIPE_AUTHORIZATION\" }")
    );
    assert!(snippet("twilio-auth-token").contains("https://api.twilio.com"));
    assert!(snippet("slack-token").contains("https://slack.com/api"));
    assert!(snippet("github-token").contains("https://api.github.com"));
    let basic = snippet("basic-auth-url");
    assert!(
        basic.contains("upstream = \"https://api.partner.example.com\""),
        "{basic}"
    );
    assert!(
        snippet("firebase-database-url")
            .contains("upstream = \"https://moat-demo-4821.firebaseio.com\"")
    );
    // Not injectable: AWS (SigV4), private keys, settings.
    assert!(snippet("aws-access-key-id").is_empty());
    assert!(snippet("private-key-pem").is_empty());
    assert!(snippet("android-debuggable").is_empty());
}
