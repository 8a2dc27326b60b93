//! Storage of the accounts feature: users, SMS codes, the SMS queue, refresh tokens and
//! access-token signing keys. A separate trait from [`crate::Store`] so that each stays small;
//! backends implement both.

use async_trait::async_trait;
use uuid::Uuid;

use crate::Result;

/// A confirmed user.
#[derive(Clone, Debug)]
pub struct User {
    /// User id (the access token's `sub`).
    pub id: Uuid,
    /// E.164 phone number.
    pub phone: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Creation, Unix seconds.
    pub created_at: i64,
    /// Consecutive failed logins.
    pub failed_logins: i64,
    /// Logins refused until then, Unix seconds.
    pub locked_until: i64,
}

/// A pending SMS code.
#[derive(Clone, Debug)]
pub struct SmsCode {
    /// E.164 phone.
    pub phone: String,
    /// `register` or `password_reset`.
    pub purpose: String,
    /// Keyed hash of the code.
    pub code_hash: Vec<u8>,
    /// Device that asked for it (the confirmation must come from the same device).
    pub device: Option<String>,
    /// Password hash waiting for the phone to be confirmed (registration).
    pub pending_password: Option<String>,
    /// Attempts taken so far (each compared one code).
    pub attempts: i64,
    /// Creation, Unix seconds.
    pub created_at: i64,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
}

/// An SMS to send.
#[derive(Clone, Debug)]
pub struct NewSms {
    /// Message id.
    pub id: String,
    /// Sender name (`outbox`, `twilio`, `webhook`).
    pub sender: String,
    /// E.164 phone.
    pub phone: String,
    /// ISO 3166 region of the phone.
    pub country: String,
    /// Why it is sent.
    pub purpose: String,
    /// Sealed body.
    pub body_sealed: Vec<u8>,
}

/// A queued or sent SMS.
#[derive(Clone, Debug)]
pub struct SmsMessage {
    /// Message id.
    pub id: String,
    /// Sender name.
    pub sender: String,
    /// E.164 phone.
    pub phone: String,
    /// ISO 3166 region.
    pub country: String,
    /// Why it was sent.
    pub purpose: String,
    /// Sealed body.
    pub body_sealed: Vec<u8>,
    /// `queued`, `sending`, `sent`, `failed`.
    pub status: String,
    /// Send attempts so far.
    pub attempts: i64,
    /// Last error, if any.
    pub last_error: Option<String>,
    /// Provider's message id.
    pub provider_id: Option<String>,
    /// Creation, Unix seconds.
    pub created_at: i64,
    /// When it was sent.
    pub sent_at: Option<i64>,
}

/// What happened to one send attempt.
#[non_exhaustive]
#[derive(Clone, Debug)]
pub enum SmsOutcome {
    /// Accepted by the provider.
    Sent {
        /// Provider's message id.
        provider_id: Option<String>,
    },
    /// Failed, try again at `next_attempt_at`.
    Retry {
        /// Why.
        error: String,
        /// When, Unix seconds.
        next_attempt_at: i64,
    },
    /// Failed for good.
    Failed {
        /// Why.
        error: String,
    },
}

/// A refresh token record.
#[derive(Clone, Debug)]
pub struct RefreshToken {
    /// Public lookup id.
    pub lookup: String,
    /// Keyed hash of the secret part.
    pub hash: Vec<u8>,
    /// Family: every token descended from one login.
    pub family: String,
    /// User id.
    pub user_id: Uuid,
    /// Device uuid (or `static`) the login came from.
    pub device: String,
    /// `active`, `used` or `revoked`.
    pub status: String,
    /// Creation, Unix seconds.
    pub created_at: i64,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
}

/// An access-token signing key.
#[derive(Clone, Debug)]
pub struct SigningKeyRecord {
    /// Key id.
    pub kid: String,
    /// Sealed PKCS#8.
    pub private_sealed: Vec<u8>,
    /// Public JWK (JSON text).
    pub public_jwk: String,
    /// Creation, Unix seconds.
    pub created_at: i64,
    /// Retirement, Unix seconds; `None` for the current key.
    pub retired_at: Option<i64>,
}

/// Accounts storage.
#[async_trait]
pub trait AccountStore: Send + Sync + 'static {
    /// The user with this phone.
    async fn user_by_phone(&self, phone: &str) -> Result<Option<User>>;
    /// The user with this id.
    async fn user(&self, id: Uuid) -> Result<Option<User>>;

    /// Stores (replacing) the code for `(phone, purpose)` and queues `sms`, in one transaction.
    async fn put_sms_code(&self, code: SmsCode, sms: Option<NewSms>, now: i64) -> Result<()>;
    /// The code for `(phone, purpose)`.
    async fn sms_code(&self, phone: &str, purpose: &str) -> Result<Option<SmsCode>>;
    /// Takes one of the `max_attempts` attempts at the code for `(phone, purpose)` asked for by
    /// `device`, in one conditional update: of any number of concurrent callers at most
    /// `max_attempts` ever get the code (with `attempts` counting theirs) to compare. A code
    /// asked for by another device is [`crate::Attempt::Missing`] and costs its owner nothing.
    async fn take_sms_code_attempt(
        &self,
        phone: &str,
        purpose: &str,
        device: &str,
        max_attempts: i64,
    ) -> Result<crate::Attempt<SmsCode>>;
    /// Consumes the registration code (if it is still the one created at `code_created_at`)
    /// and creates the user, in one transaction. Returns `None` if the code was consumed or
    /// replaced meanwhile.
    ///
    /// # Errors
    /// [`crate::StoreError::Conflict`] if the phone already has a user.
    async fn create_user(
        &self,
        phone: &str,
        code_created_at: i64,
        id: Uuid,
        password_hash: &str,
        now: i64,
    ) -> Result<Option<User>>;
    /// Consumes the reset code, sets the new password, clears the lockout and revokes every
    /// refresh token of the user, in one transaction. Returns false if the code was consumed
    /// or replaced meanwhile.
    async fn reset_password(
        &self,
        phone: &str,
        code_created_at: i64,
        user_id: Uuid,
        password_hash: &str,
    ) -> Result<bool>;
    /// Counts a failed login and locks the user for `lock_seconds` once `lock_after` is
    /// reached. Returns the failures after counting.
    async fn record_login_failure(
        &self,
        user_id: Uuid,
        now: i64,
        lock_after: i64,
        lock_seconds: i64,
    ) -> Result<i64>;
    /// Clears failed logins after a success.
    async fn clear_login_failures(&self, user_id: Uuid) -> Result<()>;

    /// Claims up to `limit` messages due for sending (marks them `sending`).
    async fn claim_due_sms(&self, now: i64, limit: u32) -> Result<Vec<SmsMessage>>;
    /// Records the outcome of a send attempt.
    async fn finish_sms(&self, id: &str, outcome: SmsOutcome, now: i64) -> Result<()>;
    /// Puts messages left `sending` by a crash back in the queue: those claimed before
    /// `claimed_before` (a message another instance is sending right now was claimed later).
    async fn requeue_stuck_sms(&self, claimed_before: i64) -> Result<u64>;
    /// Messages, newest first, optionally for one phone.
    async fn list_sms(&self, phone: Option<&str>, limit: u32) -> Result<Vec<SmsMessage>>;

    /// Stores a refresh token.
    async fn insert_refresh_token(&self, token: RefreshToken) -> Result<()>;
    /// The refresh token with this lookup id.
    async fn refresh_token(&self, lookup: &str) -> Result<Option<RefreshToken>>;
    /// Marks an active token used and stores its successor `next` (if any), in one
    /// transaction; false, and nothing stored, if it was not active (reuse or race). Whoever
    /// then finds the token used finds its successor already stored, so revoking the family
    /// reaches it.
    async fn rotate_refresh_token(
        &self,
        lookup: &str,
        now: i64,
        next: Option<RefreshToken>,
    ) -> Result<bool>;
    /// Revokes every token of a family; returns how many were active.
    async fn revoke_refresh_family(&self, family: &str) -> Result<u64>;

    /// Signing keys, newest first.
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>>;
    /// Retires the current key (if any) and makes `key` current, in one transaction.
    async fn rotate_signing_key(&self, key: SigningKeyRecord, now: i64) -> Result<()>;

    /// Deletes expired codes, expired refresh tokens and sent or failed messages older than
    /// `messages_before`. Returns how many rows went.
    async fn cleanup_accounts(&self, now: i64, messages_before: i64) -> Result<u64>;
}
