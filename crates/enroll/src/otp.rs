//! Enrollment codes (otp mode): one attempt at a code, taken and compared.

use std::net::IpAddr;

use moat_core::totp;
use moat_observe::audit;
use moat_store::OtpRecord;
use moat_store::otp as one_time;
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
        // of a burst of guesses at most otp_max_attempts are ever compared. The verdict is
        // the one every one-time code gets (moat_store::otp).
        let attempt = self
            .store
            .take_otp_attempt(identity, device_id, max_attempts)
            .await?;
        let verdict = one_time::judge(attempt, now, max_attempts, |record: &OtpRecord| {
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
            Ok::<_, Error>(moat_core::secret::ct_eq(
                expected.as_bytes(),
                otp.as_bytes(),
            ))
        });
        match verdict {
            Ok(record) => Ok(record),
            Err(one_time::Failure::Missing) => Err(Error::OtpInvalid),
            Err(one_time::Failure::Locked) => Err(Error::OtpLocked),
            Err(one_time::Failure::Expired) => Err(Error::OtpExpired),
            Err(one_time::Failure::Error(e)) => Err(e),
            Err(one_time::Failure::Wrong { attempts, locked }) => {
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
                Err(if locked {
                    Error::OtpLocked
                } else {
                    Error::OtpInvalid
                })
            }
        }
    }
}
