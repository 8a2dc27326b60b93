//! Passwords: policy, and argon2id hashing off the async runtime behind a bounded queue.
//!
//! Parameters: argon2id, m = 19 456 KiB, t = 2, p = 1 (the `argon2` crate's defaults, OWASP's
//! first recommendation), 16-byte random salt, PHC string format. One hash or verify costs
//! ~23 ms of CPU here, so two cores manage ~85 a second: the password endpoints are a CPU
//! lever. Hashing therefore runs on the blocking pool with at most `concurrency` at once; a
//! request that cannot start within `queue_wait` is refused ([`Error::Busy`]) instead of piling up, and the
//! callers rate-limit before they hash.

use std::sync::Arc;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use crate::Error;

/// Shortest password accepted.
pub const MIN_LEN: usize = 8;
/// Longest password accepted (bounds hashing input).
pub const MAX_LEN: usize = 128;

/// A small list of passwords that are refused outright (the most common ones in breach
/// corpora, plus obvious patterns), compared case-insensitively.
const COMMON: &[&str] = &[
    "12345678",
    "123456789",
    "1234567890",
    "password",
    "password1",
    "password123",
    "qwertyui",
    "qwerty123",
    "qwertyuiop",
    "iloveyou",
    "11111111",
    "00000000",
    "12341234",
    "abc12345",
    "abcd1234",
    "1q2w3e4r",
    "1qaz2wsx",
    "sunshine",
    "princess",
    "football",
    "baseball",
    "welcome1",
    "letmein1",
    "monkey123",
    "dragon123",
    "superman",
    "trustno1",
    "passw0rd",
    "p@ssw0rd",
    "admin123",
    "changeme",
    "asdfghjk",
    "zxcvbnm1",
    "88888888",
    "87654321",
    "a1b2c3d4",
    "q1w2e3r4",
    "computer",
    "michelle",
    "jennifer",
    "whatever",
    "starwars",
    "internet",
    "shadow12",
    "master12",
    "freedom1",
    "mustang1",
    "access14",
];

/// Checks the password policy.
///
/// # Errors
/// [`Error::Invalid`] naming the rule.
pub fn check_policy(password: &str, phone: &str) -> Result<(), Error> {
    let chars = password.chars().count();
    if chars < MIN_LEN {
        return Err(Error::Invalid(format!(
            "password must have at least {MIN_LEN} characters"
        )));
    }
    if password.len() > MAX_LEN {
        return Err(Error::Invalid(format!(
            "password must have at most {MAX_LEN} bytes"
        )));
    }
    let lower = password.to_lowercase();
    if COMMON.contains(&lower.as_str()) {
        return Err(Error::Invalid("this password is too common".into()));
    }
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    if !digits.is_empty() && lower.contains(&digits[digits.len().saturating_sub(8)..]) {
        return Err(Error::Invalid(
            "password must not contain the phone number".into(),
        ));
    }
    Ok(())
}

/// Hashes and verifies passwords with bounded concurrency.
pub struct Hasher {
    permits: Arc<Semaphore>,
    queue_wait: Duration,
    dummy: String,
}

impl Hasher {
    /// A hasher running at most `concurrency` hashes at once.
    ///
    /// # Errors
    /// If the dummy hash (used for unknown users, to keep timing alike) cannot be made.
    pub fn new(concurrency: usize, queue_wait: Duration) -> Result<Self, Error> {
        let dummy = hash_blocking(b"moat dummy password for unknown users")?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            queue_wait,
            dummy,
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Error> {
        let permit = tokio::time::timeout(self.queue_wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| Error::Busy)?
            .map_err(|_| Error::Unavailable)?;
        let out = tokio::task::spawn_blocking(move || {
            let out = job();
            drop(permit);
            out
        })
        .await
        .map_err(|e| Error::internal(&e))?;
        Ok(out)
    }

    /// Hashes a password.
    ///
    /// # Errors
    /// [`Error::Busy`] when the hashing queue is full.
    pub async fn hash(&self, password: &str) -> Result<String, Error> {
        let password = Zeroizing::new(password.as_bytes().to_vec());
        self.run(move || hash_blocking(&password)).await?
    }

    /// Verifies a password against a PHC string; with `None` verifies against a dummy hash
    /// (same cost) and returns false.
    ///
    /// # Errors
    /// [`Error::Busy`] when the hashing queue is full.
    pub async fn verify(&self, password: &str, phc: Option<&str>) -> Result<bool, Error> {
        let password = Zeroizing::new(password.as_bytes().to_vec());
        let known = phc.is_some();
        let phc = phc.unwrap_or(&self.dummy).to_owned();
        let ok = self
            .run(move || {
                Argon2::default()
                    .verify_password(&password, phc.as_str())
                    .is_ok()
            })
            .await?;
        Ok(ok && known)
    }
}

fn hash_blocking(password: &[u8]) -> Result<String, Error> {
    let salt = moat_core::random::array::<16>().map_err(|e| Error::internal(&e))?;
    Argon2::default()
        .hash_password_with_salt(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::internal(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        assert!(check_policy("correct horse battery", "+14155552671").is_ok());
        assert!(check_policy("short", "+14155552671").is_err());
        assert!(
            check_policy("Password1", "+14155552671").is_err(),
            "common, any case"
        );
        assert!(
            check_policy("my4155552671pw", "+14155552671").is_err(),
            "contains the phone"
        );
        assert!(check_policy(&"x".repeat(129), "+14155552671").is_err());
    }

    #[tokio::test]
    async fn hash_verify_and_unknown_user() {
        let h = Hasher::new(2, Duration::from_secs(5)).expect("hasher");
        let phc = h.hash("correct horse battery").await.expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(
            h.verify("correct horse battery", Some(&phc))
                .await
                .expect("verify")
        );
        assert!(
            !h.verify("wrong horse battery", Some(&phc))
                .await
                .expect("verify")
        );
        assert!(
            !h.verify("correct horse battery", None)
                .await
                .expect("dummy")
        );
    }
}
