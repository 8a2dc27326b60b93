//! SMS codes: 6 random digits, kept only as a keyed hash bound to phone and purpose.

use aws_lc_rs::hmac;

use crate::Error;

/// A new random 6-digit code.
///
/// # Errors
/// If the RNG fails.
pub fn generate() -> Result<String, Error> {
    let n = moat_core::random::below(1_000_000)?;
    Ok(format!("{n:06}"))
}

/// The stored form of a code: HMAC-SHA-256(pepper, purpose ‖ 0 ‖ phone ‖ 0 ‖ code).
pub fn hash(pepper: &hmac::Key, phone: &str, purpose: &str, code: &str) -> Vec<u8> {
    let mut ctx = hmac::Context::with_key(pepper);
    for part in [
        purpose.as_bytes(),
        b"\0",
        phone.as_bytes(),
        b"\0",
        code.as_bytes(),
    ] {
        ctx.update(part);
    }
    ctx.sign().as_ref().to_vec()
}
