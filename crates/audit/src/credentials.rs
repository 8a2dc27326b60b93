//! Confirmations of known credential formats a pattern matched: GitHub checksums, PEM key
//! structure, JWT header and claims, URLs with a real password.

use base64::Engine as _;

use crate::finding::{Provider, Severity, redact};
use crate::hit::Hit;

/// Classic GitHub tokens end in six base62 digits of the CRC-32 of the 30 random characters.
pub(crate) fn github_checksum_ok(token: &[u8]) -> bool {
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

pub(crate) fn pem<'t>(
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

pub(crate) fn jwt<'t>(m: &'t [u8], start: usize, hits: &mut Vec<Hit<'t>>) {
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

pub(crate) fn basic_url<'t>(
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
