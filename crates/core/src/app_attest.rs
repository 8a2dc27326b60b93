//! Apple App Attest: attestations (a new key, certified by Apple for this app on a genuine
//! device) and assertions (later requests signed by that key).
//!
//! Attestation checks, in Apple's order: CBOR `fmt` is `apple-appattest`; the `x5c` chain
//! verifies to Apple's App Attestation Root CA at the given time; the nonce in the leaf's
//! extension 1.2.840.113635.100.8.2 equals SHA-256(authData ‖ clientDataHash); the key id is
//! SHA-256 of the leaf's public key; `rpIdHash` = SHA-256(teamId.bundleId); the counter is 0;
//! the aaguid says production (`appattest` + 7 zero bytes) or development
//! (`appattestdevelop`); the credential id is the key id.
//!
//! Assertion checks: the DER ECDSA signature over nonce = SHA-256(authenticatorData ‖
//! clientDataHash) verifies with the attested key; `rpIdHash` matches; the counter is greater
//! than the last one accepted.

use std::time::Duration;

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use ciborium::Value;
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::{Error, Result};

/// Apple App Attestation Root CA (P-384; SHA-256 of the DER
/// 1cb9823ba28ba6ad2d33a006941de2ae4f513ef1d4e831b9f7e0fa7b6242c932).
pub const APPLE_ROOT_PEM: &str = include_str!("apple_app_attestation_root_ca.pem");
/// Largest attestation object accepted, bytes.
pub const MAX_ATTESTATION: usize = 16 * 1024;
const NONCE_OID: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x63, 0x64, 0x08, 0x02];

/// Which App Attest environment issued a key.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Environment {
    /// `appattest` (App Store, TestFlight).
    Production,
    /// `appattestdevelop` (Xcode builds).
    Development,
}

/// A verified attestation.
#[derive(Clone, Debug)]
pub struct Attested {
    /// SHA-256 of the public key.
    pub key_id: [u8; 32],
    /// Uncompressed P-256 point.
    pub public_key: [u8; 65],
    /// Environment.
    pub environment: Environment,
}

/// DER of the Apple root, from [`APPLE_ROOT_PEM`].
///
/// # Errors
/// [`Error::Malformed`] if the PEM is not a certificate.
pub fn apple_root_der() -> Result<Vec<u8>> {
    let body: String = APPLE_ROOT_PEM
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    crate::b64::std_decode(body.trim())
}

fn map_get<'v>(map: &'v [(Value, Value)], key: &str) -> Option<&'v Value> {
    map.iter()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
}

fn cbor_map(bytes: &[u8]) -> Result<Vec<(Value, Value)>> {
    if bytes.len() > MAX_ATTESTATION {
        return Err(Error::Malformed("attestation too large"));
    }
    let value: Value =
        ciborium::de::from_reader(bytes).map_err(|_| Error::Malformed("not CBOR"))?;
    value
        .into_map()
        .map_err(|_| Error::Malformed("CBOR is not a map"))
}

/// One DER TLV at `pos`: `(tag, content start, content end)`.
fn tlv(der: &[u8], pos: usize) -> Option<(u8, usize, usize)> {
    let tag = *der.get(pos)?;
    let first = *der.get(pos + 1)?;
    let (len, start) = if first < 0x80 {
        (usize::from(first), pos + 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | usize::from(*der.get(pos + 2 + i)?);
        }
        (len, pos + 2 + n)
    };
    let end = start.checked_add(len)?;
    (end <= der.len()).then_some((tag, start, end))
}

/// The 32-byte nonce in the leaf certificate's App Attest extension.
fn extension_nonce(cert: &[u8]) -> Option<[u8; 32]> {
    let (_, cs, _) = tlv(cert, 0)?; // Certificate
    let (_, ts, te) = tlv(cert, cs)?; // TBSCertificate
    let mut pos = ts;
    while pos < te {
        let (tag, s, e) = tlv(cert, pos)?;
        if tag == 0xa3 {
            // [3] EXPLICIT Extensions ::= SEQUENCE OF Extension
            let (_, ls, le) = tlv(cert, s)?;
            let mut p = ls;
            while p < le {
                let (_, xs, xe) = tlv(cert, p)?;
                let (otag, os, oe) = tlv(cert, xs)?;
                if otag == 0x06 && cert[os..oe] == NONCE_OID {
                    let (mut vtag, mut vs, ve) = tlv(cert, oe)?;
                    if vtag == 0x01 {
                        // `critical` BOOLEAN present: the OCTET STRING follows it.
                        let next = tlv(cert, ve)?;
                        (vtag, vs) = (next.0, next.1);
                    }
                    if vtag != 0x04 {
                        return None;
                    }
                    // extnValue: SEQUENCE { [1] EXPLICIT OCTET STRING nonce }
                    let (_, ss, _) = tlv(cert, vs)?;
                    let (t1, s1, _) = tlv(cert, ss)?;
                    if t1 != 0xa1 {
                        return None;
                    }
                    let (t2, s2, e2) = tlv(cert, s1)?;
                    return (t2 == 0x04).then(|| cert[s2..e2].try_into().ok()).flatten();
                }
                p = xe;
            }
            return None;
        }
        pos = e;
    }
    None
}

struct AuthData<'a> {
    rp_id_hash: &'a [u8],
    counter: u32,
    rest: &'a [u8],
}

fn auth_data(bytes: &[u8]) -> Result<AuthData<'_>> {
    if bytes.len() < 37 {
        return Err(Error::Malformed("authenticator data too short"));
    }
    Ok(AuthData {
        rp_id_hash: &bytes[..32],
        counter: u32::from_be_bytes([bytes[33], bytes[34], bytes[35], bytes[36]]),
        rest: &bytes[37..],
    })
}

/// Verifies an attestation object.
///
/// `app_id` is `<team id>.<bundle id>`; `client_data_hash` is SHA-256 of the client data the
/// app passed to `attestKey`; `now` is the time the chain must be valid at.
///
/// # Errors
/// [`Error::IdentityInvalid`] naming the first check that failed.
pub fn verify_attestation(
    attestation: &[u8],
    client_data_hash: &[u8; 32],
    app_id: &str,
    key_id: &[u8],
    root_der: &[u8],
    now: u64,
) -> Result<Attested> {
    let fail = |why: &'static str| Error::IdentityInvalid(why);
    let map = cbor_map(attestation)?;
    if map_get(&map, "fmt").and_then(Value::as_text) != Some("apple-appattest") {
        return Err(fail("fmt is not apple-appattest"));
    }
    let stmt = map_get(&map, "attStmt")
        .and_then(Value::as_map)
        .ok_or(fail("attStmt missing"))?;
    let x5c: Vec<&[u8]> = map_get(stmt, "x5c")
        .and_then(Value::as_array)
        .ok_or(fail("x5c missing"))?
        .iter()
        .filter_map(|v| v.as_bytes().map(Vec::as_slice))
        .collect();
    let [leaf, intermediates @ ..] = &x5c[..] else {
        return Err(fail("x5c empty"));
    };
    let auth = map_get(&map, "authData")
        .and_then(Value::as_bytes)
        .ok_or(fail("authData missing"))?;

    let root = CertificateDer::from(root_der);
    let anchor = webpki::anchor_from_trusted_cert(&root).map_err(|_| fail("root certificate"))?;
    let leaf_der = CertificateDer::from(*leaf);
    let ee = webpki::EndEntityCert::try_from(&leaf_der).map_err(|_| fail("leaf certificate"))?;
    let chain: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|c| CertificateDer::from(*c))
        .collect();
    let algs = [
        webpki::aws_lc_rs::ECDSA_P256_SHA256,
        webpki::aws_lc_rs::ECDSA_P384_SHA384,
        webpki::aws_lc_rs::ECDSA_P256_SHA384,
        webpki::aws_lc_rs::ECDSA_P384_SHA256,
    ];
    ee.verify_for_usage(
        &algs,
        &[anchor],
        &chain,
        UnixTime::since_unix_epoch(Duration::from_secs(now)),
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )
    .map_err(|_| fail("certificate chain does not verify to the Apple App Attestation root"))?;

    let mut nonce_input = auth.clone();
    nonce_input.extend_from_slice(client_data_hash);
    let nonce = digest(&SHA256, &nonce_input);
    let in_cert = extension_nonce(leaf).ok_or(fail("nonce extension missing"))?;
    if !crate::secret::ct_eq(nonce.as_ref(), &in_cert) {
        return Err(fail("nonce does not match"));
    }
    let spki = ee.subject_public_key_info();
    let spki = spki.as_ref();
    if spki.len() < 65 || spki[spki.len() - 65] != 0x04 {
        return Err(fail("leaf key is not an uncompressed P-256 point"));
    }
    let mut public_key = [0u8; 65];
    public_key.copy_from_slice(&spki[spki.len() - 65..]);
    let computed_id: [u8; 32] = digest(&SHA256, &public_key)
        .as_ref()
        .try_into()
        .map_err(|_| Error::Crypto)?;
    if !crate::secret::ct_eq(&computed_id, key_id) {
        return Err(fail("key id does not match the certified key"));
    }
    let data = auth_data(auth)?;
    if data.rp_id_hash != digest(&SHA256, app_id.as_bytes()).as_ref() {
        return Err(fail("rpIdHash does not match the app id"));
    }
    if data.counter != 0 {
        return Err(fail("counter is not 0"));
    }
    if data.rest.len() < 18 {
        return Err(fail("attested credential data missing"));
    }
    let environment = match &data.rest[..16] {
        b"appattestdevelop" => Environment::Development,
        b"appattest\0\0\0\0\0\0\0" => Environment::Production,
        _ => return Err(fail("unknown aaguid")),
    };
    let cred_len = usize::from(u16::from_be_bytes([data.rest[16], data.rest[17]]));
    let cred = data
        .rest
        .get(18..18 + cred_len)
        .ok_or(fail("credential id truncated"))?;
    if cred != computed_id {
        return Err(fail("credential id is not the key id"));
    }
    Ok(Attested {
        key_id: computed_id,
        public_key,
        environment,
    })
}

/// Verifies an assertion; returns its counter, which must exceed `previous_counter`.
///
/// # Errors
/// [`Error::IdentityInvalid`] naming the first check that failed.
pub fn verify_assertion(
    assertion: &[u8],
    client_data_hash: &[u8; 32],
    app_id: &str,
    public_key: &[u8],
    previous_counter: u32,
) -> Result<u32> {
    let fail = |why: &'static str| Error::IdentityInvalid(why);
    let map = cbor_map(assertion)?;
    let signature = map_get(&map, "signature")
        .and_then(Value::as_bytes)
        .ok_or(fail("signature missing"))?;
    let auth = map_get(&map, "authenticatorData")
        .and_then(Value::as_bytes)
        .ok_or(fail("authenticatorData missing"))?;
    let mut nonce_input = auth.clone();
    nonce_input.extend_from_slice(client_data_hash);
    let nonce = digest(&SHA256, &nonce_input);
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, public_key)
        .verify(nonce.as_ref(), signature)
        .map_err(|_| fail("assertion signature does not verify"))?;
    let data = auth_data(auth)?;
    if data.rp_id_hash != digest(&SHA256, app_id.as_bytes()).as_ref() {
        return Err(fail("rpIdHash does not match the app id"));
    }
    if data.counter <= previous_counter {
        return Err(fail("counter did not increase"));
    }
    Ok(data.counter)
}

/// Entry points for the cargo-fuzz targets in `fuzz/`; not part of the API.
///
/// The certificate-extension walker only runs on a leaf whose chain verified, so a fuzzer
/// driving [`verify_attestation`] never reaches it with mutated DER; this reaches it directly.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    /// [`super::extension_nonce`] on arbitrary bytes.
    pub fn extension_nonce(cert: &[u8]) -> Option<[u8; 32]> {
        super::extension_nonce(cert)
    }
}

#[cfg(test)]
mod tests;
