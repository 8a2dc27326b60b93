//! Public JSON Web Keys (RFC 7517) and their thumbprints (RFC 7638).
//!
//! Only public keys are accepted from the network: a JWK that carries private members
//! (`d`, `p`, `q`, …) is refused, so a client that leaks its private key into a header gets an
//! error instead of an identity.

use aws_lc_rs::digest;
use serde_json::{Map, Value};

use crate::{Error, Result, b64};

/// A public key in one of the shapes Moat uses.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicJwk {
    /// EC P-256 (`kty` `EC`, `crv` `P-256`): the installation key.
    P256 {
        /// Affine x coordinate, 32 bytes big-endian.
        x: [u8; 32],
        /// Affine y coordinate, 32 bytes big-endian.
        y: [u8; 32],
    },
    /// Ed25519 (`kty` `OKP`, `crv` `Ed25519`).
    Ed25519 {
        /// The 32-byte public key.
        x: [u8; 32],
    },
    /// RSA (`kty` `RSA`): the per-device body encryption key.
    Rsa {
        /// Modulus, big-endian without leading zeros.
        n: Vec<u8>,
        /// Public exponent, big-endian without leading zeros.
        e: Vec<u8>,
    },
}

const PRIVATE_MEMBERS: [&str; 6] = ["d", "p", "q", "dp", "dq", "qi"];

fn member<'a>(obj: &'a Map<String, Value>, name: &'static str) -> Result<&'a str> {
    obj.get(name)
        .and_then(Value::as_str)
        .ok_or(Error::Malformed("jwk member missing or not a string"))
}

fn fixed32(text: &str) -> Result<[u8; 32]> {
    b64::url_decode(text)?
        .try_into()
        .map_err(|_| Error::Malformed("jwk coordinate is not 32 bytes"))
}

fn strip_leading_zeros(bytes: Vec<u8>) -> Vec<u8> {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes[first..].to_vec()
}

impl PublicJwk {
    /// Parses a public JWK from its JSON object.
    ///
    /// # Errors
    /// [`Error::Malformed`] for missing members or bad encodings, [`Error::Unsupported`] for
    /// other key types or curves, and for JWKs that carry private key members.
    pub fn from_json(value: &Value) -> Result<Self> {
        let obj = value
            .as_object()
            .ok_or(Error::Malformed("jwk is not an object"))?;
        if PRIVATE_MEMBERS.iter().any(|m| obj.contains_key(*m)) {
            return Err(Error::Unsupported("jwk contains private key material"));
        }
        match member(obj, "kty")? {
            "EC" => {
                if member(obj, "crv")? != "P-256" {
                    return Err(Error::Unsupported("ec curve"));
                }
                let x = fixed32(member(obj, "x")?)?;
                let y = fixed32(member(obj, "y")?)?;
                let key = Self::P256 { x, y };
                // Reject points that are not on the curve now rather than at first use.
                key.p256_point_check()?;
                Ok(key)
            }
            "OKP" => {
                if member(obj, "crv")? != "Ed25519" {
                    return Err(Error::Unsupported("okp curve"));
                }
                Ok(Self::Ed25519 {
                    x: fixed32(member(obj, "x")?)?,
                })
            }
            "RSA" => {
                let n = strip_leading_zeros(b64::url_decode(member(obj, "n")?)?);
                let e = strip_leading_zeros(b64::url_decode(member(obj, "e")?)?);
                if n.len() < 256 || e.is_empty() || e.len() > 4 {
                    return Err(Error::Unsupported("rsa key size"));
                }
                Ok(Self::Rsa { n, e })
            }
            _ => Err(Error::Unsupported("jwk key type")),
        }
    }

    fn p256_point_check(&self) -> Result<()> {
        if let Self::P256 { .. } = self {
            let point = self.sec1_point().ok_or(Error::Crypto)?;
            // aws-lc-rs validates the point (on the curve, not infinity) when it parses it.
            aws_lc_rs::signature::ParsedPublicKey::new(
                &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
                point,
            )
            .map_err(|_| Error::Malformed("ec point not on curve"))?;
        }
        Ok(())
    }

    /// The uncompressed SEC1 point (`0x04 ‖ x ‖ y`) of a P-256 key.
    pub fn sec1_point(&self) -> Option<[u8; 65]> {
        match self {
            Self::P256 { x, y } => {
                let mut out = [0u8; 65];
                out[0] = 4;
                out[1..33].copy_from_slice(x);
                out[33..].copy_from_slice(y);
                Some(out)
            }
            _ => None,
        }
    }

    /// The JWK as a JSON object with exactly the required members, in lexicographic order.
    pub fn to_json(&self) -> Value {
        // serde_json's Map is a BTreeMap (no `preserve_order`), so members come out sorted:
        // that is what RFC 7638 section 3.3 asks for.
        let mut obj = Map::new();
        match self {
            Self::P256 { x, y } => {
                obj.insert("crv".into(), "P-256".into());
                obj.insert("kty".into(), "EC".into());
                obj.insert("x".into(), b64::url_encode(x).into());
                obj.insert("y".into(), b64::url_encode(y).into());
            }
            Self::Ed25519 { x } => {
                obj.insert("crv".into(), "Ed25519".into());
                obj.insert("kty".into(), "OKP".into());
                obj.insert("x".into(), b64::url_encode(x).into());
            }
            Self::Rsa { n, e } => {
                obj.insert("e".into(), b64::url_encode(e).into());
                obj.insert("kty".into(), "RSA".into());
                obj.insert("n".into(), b64::url_encode(n).into());
            }
        }
        Value::Object(obj)
    }

    /// RFC 7638 JWK thumbprint with SHA-256, base64url without padding.
    pub fn thumbprint(&self) -> String {
        // The canonical form has no whitespace and sorted members; `to_json` builds exactly the
        // required members and serde_json writes them compactly.
        let canonical = self.to_json().to_string();
        b64::url_encode(digest::digest(&digest::SHA256, canonical.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7638_section_3_1_example() {
        let vectors: Value =
            serde_json::from_str(include_str!("../vectors/rfc7638_jwk_thumbprint.json"))
                .expect("vector file");
        let jwk = PublicJwk::from_json(&vectors["input_jwk"]).expect("parse jwk");
        assert_eq!(
            jwk.thumbprint(),
            vectors["thumbprint_b64u"].as_str().expect("expected value")
        );
    }

    #[test]
    fn private_members_are_refused() {
        let v =
            serde_json::json!({"kty":"OKP","crv":"Ed25519","x":b64::url_encode([1u8;32]),"d":"AA"});
        assert_eq!(
            PublicJwk::from_json(&v),
            Err(Error::Unsupported("jwk contains private key material"))
        );
    }

    #[test]
    fn point_off_curve_is_refused() {
        let v = serde_json::json!({"kty":"EC","crv":"P-256","x":b64::url_encode([1u8;32]),"y":b64::url_encode([2u8;32])});
        assert!(PublicJwk::from_json(&v).is_err());
    }
}
