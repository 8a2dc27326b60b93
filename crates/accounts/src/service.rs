//! The account flows (PROTOCOL section 6): registration and password reset by SMS code,
//! resend, login and refresh (the grants of RFC 6749 section 5), and `me`.
//!
//! Every flow that can send an SMS runs the pumping guard first (and, for registration, the
//! password hash), lets the caller answer, and only then looks the phone up and stores a
//! code: a real one with its SMS, or a decoy no code matches where the flow must not text the
//! phone ([`crate::sms::Detached`]). Neither the answer, its timing, nor the lockout of later
//! confirmations tells a caller which phones have accounts.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use moat_cluster::ratelimit::{Quota, RateLimiter, Refusal};
use moat_core::apikey::{ApiKey, REFRESH_PREFIX};
use moat_core::clock::Clock;
use moat_observe::audit::{self, AuditLog};
use moat_observe::metrics::{Metrics, OutcomeLabels};
use moat_observe::stats::{DailyStats, metric};
use moat_store::StoreError;
use moat_store::accounts::{AccountStore, NewSms, SmsCode, User};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::password::Hasher;
use crate::phone::Phone;
use crate::sms::Detached;
use crate::sms::guard::{Ask, SmsGuard};
use crate::sms::sender::SmsSender;
use crate::sms::worker::SmsWorker;
use crate::tokens::TokenService;
use crate::{Error, KeyRing, codes, otp, password, phone};

/// Wrong attempts before an SMS code locks.
pub const CODE_MAX_ATTEMPTS: i64 = 5;
const REGISTER: &str = "register";
const RESET: &str = "password_reset";

/// How long a password hash may wait for a free hasher before the request is refused.
const HASH_QUEUE_WAIT: Duration = Duration::from_secs(2);

/// The accounts' settings, plain values from the server's configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The app's name, at the start of every SMS.
    pub app_name: String,
    /// Lifetime of an SMS code, seconds.
    pub code_ttl: i64,
    /// Logins per phone per minute.
    pub login_per_minute: u32,
    /// Failed logins before the account locks.
    pub login_lock_after: i64,
    /// How long a locked account stays locked, seconds.
    pub login_lock_seconds: i64,
    /// Password hashes running at once.
    pub hash_concurrency: usize,
    /// Estimated price of one SMS, in `currency` (metrics and dashboard).
    pub cost_per_sms: f64,
    /// The currency of `cost_per_sms`.
    pub currency: String,
}

/// What the accounts use, built by the server at start.
pub struct Parts {
    /// Accounts storage.
    pub store: Arc<dyn AccountStore>,
    /// The data key and the pepper.
    pub keys: Arc<dyn KeyRing>,
    /// Access and refresh tokens.
    pub tokens: Arc<TokenService>,
    /// The SMS sender.
    pub sender: Arc<dyn SmsSender>,
    /// The SMS-pumping guard.
    pub guard: SmsGuard,
    /// Login attempts, per phone and per IP, checked before any password hash.
    pub login_limiter: RateLimiter,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Metrics (SMS outcomes).
    pub metrics: Arc<Metrics>,
    /// The dashboard's daily counters.
    pub stats: Arc<DailyStats>,
    /// The audit log (locked users, reused refresh tokens).
    pub audit: Arc<AuditLog>,
}

/// A successful grant: the token endpoint's answer.
#[derive(Debug)]
pub struct Grant {
    /// A new access token.
    pub access_token: String,
    /// Its lifetime, seconds.
    pub expires_in: i64,
    /// The refresh token to present next.
    pub refresh_token: String,
}

/// The account service: one per server, shared behind an `Arc`.
pub struct Accounts {
    settings: Settings,
    store: Arc<dyn AccountStore>,
    keys: Arc<dyn KeyRing>,
    tokens: Arc<TokenService>,
    hasher: Hasher,
    guard: SmsGuard,
    sender: Arc<dyn SmsSender>,
    /// Wakes the SMS worker when a message is queued.
    notify: Arc<Notify>,
    /// Work run after its answer.
    flows: Arc<Detached>,
    login_limiter: RateLimiter,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    stats: Arc<DailyStats>,
    audit: Arc<AuditLog>,
}

impl Accounts {
    /// The service, from its settings and parts.
    ///
    /// # Errors
    /// If the password hasher cannot start.
    pub fn new(settings: Settings, parts: Parts) -> Result<Self, Error> {
        Ok(Self {
            hasher: Hasher::new(settings.hash_concurrency, HASH_QUEUE_WAIT)?,
            settings,
            store: parts.store,
            keys: parts.keys,
            tokens: parts.tokens,
            guard: parts.guard,
            sender: parts.sender,
            notify: Arc::new(Notify::new()),
            flows: Arc::default(),
            login_limiter: parts.login_limiter,
            clock: parts.clock,
            metrics: parts.metrics,
            stats: parts.stats,
            audit: parts.audit,
        })
    }

    /// Access and refresh tokens.
    pub fn tokens(&self) -> &Arc<TokenService> {
        &self.tokens
    }

    /// The SMS worker, sending what the flows queue.
    pub fn sms_worker(&self) -> SmsWorker {
        SmsWorker {
            store: self.store.clone(),
            keys: self.keys.clone(),
            sender: self.sender.clone(),
            notify: self.notify.clone(),
            metrics: self.metrics.clone(),
            stats: self.stats.clone(),
            clock: self.clock.clone(),
            cost_per_sms: self.settings.cost_per_sms,
            currency: self.settings.currency.clone(),
        }
    }

    /// Waits (up to `limit`) until no flow runs after its answer, so that what an operator
    /// reads (the outbox, the message list) includes every request already answered.
    pub async fn settled(&self, limit: Duration) {
        self.flows.settled(limit).await;
    }

    /// SMS refused by the pumping guard since start.
    pub fn blocked_sms(&self) -> u64 {
        self.guard
            .blocked
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Drops the SMS and login budgets that are full again.
    pub fn purge(&self, now: i64) {
        self.guard.purge(now);
        self.login_limiter.purge(now.saturating_mul(1000));
    }

    fn sms_text(&self, purpose: &str, code: &str) -> String {
        let app = &self.settings.app_name;
        let minutes = self.settings.code_ttl / 60;
        match purpose {
            RESET => format!(
                "{app} password reset code: {code}. Valid for {minutes} minutes. Do not share it."
            ),
            _ => format!(
                "{app} verification code: {code}. Valid for {minutes} minutes. Do not share it."
            ),
        }
    }

    /// Stores a new code for `(phone, purpose)` (replacing any) and, if `real`, queues its
    /// SMS.
    ///
    /// A flow that must not send (a reset for a phone without an account, a registration for
    /// one that has one) stores a decoy instead: a random hash no code matches, bound to the
    /// device like a real one, so confirmations take the same attempts and lock the same way
    /// for every phone. This runs after the answer ([`Self::spawn_send`]), so the two paths
    /// need not cost the same.
    async fn send_code(
        &self,
        phone: &Phone,
        purpose: &str,
        device: &str,
        pending_password: Option<String>,
        real: bool,
    ) -> Result<(), Error> {
        let now = self.clock.now();
        let (code_hash, sms) = if real {
            let code = codes::generate()?;
            let id = format!("sms_{}", moat_core::random::token(16)?);
            let body = self.sms_text(purpose, &code);
            let sms = NewSms {
                body_sealed: self.keys.data().seal(id.as_bytes(), body.as_bytes())?,
                id,
                sender: self.sender.name().to_owned(),
                phone: phone.e164.clone(),
                country: phone.region.clone(),
                purpose: purpose.to_owned(),
            };
            let hash = codes::hash(self.keys.pepper(), &phone.e164, purpose, &code);
            (hash, Some(sms))
        } else {
            (moat_core::random::secret(32)?.expose().to_vec(), None)
        };
        let record = SmsCode {
            phone: phone.e164.clone(),
            purpose: purpose.to_owned(),
            code_hash,
            device: Some(device.to_owned()),
            pending_password,
            attempts: 0,
            created_at: now,
            expires_at: now + self.settings.code_ttl,
        };
        let queued = sms.is_some();
        self.store.put_sms_code(record, sms, now).await?;
        if queued {
            self.notify.notify_one();
        }
        Ok(())
    }

    /// After the answer: looks `phone` up and stores its code for `purpose`, real or decoy.
    fn spawn_send(
        self: &Arc<Self>,
        phone: Phone,
        purpose: &'static str,
        device: String,
        pending_password: Option<String>,
    ) {
        let this = self.clone();
        self.flows.spawn(purpose, async move {
            let real = this.sends_for_real(&phone, purpose).await?;
            this.send_code(&phone, purpose, &device, pending_password, real)
                .await
        });
    }

    /// Whether a code for `purpose` goes to `phone` for real: registration only without an
    /// account, reset only with one.
    async fn sends_for_real(&self, phone: &Phone, purpose: &str) -> Result<bool, Error> {
        let known = self.store.user_by_phone(&phone.e164).await?.is_some();
        Ok(if purpose == REGISTER { !known } else { known })
    }

    /// Runs the pumping guard for one SMS to `phone`, counting a refusal.
    async fn admit(&self, phone: &Phone, device: &str, ip: IpAddr) -> Result<(), Error> {
        let ip = ip.to_string();
        let now = self.clock.now();
        let admitted = self
            .guard
            .admit(
                now,
                &Ask {
                    phone: &phone.e164,
                    region: &phone.region,
                    device,
                    ip: &ip,
                },
            )
            .await;
        if matches!(admitted, Err(Error::SmsBlocked { .. })) {
            self.metrics
                .sms
                .get_or_create(&OutcomeLabels { outcome: "blocked" })
                .inc();
            self.stats.add(now, metric::SMS, "blocked", 1);
        }
        admitted
    }

    /// Checks a code for `(phone, purpose)` sent to the calling device.
    async fn check_code(
        &self,
        phone: &Phone,
        purpose: &str,
        device: &str,
        otp: &str,
    ) -> Result<SmsCode, Error> {
        if otp.len() != 6 || !otp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::Invalid("otp must be 6 digits".into()));
        }
        // A code another device asked for is "missing" to this one: the right code from
        // elsewhere confirms nothing.
        let attempt = self
            .store
            .take_sms_code_attempt(&phone.e164, purpose, device, CODE_MAX_ATTEMPTS)
            .await?;
        otp::judge(attempt, self.clock.now(), CODE_MAX_ATTEMPTS, |code| {
            let presented = codes::hash(self.keys.pepper(), &phone.e164, purpose, otp);
            Ok::<_, Error>(moat_core::secret::ct_eq(&presented, &code.code_hash))
        })
        .map_err(|failure| match failure {
            otp::Failure::Error(e) => e,
            otp::Failure::Expired => Error::OtpExpired,
            f if f.is_locked() => Error::OtpLocked,
            _ => Error::OtpInvalid,
        })
    }

    /// `register`: checks the phone and password, admits one SMS, hashes the password; a
    /// code goes to the phone after the caller answers (unless it already has an account).
    ///
    /// # Errors
    /// [`Error::Invalid`], [`Error::SmsBlocked`], [`Error::Busy`], [`Error::Unavailable`].
    pub async fn register(
        self: &Arc<Self>,
        phone: &str,
        password: &str,
        device: &str,
        ip: IpAddr,
    ) -> Result<(), Error> {
        let phone = phone::parse(phone)?;
        password::check_policy(password, &phone.e164)?;
        self.admit(&phone, device, ip).await?;
        // Hash before looking the phone up, so both paths cost the same.
        let hash = self.hasher.hash(password).await?;
        self.spawn_send(phone, REGISTER, device.to_owned(), Some(hash));
        Ok(())
    }

    /// `register/confirm`: creates the user the code was sent for; returns its id.
    ///
    /// # Errors
    /// [`Error::OtpInvalid`], [`Error::OtpExpired`], [`Error::OtpLocked`],
    /// [`Error::AccountExists`], [`Error::Invalid`].
    pub async fn confirm_registration(
        &self,
        phone: &str,
        otp: &str,
        device: &str,
    ) -> Result<Uuid, Error> {
        let phone = phone::parse(phone)?;
        let code = self.check_code(&phone, REGISTER, device, otp).await?;
        let hash = code
            .pending_password
            .clone()
            .ok_or_else(|| Error::internal(&"registration code without password"))?;
        let user = match self
            .store
            .create_user(
                &phone.e164,
                code.created_at,
                Uuid::new_v4(),
                &hash,
                self.clock.now(),
            )
            .await
        {
            Ok(Some(user)) => user,
            Ok(None) => return Err(Error::OtpInvalid),
            Err(StoreError::Conflict(_)) => return Err(Error::AccountExists),
            Err(e) => return Err(e.into()),
        };
        tracing::info!(user = %user.id, "user registered");
        Ok(user.id)
    }

    /// `resend_otp`: admits one SMS; after the caller answers, a pending code of this device
    /// is renewed (a decoy as a decoy).
    ///
    /// # Errors
    /// [`Error::Invalid`], [`Error::SmsBlocked`], [`Error::Unavailable`].
    pub async fn resend(
        self: &Arc<Self>,
        phone: &str,
        purpose: &str,
        device: &str,
        ip: IpAddr,
    ) -> Result<(), Error> {
        let phone = phone::parse(phone)?;
        let purpose = match purpose {
            REGISTER => REGISTER,
            RESET => RESET,
            _ => {
                return Err(Error::Invalid(
                    "purpose must be register or password_reset".into(),
                ));
            }
        };
        self.admit(&phone, device, ip).await?;
        let this = self.clone();
        let device = device.to_owned();
        self.flows.spawn("resend_otp", async move {
            if let Some(code) = this.store.sms_code(&phone.e164, purpose).await?
                && code.device.as_deref() == Some(device.as_str())
                && code.expires_at > this.clock.now()
            {
                // A decoy is renewed as a decoy: resending never reaches a phone the first
                // request would not have.
                let real = this.sends_for_real(&phone, purpose).await?;
                this.send_code(&phone, purpose, &device, code.pending_password, real)
                    .await?;
            }
            Ok(())
        });
        Ok(())
    }

    /// `password/reset`: admits one SMS; a code goes to the phone after the caller answers,
    /// if it has an account. The same answer either way.
    ///
    /// # Errors
    /// [`Error::Invalid`], [`Error::SmsBlocked`], [`Error::Unavailable`].
    pub async fn request_reset(
        self: &Arc<Self>,
        phone: &str,
        device: &str,
        ip: IpAddr,
    ) -> Result<(), Error> {
        let phone = phone::parse(phone)?;
        self.admit(&phone, device, ip).await?;
        self.spawn_send(phone, RESET, device.to_owned(), None);
        Ok(())
    }

    /// `password/reset/confirm`: sets the new password; every refresh token of the user is
    /// revoked.
    ///
    /// # Errors
    /// [`Error::Invalid`], [`Error::OtpInvalid`], [`Error::OtpExpired`],
    /// [`Error::OtpLocked`], [`Error::Busy`].
    pub async fn confirm_reset(
        &self,
        phone: &str,
        otp: &str,
        new_password: &str,
        device: &str,
    ) -> Result<(), Error> {
        let phone = phone::parse(phone)?;
        password::check_policy(new_password, &phone.e164)?;
        let code = self.check_code(&phone, RESET, device, otp).await?;
        let user = self
            .store
            .user_by_phone(&phone.e164)
            .await?
            .ok_or(Error::OtpInvalid)?;
        let hash = self.hasher.hash(new_password).await?;
        if !self
            .store
            .reset_password(&phone.e164, code.created_at, user.id, &hash)
            .await?
        {
            return Err(Error::OtpInvalid);
        }
        tracing::info!(user = %user.id, "password reset");
        Ok(())
    }

    /// The grant answer: a new access token for `user` on `device`, and `refresh`.
    fn grant(&self, user: Uuid, device: &str, refresh: String) -> Result<Grant, Error> {
        Ok(Grant {
            access_token: self.tokens.issue_access(user, device, self.clock.now())?,
            expires_in: self.tokens.access_ttl(),
            refresh_token: refresh,
        })
    }

    /// `grant_type=password`: logs `username` (a phone) in on `device`.
    ///
    /// # Errors
    /// [`Error::InvalidGrant`], [`Error::LoginLimited`], [`Error::Busy`],
    /// [`Error::Unavailable`].
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        device: &str,
        ip: IpAddr,
    ) -> Result<Grant, Error> {
        let now = self.clock.now();
        let phone = phone::parse(username)
            .map_err(|_| Error::InvalidGrant("invalid username or password"))?;
        let s = &self.settings;
        let per_minute = Quota {
            burst: s.login_per_minute,
            period: Duration::from_secs(60),
        };
        let per_ip = Quota {
            burst: 30,
            period: Duration::from_secs(60),
        };
        // Failed logins are counted per phone whether or not it has an account, so being
        // slowed and locked looks the same for both: a lock reveals nothing. Each attempt
        // reserves a failure before its password is checked, and a right password gives it
        // back: guesses arriving together cannot all pass a look taken before any of them
        // had failed, so no more than `login_lock_after` are ever checked.
        let failures = Quota {
            burst: u32::try_from(s.login_lock_after).unwrap_or(10),
            period: Duration::from_secs(u64::try_from(s.login_lock_seconds).unwrap_or(900)),
        };
        let fail_key = format!("loginfail\0{}", phone.e164);
        self.login_limiter
            .check(
                now.saturating_mul(1000),
                &[
                    (format!("login\0{}", phone.e164), per_minute),
                    (format!("loginip\0{ip}"), per_ip),
                    (fail_key.clone(), failures),
                ],
            )
            .await
            .map_err(|refusal| match refusal {
                Refusal::Limited { retry_after, .. } => Error::LoginLimited { retry_after },
                Refusal::Unavailable => Error::Unavailable,
            })?;
        let user = self.store.user_by_phone(&phone.e164).await?;
        let locked = user.as_ref().is_some_and(|u| u.locked_until > now);
        let ok = self
            .hasher
            .verify(password, user.as_ref().map(|u| u.password_hash.as_str()))
            .await?
            && !locked;
        let user_id = user.as_ref().map(|u| u.id);
        let Some(user) = user.filter(|_| ok) else {
            if let Some(id) = user_id {
                self.record_failure(id, now, ip).await?;
            }
            return Err(Error::InvalidGrant("invalid username or password"));
        };
        if self
            .login_limiter
            .refund(now.saturating_mul(1000), &fail_key, failures)
            .await
            .is_err()
        {
            tracing::warn!(user = %user.id, "could not give back a successful login's reserved failure");
        }
        self.store.clear_login_failures(user.id).await?;
        let family = Uuid::new_v4().to_string();
        let refresh = self
            .tokens
            .issue_refresh(&*self.store, &*self.keys, user.id, device, &family, now)
            .await?;
        self.grant(user.id, device, refresh)
    }

    /// Counts a failed login of a known user; the failure that locks it is audited.
    async fn record_failure(&self, id: Uuid, now: i64, ip: IpAddr) -> Result<(), Error> {
        let s = &self.settings;
        let count = self
            .store
            .record_login_failure(id, now, s.login_lock_after, s.login_lock_seconds)
            .await?;
        if count >= s.login_lock_after {
            tracing::warn!(user = %id, failures = count, "login locked after repeated failures");
        }
        if count == s.login_lock_after {
            let event = audit::event(now, audit::kind::USER_LOCKED, format!("ip:{ip}"))
                .subject(id)
                .ip(ip)
                .detail(
                    &serde_json::json!({"failures": count, "locked_seconds": s.login_lock_seconds}),
                );
            self.audit.record(event).await;
        }
        Ok(())
    }

    /// `grant_type=refresh_token`: spends `text` and answers with its successor; a token
    /// presented twice revokes its whole family.
    ///
    /// # Errors
    /// [`Error::InvalidGrant`], [`Error::Unavailable`].
    pub async fn refresh(&self, text: &str, device: &str, ip: IpAddr) -> Result<Grant, Error> {
        let now = self.clock.now();
        let presented = ApiKey::parse_with_prefix(REFRESH_PREFIX, text)
            .map_err(|_| Error::InvalidGrant("invalid refresh token"))?;
        let record = self
            .store
            .refresh_token(&presented.lookup)
            .await?
            .ok_or(Error::InvalidGrant("invalid refresh token"))?;
        if !presented.matches(self.keys.pepper(), &record.hash) {
            return Err(Error::InvalidGrant("invalid refresh token"));
        }
        // The successor is made before the token is spent and stored with it in one
        // transaction: a concurrent presenter of the same token that finds it spent finds the
        // successor already in the family, and its reuse revokes both. (Stored separately,
        // the successor could land after that revocation and stay live.)
        let (next, next_text) = if record.expires_at > now && record.device == device {
            Some(self.tokens.new_refresh(
                &*self.keys,
                record.user_id,
                device,
                &record.family,
                now,
            )?)
        } else {
            None
        }
        .unzip();
        if record.status != "active"
            || !self
                .store
                .rotate_refresh_token(&record.lookup, now, next)
                .await?
        {
            // A used token presented again: someone holds a copy. Revoke the whole login.
            let revoked = self.store.revoke_refresh_family(&record.family).await?;
            tracing::warn!(user = %record.user_id, revoked, "refresh token reuse detected; family revoked");
            let event = audit::event(now, audit::kind::REFRESH_REUSED, format!("device:{device}"))
                .subject(record.user_id)
                .ip(ip)
                .detail(&serde_json::json!({"revoked_tokens": revoked}));
            self.audit.record(event).await;
            return Err(Error::InvalidGrant(
                "refresh token reuse detected; sign in again",
            ));
        }
        if record.expires_at <= now {
            return Err(Error::InvalidGrant("refresh token expired"));
        }
        if record.device != device {
            self.store.revoke_refresh_family(&record.family).await?;
            return Err(Error::InvalidGrant(
                "refresh token belongs to another device",
            ));
        }
        let next_text = next_text.ok_or_else(|| Error::internal(&"refresh token not rotated"))?;
        self.grant(record.user_id, device, next_text)
    }

    /// `me`: the local user an access token's `sub` names.
    ///
    /// # Errors
    /// [`Error::TokenInvalid`] for a subject that is not a known user.
    pub async fn me(&self, subject: &str) -> Result<User, Error> {
        let id = Uuid::parse_str(subject).map_err(|_| Error::TokenInvalid("bad subject".into()))?;
        self.store
            .user(id)
            .await?
            .ok_or_else(|| Error::TokenInvalid("unknown user".into()))
    }
}
