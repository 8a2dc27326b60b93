//! An IPA built by the test: a fat Mach-O executable with `__cstring` and `__objc_methname`
//! sections, a binary Info.plist, an XML GoogleService-Info.plist and a provisioning profile.

mod common;

use common::*;
use moat_audit::{Finding, Options, scan_bytes};

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
fn ipa_secrets_and_settings() {
    let s = Secrets::new();
    let d = Decoys::new();
    let exe_path = "Payload/Demo.app/Demo";
    // A random selector name in __objc_methname must not be read as a secret.
    let selector = "q8ZxT3vLm2Rk9WpYc4Nb7HsJd";
    let (thin, offs) = macho(
        &[
            &s.google_ios,
            &s.stripe_secret,
            &s.basic_url,
            &d.identifiers[1],
            &d.uuid,
            "%@ %@",
        ],
        &["viewDidLoad", selector],
    );
    let (exe, base) = fat(&thin);
    let expected_exe = [
        ("google-api-key", base + offs[0]),
        ("stripe-secret-key", base + offs[1]),
        ("basic-auth-url", base + offs[2]),
    ];

    let (info, info_offsets) = bplist(&P::Dict(vec![
        (
            "CFBundleIdentifier".into(),
            P::Str("com.example.demo".into()),
        ),
        ("MapsApiKey".into(), P::Str(s.google.clone())),
        (
            "NSAppTransportSecurity".into(),
            P::Dict(vec![
                ("NSAllowsArbitraryLoads".into(), P::Bool(true)),
                (
                    "NSExceptionDomains".into(),
                    P::Dict(vec![(
                        "legacy.example.com".into(),
                        P::Dict(vec![(
                            "NSExceptionAllowsInsecureHTTPLoads".into(),
                            P::Bool(true),
                        )]),
                    )]),
                ),
            ]),
        ),
    ]));
    let google_service = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n<plist version=\"1.0\">\n<dict>\n\t<key>API_KEY</key>\n\t<string>{}</string>\n\t<key>DATABASE_URL</key>\n\t<string>{}</string>\n\t<key>IS_ADS_ENABLED</key>\n\t<false/>\n</dict>\n</plist>\n",
        s.firebase_key, s.firebase_url
    );
    let profile = b"0\x82\x10\x00\x06\x09*\x86H\x86\xf7\r\x01\x07\x02<?xml version=\"1.0\"?><plist><dict><key>Entitlements</key><dict><key>get-task-allow</key>\n\t\t<true/></dict></dict></plist>".to_vec();
    let ipa = zip(&[
        (exe_path, exe),
        ("Payload/Demo.app/Info.plist", info),
        (
            "Payload/Demo.app/GoogleService-Info.plist",
            google_service.clone().into_bytes(),
        ),
        ("Payload/Demo.app/embedded.mobileprovision", profile),
        (
            "Payload/Demo.app/Frameworks/Lib.framework/Info.plist",
            bplist(&P::Dict(vec![(
                "CFBundleName".into(),
                P::Str("Lib".into()),
            )]))
            .0,
        ),
    ]);
    let report = scan_bytes("Demo.ipa", &ipa, &Options::default()).expect("scan");
    assert_eq!(report.kind, moat_audit::PackageKind::Ipa);
    let has = |rule: &str, path: &str, offset: Option<u64>| {
        report
            .findings
            .iter()
            .any(|f| f.rule == rule && f.path == path && offset.is_none_or(|o| f.offset == o))
    };
    for (rule, offset) in expected_exe {
        assert!(
            has(rule, exe_path, Some(offset as u64)),
            "missing {rule} at {offset}:\n{}",
            describe(&report.findings)
        );
    }
    let info_path = "Payload/Demo.app/Info.plist";
    assert!(
        has(
            "google-api-key",
            info_path,
            Some(info_offsets[&s.google] as u64)
        ),
        "{}",
        describe(&report.findings)
    );
    assert!(has("ios-ats-arbitrary-loads", info_path, None));
    assert!(has("ios-ats-exception", info_path, None));
    assert!(has("ios-no-certificate-pins", info_path, None));
    let gs_path = "Payload/Demo.app/GoogleService-Info.plist";
    let gs = google_service.as_bytes();
    assert!(
        has(
            "firebase-web-api-key",
            gs_path,
            Some(find(gs, &s.firebase_key) as u64)
        ),
        "{}",
        describe(&report.findings)
    );
    assert!(has(
        "firebase-database-url",
        gs_path,
        Some(find(gs, &s.firebase_url) as u64)
    ));
    assert!(has(
        "ios-get-task-allow",
        "Payload/Demo.app/embedded.mobileprovision",
        None
    ));
    // Framework Info.plists are not the app's ATS settings.
    assert!(
        !report
            .findings
            .iter()
            .any(|f| f.path.contains("Lib.framework")),
        "{}",
        describe(&report.findings)
    );
    // Nothing else in the executable: not the selector, the identifier, the UUID.
    let stray: Vec<Finding> = report
        .findings
        .iter()
        .filter(|f| {
            f.path == exe_path
                && !expected_exe
                    .iter()
                    .any(|(r, o)| f.rule == *r && f.offset == *o as u64)
        })
        .cloned()
        .collect();
    assert!(stray.is_empty(), "{}", describe(&stray));
}

#[test]
fn single_files_are_scanned_directly() {
    let s = Secrets::new();
    let (dexfile, offs) = dex(&[&s.stripe_secret, "onCreate"]);
    let report = scan_bytes("classes.dex", &dexfile, &Options::default()).expect("dex");
    assert_eq!(report.kind, moat_audit::PackageKind::File);
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.rule == "stripe-secret-key" && f.offset == offs[0] as u64)
    );

    let (thin, offs) = macho(&[&s.slack_token], &[]);
    let report = scan_bytes("Demo", &thin, &Options::default()).expect("macho");
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.rule == "slack-token" && f.offset == offs[0] as u64),
        "{}",
        describe(&report.findings)
    );
}
