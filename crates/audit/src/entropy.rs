//! Random-looking strings that may be secrets of unknown formats, minus the decoys (hashes,
//! identifiers, words, URLs, images, certificates and public keys).

use std::sync::OnceLock;

use base64::Engine as _;

use crate::finding::Severity;
use crate::hit::{FileScan, Hit};
use crate::segment::Segment;
use crate::token::{contains_ci, is_b64_char, mixed_case_with_digits, tokens};

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
const MAX_ENTROPY_LEN: usize = 512;
const MAX_B64_KEY_LEN: usize = 64 * 1024;

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

pub(crate) fn entropy_candidates<'t>(
    seg: &'t Segment<'_>,
    hits: &mut Vec<Hit<'t>>,
    scan: &mut FileScan<'_>,
) {
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
    fn words_versus_random() {
        assert!(english_bigram_share(b"pbeWithMD5AndCast5CBC") >= 0.8);
        assert!(english_bigram_share(b"d2i_PKCS8PrivateKey_fp") >= 0.8);
        assert!(english_bigram_share(b"q8ZxT3vLm2Rk9WpYc4Nb7HsJd") < 0.8);
    }
}
