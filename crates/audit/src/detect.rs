//! Secret detectors: patterns for known credential formats, each confirmed by a check of its
//! own (boundaries, checksums, decoded structure), and an entropy test for unknown ones.

use std::sync::OnceLock;

use base64::Engine as _;
use regex::bytes::{Regex, RegexSet};

use crate::finding::{Finding, Severity, fingerprint, redact};
use crate::remediation::Provider;
use crate::segment::Segment;

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

/// Names that make a random-looking neighbour more likely to be a secret.
const KEYWORDS: &[&[u8]] = &[
    b"secret",
    b"token",
    b"passw",
    b"apikey",
    b"api_key",
    b"api-key",
    b"auth",
    b"credential",
    b"private",
    b"access_key",
    b"accesskey",
    b"client_key",
];

const MIN_ENTROPY_LEN: usize = 20;
/// Segments up to this length are matched with the combined pattern set.
const SET_MAX_LEN: usize = 4096;
const MAX_ENTROPY_LEN: usize = 512;
const MAX_B64_KEY_LEN: usize = 64 * 1024;

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

/// The state of one file's scan: its findings and the clues that only make sense per file.
pub(crate) struct FileScan<'p> {
    pub path: &'p str,
    pub findings: Vec<Finding>,
    /// (rule, offset) already reported: XML plists are scanned as text and as a tree.
    seen: std::collections::HashSet<(&'static str, u64)>,
    twilio_sid: bool,
    /// Standalone 32-hex-digit strings: digests unless the file also holds a Twilio SID.
    hex32: Vec<(u64, Vec<u8>)>,
}

impl<'p> FileScan<'p> {
    pub fn new(path: &'p str) -> Self {
        Self {
            path,
            findings: Vec::new(),
            seen: std::collections::HashSet::new(),
            twilio_sid: false,
            hex32: Vec::new(),
        }
    }

    /// Conclusions that need the whole file, then the findings.
    pub fn finish(mut self) -> Vec<Finding> {
        if self.twilio_sid {
            for (offset, token) in std::mem::take(&mut self.hex32) {
                if !self.seen.insert(("twilio-auth-token", offset)) {
                    continue;
                }
                // In a sorted string table the token is not next to the SID, so this is a
                // guess from the file alone.
                self.findings.push(Finding {
                    rule: "twilio-auth-token",
                    severity: Severity::Critical,
                    confidence: 0.45,
                    path: self.path.to_owned(),
                    offset,
                    length: token.len() as u64,
                    preview: redact(&token),
                    fingerprint: Some(fingerprint(&token)),
                    message: "32-hex-digit string in a file that holds a Twilio account SID: possibly its auth token".into(),
                    provider: Some(Provider::Twilio),
                    upstream: None,
                });
            }
        }
        self.findings
    }
}

/// One detection inside a segment, before it is placed in the file.
struct Hit<'t> {
    rule: &'static str,
    severity: Option<Severity>,
    confidence: f32,
    start: usize,
    end: usize,
    secret: &'t [u8],
    preview: Option<String>,
    message: String,
    provider: Option<Provider>,
    upstream: Option<String>,
}

impl<'t> Hit<'t> {
    fn new(rule: &'static str, confidence: f32, start: usize, secret: &'t [u8]) -> Self {
        Self {
            rule,
            severity: None,
            confidence,
            start,
            end: start + secret.len(),
            secret,
            preview: None,
            message: crate::rules::rule(rule).map_or(String::new(), |r| r.name.to_owned()),
            provider: None,
            upstream: None,
        }
    }
    fn provider(mut self, p: Provider) -> Self {
        self.provider = Some(p);
        self
    }
    fn message(mut self, m: impl Into<String>) -> Self {
        self.message = m.into();
        self
    }
}

fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

fn is_b64_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=' | b'_' | b'-')
}

/// True when the bytes just outside `[start, end)` do not continue the token.
fn bounded(text: &[u8], start: usize, end: usize, cont: fn(u8) -> bool) -> bool {
    let before = start
        .checked_sub(1)
        .and_then(|i| text.get(i))
        .is_none_or(|&c| !cont(c));
    let after = text.get(end).is_none_or(|&c| !cont(c));
    before && after
}

fn window(text: &[u8], start: usize, end: usize, radius: usize) -> (usize, &[u8]) {
    let lo = start.saturating_sub(radius);
    let hi = end.saturating_add(radius).min(text.len());
    (lo, text.get(lo..hi).unwrap_or_default())
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
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

/// Classic GitHub tokens end in six base62 digits of the CRC-32 of the 30 random characters.
fn github_checksum_ok(token: &[u8]) -> bool {
    let (Some(random), Some(check)) = (token.get(4..34), token.get(34..40)) else {
        return false;
    };
    let crc = crc32fast::hash(random);
    let encode = |alphabet: &[u8]| {
        let mut n = crc;
        let mut out = [b'0'; 6];
        for slot in out.iter_mut().rev() {
            *slot = alphabet.get((n % 62) as usize).copied().unwrap_or(b'0');
            n /= 62;
        }
        out
    };
    // Published verifiers disagree on the digit order of base62; either is fine for a
    // confidence signal (a random string passes with probability 2 in 62^6).
    check == encode(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
        || check == encode(b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
}

fn pem<'t>(
    text: &'t [u8],
    caps: &regex::bytes::Captures<'t>,
    start: usize,
    hits: &mut Vec<Hit<'t>>,
) {
    let label = caps.get(1).map_or(&b""[..], |g| g.as_bytes());
    let after = caps.get(0).map_or(start, |g| g.end());
    let rest = text
        .get(after..text.len().min(after + 16 * 1024))
        .unwrap_or_default();
    let Some(end_rel) = memchr::memmem::find(rest, b"-----END ") else {
        return;
    };
    let body = rest.get(..end_rel).unwrap_or_default();
    let tail = rest.get(end_rel + 9..).unwrap_or_default();
    let end = after + end_rel + 9 + memchr::memmem::find(tail, b"-----").map_or(0, |i| i + 5);
    let encrypted =
        label.starts_with(b"ENCRYPTED") || memchr::memmem::find(body, b"ENCRYPTED").is_some();
    // Keys stored in source or JSON carry escaped newlines and quotes; keep only base64.
    let cleaned: Vec<u8> = String::from_utf8_lossy(body)
        .replace("\\n", "")
        .replace("\\r", "")
        .bytes()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='))
        .collect();
    // A lone header is a parser constant in a TLS or crypto library, not a key.
    if cleaned.len() < 64 {
        return;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&cleaned)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(&cleaned))
        .ok();
    let structured = decoded.as_deref().is_some_and(|d| {
        if label.starts_with(b"OPENSSH") {
            d.starts_with(b"openssh-key-v1\0")
        } else {
            encrypted || d.first() == Some(&0x30)
        }
    });
    let label_text = String::from_utf8_lossy(label).into_owned();
    let secret = text.get(start..end).unwrap_or_default();
    let mut h = Hit::new(
        "private-key-pem",
        if structured { 0.95 } else { 0.6 },
        start,
        secret,
    );
    h.end = end;
    h.preview = Some(format!(
        "-----BEGIN {label_text}----- ({} bytes)",
        end - start
    ));
    h.message = format!("PEM {}", label_text.to_ascii_lowercase());
    if encrypted {
        h.severity = Some(Severity::High);
        h.message
            .push_str(" (encrypted; its passphrase is likely in the app too)");
    }
    hits.push(h);
}

fn b64url(part: &[u8]) -> Option<serde_json::Value> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.is_object().then_some(v)
}

fn jwt<'t>(m: &'t [u8], start: usize, hits: &mut Vec<Hit<'t>>) {
    let mut parts = m.split(|&c| c == b'.');
    let (Some(h), Some(p)) = (parts.next(), parts.next()) else {
        return;
    };
    let (Some(header), Some(payload)) = (b64url(h), b64url(p)) else {
        return;
    };
    let Some(alg) = header.get("alg").and_then(|a| a.as_str()) else {
        return;
    };
    let mut hit = Hit::new("jwt", 0.9, start, m).provider(Provider::Bearer);
    let iss = payload.get("iss").and_then(|v| v.as_str()).unwrap_or("");
    let role = payload.get("role").and_then(|v| v.as_str()).unwrap_or("");
    let mut message = format!("JWT ({alg})");
    if !iss.is_empty() {
        message.push_str(&format!(", issuer {iss}"));
    }
    if role == "anon" {
        hit.severity = Some(Severity::Low);
        message.push_str(", role anon: a public client key by design");
    } else if role == "service_role" {
        hit.severity = Some(Severity::Critical);
        message.push_str(", role service_role: bypasses row-level security");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if let Some(exp) = payload.get("exp").and_then(serde_json::Value::as_u64)
        && exp < now
    {
        hit.severity = Some(Severity::Low);
        message.push_str(", expired");
    }
    if alg.eq_ignore_ascii_case("none") {
        hit.confidence = 0.6;
    }
    hit.message = message;
    hits.push(hit);
}

const PLACEHOLDERS: &[&str] = &[
    "password", "pass", "passwd", "pwd", "secret", "xxx", "xxxx", "user", "username", "token",
    "changeme", "example", "test", "pw",
];

fn basic_url<'t>(
    text: &'t [u8],
    caps: &regex::bytes::Captures<'t>,
    start: usize,
    end: usize,
    hits: &mut Vec<Hit<'t>>,
) {
    let (Some(scheme), Some(user), Some(pass), Some(host)) =
        (caps.get(1), caps.get(2), caps.get(3), caps.get(4))
    else {
        return;
    };
    let password = pass.as_bytes();
    let pw = String::from_utf8_lossy(password).to_ascii_lowercase();
    let placeholder = password.len() < 3
        || PLACEHOLDERS.contains(&pw.as_str())
        || password.first().is_some_and(|c| b"${<%*[(".contains(c))
        || password.iter().all(|&c| Some(&c) == password.first())
        || password == user.as_bytes();
    let host_text = String::from_utf8_lossy(host.as_bytes()).to_ascii_lowercase();
    if placeholder || !(host_text.contains('.') || host_text.starts_with("localhost")) {
        return;
    }
    let scheme_text = String::from_utf8_lossy(scheme.as_bytes()).to_ascii_lowercase();
    let user_text = String::from_utf8_lossy(user.as_bytes());
    let web = scheme_text == "http" || scheme_text == "https";
    let mut h = Hit::new("basic-auth-url", 0.85, start, password);
    h.end = end;
    h.start = start;
    h.preview = Some(format!(
        "{scheme_text}://{user_text}:{}@{host_text}",
        redact(password)
    ));
    h.message = format!("{scheme_text} URL with a user name and password for {host_text}");
    if web {
        h.provider = Some(Provider::BasicAuth);
        h.upstream = Some(format!("{scheme_text}://{host_text}"));
    } else {
        h.severity = Some(Severity::Critical);
        h.message.push_str(
            ": a database or broker the app should never reach directly; put an API in front of it",
        );
    }
    let _ = text;
    hits.push(h);
}

/// Maximal runs of bytes satisfying `f`, as (start, end), lazily (a blob can hold millions).
fn tokens(text: &[u8], f: fn(u8) -> bool) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < text.len() && !text.get(i).is_some_and(|&c| f(c)) {
            i += 1;
        }
        if i >= text.len() {
            return None;
        }
        let start = i;
        while text.get(i).is_some_and(|&c| f(c)) {
            i += 1;
        }
        Some((start, i))
    })
}

fn mixed_case_with_digits(t: &[u8]) -> bool {
    t.iter().any(u8::is_ascii_uppercase)
        && t.iter().any(u8::is_ascii_lowercase)
        && t.iter().any(u8::is_ascii_digit)
}

/// Shannon entropy in bits per byte.
pub(crate) fn shannon(t: &[u8]) -> f64 {
    if t.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &c in t {
        if let Some(slot) = counts.get_mut(usize::from(c)) {
            *slot += 1;
        }
    }
    let n = t.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

fn is_uuid(t: &[u8]) -> bool {
    t.len() == 36
        && t.iter().enumerate().all(|(i, &c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// Mean length of runs of lower-case letters: words and identifiers have long runs, random
/// base62/base64 has runs of about 1.7.
fn mean_run(t: &[u8], class: fn(&u8) -> bool) -> f64 {
    let (mut runs, mut letters, mut in_run) = (0u32, 0u32, false);
    for c in t {
        if class(c) {
            letters += 1;
            if !in_run {
                runs += 1;
                in_run = true;
            }
        } else {
            in_run = false;
        }
    }
    if runs == 0 {
        0.0
    } else {
        f64::from(letters) / f64::from(runs)
    }
}

/// The 211 most frequent letter pairs of English text. Identifiers (`d2i_PrivateKey_bio`,
/// `pbeWithMD5AndCast5CBC`) are made of words, so most of their spelled letter pairs are in this
/// set (over 80%); in random base62 about 30% are, and 80% or more in about 2% of 20-character
/// tokens and under 0.5% of 32-character ones.
const ENGLISH_BIGRAMS: &str = "th he in er an re on at en nd ti es or te of ed is it al ar st to nt ng se ha as ou io le ve co me de hi ri ro ic ne ea ra ce li ch ll be ma si om ur ca el ta la ns di fo ho pe ec pr no ct us ac ot il tr ly nc et ut ss so rs un lo wa ge ie wh ee wi em ad ol rt po we na ul ni ts mo ow pa im mi ai sh ir su id os iv ia am fi ci vi pl ig tu ev ld ry mp fe bl ab gh ty op wo sa ay ex ke fr oo av ag if ap gr od bo sp rd do uc bu ei ov by rm ep tt oc fa ef cu rn sc gi da yo cr cl du ga qu ue ff ba ey ls va um pp ua up lu go ht ru ug ds lt pi rc rr eg au ck ew mu br bi pt ak pu ui rg ib tl ny ki rk ys ob mm fu ph og ms ye ud mb ip ub";

fn english_bigram_share(t: &[u8]) -> f64 {
    static TABLE: OnceLock<[[bool; 26]; 26]> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = [[false; 26]; 26];
        for pair in ENGLISH_BIGRAMS.split(' ') {
            if let [a, b] = pair.as_bytes()
                && let Some(row) = table.get_mut(usize::from(a - b'a'))
                && let Some(cell) = row.get_mut(usize::from(b - b'a'))
            {
                *cell = true;
            }
        }
        table
    });
    let (mut pairs, mut common) = (0u32, 0u32);
    for w in t.windows(2) {
        // Pairs ending in a capital are a camelCase or acronym boundary, not spelling.
        if let [a, b] = w
            && a.is_ascii_alphabetic()
            && b.is_ascii_lowercase()
        {
            pairs += 1;
            let (a, b) = (a.to_ascii_lowercase() - b'a', b.to_ascii_lowercase() - b'a');
            if table
                .get(usize::from(a))
                .and_then(|row| row.get(usize::from(b)))
                .copied()
                .unwrap_or(false)
            {
                common += 1;
            }
        }
    }
    if pairs < 4 {
        0.0
    } else {
        f64::from(common) / f64::from(pairs)
    }
}

/// Base64 that decodes to an image, archive, certificate or public key: public data.
fn decodes_to_public_data(t: &[u8]) -> Option<Vec<u8>> {
    let trimmed: &[u8] = t;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(trimmed))
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(trimmed))
        .ok()?;
    Some(decoded)
}

fn is_media_or_public(decoded: &[u8]) -> bool {
    const MAGICS: &[&[u8]] = &[
        b"\x89PNG",
        b"\xff\xd8\xff",
        b"GIF87a",
        b"GIF89a",
        b"RIFF",
        b"%PDF",
        b"PK\x03\x04",
        b"\x1f\x8b",
        b"BM",
        b"<svg",
        b"<?xml",
        b"\0\0\0\x18ftyp",
        b"\0\0\0\x1cftyp",
        b"\0\0\0 ftyp",
        b"wOFF",
        b"OTTO",
        b"\0\x01\0\0",
    ];
    MAGICS.iter().any(|m| decoded.starts_with(m)) || crate::der::is_public_der(decoded)
}

/// `org/slf4j/MavenSlf4jFriend`, `Lcom/example/Foo`: a JVM class name. The first segment is a
/// short lower-case package name, which random base64 almost never starts with.
fn is_class_path(tok: &[u8]) -> bool {
    let tok = tok.strip_prefix(b"L").unwrap_or(tok);
    let mut parts = tok.split(|&c| c == b'/');
    let first = parts.next().unwrap_or_default();
    (2..=12).contains(&first.len())
        && first.iter().all(u8::is_ascii_lowercase)
        && parts.all(|p| {
            !p.is_empty()
                && p.iter()
                    .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'$')
        })
}

/// True if the token at `start` continues a `scheme://host` with no space or quote between.
fn in_url(text: &[u8], start: usize) -> bool {
    let lo = start.saturating_sub(256);
    let before = text.get(lo..start).unwrap_or_default();
    let run_start = before
        .iter()
        .rposition(|&c| c.is_ascii_whitespace() || matches!(c, b'"' | b'\'' | b'<' | b'>' | 0))
        .map_or(0, |i| i + 1);
    memchr::memmem::find(before.get(run_start..).unwrap_or_default(), b"://").is_some()
}

fn keyword_before(text: &[u8], start: usize) -> bool {
    let lo = start.saturating_sub(48);
    let before = text.get(lo..start).unwrap_or_default();
    KEYWORDS.iter().any(|k| contains_ci(before, k))
}

fn entropy_candidates<'t>(seg: &'t Segment<'_>, hits: &mut Vec<Hit<'t>>, scan: &mut FileScan<'_>) {
    let text: &'t [u8] = &seg.text;
    let covered: Vec<(usize, usize)> = hits.iter().map(|h| (h.start, h.end)).collect();
    // `=` is base64 padding only at the end; inside a run it is an assignment (`key=value`,
    // minified `x=function`), which must split the run.
    for (s, e) in tokens(text, |c| is_b64_char(c) && c != b'=') {
        let pad = text
            .get(e..e + 2)
            .map_or(0, |p| p.iter().take_while(|&&c| c == b'=').count());
        let e = e + pad;
        let len = e - s;
        if len < MIN_ENTROPY_LEN || covered.iter().any(|&(cs, ce)| s < ce && cs < e) {
            continue;
        }
        let tok = text.get(s..e).unwrap_or_default();
        if len > MAX_ENTROPY_LEN {
            // Long base64 is data (images, certificates); it is a secret only if it is a key.
            if len <= MAX_B64_KEY_LEN
                && let Some(decoded) = decodes_to_public_data(tok)
                && let Some(kind) = crate::der::whole_key(&decoded)
            {
                let mut h = Hit::new("private-key-der", 0.9, s, tok);
                h.preview = Some(format!(
                    "base64 {kind} private key ({} bytes)",
                    decoded.len()
                ));
                h.message = format!("base64-encoded {kind} private key");
                hits.push(h);
            }
            continue;
        }
        // A path inside a URL (`…/d/msg/group/zHZTFg7YF3o/rQNnwdHeEwAJ`) is an address.
        // Credentials in URLs are the business of the URL rules.
        if tok.contains(&b'/') && (in_url(text, s) || is_class_path(tok)) {
            continue;
        }
        let body = tok
            .strip_suffix(b"==")
            .or_else(|| tok.strip_suffix(b"="))
            .unwrap_or(tok);
        let keyword = keyword_before(text, s);
        let hex = body.iter().all(u8::is_ascii_hexdigit);
        if hex {
            if body.len() == 32
                && body.iter().all(|c| !c.is_ascii_uppercase())
                && scan.hex32.len() < 1000
            {
                scan.hex32.push((seg.offset_of(s), tok.to_vec()));
            }
            // Bare hex of digest length is a hash far more often than a key; only a name
            // like `secret` next to it says otherwise.
            if !keyword || shannon(body) < 3.0 {
                continue;
            }
            hits.push(
                Hit::new("high-entropy-string", 0.55, s, tok)
                    .message("hex string named like a secret"),
            );
            continue;
        }
        if is_uuid(tok) || !mixed_case_with_digits(body) {
            continue;
        }
        let ascending = body
            .windows(2)
            .filter(|w| w.get(1).copied() == w.first().map(|c| c.wrapping_add(1)))
            .count();
        if ascending * 3 > body.len() {
            continue; // alphabets and counting sequences
        }
        if mean_run(body, u8::is_ascii_lowercase) >= 3.0
            || mean_run(body, u8::is_ascii_uppercase) >= 3.0
            || english_bigram_share(body) >= 0.8
        {
            continue; // words, identifiers, CONSTANT_NAMES, paths
        }
        let n = body.len() as f64;
        let threshold = 0.8 * n.min(64.0).log2();
        let entropy = shannon(body);
        if entropy < threshold {
            continue;
        }
        if let Some(decoded) = decodes_to_public_data(tok)
            && decoded.len() >= 8
        {
            if is_media_or_public(&decoded) {
                continue;
            }
            if let Some(kind) = crate::der::whole_key(&decoded) {
                let mut h = Hit::new("private-key-der", 0.9, s, tok);
                h.preview = Some(format!(
                    "base64 {kind} private key ({} bytes)",
                    decoded.len()
                ));
                hits.push(h);
                continue;
            }
        }
        let mut h = Hit::new(
            "high-entropy-string",
            if keyword { 0.6 } else { 0.35 },
            s,
            tok,
        )
        .message(format!(
            "random-looking string ({entropy:.1} bits/char){}",
            if keyword { " named like a secret" } else { "" }
        ));
        h.severity = Some(if keyword {
            Severity::Medium
        } else {
            Severity::Low
        });
        hits.push(h);
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
    fn entropy_of_uniform_and_constant_text() {
        assert!((shannon(b"abcdefgh") - 3.0).abs() < 1e-9);
        assert_eq!(shannon(b"aaaa"), 0.0);
        assert_eq!(shannon(b""), 0.0);
    }

    #[test]
    fn uuid_shape() {
        assert!(is_uuid(b"3f2504e0-4f89-41d3-9a0c-0305e82c3301"));
        assert!(!is_uuid(b"3f2504e0-4f89-41d3-9a0c-0305e82c330"));
        assert!(!is_uuid(b"3f2504e0x4f89-41d3-9a0c-0305e82c3301"));
    }

    #[test]
    fn tokens_and_boundaries() {
        let t: Vec<_> = tokens(b"  ab-c d ", is_token_char).collect();
        assert_eq!(t, [(2, 6), (7, 8)]);
        assert!(bounded(b"x AIza y", 2, 6, is_token_char));
        assert!(!bounded(b"xAIza y", 1, 5, is_token_char));
    }

    #[test]
    fn github_checksum_is_checked() {
        let random = "abcdefghijklmnopqrstuvwxyz0123";
        let mut n = crc32fast::hash(random.as_bytes());
        let alphabet = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut check = [b'0'; 6];
        for slot in check.iter_mut().rev() {
            *slot = alphabet[(n % 62) as usize];
            n /= 62;
        }
        let good = format!("ghp_{random}{}", String::from_utf8_lossy(&check));
        assert!(github_checksum_ok(good.as_bytes()));
        let bad = format!("ghp_{random}000000");
        assert!(!github_checksum_ok(bad.as_bytes()));
    }

    #[test]
    fn words_versus_random() {
        assert!(english_bigram_share(b"pbeWithMD5AndCast5CBC") >= 0.8);
        assert!(english_bigram_share(b"d2i_PKCS8PrivateKey_fp") >= 0.8);
        assert!(english_bigram_share(b"q8ZxT3vLm2Rk9WpYc4Nb7HsJd") < 0.8);
    }

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
