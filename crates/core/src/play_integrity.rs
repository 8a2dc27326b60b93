//! Google Play Integrity tokens, decrypted and verified locally with the keys from the Play
//! Console: a compact JWE (`A256KW` + `A256GCM`) around a compact JWS (`ES256`).
//!
//! The verdict is then checked against what the server expects: the request binding (the
//! challenge nonce as `requestHash` for standard requests, or `nonce` for classic ones), the
//! package name, the signing-certificate digest, the app and device verdicts, and freshness.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::key_wrap::{AES_256, KeyEncryptionKey, KeyWrap as _};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ParsedPublicKey};
use serde::Deserialize;
use serde_json::Value;

use crate::{Error, Result, b64};

/// Longest token accepted, bytes.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The two keys from the Play Console.
pub struct Keys {
    decryption: [u8; 32],
    verification: ParsedPublicKey,
}

impl Keys {
    /// From the base64 decryption key (AES-256) and the base64 DER verification key (EC P-256
    /// SubjectPublicKeyInfo), as the Play Console shows them.
    ///
    /// # Errors
    /// [`Error::Malformed`] if either key is not what it should be.
    pub fn from_console(decryption_b64: &str, verification_b64: &str) -> Result<Self> {
        let decryption: [u8; 32] = b64::std_decode(decryption_b64.trim())?
            .try_into()
            .map_err(|_| Error::Malformed("decryption key must be 32 bytes"))?;
        let der = b64::std_decode(verification_b64.trim())?;
        let verification = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, der)
            .map_err(|_| Error::Malformed("verification key is not a P-256 public key"))?;
        Ok(Self {
            decryption,
            verification,
        })
    }
}

#[derive(Deserialize)]
struct JweHeader {
    alg: String,
    enc: String,
}

#[derive(Deserialize)]
struct JwsHeader {
    alg: String,
}

/// Decrypts and verifies a token; returns its payload (the verdict).
///
/// # Errors
/// [`Error::Malformed`] for a token that cannot be parsed, [`Error::Unsupported`] for other
/// algorithms, [`Error::DecryptionFailed`] or [`Error::SignatureInvalid`] for a token not made
/// with these keys.
pub fn decode(token: &str, keys: &Keys) -> Result<Value> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(Error::Malformed("integrity token too long"));
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [h64, ek64, iv64, ct64, tag64] = parts[..] else {
        return Err(Error::Malformed("integrity token is not a compact JWE"));
    };
    let header: JweHeader = serde_json::from_slice(&b64::url_decode(h64)?)
        .map_err(|_| Error::Malformed("JWE header"))?;
    if header.alg != "A256KW" || header.enc != "A256GCM" {
        return Err(Error::Unsupported(
            "JWE algorithms (expected A256KW + A256GCM)",
        ));
    }
    let wrapped = b64::url_decode(ek64)?;
    let kek = KeyEncryptionKey::new(&AES_256, &keys.decryption).map_err(|_| Error::Crypto)?;
    let mut cek = [0u8; 40];
    let cek = kek
        .unwrap(&wrapped, &mut cek)
        .map_err(|_| Error::DecryptionFailed)?;
    let iv = b64::url_decode(iv64)?;
    let mut data = b64::url_decode(ct64)?;
    data.extend_from_slice(&b64::url_decode(tag64)?);
    let aead =
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, cek).map_err(|_| Error::DecryptionFailed)?);
    let nonce = Nonce::try_assume_unique_for_key(&iv).map_err(|_| Error::DecryptionFailed)?;
    let jws = aead
        .open_in_place(nonce, Aad::from(h64.as_bytes()), &mut data)
        .map_err(|_| Error::DecryptionFailed)?;
    let jws = std::str::from_utf8(jws).map_err(|_| Error::Malformed("inner JWS"))?;
    let (jh, jp, js) = crate::dpop::split_compact(jws)?;
    let jws_header: JwsHeader = serde_json::from_slice(&b64::url_decode(jh)?)
        .map_err(|_| Error::Malformed("JWS header"))?;
    if jws_header.alg != "ES256" {
        return Err(Error::Unsupported("JWS algorithm (expected ES256)"));
    }
    let signature = b64::url_decode(js)?;
    keys.verification
        .verify_sig(&jws.as_bytes()[..jh.len() + 1 + jp.len()], &signature)
        .map_err(|_| Error::SignatureInvalid("integrity token signature"))?;
    serde_json::from_slice(&b64::url_decode(jp)?)
        .map_err(|_| Error::Malformed("integrity token payload"))
}

/// What the verdict must say.
#[derive(Clone, Debug)]
pub struct Expectation<'a> {
    /// The app's package name.
    pub package_name: &'a str,
    /// The challenge nonce, base64url: the token's `requestHash` or `nonce`.
    pub request_binding: &'a str,
    /// Accepted signing-certificate SHA-256 digests (base64url); empty accepts any.
    pub certificate_digests: &'a [String],
    /// Device verdict that must be present, e.g. `MEETS_DEVICE_INTEGRITY`.
    pub device_verdict: &'a str,
    /// Now, Unix milliseconds.
    pub now_ms: i64,
    /// Oldest acceptable token, milliseconds.
    pub max_age_ms: i64,
}

fn s<'v>(v: &'v Value, path: &[&str]) -> Option<&'v str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

/// Checks a decoded verdict.
///
/// # Errors
/// [`Error::IdentityInvalid`] naming the first check that failed.
pub fn check(payload: &Value, expect: &Expectation<'_>) -> Result<()> {
    let fail = Err;
    if s(payload, &["requestDetails", "requestPackageName"]) != Some(expect.package_name) {
        return fail(Error::IdentityInvalid("requestPackageName"));
    }
    let bound = [
        s(payload, &["requestDetails", "requestHash"]),
        s(payload, &["requestDetails", "nonce"]),
    ]
    .into_iter()
    .flatten()
    .any(|v| {
        crate::secret::ct_eq(
            v.trim_end_matches('=').as_bytes(),
            expect.request_binding.as_bytes(),
        )
    });
    if !bound {
        return fail(Error::IdentityInvalid(
            "request binding (requestHash or nonce)",
        ));
    }
    // No readable timestamp is not fresh. The age is computed in i128: with i64, a timestamp
    // near i64::MIN overflowed (a panic with overflow checks, and in a release build a wrap
    // to a negative age that passed as "just issued").
    let Some(ts) =
        s(payload, &["requestDetails", "timestampMillis"]).and_then(|t| t.parse::<i64>().ok())
    else {
        return fail(Error::IdentityInvalid("token not fresh"));
    };
    let age_ms = i128::from(expect.now_ms) - i128::from(ts);
    if age_ms < -60_000 || age_ms > i128::from(expect.max_age_ms) {
        return fail(Error::IdentityInvalid("token not fresh"));
    }
    if s(payload, &["appIntegrity", "appRecognitionVerdict"]) != Some("PLAY_RECOGNIZED") {
        return fail(Error::IdentityInvalid("appRecognitionVerdict"));
    }
    if s(payload, &["appIntegrity", "packageName"]) != Some(expect.package_name) {
        return fail(Error::IdentityInvalid("appIntegrity.packageName"));
    }
    if !expect.certificate_digests.is_empty() {
        let digests = payload["appIntegrity"]["certificateSha256Digest"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let known = digests.iter().filter_map(Value::as_str).any(|d| {
            expect
                .certificate_digests
                .iter()
                .any(|e| e.trim_end_matches('=') == d.trim_end_matches('='))
        });
        if !known {
            return fail(Error::IdentityInvalid("certificateSha256Digest"));
        }
    }
    let verdicts = payload["deviceIntegrity"]["deviceRecognitionVerdict"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !verdicts
        .iter()
        .any(|v| v.as_str() == Some(expect.device_verdict))
    {
        return fail(Error::IdentityInvalid("deviceRecognitionVerdict"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW_MS: i64 = 1_618_884_473_000;

    fn verdict(timestamp: Option<&str>) -> Value {
        let mut v = json!({
            "requestDetails": {"requestPackageName": "com.example", "requestHash": "aGFzaA"},
            "appIntegrity": {"appRecognitionVerdict": "PLAY_RECOGNIZED", "packageName": "com.example"},
            "deviceIntegrity": {"deviceRecognitionVerdict": ["MEETS_DEVICE_INTEGRITY"]},
        });
        if let Some(t) = timestamp {
            v["requestDetails"]["timestampMillis"] = t.into();
        }
        v
    }

    fn expect() -> Expectation<'static> {
        Expectation {
            package_name: "com.example",
            request_binding: "aGFzaA",
            certificate_digests: &[],
            device_verdict: "MEETS_DEVICE_INTEGRITY",
            now_ms: NOW_MS,
            max_age_ms: 300_000,
        }
    }

    #[test]
    fn fresh_verdict_passes() {
        let now = NOW_MS.to_string();
        assert_eq!(check(&verdict(Some(&now)), &expect()), Ok(()));
    }

    /// Found by the `play_integrity` fuzz target: a verdict without `timestampMillis` (or with
    /// one near `i64::MIN`) overflowed the age computation.
    #[test]
    fn missing_or_extreme_timestamp_is_not_fresh() {
        let min = i64::MIN.to_string();
        let max = i64::MAX.to_string();
        let old = (NOW_MS - 300_001).to_string();
        let future = (NOW_MS + 60_001).to_string();
        for t in [
            None,
            Some("soon"),
            Some(&*min),
            Some(&*max),
            Some(&*old),
            Some(&*future),
        ] {
            assert_eq!(
                check(&verdict(t), &expect()),
                Err(Error::IdentityInvalid("token not fresh")),
                "{t:?}"
            );
        }
    }
}
