//! One detection and the state of one file's scan it lands in.

use crate::finding::{Finding, Provider, Severity, fingerprint, redact};

/// The state of one file's scan: its findings and the clues that only make sense per file.
pub(crate) struct FileScan<'p> {
    pub path: &'p str,
    pub findings: Vec<Finding>,
    /// (rule, offset) already reported: XML plists are scanned as text and as a tree.
    pub seen: std::collections::HashSet<(&'static str, u64)>,
    pub twilio_sid: bool,
    /// Standalone 32-hex-digit strings: digests unless the file also holds a Twilio SID.
    pub hex32: Vec<(u64, Vec<u8>)>,
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
pub(crate) struct Hit<'t> {
    pub rule: &'static str,
    pub severity: Option<Severity>,
    pub confidence: f32,
    pub start: usize,
    pub end: usize,
    pub secret: &'t [u8],
    pub preview: Option<String>,
    pub message: String,
    pub provider: Option<Provider>,
    pub upstream: Option<String>,
}

impl<'t> Hit<'t> {
    pub fn new(rule: &'static str, confidence: f32, start: usize, secret: &'t [u8]) -> Self {
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

    pub fn provider(mut self, p: Provider) -> Self {
        self.provider = Some(p);
        self
    }

    pub fn message(mut self, m: impl Into<String>) -> Self {
        self.message = m.into();
        self
    }
}
