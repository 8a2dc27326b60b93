//! Secret detectors: patterns for known credential formats, each confirmed by a check of its
//! own (boundaries, checksums, decoded structure: [`crate::credentials`]), and an entropy test
//! for unknown ones ([`crate::entropy`]).

use std::sync::OnceLock;

use regex::bytes::{Regex, RegexSet};

use crate::credentials::{basic_url, github_checksum_ok, jwt, pem};
use crate::entropy::entropy_candidates;
use crate::finding::{Finding, Provider, Severity, fingerprint, redact};
use crate::hit::{FileScan, Hit};
use crate::segment::Segment;
use crate::token::{
    bounded, contains_ci, is_b64_char, is_token_char, mixed_case_with_digits, tokens, window,
};

#[derive(Clone, Copy)]
enum Kind {
    Google,
    FirebaseUrl,
    AwsId,
    AwsSecret,
    Stripe,
    TwilioSid,
    TwilioToken,
    SlackToken,
    SlackWebhook,
    GitHub,
    Pem,
    Jwt,
    BasicUrl,
}

const PATTERNS: &[(Kind, &str)] = &[
    (Kind::Google, r"AIza[0-9A-Za-z_\-]{35}"),
    (
        Kind::FirebaseUrl,
        r"(?i)https://[a-z0-9][a-z0-9\-]{0,62}(?:\.[a-z0-9\-]{1,63})?\.(?:firebaseio\.com|firebasedatabase\.app)",
    ),
    (Kind::AwsId, r"(?:AKIA|ASIA)[A-Z2-7]{16}"),
    (
        Kind::AwsSecret,
        r#"(?i)aws.{0,24}?(?:secret|sk).{0,16}?['"\s:=]{1,6}([A-Za-z0-9/+]{40})"#,
    ),
    (
        Kind::Stripe,
        r"(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{20,247}",
    ),
    (Kind::TwilioSid, r"(?:AC|SK)[0-9a-f]{32}"),
    (
        Kind::TwilioToken,
        r#"(?i)twilio.{0,40}?(?:auth_?token|token|secret)['"\s:=]{1,6}([0-9a-f]{32})"#,
    ),
    (Kind::SlackToken, r"xox[baprse]-[0-9A-Za-z\-]{10,250}"),
    (
        Kind::SlackWebhook,
        r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/\-]{20,200}",
    ),
    (
        Kind::GitHub,
        r"(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{82}",
    ),
    (
        Kind::Pem,
        r"-----BEGIN ((?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY)-----",
    ),
    (
        Kind::Jwt,
        r"eyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{16,}",
    ),
    (
        Kind::BasicUrl,
        r#"([A-Za-z][A-Za-z0-9+.\-]{1,15})://([^\s:@/?#'"<>\\\x00-\x1f]{1,64}):([^\s@/?#'"<>\\\x00-\x1f]{1,128})@([A-Za-z0-9.\-]{1,253}(?::[0-9]{1,5})?)"#,
    ),
];

/// Segments up to this length are matched with the combined pattern set.
const SET_MAX_LEN: usize = 4096;

struct Detector {
    set: RegexSet,
    patterns: Vec<(Kind, Regex)>,
}

fn detector() -> &'static Detector {
    static DETECTOR: OnceLock<Detector> = OnceLock::new();
    DETECTOR.get_or_init(|| {
        // The patterns are constants; a typo is caught by every test run.
        let compile = |p: &str| {
            Regex::new(&format!("(?-u){p}")).unwrap_or_else(|e| panic!("bad pattern {p}: {e}"))
        };
        let set = RegexSet::new(PATTERNS.iter().map(|(_, p)| format!("(?-u){p}")))
            .unwrap_or_else(|e| panic!("bad pattern set: {e}"));
        Detector {
            set,
            patterns: PATTERNS.iter().map(|(k, p)| (*k, compile(p))).collect(),
        }
    })
}

/// Scans one segment, appending to the file's findings.
pub(crate) fn scan_segment(seg: &Segment<'_>, scan: &mut FileScan<'_>) {
    let text: &[u8] = &seg.text;
    if text.len() < crate::formats::MIN_STRING {
        return;
    }
    let d = detector();
    let mut hits: Vec<Hit<'_>> = Vec::new();
    // Short strings (string-table entries) go through one pass of the combined automaton. On
    // large blobs that automaton's lazy DFA keeps running out of cache (the counted
    // repetitions make many states), so each pattern scans alone there, led by its own
    // literal prefilter (`AIza`, `eyJ`, `://` …), which is memchr-fast.
    let candidates: Vec<usize> = if text.len() <= SET_MAX_LEN {
        d.set.matches(text).iter().collect()
    } else {
        (0..d.patterns.len()).collect()
    };
    for idx in candidates {
        let Some((kind, re)) = d.patterns.get(idx) else {
            continue;
        };
        for caps in re.captures_iter(text) {
            let Some(m) = caps.get(0) else { continue };
            match_kind(*kind, text, &caps, m.start(), m.end(), scan, &mut hits);
        }
    }
    entropy_candidates(seg, &mut hits, scan);
    for h in hits {
        let offset = seg.offset_of(h.start);
        let length = seg.offset_of(h.end).saturating_sub(offset);
        if !scan.seen.insert((h.rule, offset)) {
            continue;
        }
        let severity = h
            .severity
            .or_else(|| crate::rules::rule(h.rule).map(|r| r.severity))
            .unwrap_or(Severity::Medium);
        scan.findings.push(Finding {
            rule: h.rule,
            severity,
            confidence: h.confidence,
            path: scan.path.to_owned(),
            offset,
            length,
            preview: h.preview.unwrap_or_else(|| redact(h.secret)),
            fingerprint: Some(fingerprint(h.secret)),
            message: h.message,
            provider: h.provider,
            upstream: h.upstream,
        });
    }
}

#[allow(clippy::too_many_lines)]
fn match_kind<'t>(
    kind: Kind,
    text: &'t [u8],
    caps: &regex::bytes::Captures<'t>,
    start: usize,
    end: usize,
    scan: &mut FileScan<'_>,
    hits: &mut Vec<Hit<'t>>,
) {
    let m = text.get(start..end).unwrap_or_default();
    match kind {
        Kind::Google => {
            if !bounded(text, start, end, is_token_char) {
                return;
            }
            let (_, around) = window(text, start, end, 256);
            let firebase_file =
                scan.path.contains("google-services") || scan.path.contains("GoogleService-Info");
            if firebase_file || contains_ci(around, b"firebase") {
                hits.push(
                    Hit::new("firebase-web-api-key", 0.9, start, m)
                        .message("Firebase web API key (a Firebase configuration sits next to it)"),
                );
            } else {
                hits.push(Hit::new("google-api-key", 0.95, start, m).provider(Provider::Google));
            }
        }
        Kind::FirebaseUrl => {
            let url = String::from_utf8_lossy(m).to_ascii_lowercase();
            let mut h = Hit::new("firebase-database-url", 0.9, start, m)
                .provider(Provider::FirebaseDatabase)
                .message(format!("Firebase Realtime Database {url}"));
            // The URL names the database; it is not itself a secret.
            h.preview = Some(url.clone());
            h.upstream = Some(url);
            hits.push(h);
        }
        Kind::AwsId => {
            if !bounded(text, start, end, |c| c.is_ascii_alphanumeric()) {
                return;
            }
            let temporary = m.starts_with(b"ASIA");
            hits.push(
                Hit::new(
                    "aws-access-key-id",
                    if temporary { 0.8 } else { 0.9 },
                    start,
                    m,
                )
                .provider(Provider::Aws)
                .message(if temporary {
                    "AWS temporary access key id (ASIA…)"
                } else {
                    "AWS access key id (AKIA…)"
                }),
            );
            // The secret key is the 40-character base64 token nearest to its id; other random
            // strings in the same file are not paired with it.
            let (lo, around) = window(text, start, end, 300);
            let id_at = start - lo;
            let nearest = tokens(around, is_b64_char)
                .filter(|&(s, e)| {
                    let tok = around.get(s..e).unwrap_or_default();
                    tok.len() == 40
                        && mixed_case_with_digits(tok)
                        && tok.iter().all(|&c| c != b'-' && c != b'_' && c != b'=')
                })
                .min_by_key(|&(s, _)| s.abs_diff(id_at));
            if let Some((s, e)) = nearest {
                hits.push(
                    Hit::new(
                        "aws-secret-access-key",
                        0.8,
                        lo + s,
                        text.get(lo + s..lo + e).unwrap_or_default(),
                    )
                    .provider(Provider::Aws)
                    .message("AWS secret access key next to its key id"),
                );
            }
        }
        Kind::AwsSecret => {
            if let Some(g) = caps.get(1)
                && bounded(text, g.start(), g.end(), is_b64_char)
            {
                hits.push(
                    Hit::new("aws-secret-access-key", 0.85, g.start(), g.as_bytes())
                        .provider(Provider::Aws),
                );
            }
        }
        Kind::Stripe => {
            if !bounded(text, start, end, |c| c.is_ascii_alphanumeric()) {
                return;
            }
            let (rule, provider) = if m.starts_with(b"pk_") {
                ("stripe-publishable-key", None)
            } else if m.get(3..8) == Some(b"test_") {
                ("stripe-test-key", None)
            } else if m.starts_with(b"rk_") {
                ("stripe-restricted-key", Some(Provider::Stripe))
            } else {
                ("stripe-secret-key", Some(Provider::Stripe))
            };
            let mut h = Hit::new(rule, 0.95, start, m);
            h.provider = provider;
            hits.push(h);
        }
        Kind::TwilioSid => {
            if !bounded(text, start, end, |c| c.is_ascii_alphanumeric()) {
                return;
            }
            if m.starts_with(b"SK") {
                hits.push(Hit::new("twilio-api-key", 0.7, start, m).provider(Provider::Twilio));
                return;
            }
            scan.twilio_sid = true;
            hits.push(Hit::new("twilio-account-sid", 0.8, start, m));
            let (lo, around) = window(text, start, end, 512);
            for (s, e) in tokens(around, |c| c.is_ascii_alphanumeric()) {
                let tok = around.get(s..e).unwrap_or_default();
                if tok.len() == 32 && tok.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
                    hits.push(
                        Hit::new(
                            "twilio-auth-token",
                            0.8,
                            lo + s,
                            text.get(lo + s..lo + e).unwrap_or_default(),
                        )
                        .provider(Provider::Twilio)
                        .message("Twilio auth token next to the account SID"),
                    );
                }
            }
        }
        Kind::TwilioToken => {
            if let Some(g) = caps.get(1)
                && bounded(text, g.start(), g.end(), |c| c.is_ascii_alphanumeric())
            {
                hits.push(
                    Hit::new("twilio-auth-token", 0.85, g.start(), g.as_bytes())
                        .provider(Provider::Twilio),
                );
            }
        }
        Kind::SlackToken => {
            if bounded(text, start, end, is_token_char) {
                hits.push(Hit::new("slack-token", 0.9, start, m).provider(Provider::Slack));
            }
        }
        Kind::SlackWebhook => {
            const BASE: &[u8] = b"https://hooks.slack.com/";
            let secret = m.get(BASE.len()..).unwrap_or_default();
            let mut h = Hit::new("slack-webhook", 0.95, start, m).provider(Provider::SlackWebhook);
            h.preview = Some(format!("https://hooks.slack.com/{}", redact(secret)));
            hits.push(h);
        }
        Kind::GitHub => {
            if !bounded(text, start, end, is_token_char) {
                return;
            }
            let confidence = if m.starts_with(b"github_pat_") {
                0.9
            } else if github_checksum_ok(m) {
                0.95
            } else {
                0.6
            };
            hits.push(Hit::new("github-token", confidence, start, m).provider(Provider::GitHub));
        }
        Kind::Pem => pem(text, caps, start, hits),
        Kind::Jwt => {
            if bounded(text, start, end, |c| is_token_char(c) || c == b'.') {
                jwt(m, start, hits);
            }
        }
        Kind::BasicUrl => basic_url(text, caps, start, end, hits),
    }
}

/// DER private keys in raw bytes.
pub(crate) fn scan_der(data: &[u8], scan: &mut FileScan<'_>) {
    for key in crate::der::find_keys(data) {
        let bytes = data.get(key.start..key.start + key.len).unwrap_or_default();
        scan.findings.push(Finding {
            rule: "private-key-der",
            severity: Severity::Critical,
            confidence: 0.9,
            path: scan.path.to_owned(),
            offset: key.start as u64,
            length: key.len as u64,
            preview: format!("DER {} private key ({} bytes)", key.kind, key.len),
            fingerprint: Some(fingerprint(bytes)),
            message: format!("DER-encoded {} private key", key.kind),
            provider: None,
            upstream: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_not_random() {
        let seg = Segment::borrowed(
            0,
            b"x = ConstraintLayout_Layout_layout_constraintBottom_toBottomOf2;",
        );
        let mut scan = FileScan::new("a");
        scan_segment(&seg, &mut scan);
        assert!(scan.findings.is_empty());
    }
}
