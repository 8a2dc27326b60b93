//! Enrollment codes (otp mode): one attempt at a code, taken and compared.

use std::net::IpAddr;

use moat_core::totp;
use moat_observe::audit;
use moat_store::{Attempt, OtpRecord};
use serde_json::json;

use crate::error::Error;
use crate::service::Enrollment;

/// TOTP time step of enrollment codes, seconds (PROTOCOL section 3).
pub const OTP_STEP: i64 = 30;
/// Digits of enrollment codes.
pub const OTP_DIGITS: u32 = 6;

impl Enrollment {
    /// Takes one attempt at the enrollment code of `(identity, device_id)` and compares
    /// `otp` with it; returns the code's record when it matches (not yet consumed). The
    /// attempt that reaches the limit is audited.
    ///
    /// # Errors
    /// [`Error::OtpInvalid`] for a wrong or unknown code, [`Error::OtpExpired`],
    /// [`Error::OtpLocked`] once the attempts are spent; the store's.
    pub(crate) async fn check_code(
        &self,
        identity: &str,
        device_id: &str,
        otp: &str,
        ip: IpAddr,
        now: i64,
    ) -> Result<OtpRecord, Error> {
        let max_attempts = self.settings.otp_max_attempts;
        // One attempt is taken (checked and counted in one statement) before the comparison:
        // of a burst of guesses at most otp_max_attempts are ever compared.
        let record = match self
            .store
            .take_otp_attempt(identity, device_id, max_attempts)
            .await?
        {
            Attempt::Taken(record) => record,
            Attempt::Locked => return Err(Error::OtpLocked),
            Attempt::Missing => return Err(Error::OtpInvalid),
        };
        if record.expires_at <= now {
            return Err(Error::OtpExpired);
        }
        let secret = self
            .keys
            .data()
            .open(record.id.as_bytes(), &record.secret_sealed)?;
        let expected = totp::hotp(
            secret.expose(),
            u64::try_from(record.step).unwrap_or(0),
            OTP_DIGITS,
            totp::Hash::Sha1,
        );
        if !moat_core::secret::ct_eq(expected.as_bytes(), otp.as_bytes()) {
            let attempts = record.attempts;
            tracing::info!(identity = %identity, attempts, "wrong enrollment code");
            if attempts == max_attempts {
                let event = audit::event(
                    now,
                    audit::kind::ENROLLMENT_LOCKED,
                    format!("identity:{identity}"),
                )
                .ip(ip)
                .detail(&json!({"device_id": device_id, "attempts": attempts}));
                self.audit.record(event).await;
            }
            return Err(if attempts >= max_attempts {
                Error::OtpLocked
            } else {
                Error::OtpInvalid
            });
        }
        Ok(record)
    }
}
