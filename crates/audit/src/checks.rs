//! Settings the seeds warn about: cleartext traffic, missing certificate pins, debuggable
//! builds and backups (Android manifest and network security config; iOS Info.plist and
//! provisioning profile).

use crate::finding::{Finding, Severity};
use crate::formats::axml::{Document, Value};
use crate::formats::plist;

/// `android.R.attr` resource ids (frameworks/base/core/res/res/values/public.xml).
pub(crate) const ATTR_DEBUGGABLE: u32 = 0x0101_000f;
pub(crate) const ATTR_TARGET_SDK: u32 = 0x0101_0270;
pub(crate) const ATTR_ALLOW_BACKUP: u32 = 0x0101_0280;
pub(crate) const ATTR_USES_CLEARTEXT: u32 = 0x0101_04ec;
pub(crate) const ATTR_NETWORK_SECURITY_CONFIG: u32 = 0x0101_0527;

/// What the manifest and the network security configs say, gathered across entries and
/// judged once the whole package has been read.
#[derive(Debug, Default, Clone)]
pub(crate) struct AndroidFacts {
    /// Path and offset of the `<application>` element, if a manifest was found.
    pub manifest: Option<(String, u64)>,
    pub has_nsc_ref: bool,
    /// (path, offset, pins outside debug-overrides) of each network security config.
    pub nsc: Vec<(String, u64, usize)>,
}

fn setting(
    rule: &'static str,
    severity: Severity,
    path: &str,
    offset: usize,
    message: String,
) -> Finding {
    Finding {
        rule,
        severity,
        confidence: 1.0,
        path: path.to_owned(),
        offset: offset as u64,
        length: 0,
        preview: String::new(),
        fingerprint: None,
        message,
        provider: None,
        upstream: None,
    }
}

/// Checks a binary `AndroidManifest.xml`.
pub(crate) fn manifest(
    doc: &Document,
    path: &str,
    out: &mut Vec<Finding>,
    facts: &mut AndroidFacts,
) {
    let target_sdk = doc
        .elements
        .iter()
        .find(|e| e.name == "uses-sdk")
        .and_then(|e| e.attr(ATTR_TARGET_SDK, "targetSdkVersion"))
        .and_then(|a| match &a.value {
            Value::Int(v) => Some(*v),
            Value::Str(s) => s.parse().ok(),
            _ => None,
        });
    let Some(app) = doc.elements.iter().find(|e| e.name == "application") else {
        return;
    };
    facts.manifest = Some((path.to_owned(), app.offset as u64));
    let flag = |id, name| app.attr(id, name).map(|a| (a.offset, a.value.clone()));
    if let Some((at, Value::Bool(true))) = flag(ATTR_DEBUGGABLE, "debuggable") {
        out.push(setting(
            "android-debuggable",
            Severity::High,
            path,
            at,
            "android:debuggable=\"true\" on <application>".into(),
        ));
    }
    match flag(ATTR_ALLOW_BACKUP, "allowBackup") {
        Some((at, Value::Bool(true))) => out.push(setting(
            "android-allow-backup",
            Severity::Medium,
            path,
            at,
            "android:allowBackup=\"true\": app data, stored tokens included, can be copied off the device".into(),
        )),
        None => out.push(setting(
            "android-allow-backup",
            Severity::Low,
            path,
            app.offset,
            "android:allowBackup is not set and defaults to true".into(),
        )),
        _ => {}
    }
    match flag(ATTR_USES_CLEARTEXT, "usesCleartextTraffic") {
        Some((at, Value::Bool(true))) => out.push(setting(
            "android-cleartext-traffic",
            Severity::Medium,
            path,
            at,
            "android:usesCleartextTraffic=\"true\": plain HTTP is allowed to every host".into(),
        )),
        None if target_sdk.is_some_and(|v| v < 28) => out.push(setting(
            "android-cleartext-traffic",
            Severity::Low,
            path,
            app.offset,
            format!(
                "targetSdkVersion {} < 28 and usesCleartextTraffic unset: plain HTTP is allowed by default",
                target_sdk.unwrap_or_default()
            ),
        )),
        _ => {}
    }
    facts.has_nsc_ref = app
        .attr(ATTR_NETWORK_SECURITY_CONFIG, "networkSecurityConfig")
        .is_some();
}

/// Checks a binary network security config (any `res/` XML whose root is
/// `<network-security-config>`: resource shrinking may have renamed the file).
pub(crate) fn network_security_config(
    doc: &Document,
    path: &str,
    out: &mut Vec<Finding>,
    facts: &mut AndroidFacts,
) {
    let in_debug =
        |e: &crate::formats::axml::Element| e.ancestors.iter().any(|a| a == "debug-overrides");
    let mut pins = 0;
    for e in &doc.elements {
        if in_debug(e) {
            continue;
        }
        match e.name.as_str() {
            "pin" if e.ancestors.iter().any(|a| a == "pin-set") => pins += 1,
            "base-config" | "domain-config" => {
                if let Some(a) = e
                    .attrs
                    .iter()
                    .find(|a| a.name == "cleartextTrafficPermitted")
                    && a.value == Value::Bool(true)
                {
                    let (severity, scope) = if e.name == "base-config" {
                        (Severity::Medium, "every host")
                    } else {
                        (Severity::Low, "the hosts of a <domain-config>")
                    };
                    out.push(setting(
                        "android-cleartext-traffic",
                        severity,
                        path,
                        a.offset,
                        format!(
                            "cleartextTrafficPermitted=\"true\" on <{}>: plain HTTP to {scope}",
                            e.name
                        ),
                    ));
                }
            }
            "certificates" if e.ancestors.iter().any(|a| a == "trust-anchors") => {
                if let Some(a) = e.attrs.iter().find(|a| a.name == "src")
                    && a.value == Value::Str("user".into())
                {
                    out.push(setting(
                        "android-user-ca-trusted",
                        Severity::Medium,
                        path,
                        a.offset,
                        "<certificates src=\"user\"/> outside <debug-overrides>".into(),
                    ));
                }
            }
            _ => {}
        }
    }
    facts.nsc.push((
        path.to_owned(),
        doc.elements.first().map_or(0, |e| e.offset as u64),
        pins,
    ));
}

/// Package-wide conclusions about pinning once every entry has been read.
pub(crate) fn android_pins(facts: &AndroidFacts, out: &mut Vec<Finding>) {
    let Some((manifest, app_offset)) = &facts.manifest else {
        return;
    };
    if !facts.has_nsc_ref {
        out.push(setting(
            "android-no-certificate-pins",
            Severity::Low,
            manifest,
            *app_offset as usize,
            "no android:networkSecurityConfig: no certificate pins are declared".into(),
        ));
        return;
    }
    if facts.nsc.iter().all(|(_, _, pins)| *pins == 0) {
        let (path, offset) = facts
            .nsc
            .first()
            .map_or((manifest.as_str(), *app_offset), |(p, o, _)| {
                (p.as_str(), *o)
            });
        out.push(setting(
            "android-no-certificate-pins",
            Severity::Low,
            path,
            offset as usize,
            "the network security config has no <pin-set>".into(),
        ));
    }
}

/// Checks an app's (or app extension's) `Info.plist`.
pub(crate) fn info_plist(root: &plist::Value, path: &str, out: &mut Vec<Finding>) {
    let ats = root.get("NSAppTransportSecurity");
    if let Some(ats) = ats {
        if ats
            .get("NSAllowsArbitraryLoads")
            .is_some_and(plist::Value::is_true)
        {
            out.push(setting(
                "ios-ats-arbitrary-loads",
                Severity::Medium,
                path,
                0,
                "NSAppTransportSecurity.NSAllowsArbitraryLoads is true: plain HTTP and weak TLS to any host".into(),
            ));
        }
        if let Some(plist::Value::Dict(domains)) = ats.get("NSExceptionDomains") {
            for (domain, cfg) in domains {
                if cfg
                    .get("NSExceptionAllowsInsecureHTTPLoads")
                    .is_some_and(plist::Value::is_true)
                    || cfg
                        .get("NSTemporaryExceptionAllowsInsecureHTTPLoads")
                        .is_some_and(plist::Value::is_true)
                {
                    out.push(setting(
                        "ios-ats-exception",
                        Severity::Low,
                        path,
                        0,
                        format!("NSExceptionDomains allows plain HTTP to {domain}"),
                    ));
                }
            }
        }
    }
    if ats.and_then(|a| a.get("NSPinnedDomains")).is_none() {
        out.push(setting(
            "ios-no-certificate-pins",
            Severity::Info,
            path,
            0,
            "no NSAppTransportSecurity.NSPinnedDomains (pins may still be set in code)".into(),
        ));
    }
}

/// `get-task-allow` in a provisioning profile (CMS-signed XML plist).
pub(crate) fn provisioning_profile(data: &[u8], path: &str, out: &mut Vec<Finding>) {
    const KEY: &[u8] = b"<key>get-task-allow</key>";
    let Some(at) = memchr::memmem::find(data, KEY) else {
        return;
    };
    let rest = data.get(at + KEY.len()..).unwrap_or_default();
    let value = rest
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(0);
    if rest.get(value..).is_some_and(|r| r.starts_with(b"<true/>")) {
        out.push(setting(
            "ios-get-task-allow",
            Severity::High,
            path,
            at,
            "the provisioning profile grants get-task-allow (a development build)".into(),
        ));
    }
}
