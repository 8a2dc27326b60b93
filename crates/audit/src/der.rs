//! DER private keys, found by structure rather than by text.
//!
//! A private key embedded as bytes (a resource file, a byte array in native code, base64 of
//! DER) has no header to grep for. The scanner looks for the version field each format starts
//! with and then checks the whole ASN.1 structure: right element types, lengths that add up
//! exactly, a known key algorithm. Random data passes that check with negligible probability.

use crate::bytes::u8_at;

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const OID_X25519: &[u8] = &[0x2b, 0x65, 0x6e];
const OID_ED448: &[u8] = &[0x2b, 0x65, 0x71];
const MAX_CANDIDATES: usize = 200_000;

/// A private key found in a byte buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DerKey {
    pub start: usize,
    pub len: usize,
    pub kind: &'static str,
}

/// One TLV: tag, content start, content length, end.
fn tlv(b: &[u8], p: usize) -> Option<(u8, usize, usize, usize)> {
    let tag = u8_at(b, p)?;
    let first = u8_at(b, p + 1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 3 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | usize::from(u8_at(b, p + 2 + i)?);
        }
        // DER uses the shortest length form; anything else is not a key written by a real tool.
        if len < 0x80 || (n > 1 && len < (1 << (8 * (n - 1)))) {
            return None;
        }
        (len, 2 + n)
    };
    let start = p + header;
    let end = start.checked_add(len)?;
    if end > b.len() {
        return None;
    }
    Some((tag, start, len, end))
}

/// The TLVs that exactly fill `b[start..end]`.
fn children(b: &[u8], start: usize, end: usize) -> Option<Vec<(u8, usize, usize)>> {
    let mut out = Vec::new();
    let mut p = start;
    while p < end {
        let (tag, s, len, e) = tlv(b, p)?;
        if e > end || out.len() > 16 {
            return None;
        }
        out.push((tag, s, len));
        p = e;
    }
    (p == end).then_some(out)
}

fn content(b: &[u8], s: usize, len: usize) -> &[u8] {
    b.get(s..s + len).unwrap_or_default()
}

/// Checks a key structure starting at `start`; the kind when it is one.
fn key_at(b: &[u8], start: usize) -> Option<(usize, &'static str)> {
    let (tag, s, len, end) = tlv(b, start)?;
    if tag != TAG_SEQUENCE {
        return None;
    }
    let items = children(b, s, s + len)?;
    let (t0, s0, l0) = *items.first()?;
    if t0 != TAG_INTEGER || l0 != 1 {
        return None;
    }
    let version = u8_at(b, s0)?;
    let kind = match (version, items.get(1)?.0) {
        // PKCS#8: version 0, AlgorithmIdentifier, OCTET STRING with the key.
        (0, TAG_SEQUENCE) => {
            let (_, as_, al) = *items.get(1)?;
            let alg = children(b, as_, as_ + al)?;
            let (ot, os, ol) = *alg.first()?;
            if ot != TAG_OID {
                return None;
            }
            let (kt, _, kl) = *items.get(2)?;
            if kt != TAG_OCTET_STRING || kl < 32 {
                return None;
            }
            match content(b, os, ol) {
                OID_RSA => "PKCS#8 RSA",
                OID_EC => "PKCS#8 EC",
                OID_ED25519 => "PKCS#8 Ed25519",
                OID_X25519 => "PKCS#8 X25519",
                OID_ED448 => "PKCS#8 Ed448",
                _ => return None,
            }
        }
        // PKCS#1 RSAPrivateKey: version 0 and eight integers, the modulus at least 512 bits.
        (0, TAG_INTEGER) => {
            if items.len() != 9 || items.iter().any(|i| i.0 != TAG_INTEGER) || items.get(1)?.2 < 64
            {
                return None;
            }
            "PKCS#1 RSA"
        }
        // SEC1 ECPrivateKey: version 1, OCTET STRING of a curve-sized scalar, optional [0]/[1].
        (1, TAG_OCTET_STRING) => {
            let kl = items.get(1)?.2;
            if ![28, 32, 48, 66].contains(&kl)
                || items
                    .iter()
                    .skip(2)
                    .any(|i| i.0 != 0xa0 && i.0 != 0xa1 && i.0 != TAG_BIT_STRING)
            {
                return None;
            }
            "SEC1 EC"
        }
        _ => return None,
    };
    Some((end - start, kind))
}

/// Every private key structure in `b`.
pub(crate) fn find_keys(b: &[u8]) -> Vec<DerKey> {
    let mut out: Vec<DerKey> = Vec::new();
    let mut candidates = 0;
    for pattern in [
        &[0x02, 0x01, 0x00, TAG_SEQUENCE][..],
        &[0x02, 0x01, 0x00, TAG_INTEGER][..],
        &[0x02, 0x01, 0x01, TAG_OCTET_STRING][..],
    ] {
        for p in memchr::memmem::find_iter(b, pattern) {
            candidates += 1;
            if candidates > MAX_CANDIDATES {
                return out;
            }
            // The SEQUENCE header before the version is 2, 3 or 4 bytes long.
            for h in 2..=4 {
                let Some(start) = p.checked_sub(h) else {
                    continue;
                };
                if u8_at(b, start) != Some(TAG_SEQUENCE) {
                    continue;
                }
                if let Some((len, kind)) = key_at(b, start)
                    && !out
                        .iter()
                        .any(|k| start < k.start + k.len && k.start < start + len)
                {
                    out.push(DerKey { start, len, kind });
                    break;
                }
            }
        }
    }
    out.sort_by_key(|k| k.start);
    out
}

/// True if `b` as a whole is a public key or certificate (SubjectPublicKeyInfo or X.509):
/// public material that looks random but is no secret.
pub(crate) fn is_public_der(b: &[u8]) -> bool {
    let Some((TAG_SEQUENCE, s, len, end)) = tlv(b, 0) else {
        return false;
    };
    if end != b.len() {
        return false;
    }
    let Some(items) = children(b, s, s + len) else {
        return false;
    };
    match items.as_slice() {
        // SubjectPublicKeyInfo: AlgorithmIdentifier, BIT STRING.
        [(TAG_SEQUENCE, _, _), (TAG_BIT_STRING, _, _)] => true,
        // Certificate: tbsCertificate, signatureAlgorithm, signature.
        [
            (TAG_SEQUENCE, _, _),
            (TAG_SEQUENCE, _, _),
            (TAG_BIT_STRING, _, _),
        ] => true,
        _ => false,
    }
}

/// A private key that makes up all of `b` (base64-decoded text).
pub(crate) fn whole_key(b: &[u8]) -> Option<&'static str> {
    let (len, kind) = key_at(b, 0)?;
    (len == b.len()).then_some(kind)
}
