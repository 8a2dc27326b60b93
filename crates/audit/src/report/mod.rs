//! Reports: a table for people, JSON and SARIF 2.1.0 for machines.

use serde_json::{Value, json};

use crate::finding::{Finding, Severity};
use crate::{Report, rules};

const TOOL: &str = "moat-audit";
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn counts(findings: &[&Finding]) -> Value {
    let mut map = serde_json::Map::new();
    for s in Severity::DESCENDING {
        map.insert(
            s.as_str().to_owned(),
            json!(findings.iter().filter(|f| f.severity == s).count()),
        );
    }
    map.insert("total".into(), json!(findings.len()));
    Value::Object(map)
}

fn finding_json(f: &Finding) -> Value {
    json!({
        "rule": f.rule,
        "name": rules::rule(f.rule).map_or(f.rule, |r| r.name),
        "severity": f.severity,
        "confidence": (f64::from(f.confidence) * 100.0).round() / 100.0,
        "path": f.path,
        "offset": f.offset,
        "length": f.length,
        "preview": f.preview,
        "fingerprint": f.fingerprint,
        "message": f.message,
        "provider": f.provider,
        "route_snippet": f.route_snippet(),
    })
}

/// The JSON report (findings below `min_confidence` are counted, not listed).
#[must_use]
pub fn json(report: &Report, min_confidence: f32) -> Value {
    let shown = report.filtered(min_confidence);
    json!({
        "tool": { "name": TOOL, "version": VERSION },
        "package": {
            "path": report.package,
            "kind": report.kind,
            "size": report.size,
            "entries": report.entries,
            "scanned_files": report.scanned_files,
            "scanned_bytes": report.scanned_bytes,
            "elapsed_ms": report.elapsed_ms,
        },
        "min_confidence": min_confidence,
        "summary": counts(&shown),
        "hidden_below_confidence": report.findings.len() - shown.len(),
        "findings": shown.iter().map(|f| finding_json(f)).collect::<Vec<_>>(),
        "routes": Report::route_snippets(shown.iter().copied()),
    })
}

fn sarif_level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

/// GitHub code scanning ranks security results by this score (0.1 to 10).
fn security_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
        Severity::Info => "0.5",
    }
}

/// The SARIF 2.1.0 log. Locations are files inside the package, relative to the base id
/// `PACKAGE` (described as the package's name), with byte offsets.
#[must_use]
pub fn sarif(report: &Report, min_confidence: f32) -> Value {
    let shown = report.filtered(min_confidence);
    let rules_json: Vec<Value> = rules::RULES
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "name": r.name,
                "shortDescription": { "text": r.name },
                "fullDescription": { "text": r.description },
                "help": { "text": r.help, "markdown": r.help },
                "defaultConfiguration": { "level": sarif_level(r.severity) },
                "properties": {
                    "tags": ["security", "mobile"],
                    "security-severity": security_severity(r.severity),
                },
            })
        })
        .collect();
    let results: Vec<Value> = shown
        .iter()
        .map(|f| {
            let index = rules::RULES.iter().position(|r| r.id == f.rule);
            let mut text = f.message.clone();
            if !f.preview.is_empty() {
                text.push_str(&format!(": {}", f.preview));
            }
            if let Some(snippet) = f.route_snippet() {
                text.push_str("\n\nKeep it on the server with this Moat route:\n");
                text.push_str(&snippet);
            }
            let mut region = json!({ "byteOffset": f.offset });
            if f.length > 0 {
                region["byteLength"] = json!(f.length);
            }
            let uri = if f.path.is_empty() {
                report.package.clone()
            } else {
                f.path.clone()
            };
            let mut result = json!({
                "ruleId": f.rule,
                "level": sarif_level(f.severity),
                "message": { "text": text },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": uri, "uriBaseId": "PACKAGE" },
                        "region": region,
                    },
                    "logicalLocations": [{
                        "fullyQualifiedName": format!("{}!/{}", report.package, f.path),
                        "kind": "resource",
                    }],
                }],
                "properties": {
                    "severity": f.severity,
                    "confidence": (f64::from(f.confidence) * 100.0).round() / 100.0,
                },
            });
            if let Some(i) = index {
                result["ruleIndex"] = json!(i);
            }
            if let Some(fp) = &f.fingerprint {
                result["partialFingerprints"] = json!({ "secretSha256/v1": fp });
            }
            result
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": TOOL,
                    "version": VERSION,
                    "rules": rules_json,
                }
            },
            "originalUriBaseIds": {
                "PACKAGE": { "description": { "text": format!("inside {}", report.package) } }
            },
            "artifacts": [{
                "location": { "uri": report.package },
                "length": report.size,
            }],
            "results": results,
        }],
    })
}

fn human_size(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{bytes} B")
    }
}

/// The human-readable table, grouped by severity, followed by the route snippets.
#[must_use]
pub fn table(report: &Report, min_confidence: f32) -> String {
    use std::fmt::Write as _;
    let shown = report.filtered(min_confidence);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "moat audit: {} ({}, {}, {} entries, {} files read, {:.2} s)",
        report.package,
        report.kind.as_str(),
        human_size(report.size),
        report.entries,
        report.scanned_files,
        report.elapsed_ms as f64 / 1000.0
    );
    for sev in Severity::DESCENDING {
        let group: Vec<&&Finding> = shown.iter().filter(|f| f.severity == sev).collect();
        if group.is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            "\n{} ({})",
            sev.as_str().to_ascii_uppercase(),
            group.len()
        );
        for f in group {
            let location = if f.path.is_empty() {
                "(package)".to_owned()
            } else {
                format!("{} @ {:#x}", f.path, f.offset)
            };
            let _ = writeln!(s, "  {:<28} {:>4.2}  {}", f.rule, f.confidence, location);
            let detail = if f.preview.is_empty() {
                f.message.clone()
            } else {
                format!("{}: {}", f.message, f.preview)
            };
            let _ = writeln!(s, "      {detail}");
        }
    }
    let snippets = Report::route_snippets(shown.iter().copied());
    if !snippets.is_empty() {
        let _ = writeln!(
            s,
            "\nKeep these credentials on the server: rotate the exposed values, add the routes to the Moat configuration, and call the routes from the app.\n"
        );
        for snippet in snippets {
            let _ = writeln!(s, "{snippet}");
        }
    }
    let hidden = report.findings.len() - shown.len();
    let by: Vec<String> = Severity::DESCENDING
        .iter()
        .filter_map(|sev| {
            let n = shown.iter().filter(|f| f.severity == *sev).count();
            (n > 0).then(|| format!("{n} {sev}"))
        })
        .collect();
    let _ = write!(
        s,
        "\n{} finding{}{}",
        shown.len(),
        if shown.len() == 1 { "" } else { "s" },
        if by.is_empty() {
            String::new()
        } else {
            format!(": {}", by.join(", "))
        }
    );
    if hidden > 0 {
        let _ = write!(
            s,
            " ({hidden} below confidence {min_confidence:.2} not shown)"
        );
    }
    s.push('\n');
    s
}
