//! Compact JWE (RFC 7516) with `RSA-OAEP-256` key encryption and `A256GCM` content
//! encryption: how a device encrypts a request body for Moat.
//!
//! Written on aws-lc-rs rather than a JOSE crate: the Rust JOSE crates that do JWE build on
//! OpenSSL (a second crypto library), and one key-management and one content algorithm need
//! only the few lines below. `zip` is refused (no decompression of attacker input) and so is
//! any `crit` header.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepAlgorithm, OaepPrivateDecryptingKey,
    OaepPublicEncryptingKey, PrivateDecryptingKey, PublicEncryptingKey,
};
use aws_lc_rs::signature::{KeyPair as _, RsaKeyPair};
use serde::Deserialize;
use serde_json::Value;

use crate::jwk::PublicJwk;
use crate::secret::SecretBytes;
use crate::{Error, Result, b64, random};

/// Largest compact JWE Moat decrypts, in bytes.
pub const MAX_JWE_LEN: usize = 1024 * 1024;

/// Key-management algorithms.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// `RSA-OAEP-256`: the one Moat accepts on the wire.
    RsaOaep256,
    /// `RSA-OAEP` (SHA-1): accepted only where a caller asks for it, e.g. to check the RFC
    /// 7516 Appendix A.1 vector.
    RsaOaep,
}

impl KeyAlgorithm {
    fn name(self) -> &'static str {
        match self {
            Self::RsaOaep256 => "RSA-OAEP-256",
            Self::RsaOaep => "RSA-OAEP",
        }
    }

    fn oaep(self) -> &'static OaepAlgorithm {
        match self {
            Self::RsaOaep256 => &OAEP_SHA256_MGF1SHA256,
            Self::RsaOaep => &OAEP_SHA1_MGF1SHA1,
        }
    }
}

/// The device's RSA key pair, held by the server.
pub struct RsaPrivateKey {
    key: OaepPrivateDecryptingKey,
    pkcs8: SecretBytes,
}

impl RsaPrivateKey {
    /// Generates an RSA-2048 key. This costs tens of milliseconds of CPU: call it off the
    /// async runtime.
    ///
    /// # Errors
    /// [`Error::Crypto`] if generation fails.
    pub fn generate_2048() -> Result<Self> {
        let key = PrivateDecryptingKey::generate(KeySize::Rsa2048).map_err(|_| Error::Crypto)?;
        let der = key.as_der().map_err(|_| Error::Crypto)?;
        Self::from_pkcs8(der.as_ref())
    }

    /// Loads a key from PKCS#8 DER.
    ///
    /// # Errors
    /// [`Error::Malformed`] if the bytes are not an RSA PKCS#8 key.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self> {
        let private =
            PrivateDecryptingKey::from_pkcs8(pkcs8).map_err(|_| Error::Malformed("rsa pkcs8"))?;
        let key = OaepPrivateDecryptingKey::new(private).map_err(|_| Error::Crypto)?;
        Ok(Self {
            key,
            pkcs8: SecretBytes::new(pkcs8.to_vec()),
        })
    }

    /// Loads a key from a private RSA JWK (`n e d p q dp dq qi`).
    ///
    /// # Errors
    /// [`Error::Malformed`] if a member is missing or the key is inconsistent.
    pub fn from_private_jwk(jwk: &Value) -> Result<Self> {
        let mut fields = Vec::with_capacity(8);
        for name in ["n", "e", "d", "p", "q", "dp", "dq", "qi"] {
            let text = jwk
                .get(name)
                .and_then(Value::as_str)
                .ok_or(Error::Malformed("rsa jwk member missing"))?;
            fields.push(b64::url_decode(text)?);
        }
        let mut rsa_private = der::integer(&[0]);
        for f in &fields {
            rsa_private.extend(der::integer(f));
        }
        let pkcs8 = der::sequence(
            &[
                der::integer(&[0]),
                der::rsa_algorithm_identifier(),
                der::octet_string(&der::sequence(&rsa_private)),
            ]
            .concat(),
        );
        Self::from_pkcs8(&pkcs8)
    }

    /// The PKCS#8 encoding, to be sealed before it is stored.
    pub fn pkcs8(&self) -> &SecretBytes {
        &self.pkcs8
    }

    /// The public key as a JWK.
    ///
    /// # Errors
    /// [`Error::Crypto`] if the key cannot be re-read.
    pub fn public_jwk(&self) -> Result<PublicJwk> {
        let pair = RsaKeyPair::from_pkcs8(self.pkcs8.expose()).map_err(|_| Error::Crypto)?;
        let public = pair.public_key();
        Ok(PublicJwk::Rsa {
            n: public.modulus().big_endian_without_leading_zero().to_vec(),
            e: public.exponent().big_endian_without_leading_zero().to_vec(),
        })
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    enc: String,
    kid: Option<String>,
    zip: Option<Value>,
    crit: Option<Value>,
}

fn split5(compact: &str) -> Result<[&str; 5]> {
    let mut parts = compact.split('.');
    let mut out = [""; 5];
    for slot in &mut out {
        *slot = parts
            .next()
            .ok_or(Error::Malformed("jwe must have five parts"))?;
    }
    if parts.next().is_some() {
        return Err(Error::Malformed("jwe must have five parts"));
    }
    Ok(out)
}

fn header(part: &str) -> Result<Header> {
    serde_json::from_slice(&b64::url_decode(part)?)
        .map_err(|_| Error::Malformed("jwe header is not the expected JSON"))
}

/// The `kid` of a compact JWE's protected header, read without decrypting.
///
/// # Errors
/// [`Error::Malformed`] if the JWE cannot be parsed.
pub fn peek_kid(compact: &str) -> Result<Option<String>> {
    if compact.len() > MAX_JWE_LEN {
        return Err(Error::Malformed("jwe too large"));
    }
    Ok(header(split5(compact)?[0])?.kid)
}

/// Decrypts a compact JWE with `key`, accepting only the key algorithms in `allowed`.
///
/// Every failure after parsing is the same [`Error::DecryptionFailed`], so that the response
/// does not tell a padding-oracle attacker which step failed.
///
/// # Errors
/// [`Error::Malformed`] for a JWE that cannot be parsed, [`Error::Unsupported`] for other
/// algorithms, `zip` or `crit`, and [`Error::DecryptionFailed`] otherwise.
pub fn decrypt(compact: &str, key: &RsaPrivateKey, allowed: &[KeyAlgorithm]) -> Result<Vec<u8>> {
    if compact.len() > MAX_JWE_LEN {
        return Err(Error::Malformed("jwe too large"));
    }
    let [h64, ek64, iv64, ct64, tag64] = split5(compact)?;
    let header = header(h64)?;
    let alg = allowed
        .iter()
        .copied()
        .find(|a| a.name() == header.alg)
        .ok_or(Error::Unsupported("jwe alg"))?;
    if header.enc != "A256GCM" {
        return Err(Error::Unsupported("jwe enc"));
    }
    if header.zip.is_some() || header.crit.is_some() {
        return Err(Error::Unsupported("jwe zip or crit"));
    }
    let encrypted_key = b64::url_decode(ek64)?;
    let iv = b64::url_decode(iv64)?;
    let mut data = b64::url_decode(ct64)?;
    let tag = b64::url_decode(tag64)?;
    if iv.len() != 12 || tag.len() != 16 {
        return Err(Error::DecryptionFailed);
    }
    let mut cek = vec![0u8; key.key.min_output_size()];
    let cek_len = key
        .key
        .decrypt(alg.oaep(), &encrypted_key, &mut cek, None)
        .map_err(|_| Error::DecryptionFailed)?
        .len();
    cek.truncate(cek_len);
    let cek = SecretBytes::new(cek);
    if cek.len() != 32 {
        return Err(Error::DecryptionFailed);
    }
    let aead = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, cek.expose()).map_err(|_| Error::DecryptionFailed)?,
    );
    let nonce = Nonce::try_assume_unique_for_key(&iv).map_err(|_| Error::DecryptionFailed)?;
    data.extend_from_slice(&tag);
    let len = aead
        .open_in_place(nonce, Aad::from(h64.as_bytes()), &mut data)
        .map_err(|_| Error::DecryptionFailed)?
        .len();
    data.truncate(len);
    Ok(data)
}

/// Encrypts `plaintext` for the holder of the RSA key `jwk` (`RSA-OAEP-256` + `A256GCM`).
///
/// # Errors
/// [`Error::Unsupported`] if `jwk` is not RSA, [`Error::Crypto`] if encryption fails.
pub fn encrypt(plaintext: &[u8], jwk: &PublicJwk, kid: Option<&str>) -> Result<String> {
    let PublicJwk::Rsa { n, e } = jwk else {
        return Err(Error::Unsupported("jwe needs an RSA key"));
    };
    let spki = der::rsa_spki(n, e);
    let public = PublicEncryptingKey::from_der(&spki).map_err(|_| Error::Malformed("rsa key"))?;
    let public = OaepPublicEncryptingKey::new(public).map_err(|_| Error::Crypto)?;
    let mut header = serde_json::json!({"alg": "RSA-OAEP-256", "enc": "A256GCM"});
    if let Some(kid) = kid {
        header["kid"] = kid.into();
    }
    let h64 = b64::url_encode(header.to_string());
    let cek = random::secret(32)?;
    let mut encrypted_key = vec![0u8; public.ciphertext_size()];
    let ek_len = public
        .encrypt(
            &OAEP_SHA256_MGF1SHA256,
            cek.expose(),
            &mut encrypted_key,
            None,
        )
        .map_err(|_| Error::Crypto)?
        .len();
    encrypted_key.truncate(ek_len);
    let iv = random::array::<12>()?;
    let aead =
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, cek.expose()).map_err(|_| Error::Crypto)?);
    let mut data = plaintext.to_vec();
    let tag = aead
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(iv),
            Aad::from(h64.as_bytes()),
            &mut data,
        )
        .map_err(|_| Error::Crypto)?;
    Ok(format!(
        "{h64}.{}.{}.{}.{}",
        b64::url_encode(encrypted_key),
        b64::url_encode(iv),
        b64::url_encode(data),
        b64::url_encode(tag.as_ref())
    ))
}

/// Just enough DER to write RSA keys in the forms aws-lc-rs imports.
mod der {
    fn len(n: usize) -> Vec<u8> {
        if n < 0x80 {
            // Short form: one byte, checked just above.
            vec![n as u8]
        } else {
            let bytes: Vec<u8> = n
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            let mut out = vec![0x80 | bytes.len() as u8];
            out.extend(bytes);
            out
        }
    }

    fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend(len(value.len()));
        out.extend_from_slice(value);
        out
    }

    pub(super) fn integer(unsigned_be: &[u8]) -> Vec<u8> {
        let trimmed: Vec<u8> = unsigned_be
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        let mut value = Vec::with_capacity(trimmed.len() + 1);
        if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
            value.push(0);
        }
        value.extend(trimmed);
        tlv(0x02, &value)
    }

    pub(super) fn sequence(content: &[u8]) -> Vec<u8> {
        tlv(0x30, content)
    }

    pub(super) fn octet_string(content: &[u8]) -> Vec<u8> {
        tlv(0x04, content)
    }

    pub(super) fn rsa_algorithm_identifier() -> Vec<u8> {
        // OID 1.2.840.113549.1.1.1 (rsaEncryption), parameters NULL.
        let oid = [
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
        ];
        sequence(&[&oid[..], &[0x05, 0x00]].concat())
    }

    pub(super) fn rsa_spki(n: &[u8], e: &[u8]) -> Vec<u8> {
        let rsa_public = sequence(&[integer(n), integer(e)].concat());
        let mut bit_string = vec![0u8];
        bit_string.extend(rsa_public);
        sequence(&[rsa_algorithm_identifier(), tlv(0x03, &bit_string)].concat())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a1() -> Value {
        let v: Value =
            serde_json::from_str(include_str!("../vectors/jose_rfc7516_appendix_a_jwe.json"))
                .expect("vectors");
        v["A1"].clone()
    }

    #[test]
    fn rfc7516_appendix_a1_decrypts() {
        let v = a1();
        let key = RsaPrivateKey::from_private_jwk(&v["recipient_private_key_jwk"]).expect("key");
        let compact = v["compact_serialization"].as_str().expect("compact");
        let plain = decrypt(compact, &key, &[KeyAlgorithm::RsaOaep]).expect("decrypts");
        assert_eq!(
            plain,
            v["plaintext_utf8"].as_str().expect("plaintext").as_bytes()
        );
        // Moat's wire default accepts only RSA-OAEP-256: the SHA-1 variant is refused.
        assert_eq!(
            decrypt(compact, &key, &[KeyAlgorithm::RsaOaep256]),
            Err(Error::Unsupported("jwe alg"))
        );
        // The public half rebuilt from PKCS#8 is the JWK's n and e.
        let jwk = key.public_jwk().expect("public");
        let expected = PublicJwk::from_json(&serde_json::json!({
            "kty": "RSA", "n": v["recipient_private_key_jwk"]["n"], "e": "AQAB"
        }))
        .expect("jwk");
        assert_eq!(jwk, expected);
    }

    #[test]
    fn round_trip_and_tampering() {
        let key = RsaPrivateKey::generate_2048().expect("keygen");
        let jwk = key.public_jwk().expect("jwk");
        let jwe = encrypt(br#"{"hello":"world"}"#, &jwk, Some("k1")).expect("encrypt");
        assert_eq!(peek_kid(&jwe).expect("kid").as_deref(), Some("k1"));
        let ok = decrypt(&jwe, &key, &[KeyAlgorithm::RsaOaep256]).expect("decrypt");
        assert_eq!(ok, br#"{"hello":"world"}"#);
        // Flip one character of the ciphertext, then of the tag.
        let mut parts: Vec<String> = jwe.split('.').map(str::to_owned).collect();
        for i in [3usize, 4] {
            let mut p = parts.clone();
            let mut bytes = b64::url_decode(&p[i]).expect("b64");
            bytes[0] ^= 1;
            p[i] = b64::url_encode(bytes);
            assert_eq!(
                decrypt(&p.join("."), &key, &[KeyAlgorithm::RsaOaep256]),
                Err(Error::DecryptionFailed)
            );
        }
        // A header changed after encryption breaks the AAD.
        parts[0] = b64::url_encode(r#"{"alg":"RSA-OAEP-256","enc":"A256GCM","kid":"k2"}"#);
        assert_eq!(
            decrypt(&parts.join("."), &key, &[KeyAlgorithm::RsaOaep256]),
            Err(Error::DecryptionFailed)
        );
        let other = RsaPrivateKey::generate_2048().expect("keygen");
        assert!(decrypt(&jwe, &other, &[KeyAlgorithm::RsaOaep256]).is_err());
        let zip = format!(
            "{}.a.b.c.d",
            b64::url_encode(r#"{"alg":"RSA-OAEP-256","enc":"A256GCM","zip":"DEF"}"#)
        );
        assert_eq!(
            decrypt(&zip, &key, &[KeyAlgorithm::RsaOaep256]),
            Err(Error::Unsupported("jwe zip or crit"))
        );
        assert!(decrypt("a.b.c", &key, &[KeyAlgorithm::RsaOaep256]).is_err());
    }
}
