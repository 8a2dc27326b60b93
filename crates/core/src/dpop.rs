//! RFC 9449 DPoP proofs: the installation identity.
//!
//! A device proves it holds its installation key by sending, on each identity-bearing
//! request, a fresh JWT signed with that key and naming the request's method and URL. The
//! server checks the proof here and calls the identity `inst:<RFC 7638 thumbprint>`. It must
//! also remember each `jti` for the acceptance window to refuse replays; that state is the
//! server's, not this module's.
//!
//! JWS parsing is written out here rather than taken from a JWT crate because a DPoP proof
//! carries its verification key in its own header, which general JWT libraries either do not
//! accept or accept with fewer checks (`typ`, public-only `jwk`, algorithm bound to key type).

use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use serde::Deserialize;
use serde_json::Value;

use crate::jwk::PublicJwk;
use crate::{Error, Result, b64, random};

/// Longest DPoP header Moat accepts, in bytes.
pub const MAX_PROOF_LEN: usize = 4096;

/// What the server expects a proof to say.
#[derive(Clone, Copy, Debug)]
pub struct Expectation<'a> {
    /// The request method, e.g. `POST`.
    pub method: &'a str,
    /// The request URL as the client sees it, without query or fragment.
    pub url: &'a str,
    /// Current Unix time in seconds.
    pub now: i64,
    /// Accepted distance between `iat` and `now`, in seconds.
    pub max_skew: i64,
}

/// A proof that passed every check.
#[derive(Clone, Debug)]
pub struct VerifiedProof {
    /// The public key the proof was signed with.
    pub jwk: PublicJwk,
    /// Its RFC 7638 thumbprint.
    pub thumbprint: String,
    /// The proof's unique id, to be remembered against replay until `iat + max_skew`.
    pub jti: String,
    /// When the proof was made.
    pub iat: i64,
}

impl VerifiedProof {
    /// The identity this proof establishes: `inst:<thumbprint>`.
    pub fn identity(&self) -> String {
        format!("inst:{}", self.thumbprint)
    }
}

#[derive(Deserialize)]
struct Header {
    typ: Option<String>,
    alg: String,
    jwk: Value,
}

#[derive(Deserialize)]
struct Claims {
    jti: String,
    htm: String,
    htu: String,
    iat: i64,
}

/// Removes the query and fragment from a URL (RFC 9449 section 4.3, point 9).
fn strip_query(url: &str) -> &str {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    &url[..end]
}

/// Splits a compact JWS into its three base64url parts.
pub(crate) fn split_compact(token: &str) -> Result<(&str, &str, &str)> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) if !h.is_empty() && !p.is_empty() && !s.is_empty() => {
            Ok((h, p, s))
        }
        _ => Err(Error::Malformed("not a compact JWS")),
    }
}

/// Verifies a DPoP proof against what the request says.
///
/// # Errors
/// [`Error::Malformed`] when the proof cannot be parsed, [`Error::Unsupported`] for an
/// algorithm or key other than ES256/P-256 and EdDSA/Ed25519, and [`Error::IdentityInvalid`]
/// naming the first check that failed (signature, `typ`, `htm`, `htu`, `iat`).
pub fn verify(proof: &str, expect: &Expectation<'_>) -> Result<VerifiedProof> {
    if proof.len() > MAX_PROOF_LEN {
        return Err(Error::Malformed("dpop proof too long"));
    }
    let (h64, p64, s64) = split_compact(proof)?;
    let header: Header = serde_json::from_slice(&b64::url_decode(h64)?)
        .map_err(|_| Error::Malformed("dpop header is not the expected JSON"))?;
    if header.typ.as_deref() != Some("dpop+jwt") {
        return Err(Error::IdentityInvalid("typ must be dpop+jwt"));
    }
    let jwk = PublicJwk::from_json(&header.jwk)?;
    let signature = b64::url_decode(s64)?;
    let signing_input_len = h64.len() + 1 + p64.len();
    let signing_input = &proof.as_bytes()[..signing_input_len];
    match (header.alg.as_str(), &jwk) {
        ("ES256", PublicJwk::P256 { .. }) => {
            let point = jwk.sec1_point().ok_or(Error::Crypto)?;
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(signing_input, &signature)
        }
        ("EdDSA" | "Ed25519", PublicJwk::Ed25519 { x }) => {
            UnparsedPublicKey::new(&signature::ED25519, x).verify(signing_input, &signature)
        }
        ("ES256" | "EdDSA" | "Ed25519", _) => {
            return Err(Error::IdentityInvalid("alg does not match the jwk"));
        }
        _ => return Err(Error::Unsupported("dpop alg")),
    }
    .map_err(|_| Error::IdentityInvalid("bad signature"))?;

    let claims: Claims = serde_json::from_slice(&b64::url_decode(p64)?)
        .map_err(|_| Error::Malformed("dpop claims are not the expected JSON"))?;
    if claims.jti.len() < 8 || claims.jti.len() > 256 {
        return Err(Error::IdentityInvalid("jti must be 8 to 256 characters"));
    }
    if claims.htm != expect.method {
        return Err(Error::IdentityInvalid(
            "htm does not match the request method",
        ));
    }
    if strip_query(&claims.htu) != strip_query(expect.url) {
        return Err(Error::IdentityInvalid("htu does not match the request url"));
    }
    // `abs_diff`, not `(iat - now).abs()`: the proof's signer chooses `iat`, and with
    // iat = now - 2^63 the subtraction gives i64::MIN, whose `abs()` overflows (a panic with
    // overflow checks, and in a release build a negative distance that passed the window).
    // A negative skew accepts no distance at all.
    if claims.iat.abs_diff(expect.now) > u64::try_from(expect.max_skew).unwrap_or(0) {
        return Err(Error::IdentityInvalid("iat outside the accepted window"));
    }
    let thumbprint = jwk.thumbprint();
    Ok(VerifiedProof {
        jwk,
        thumbprint,
        jti: claims.jti,
        iat: claims.iat,
    })
}

/// A device's installation key: the private half of its installation identity.
pub enum InstallationKey {
    /// ECDSA P-256 (ES256), the default and what hardware keystores provide.
    P256(EcdsaKeyPair),
    /// Ed25519 (EdDSA).
    Ed25519(Ed25519KeyPair),
}

impl std::fmt::Debug for InstallationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InstallationKey({})", self.public_jwk().thumbprint())
    }
}

impl InstallationKey {
    /// Generates a new P-256 key and returns it with its PKCS#8 encoding (to be stored).
    ///
    /// # Errors
    /// [`Error::Crypto`] if key generation fails.
    pub fn generate_p256() -> Result<(Self, Vec<u8>)> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| Error::Crypto)?;
        let pkcs8 = doc.as_ref().to_vec();
        Ok((Self::from_pkcs8_p256(&pkcs8)?, pkcs8))
    }

    /// Generates a new Ed25519 key and returns it with its PKCS#8 encoding.
    ///
    /// # Errors
    /// [`Error::Crypto`] if key generation fails.
    pub fn generate_ed25519() -> Result<(Self, Vec<u8>)> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| Error::Crypto)?;
        let pkcs8 = doc.as_ref().to_vec();
        let key = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| Error::Crypto)?;
        Ok((Self::Ed25519(key), pkcs8))
    }

    /// Loads a P-256 key from PKCS#8.
    ///
    /// # Errors
    /// [`Error::Malformed`] if the bytes are not a P-256 PKCS#8 key.
    pub fn from_pkcs8_p256(pkcs8: &[u8]) -> Result<Self> {
        EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
            .map(Self::P256)
            .map_err(|_| Error::Malformed("not a P-256 PKCS#8 key"))
    }

    /// Loads an Ed25519 key from PKCS#8.
    ///
    /// # Errors
    /// [`Error::Malformed`] if the bytes are not an Ed25519 PKCS#8 key.
    pub fn from_pkcs8_ed25519(pkcs8: &[u8]) -> Result<Self> {
        Ed25519KeyPair::from_pkcs8(pkcs8)
            .map(Self::Ed25519)
            .map_err(|_| Error::Malformed("not an Ed25519 PKCS#8 key"))
    }

    /// The public JWK.
    pub fn public_jwk(&self) -> PublicJwk {
        match self {
            Self::P256(k) => {
                let point = k.public_key().as_ref();
                let mut x = [0u8; 32];
                let mut y = [0u8; 32];
                // An uncompressed P-256 point is always 65 bytes: 0x04 ‖ x ‖ y.
                x.copy_from_slice(&point[1..33]);
                y.copy_from_slice(&point[33..65]);
                PublicJwk::P256 { x, y }
            }
            Self::Ed25519(k) => {
                let mut x = [0u8; 32];
                x.copy_from_slice(k.public_key().as_ref());
                PublicJwk::Ed25519 { x }
            }
        }
    }

    /// The JWS `alg` of this key.
    pub fn jws_alg(&self) -> &'static str {
        match self {
            Self::P256(_) => "ES256",
            Self::Ed25519(_) => "EdDSA",
        }
    }

    /// Signs bytes: raw `r ‖ s` for P-256, the 64-byte signature for Ed25519.
    ///
    /// # Errors
    /// [`Error::Crypto`] if signing fails.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        match self {
            Self::P256(k) => k
                .sign(&aws_lc_rs::rand::SystemRandom::new(), message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| Error::Crypto),
            Self::Ed25519(k) => Ok(k.sign(message).as_ref().to_vec()),
        }
    }

    /// Makes a DPoP proof for one request.
    ///
    /// # Errors
    /// [`Error::Crypto`] if signing or the RNG fails.
    pub fn dpop_proof(&self, method: &str, url: &str, now: i64) -> Result<String> {
        let header = serde_json::json!({
            "typ": "dpop+jwt",
            "alg": self.jws_alg(),
            "jwk": self.public_jwk().to_json(),
        });
        let claims = serde_json::json!({
            "jti": random::token(16)?,
            "htm": method,
            "htu": strip_query(url),
            "iat": now,
        });
        let mut token = b64::url_encode(header.to_string());
        token.push('.');
        token.push_str(&b64::url_encode(claims.to_string()));
        let sig = self.sign(token.as_bytes())?;
        token.push('.');
        token.push_str(&b64::url_encode(sig));
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors() -> Value {
        serde_json::from_str(include_str!("../vectors/rfc9449_dpop.json")).expect("vectors")
    }

    #[test]
    fn rfc9449_section_4_1_proof_verifies() {
        let v = vectors();
        let proof = &v["proofs"][0];
        let expect = Expectation {
            method: "POST",
            url: "https://server.example.com/token",
            now: 1_562_262_616,
            max_skew: 60,
        };
        let ok = verify(proof["dpop_header_value"].as_str().expect("proof"), &expect)
            .expect("valid proof");
        assert_eq!(ok.thumbprint, v["jkt"]["value"].as_str().expect("jkt"));
        assert_eq!(ok.jti, "-BwC3ESc6acc2lTc");
    }

    #[test]
    fn rfc9449_proof_refused_for_other_method_url_or_time() {
        let v = vectors();
        let proof = v["proofs"][0]["dpop_header_value"].as_str().expect("proof");
        let good = Expectation {
            method: "POST",
            url: "https://server.example.com/token",
            now: 1_562_262_616,
            max_skew: 60,
        };
        let get = Expectation {
            method: "GET",
            ..good
        };
        assert!(matches!(
            verify(proof, &get),
            Err(Error::IdentityInvalid(_))
        ));
        let other = Expectation {
            url: "https://server.example.com/other",
            ..good
        };
        assert!(matches!(
            verify(proof, &other),
            Err(Error::IdentityInvalid(_))
        ));
        let late = Expectation {
            now: 1_562_262_616 + 61,
            ..good
        };
        assert!(matches!(
            verify(proof, &late),
            Err(Error::IdentityInvalid(_))
        ));
    }

    #[test]
    fn tampered_claims_fail_signature() {
        let v = vectors();
        let proof = v["proofs"][0]["dpop_header_value"].as_str().expect("proof");
        let (h, _, s) = split_compact(proof).expect("split");
        let forged = b64::url_encode(
            r#"{"jti":"-BwC3ESc6acc2lTc","htm":"GET","htu":"https://server.example.com/token","iat":1562262616}"#,
        );
        let token = format!("{h}.{forged}.{s}");
        let expect = Expectation {
            method: "GET",
            url: "https://server.example.com/token",
            now: 1_562_262_616,
            max_skew: 60,
        };
        assert_eq!(
            verify(&token, &expect).map(|_| ()),
            Err(Error::IdentityInvalid("bad signature"))
        );
    }

    /// Found while writing the `dpop_verify` fuzz target: a signer-chosen `iat` at the ends of
    /// i64 overflowed the window check; with `iat = now - 2^63` a release build accepted it.
    #[test]
    fn iat_at_the_ends_of_i64_is_outside_the_window() {
        let (key, _) = InstallationKey::generate_p256().expect("key");
        let header =
            serde_json::json!({"typ":"dpop+jwt","alg":"ES256","jwk":key.public_jwk().to_json()});
        let now = 1_562_262_616_i64;
        let expect = Expectation {
            method: "POST",
            url: "https://server.example.com/token",
            now,
            max_skew: 60,
        };
        for iat in [
            i64::MIN,
            now.wrapping_add(i64::MIN),
            i64::MAX,
            now - 61,
            now + 61,
        ] {
            let claims =
                serde_json::json!({"jti":"abcdefgh12","htm":"POST","htu":expect.url,"iat":iat});
            let input = format!(
                "{}.{}",
                b64::url_encode(header.to_string()),
                b64::url_encode(claims.to_string())
            );
            let sig = b64::url_encode(key.sign(input.as_bytes()).expect("sign"));
            assert_eq!(
                verify(&format!("{input}.{sig}"), &expect).map(|_| ()),
                Err(Error::IdentityInvalid("iat outside the accepted window")),
                "iat {iat}"
            );
        }
    }

    #[test]
    fn own_proofs_round_trip_for_both_key_types() {
        for (key, _) in [
            InstallationKey::generate_p256().expect("p256"),
            InstallationKey::generate_ed25519().expect("ed25519"),
        ] {
            let proof = key
                .dpop_proof("GET", "https://api.example/v1/mailbox?x=1", 1000)
                .expect("proof");
            let expect = Expectation {
                method: "GET",
                url: "https://api.example/v1/mailbox",
                now: 1010,
                max_skew: 60,
            };
            let ok = verify(&proof, &expect).expect("verifies");
            assert_eq!(ok.thumbprint, key.public_jwk().thumbprint());
        }
    }

    #[test]
    fn wrong_typ_and_alg_none_are_refused() {
        let (key, _) = InstallationKey::generate_p256().expect("key");
        let jwk = key.public_jwk().to_json();
        let claims =
            b64::url_encode(r#"{"jti":"abcdefgh12","htm":"GET","htu":"https://a/b","iat":5}"#);
        let expect = Expectation {
            method: "GET",
            url: "https://a/b",
            now: 5,
            max_skew: 60,
        };
        let h =
            b64::url_encode(serde_json::json!({"typ":"JWT","alg":"ES256","jwk":jwk}).to_string());
        let t = format!("{h}.{claims}.AAAA");
        assert_eq!(
            verify(&t, &expect).map(|_| ()),
            Err(Error::IdentityInvalid("typ must be dpop+jwt"))
        );
        let h = b64::url_encode(
            serde_json::json!({"typ":"dpop+jwt","alg":"none","jwk":jwk}).to_string(),
        );
        let t = format!("{h}.{claims}.AAAA");
        assert_eq!(
            verify(&t, &expect).map(|_| ()),
            Err(Error::Unsupported("dpop alg"))
        );
    }
}
