//! One attempt at a one-time code, judged the same way for every flow that has one (SMS codes
//! of accounts, enrollment codes of otp mode): the store takes the attempt (checks and counts it in
//! one statement) before any comparison, so a burst of guesses compares at most the allowed
//! number of them; this module turns what the store answered, the expiry and the comparison
//! into one verdict.

use crate::Attempt;

/// A stored one-time code, as far as judging an attempt needs it.
pub trait OneTimeCode {
    /// Expiry, Unix seconds.
    fn expires_at(&self) -> i64;
    /// Attempts taken so far, the current one included.
    fn attempts(&self) -> i64;
}

impl OneTimeCode for crate::accounts::SmsCode {
    fn expires_at(&self) -> i64 {
        self.expires_at
    }

    fn attempts(&self) -> i64 {
        self.attempts
    }
}

impl OneTimeCode for crate::OtpRecord {
    fn expires_at(&self) -> i64 {
        self.expires_at
    }

    fn attempts(&self) -> i64 {
        self.attempts
    }
}

/// Why an attempt did not pass.
#[derive(Debug)]
pub enum Failure<E> {
    /// No such code (or one asked for by another caller): answered as a wrong code.
    Missing,
    /// Every attempt was already taken.
    Locked,
    /// The code is past its expiry.
    Expired,
    /// A wrong code.
    Wrong {
        /// Attempts taken so far, this one included.
        attempts: i64,
        /// This attempt was the last one: it answers as the lock, as every later one will.
        locked: bool,
    },
    /// The comparison itself could not run (e.g. a sealed secret did not open).
    Error(E),
}

impl<E> Failure<E> {
    /// Whether the caller is told the code is locked (rather than wrong or missing).
    pub fn is_locked(&self) -> bool {
        matches!(self, Self::Locked | Self::Wrong { locked: true, .. })
    }
}

/// Judges one attempt the store has taken (`attempt`) at `now`, with at most `max` attempts
/// allowed: the record if `matches` says the presented code is right.
///
/// # Errors
/// The [`Failure`], in the order a client may learn it: missing or locked, then expired, then
/// wrong.
pub fn judge<R: OneTimeCode, E>(
    attempt: Attempt<R>,
    now: i64,
    max: i64,
    matches: impl FnOnce(&R) -> Result<bool, E>,
) -> Result<R, Failure<E>> {
    let record = match attempt {
        Attempt::Taken(record) => record,
        Attempt::Locked => return Err(Failure::Locked),
        Attempt::Missing => return Err(Failure::Missing),
    };
    if record.expires_at() <= now {
        return Err(Failure::Expired);
    }
    if !matches(&record).map_err(Failure::Error)? {
        let attempts = record.attempts();
        return Err(Failure::Wrong {
            attempts,
            locked: attempts >= max,
        });
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Code(i64, i64);

    impl OneTimeCode for Code {
        fn expires_at(&self) -> i64 {
            self.0
        }

        fn attempts(&self) -> i64 {
            self.1
        }
    }

    fn ok(_: &Code) -> Result<bool, ()> {
        Ok(true)
    }

    fn wrong(_: &Code) -> Result<bool, ()> {
        Ok(false)
    }

    #[test]
    fn verdicts() {
        assert!(judge(Attempt::Taken(Code(100, 1)), 50, 5, ok).is_ok());
        assert!(matches!(
            judge(Attempt::<Code>::Missing, 50, 5, ok),
            Err(Failure::Missing)
        ));
        let locked = judge(Attempt::<Code>::Locked, 50, 5, ok).expect_err("locked");
        assert!(locked.is_locked());
        assert!(matches!(
            judge(Attempt::Taken(Code(50, 1)), 50, 5, ok),
            Err(Failure::Expired)
        ));
        let e = judge(Attempt::Taken(Code(100, 4)), 50, 5, wrong).expect_err("wrong");
        assert!(matches!(
            e,
            Failure::Wrong {
                attempts: 4,
                locked: false
            }
        ));
        let e = judge(Attempt::Taken(Code(100, 5)), 50, 5, wrong).expect_err("last");
        assert!(e.is_locked(), "the last attempt answers as the lock");
        assert!(matches!(
            judge(Attempt::Taken(Code(100, 1)), 50, 5, |_| Err("x")),
            Err(Failure::Error("x"))
        ));
    }
}
