//! The two enrollment steps: `enroll` (identity proof, then the credential of the configured
//! mode, or an enrollment code in otp mode) and `confirm` (otp mode: the code for an HMAC
//! client credential and an RSA encryption key).

use std::net::IpAddr;

use moat_cluster::quota::Quota;
use moat_core::apikey::ApiKey;
use moat_core::clock::rfc3339;
use moat_core::{b64, random, totp};
use moat_observe::{audit, metrics, stats};
use moat_store::{Credential, Device, DeviceStatus, NewCredential, OtpRecord};
use serde_json::json;
use uuid::Uuid;

use crate::error::Error;
use crate::identify::{Proof, Who};
use crate::otp::{OTP_DIGITS, OTP_STEP};
use crate::service::Enrollment;
use crate::settings::Mode;

/// Who asks, as the request shows it.
#[derive(Clone, Copy, Debug)]
pub struct Caller<'a> {
    /// The DPoP proof of the installation key, if the request carries one.
    pub proof: Proof<'a>,
    /// A Firebase ID token from the body (Firebase identity only).
    pub firebase_id_token: Option<&'a str>,
    /// The client address, for the audit log.
    pub ip: IpAddr,
}

/// Where the mailbox item went.
#[derive(Clone, Copy, Debug)]
pub struct Delivery {
    /// `builtin` or `firebase`: where to read the mailbox.
    pub channel: &'static str,
    /// Seconds the mailbox item stays readable.
    pub expires_in: i64,
}

/// What an enrollment issued, for the audit log.
struct Issued<'a> {
    kind: &'static str,
    subject: Option<Uuid>,
    device_id: &'a str,
    platform: Option<&'a str>,
}

impl<'a> Issued<'a> {
    fn of(device: &'a Device, kind: &'static str) -> Self {
        Self {
            kind,
            subject: Some(device.id),
            device_id: &device.device_id,
            platform: device.platform.as_deref(),
        }
    }
}

/// Checks an installation's own id: 1-128 characters of `A-Za-z0-9._:-`.
///
/// # Errors
/// [`Error::Validation`].
pub fn validate_device_id(id: &str) -> Result<(), Error> {
    let ok = (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::Validation(
            "device_id must be 1-128 characters of A-Za-z0-9._:-",
        ))
    }
}

fn validate_platform(p: Option<&str>) -> Result<(), Error> {
    match p {
        None | Some("android" | "ios" | "other") => Ok(()),
        Some(_) => Err(Error::Validation("platform must be android, ios or other")),
    }
}

impl Enrollment {
    /// Counts an issued credential (metrics, dashboard) and writes its audit event.
    async fn record_issue(&self, who: &Who, issued: Issued<'_>, ip: IpAddr, now: i64) {
        let mode = self.settings.mode.as_str();
        let channel = self.channel_name(who);
        self.metrics
            .enrollments
            .get_or_create(&metrics::EnrollLabels { mode, channel })
            .inc();
        self.stats
            .add(now, stats::metric::ENROLL, &format!("{mode}/{channel}"), 1);
        let mut event = audit::event(now, issued.kind, format!("identity:{}", who.identity()))
            .ip(ip)
            .detail(&json!({"mode": mode, "channel": channel, "device_id": issued.device_id, "platform": issued.platform}));
        if let Some(id) = issued.subject {
            event = event.subject(id);
        }
        self.audit.record(event).await;
    }

    /// The existing device of `(identity, device_id)`, refused if revoked.
    async fn refuse_if_revoked(
        &self,
        identity: &str,
        device_id: &str,
    ) -> Result<Option<Device>, Error> {
        match self.store.device_by_identity(identity, device_id).await? {
            Some(d) if d.status == DeviceStatus::Revoked => Err(Error::Revoked),
            Some(d) => {
                // Re-enrollment rotates this credential: forget the old one now, on this
                // instance (others see it within the device cache TTL).
                self.credentials.forget(&d);
                Ok(Some(d))
            }
            None => Ok(None),
        }
    }

    /// `POST /v1/enroll`: the one step open to the world. `rate_key` names the client's
    /// address for `enrollment.per_ip_hour`.
    ///
    /// # Errors
    /// [`Error::Validation`], [`Error::TooManyEnrollments`], the identity refusals of
    /// [`Enrollment::identify`], [`Error::Revoked`], [`Error::Concurrent`],
    /// [`Error::Unavailable`], the store's.
    pub async fn enroll(
        &self,
        caller: Caller<'_>,
        device_id: &str,
        platform: Option<&str>,
        rate_key: String,
        now: i64,
    ) -> Result<Delivery, Error> {
        validate_device_id(device_id)?;
        validate_platform(platform)?;
        // Per client IP, before the identity proof is verified: enrollment is open, and each
        // enrollment is a device with budgets of its own (SMS among them).
        let quota = Quota::per_hour(self.settings.per_ip_hour);
        self.limiter
            .check(now.saturating_mul(1000), &[(rate_key, quota)])
            .await
            .map_err(Error::TooManyEnrollments)?;
        let who = self
            .identify(caller.proof, caller.firebase_id_token, now)
            .await?;
        let identity = who.identity();
        let ip = caller.ip;
        match self.settings.mode {
            Mode::Static => {
                let key = std::str::from_utf8(self.keys.static_key().expose()).unwrap_or_default();
                let payload = json!({"kind": "api_key", "key": key});
                // No device row: the static key is the same for everyone (seed 000 section
                // 3.1).
                match self.remote(&who) {
                    Some((rtdb, uid)) => {
                        self.send_remote(rtdb, uid, &identity, payload, now).await?;
                    }
                    None => {
                        let item = self.builtin_item(&identity, &payload, now)?;
                        self.store.put_mailbox_item(item, now).await?;
                    }
                }
                let event = Issued {
                    kind: audit::kind::STATIC_KEY_SENT,
                    subject: None,
                    device_id,
                    platform,
                };
                self.record_issue(&who, event, ip, now).await;
            }
            Mode::Dynamic => {
                let existing = self.refuse_if_revoked(&identity, device_id).await?;
                let (key, text) = ApiKey::generate()?;
                let key_text = std::str::from_utf8(text.expose())
                    .unwrap_or_default()
                    .to_owned();
                let cred = NewCredential {
                    id: Uuid::new_v4(),
                    identity: identity.clone(),
                    device_id: device_id.to_owned(),
                    mode: "dynamic".into(),
                    platform: platform.map(str::to_owned),
                    credential: Credential {
                        key_lookup: Some(key.lookup.clone()),
                        key_hash: Some(key.hash(self.keys.api_key_pepper()).to_vec()),
                        signing_jwk: who.signing_jwk(),
                        ..Credential::default()
                    },
                };
                let payload = move |device: Uuid| json!({"kind": "api_key", "key": key_text, "device": device});
                let device = self.issue(&who, cred, existing, payload, now).await?;
                tracing::info!(device = %device.id, mode = "dynamic", "device enrolled");
                let event = Issued::of(&device, audit::kind::DEVICE_ENROLLED);
                self.record_issue(&who, event, ip, now).await;
            }
            Mode::Otp => {
                self.refuse_if_revoked(&identity, device_id).await?;
                let secret = random::secret(20)?;
                let step = i64::try_from(totp::time_step(now, OTP_STEP)).unwrap_or(0);
                let code = totp::hotp(secret.expose(), step as u64, OTP_DIGITS, totp::Hash::Sha1);
                let otp_id = format!("eo_{}", random::token(16)?);
                let expires_at = now + self.settings.otp_ttl;
                let sealed = self.keys.data().seal(otp_id.as_bytes(), secret.expose())?;
                let payload = json!({"kind": "enrollment_otp", "code": code, "expires_at": rfc3339(expires_at)});
                let record = OtpRecord {
                    id: otp_id,
                    identity: identity.clone(),
                    device_id: device_id.to_owned(),
                    platform: platform.map(str::to_owned),
                    secret_sealed: sealed,
                    step,
                    attempts: 0,
                    expires_at,
                    used_at: None,
                };
                match self.remote(&who) {
                    Some((rtdb, uid)) => {
                        let sent = self.send_remote(rtdb, uid, &identity, payload, now).await?;
                        if let Err(e) = self.store.put_enrollment_otp(record, None, now).await {
                            self.retract(&sent, now).await;
                            return Err(e.into());
                        }
                    }
                    None => {
                        let item = self.builtin_item(&identity, &payload, now)?;
                        self.store
                            .put_enrollment_otp(record, Some(item), now)
                            .await?;
                    }
                }
            }
        }
        Ok(Delivery {
            channel: self.channel_name(&who),
            expires_in: self.settings.mailbox_ttl,
        })
    }

    /// `POST /v1/enroll/confirm` (otp mode): exchanges the code for a client credential.
    ///
    /// # Errors
    /// [`Error::Validation`], the identity refusals of [`Enrollment::identify`],
    /// [`Error::NotOtpMode`], the code's refusals, [`Error::Revoked`],
    /// [`Error::KeysExhausted`], [`Error::Concurrent`], [`Error::Unavailable`], the store's.
    pub async fn confirm(
        &self,
        caller: Caller<'_>,
        device_id: &str,
        otp: &str,
        now: i64,
    ) -> Result<Delivery, Error> {
        validate_device_id(device_id)?;
        if otp.len() != OTP_DIGITS as usize || !otp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::Validation("otp must be 6 digits"));
        }
        let who = self
            .identify(caller.proof, caller.firebase_id_token, now)
            .await?;
        let identity = who.identity();
        if self.settings.mode != Mode::Otp {
            return Err(Error::NotOtpMode);
        }
        let ip = caller.ip;
        let record = self.check_code(&identity, device_id, otp, ip, now).await?;
        let existing = self.refuse_if_revoked(&identity, device_id).await?;
        // Take the RSA key before consuming the code, so a drained pool does not burn the code.
        let pool = self.rsa_pool.as_ref().ok_or(Error::Unavailable)?;
        let rsa = pool.take().await.ok_or_else(|| {
            tracing::warn!(
                "rsa key pool empty: confirmations are arriving faster than keys are generated"
            );
            Error::KeysExhausted
        })?;
        if !self
            .store
            .consume_otp(&record.id, now, self.settings.otp_max_attempts)
            .await?
        {
            return Err(Error::OtpInvalid);
        }
        let client_id = format!("mc_{}", random::token(16)?);
        let rsa_kid = format!("mk_{}", random::token(12)?);
        let hmac_secret = random::secret(32)?;
        let rsa_jwk = rsa.public_jwk()?;
        let data = self.keys.data();
        let cred = NewCredential {
            id: Uuid::new_v4(),
            identity: identity.clone(),
            device_id: device_id.to_owned(),
            mode: "otp".into(),
            platform: record.platform.clone(),
            credential: Credential {
                client_id: Some(client_id.clone()),
                hmac_secret_sealed: Some(data.seal(client_id.as_bytes(), hmac_secret.expose())?),
                rsa_kid: Some(rsa_kid.clone()),
                rsa_private_sealed: Some(data.seal(rsa_kid.as_bytes(), rsa.pkcs8().expose())?),
                signing_jwk: who.signing_jwk(),
                ..Credential::default()
            },
        };
        let mut encryption_key = rsa_jwk.to_json();
        encryption_key["kid"] = rsa_kid.into();
        encryption_key["alg"] = "RSA-OAEP-256".into();
        encryption_key["use"] = "enc".into();
        let secret_text = b64::url_encode(hmac_secret.expose());
        let payload = move |device: Uuid| {
            json!({
                "kind": "client_credential",
                "device": device,
                "client_id": client_id,
                "hmac_secret": secret_text,
                "alg": "hmac-sha256",
                "encryption_key": encryption_key,
            })
        };
        let device = self.issue(&who, cred, existing, payload, now).await?;
        tracing::info!(device = %device.id, mode = "otp", "device enrolled");
        let event = Issued::of(&device, audit::kind::DEVICE_CONFIRMED);
        self.record_issue(&who, event, ip, now).await;
        Ok(Delivery {
            channel: self.channel_name(&who),
            expires_in: self.settings.mailbox_ttl,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{validate_device_id, validate_platform};

    #[test]
    fn device_ids_and_platforms_are_checked() {
        assert!(validate_device_id("app-3f9c2a.x_y:z").is_ok());
        for bad in ["", "a b", "a/b", "é", &"a".repeat(129)] {
            assert!(validate_device_id(bad).is_err(), "{bad}");
        }
        assert!(validate_platform(None).is_ok());
        assert!(validate_platform(Some("ios")).is_ok());
        assert!(validate_platform(Some("windows")).is_err());
    }
}
