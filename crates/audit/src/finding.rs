//! What a scan reports.

use serde::Serialize;

/// How bad a finding is, from the point of view of the app's backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Context only: nothing to fix by itself.
    Info,
    /// Worth knowing; rarely exploitable alone.
    Low,
    /// Weakens the app's defences.
    Medium,
    /// A credential or setting an attacker can use directly.
    High,
    /// A credential that opens paid or privileged third-party access.
    Critical,
}

impl Severity {
    /// All severities, most severe first (the order reports group by).
    pub const DESCENDING: [Severity; 5] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Info,
    ];

    /// Lower-case name, as in the JSON output and on the command line.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Parses a lower-case name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "info" => Severity::Info,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing the package gives away.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Rule id (see [`crate::rules::RULES`]).
    pub rule: &'static str,
    /// Severity of this occurrence (a rule may rate one occurrence lower, e.g. an expired JWT).
    pub severity: Severity,
    /// How sure the scanner is that this is real, 0.0 to 1.0.
    pub confidence: f32,
    /// File inside the package; nested archives are joined with `!/`
    /// (`assets/sdk.jar!/config.properties`). Empty for package-wide findings.
    pub path: String,
    /// Byte offset of the secret inside that file (after decompression).
    pub offset: u64,
    /// Length in bytes of what was matched (0 for settings and package-wide findings).
    pub length: u64,
    /// Redacted preview: never the whole secret.
    pub preview: String,
    /// `sha256:<hex>` of the secret, so reports can be compared and deduplicated without
    /// carrying the value. `None` for settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// What was found, in one sentence.
    pub message: String,
    /// The third-party service the credential belongs to, when the scanner can tell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<Provider>,
    /// Non-secret upstream for the route snippet (e.g. the Firebase database origin).
    #[serde(skip)]
    pub upstream: Option<String>,
}

/// Third-party services whose credentials the scanner recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    /// Google APIs keyed with `?key=` (Maps, Places, Geocoding, Gemini …).
    Google,
    /// Firebase Realtime Database (REST `?auth=`).
    FirebaseDatabase,
    /// AWS (SigV4: no static header can stand in for it).
    Aws,
    /// Stripe (`Authorization: Bearer`).
    Stripe,
    /// Twilio (`Authorization: Basic` of SID:token).
    Twilio,
    /// Slack Web API (`Authorization: Bearer`).
    Slack,
    /// Slack incoming webhook (the URL is the secret).
    SlackWebhook,
    /// GitHub REST API (`Authorization: Bearer`).
    GitHub,
    /// An HTTP(S) API reached with basic-auth credentials in the URL.
    BasicAuth,
    /// An API that accepts a bearer token (JWT).
    Bearer,
}

/// Shows the first four and last two characters of a secret, never the middle.
#[must_use]
pub fn redact(secret: &[u8]) -> String {
    let s = String::from_utf8_lossy(secret);
    let chars: Vec<char> = s.chars().collect();
    if chars.len() < 10 {
        return "…".to_owned();
    }
    let head: String = chars.iter().take(4).collect();
    let tail: String = chars.iter().skip(chars.len() - 2).collect();
    format!("{head}…{tail}")
}

/// `sha256:<hex>` of a secret.
#[must_use]
pub fn fingerprint(secret: &[u8]) -> String {
    use std::fmt::Write as _;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in digest.as_ref() {
        let _ = write!(out, "{b:02x}");
    }
    out
}
