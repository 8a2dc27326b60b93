//! Opaque bearer secrets: per-device API keys `moat_dk_<lookup>_<secret>` and refresh tokens
//! `moat_rt_<lookup>_<secret>`.
//!
//! `lookup` is 16 hex characters (8 random bytes): public, indexed, it finds the device row
//! in one lookup. `secret` is 32 random bytes, base64url. The store keeps only
//! HMAC-SHA-256(pepper, secret), where the pepper is derived from the data key, so a stolen
//! database alone does not let anyone test guesses; the keys carry 256 bits of entropy, so a
//! fast keyed hash is the right tool (a password hash would only cost CPU on every request).

use aws_lc_rs::hmac;

use crate::secret::{SecretBytes, ct_eq};
use crate::{Error, Result, b64, random};

/// Prefix of dynamic device keys.
pub const PREFIX: &str = "moat_dk_";
/// Prefix of refresh tokens.
pub const REFRESH_PREFIX: &str = "moat_rt_";
const LOOKUP_LEN: usize = 16;
const SECRET_LEN: usize = 43;

/// A parsed API key.
pub struct ApiKey {
    /// The public lookup id.
    pub lookup: String,
    secret: SecretBytes,
}

impl ApiKey {
    /// Generates a new key, returning it with its full text (to deliver once, never store).
    ///
    /// # Errors
    /// [`Error::Crypto`] if the RNG fails.
    pub fn generate() -> Result<(Self, SecretBytes)> {
        Self::generate_with_prefix(PREFIX)
    }

    /// Generates a new secret with another prefix (e.g. [`REFRESH_PREFIX`]).
    ///
    /// # Errors
    /// [`Error::Crypto`] if the RNG fails.
    pub fn generate_with_prefix(prefix: &str) -> Result<(Self, SecretBytes)> {
        let lookup: String = random::array::<8>()?
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let secret = b64::url_encode(random::array::<32>()?);
        let text = format!("{prefix}{lookup}_{secret}");
        let key = Self::parse_with_prefix(prefix, &text)?;
        Ok((key, SecretBytes::new(text.into_bytes())))
    }

    /// Parses a key from its text.
    ///
    /// # Errors
    /// [`Error::Malformed`] if the text is not in the format above.
    pub fn parse(text: &str) -> Result<Self> {
        Self::parse_with_prefix(PREFIX, text)
    }

    /// Parses a secret with another prefix.
    ///
    /// # Errors
    /// [`Error::Malformed`] if the text is not in the format above.
    pub fn parse_with_prefix(prefix: &str, text: &str) -> Result<Self> {
        let rest = text
            .strip_prefix(prefix)
            .ok_or(Error::Malformed("api key prefix"))?;
        if rest.len() != LOOKUP_LEN + 1 + SECRET_LEN || rest.as_bytes()[LOOKUP_LEN] != b'_' {
            return Err(Error::Malformed("api key length"));
        }
        let lookup = &rest[..LOOKUP_LEN];
        if !lookup
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err(Error::Malformed("api key lookup"));
        }
        let secret = b64::url_decode(&rest[LOOKUP_LEN + 1..])?;
        Ok(Self {
            lookup: lookup.to_owned(),
            secret: SecretBytes::new(secret),
        })
    }

    /// The keyed hash the store keeps.
    pub fn hash(&self, pepper: &hmac::Key) -> [u8; 32] {
        let tag = hmac::sign(pepper, self.secret.expose());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Whether this key matches a stored hash (constant time).
    pub fn matches(&self, pepper: &hmac::Key, stored: &[u8]) -> bool {
        ct_eq(&self.hash(pepper), stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_parse_match() {
        let pepper = hmac::Key::new(hmac::HMAC_SHA256, b"pepper");
        let (key, text) = ApiKey::generate().expect("generate");
        let text = std::str::from_utf8(text.expose()).expect("utf8").to_owned();
        assert!(text.starts_with("moat_dk_"));
        let parsed = ApiKey::parse(&text).expect("parse");
        assert_eq!(parsed.lookup, key.lookup);
        let stored = key.hash(&pepper);
        assert!(parsed.matches(&pepper, &stored));
        let (other, _) = ApiKey::generate().expect("generate");
        assert!(!other.matches(&pepper, &stored));
        for bad in [
            "",
            "moat_dk_",
            "moat_dk_XYZ",
            &text[..text.len() - 1],
            &text.replace("moat_dk_", "moat_xx_"),
        ] {
            assert!(ApiKey::parse(bad).is_err(), "{bad}");
        }
    }
}
