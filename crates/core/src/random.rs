//! Random values from the system CSPRNG (aws-lc-rs).

use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};

use crate::secret::SecretBytes;
use crate::{Error, Result};

/// Fills a fixed-size array with random bytes.
///
/// # Errors
/// [`Error::Crypto`] if the system RNG fails.
pub fn array<const N: usize>() -> Result<[u8; N]> {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| Error::Crypto)?;
    Ok(out)
}

/// Random secret bytes of the given length.
///
/// # Errors
/// [`Error::Crypto`] if the system RNG fails.
pub fn secret(len: usize) -> Result<SecretBytes> {
    let mut out = vec![0u8; len];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| Error::Crypto)?;
    Ok(SecretBytes::new(out))
}

/// A random base64url token with `bytes` bytes of entropy (nonces, ids).
///
/// # Errors
/// [`Error::Crypto`] if the system RNG fails.
pub fn token(bytes: usize) -> Result<String> {
    let mut out = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| Error::Crypto)?;
    Ok(crate::b64::url_encode(out))
}

/// A uniformly random integer below `bound` (rejection sampling, no modulo bias).
///
/// # Errors
/// [`Error::Crypto`] if the system RNG fails.
pub fn below(bound: u32) -> Result<u32> {
    assert!(bound > 0, "bound must be positive");
    let zone = u32::MAX - (u32::MAX % bound);
    loop {
        let v = u32::from_be_bytes(array::<4>()?);
        if v < zone {
            return Ok(v % bound);
        }
    }
}
