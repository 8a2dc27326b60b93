//! Encryption of secrets at rest: AES-256-GCM under the data key.
//!
//! Sealed format: `0x01 ‖ nonce (12) ‖ ciphertext ‖ tag (16)`. Nonces are random (96 bits);
//! at Moat's write volume (one seal per issued credential) the collision bound is far away.
//! The associated data binds a sealed value to its row (for example the device id), so a
//! value copied into another row does not open.

use aws_lc_rs::aead::{AES_256_GCM, Aad, Nonce, RandomizedNonceKey};

use crate::secret::SecretBytes;
use crate::{Error, Result};

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// The data key: seals and opens secrets stored in the database.
pub struct DataKey(RandomizedNonceKey);

impl DataKey {
    /// Builds the key from 32 bytes.
    ///
    /// # Errors
    /// [`Error::Malformed`] if `bytes` is not 32 bytes long.
    pub fn new(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != 32 {
            return Err(Error::Malformed("data key must be 32 bytes"));
        }
        RandomizedNonceKey::new(&AES_256_GCM, bytes)
            .map(Self)
            .map_err(|_| Error::Crypto)
    }

    /// Encrypts `plaintext`, bound to `aad`.
    ///
    /// # Errors
    /// [`Error::Crypto`] if encryption fails.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut data = plaintext.to_vec();
        let nonce = self
            .0
            .seal_in_place_append_tag(Aad::from(aad), &mut data)
            .map_err(|_| Error::Crypto)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + data.len());
        out.push(VERSION);
        out.extend_from_slice(nonce.as_ref());
        out.extend_from_slice(&data);
        Ok(out)
    }

    /// Decrypts a sealed value bound to `aad`.
    ///
    /// # Errors
    /// [`Error::DecryptionFailed`] if the value was altered, sealed under another key, or
    /// bound to other associated data.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<SecretBytes> {
        if sealed.len() < 1 + NONCE_LEN + 16 || sealed[0] != VERSION {
            return Err(Error::DecryptionFailed);
        }
        let nonce = Nonce::try_assume_unique_for_key(&sealed[1..=NONCE_LEN])
            .map_err(|_| Error::DecryptionFailed)?;
        let mut data = sealed[1 + NONCE_LEN..].to_vec();
        let len = self
            .0
            .open_in_place(nonce, Aad::from(aad), &mut data)
            .map_err(|_| Error::DecryptionFailed)?
            .len();
        data.truncate(len);
        Ok(SecretBytes::new(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let key = DataKey::new(&[9u8; 32]).expect("key");
        let sealed = key.seal(b"device-1", b"hmac secret").expect("seal");
        assert_eq!(
            key.open(b"device-1", &sealed).expect("open").expose(),
            b"hmac secret"
        );
        assert_eq!(
            key.open(b"device-2", &sealed).map(|_| ()),
            Err(Error::DecryptionFailed)
        );
        let other = DataKey::new(&[8u8; 32]).expect("key");
        assert!(other.open(b"device-1", &sealed).is_err());
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(key.open(b"device-1", &flipped).is_err());
        assert!(key.open(b"device-1", &sealed[..10]).is_err());
    }
}
