//! Enrollment (`POST /v1/enroll`, `POST /v1/enroll/confirm`) and the built-in mailbox
//! (`GET /v1/mailbox`): PROTOCOL sections 2 and 3, seed 000 sections 3.1-3.3.

use std::net::IpAddr;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Method};
use moat_accounts::otp;
use moat_core::apikey::ApiKey;
use moat_core::dpop::{self, VerifiedProof};
use moat_core::{b64, random, totp};
use moat_store::{
    Channel, Credential, Device, DeviceStatus, NewCredential, NewMailboxItem, OtpRecord, StoreError,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::config::Mode;
use crate::error::ApiError;
use crate::extract::{ApiJson, ClientIp};
use crate::state::AppState;
use moat_core::clock::rfc3339;
use moat_observe::audit;

/// TOTP time step of enrollment codes, seconds (PROTOCOL section 3).
pub const OTP_STEP: i64 = 30;
/// Digits of enrollment codes.
pub const OTP_DIGITS: u32 = 6;
/// Most mailbox items returned by one read.
pub const MAILBOX_READ_LIMIT: u32 = 16;

/// `POST /v1/enroll` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The app's own id for this installation: 1-128 characters of `A-Za-z0-9._:-`.
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,128}$", example = "app-3f9c2a")]
    pub device_id: String,
    /// `android`, `ios` or `other`.
    #[schema(pattern = "^(android|ios|other)$", example = "android")]
    pub platform: Option<String>,
    /// Firebase ID token (Firebase identity only).
    pub firebase_id_token: Option<String>,
}

/// `POST /v1/enroll/confirm` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
// Named apart from the accounts' `ConfirmRequest`: one schema name would hide the other.
#[schema(as = EnrollConfirmRequest)]
pub struct ConfirmRequest {
    /// The same device id as at enrollment.
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,128}$", example = "app-3f9c2a")]
    pub device_id: String,
    /// The 6-digit code read from the mailbox.
    #[schema(pattern = "^[0-9]{6}$", example = "492039")]
    pub otp: String,
    /// Firebase ID token (Firebase identity only).
    pub firebase_id_token: Option<String>,
}

/// Answer of enroll and confirm: never a secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct EnrollResponse {
    /// `builtin` or `firebase`: where to read the mailbox.
    pub channel: &'static str,
    /// Seconds the mailbox item stays readable.
    pub expires_in: i64,
}

/// `GET /v1/mailbox` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct MailboxResponse {
    /// Items, oldest first; each is returned once.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Value>,
}

fn validate_device_id(id: &str) -> Result<(), ApiError> {
    let ok = (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::validation(
            "device_id must be 1-128 characters of A-Za-z0-9._:-",
        ))
    }
}

fn validate_platform(p: Option<&str>) -> Result<(), ApiError> {
    match p {
        None | Some("android" | "ios" | "other") => Ok(()),
        Some(_) => Err(ApiError::validation(
            "platform must be android, ios or other",
        )),
    }
}

/// Checks the request's DPoP proof and its `jti`; returns the installation identity.
///
/// # Errors
/// `401 identity_invalid` for a missing or bad proof, `401 replay_detected` for a reused
/// `jti`, `503` if the replay cache cannot answer.
pub async fn installation_identity(
    state: &AppState,
    headers: &HeaderMap,
    method: &Method,
    path: &str,
) -> Result<VerifiedProof, ApiError> {
    let mut values = headers.get_all("dpop").iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(ApiError::identity("exactly one DPoP header is required"));
    };
    let proof = value
        .to_str()
        .map_err(|_| ApiError::identity("DPoP header is not ASCII"))?;
    let now = state.now();
    let url = format!("{}{}", state.config.public_base_url, path);
    let skew = state.config.dpop_max_skew;
    let verified = dpop::verify(
        proof,
        &dpop::Expectation {
            method: method.as_str(),
            url: &url,
            now,
            max_skew: skew,
        },
    )
    .map_err(|e| match e {
        moat_core::Error::Malformed(_) | moat_core::Error::Unsupported(_) => {
            ApiError::identity(format!("DPoP proof rejected: {e}"))
        }
        // The URL a proof must name is public (server.public_base_url): saying it turns a
        // client configured with `localhost` for `127.0.0.1`, or an emulator's `10.0.2.2`,
        // from a dead end into a one-line fix.
        moat_core::Error::IdentityInvalid(why) if why.contains("htu") => ApiError::identity(
            format!("{why}: this server expects `{url}` (server.public_base_url)"),
        ),
        other => ApiError::from(other),
    })?;
    if verified.iat < state.replay.horizon() {
        // Its jti may have been used before this process started.
        return Err(ApiError::identity(
            "DPoP proof made before the server's replay memory begins; make a new one",
        ));
    }
    let key = format!("dpop\0{}\0{}", verified.thumbprint, verified.jti);
    let expires = verified.iat.max(now) + skew + 1;
    let fresh = state
        .replay
        .insert_once(key.as_bytes(), expires, now)
        .await
        .map_err(|_| ApiError::unavailable())?;
    if !fresh {
        return Err(ApiError::new(
            crate::error::Code::ReplayDetected,
            "this DPoP proof was already used",
        ));
    }
    Ok(verified)
}

/// Who is enrolling.
pub enum Who {
    /// The installation key of a verified DPoP proof.
    Installation(VerifiedProof),
    /// The uid of a verified Firebase ID token.
    Firebase(std::sync::Arc<str>),
}

impl Who {
    /// `inst:<thumbprint>` or `fb:<uid>`.
    pub fn identity(&self) -> String {
        match self {
            Self::Installation(p) => p.identity(),
            Self::Firebase(uid) => format!("fb:{uid}"),
        }
    }

    /// The installation key, for `ecdsa-p256-sha256`/`ed25519` request signatures.
    fn signing_jwk(&self) -> Option<String> {
        match self {
            Self::Installation(p) => Some(p.jwk.to_json().to_string()),
            Self::Firebase(_) => None,
        }
    }
}

/// Identifies the caller: by the Firebase ID token in the body when there is one (and the
/// Firebase identity is enabled), else by the DPoP proof of the installation key.
///
/// # Errors
/// `401 identity_invalid` for a missing, refused or not-enabled identity.
pub async fn identify(
    state: &AppState,
    headers: &HeaderMap,
    method: &Method,
    path: &str,
    firebase_id_token: Option<&str>,
) -> Result<Who, ApiError> {
    match firebase_id_token {
        Some(token) => {
            let firebase = state
                .firebase
                .as_ref()
                .filter(|_| state.config.identity_firebase)
                .ok_or_else(|| {
                    ApiError::identity("the Firebase identity is not enabled on this server")
                })?;
            Ok(Who::Firebase(
                firebase.tokens.verify(token, state.now()).await?,
            ))
        }
        None if state.config.identity_installation => Ok(Who::Installation(
            installation_identity(state, headers, method, path).await?,
        )),
        None => Err(ApiError::identity(
            "a Firebase ID token (firebase_id_token) is required",
        )),
    }
}

/// The Realtime Database mailbox of `who`, if its items go there.
fn remote<'a>(state: &'a AppState, who: &Who) -> Option<(&'a crate::firebase::rtdb::Rtdb, String)> {
    match who {
        Who::Firebase(uid) => state
            .firebase
            .as_ref()
            .and_then(|f| f.rtdb.as_ref())
            .map(|r| (r, uid.to_string())),
        Who::Installation(_) => None,
    }
}

/// An item written to the Realtime Database, with its index row.
struct Sent<'a> {
    rtdb: &'a crate::firebase::rtdb::Rtdb,
    uid: String,
    id: String,
}

/// Writes `payload` to the uid's Realtime Database mailbox. Its index row is stored first, so
/// the cleanup job can always find (and delete) what was written; if the write fails, the
/// item is deleted again where it may have landed, and the enrollment fails (503).
async fn send_remote<'a>(
    state: &AppState,
    rtdb: &'a crate::firebase::rtdb::Rtdb,
    uid: String,
    identity: &str,
    mut payload: Value,
    now: i64,
) -> Result<Sent<'a>, ApiError> {
    let id = format!("mb_{}", random::token(16)?);
    let expires_at = now + state.config.mailbox_ttl;
    payload["id"] = id.clone().into();
    payload["created_at"] = rfc3339(now).into();
    if payload.get("expires_at").is_none() {
        payload["expires_at"] = rfc3339(expires_at).into();
    }
    state
        .store
        .put_mailbox_item(
            NewMailboxItem {
                id: id.clone(),
                identity: identity.to_owned(),
                payload_sealed: Vec::new(),
                expires_at,
                channel: Channel::Firebase,
            },
            now,
        )
        .await?;
    let sent = Sent { rtdb, uid, id };
    if let Err(e) = rtdb.put(&sent.uid, &sent.id, &payload, now).await {
        tracing::warn!(error = %e, "mailbox delivery to the Realtime Database failed");
        retract(state, &sent, now).await;
        return Err(ApiError::unavailable());
    }
    Ok(sent)
}

/// Deletes a delivered item whose enrollment did not complete. If the database cannot be
/// reached now, the index row stays and the cleanup job deletes the item when it expires (its
/// credential was never stored, so it opens nothing meanwhile).
async fn retract(state: &AppState, sent: &Sent<'_>, now: i64) {
    match sent.rtdb.delete(&sent.uid, &sent.id, now).await {
        Ok(()) => {
            if let Err(e) = state.store.remove_mailbox_item(&sent.id).await {
                tracing::warn!(error = %e, "cannot remove a mailbox index row; cleanup will");
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, item = %sent.id, "cannot retract a delivered item; cleanup will delete it at expiry")
        }
    }
}

/// Issues `cred` and delivers `payload(device id)` to `who`'s mailbox, all or nothing:
/// built in, the device row and the item are one transaction; through Firebase, the item is
/// written first and retracted if the device row then cannot be written.
async fn issue(
    state: &AppState,
    who: &Who,
    cred: NewCredential,
    existing: Option<Device>,
    payload: impl FnOnce(Uuid) -> Value + Send + 'static,
    now: i64,
) -> Result<Device, ApiError> {
    let identity = cred.identity.clone();
    let Some((rtdb, uid)) = remote(state, who) else {
        let build = builder(state, &identity, now, move |device| payload(device.id));
        return issued(state.store.issue_credential(cred, Some(build), now).await);
    };
    // The device keeps its id on re-enrollment, so the item can name it before the row is
    // written.
    let id = existing.map_or(cred.id, |d| d.id);
    let sent = send_remote(state, rtdb, uid, &identity, payload(id), now).await?;
    match state.store.issue_credential(cred, None, now).await {
        Ok(device) if device.id == id => Ok(device),
        Ok(_) => {
            retract(state, &sent, now).await;
            Err(ApiError::new(
                crate::error::Code::Conflict,
                "another enrollment of this device completed at the same time; enroll again",
            ))
        }
        Err(e) => {
            retract(state, &sent, now).await;
            issued(Err(e))
        }
    }
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

/// Counts an issued credential (metrics, dashboard) and writes its audit event.
async fn record_issue(state: &AppState, who: &Who, issued: Issued<'_>, ip: IpAddr, now: i64) {
    let mode = state.config.mode.as_str();
    let channel = channel_name(state, who);
    state
        .metrics
        .enrollments
        .get_or_create(&moat_observe::metrics::EnrollLabels { mode, channel })
        .inc();
    state.stats.add(
        now,
        moat_observe::stats::metric::ENROLL,
        &format!("{mode}/{channel}"),
        1,
    );
    let mut event = audit::event(now, issued.kind, format!("identity:{}", who.identity()))
        .ip(ip)
        .detail(&json!({"mode": mode, "channel": channel, "device_id": issued.device_id, "platform": issued.platform}));
    if let Some(id) = issued.subject {
        event = event.subject(id);
    }
    state.audit.record(event).await;
}

fn channel_name(state: &AppState, who: &Who) -> &'static str {
    if remote(state, who).is_some() {
        "firebase"
    } else {
        "builtin"
    }
}

/// Builds a sealed mailbox item. The sealed payload is bound to the item id.
fn mailbox_item(
    state: &AppState,
    identity: &str,
    payload: &Value,
    now: i64,
) -> Result<NewMailboxItem, ApiError> {
    let id = format!("mb_{}", random::token(16)?);
    let sealed = state
        .keys
        .data
        .seal(id.as_bytes(), payload.to_string().as_bytes())?;
    Ok(NewMailboxItem {
        id,
        identity: identity.to_owned(),
        payload_sealed: sealed,
        expires_at: now + state.config.mailbox_ttl,
        channel: Channel::Builtin,
    })
}

/// A mailbox builder for `issue_credential`: the payload is made once the device row exists,
/// so it names the device id the store actually wrote.
fn builder(
    state: &AppState,
    identity: &str,
    now: i64,
    payload: impl FnOnce(&Device) -> Value + Send + 'static,
) -> moat_store::MailboxBuilder {
    let (state, identity) = (state.clone(), identity.to_owned());
    Box::new(move |device: &Device| {
        mailbox_item(&state, &identity, &payload(device), now)
            .map_err(|e| StoreError::Backend(format!("sealing mailbox item: {}", e.code()).into()))
    })
}

/// The existing device of `(identity, device_id)`, refused if revoked.
async fn refuse_if_revoked(
    state: &AppState,
    identity: &str,
    device_id: &str,
) -> Result<Option<Device>, ApiError> {
    match state.store.device_by_identity(identity, device_id).await? {
        Some(d) if d.status == DeviceStatus::Revoked => Err(ApiError::revoked()),
        Some(d) => {
            // Re-enrollment rotates this credential: forget the old one now, on this
            // instance (others see it within the device cache TTL).
            forget_credential(state, &d);
            Ok(Some(d))
        }
        None => Ok(None),
    }
}

fn forget_credential(state: &AppState, d: &Device) {
    use crate::middleware::protect::CachedCredential;
    if let Some(lookup) = &d.credential.key_lookup {
        state
            .device_cache
            .remove(&CachedCredential::api_key_cache_key(lookup));
    }
    if let Some(client_id) = &d.credential.client_id {
        state
            .device_cache
            .remove(&CachedCredential::signature_cache_key(client_id));
    }
}

fn issued(result: Result<Device, StoreError>) -> Result<Device, ApiError> {
    result.map_err(|e| match e {
        StoreError::Conflict(_) => ApiError::revoked(),
        other => other.into(),
    })
}

/// `POST /v1/enroll`: the one endpoint open to the world.
#[utoipa::path(post, path = "/v1/enroll", request_body = EnrollRequest,
    responses((status = 200, body = EnrollResponse), (status = 401, description = "identity_invalid or replay_detected"),
              (status = 403, description = "device_revoked"), (status = 409, description = "conflict: a concurrent enrollment of this device"),
              (status = 422, description = "validation"),
              (status = 429, description = "rate_limited: too many enrollments from this client IP (enrollment.per_ip_hour)")))]
pub async fn enroll(
    State(state): State<AppState>,
    method: Method,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    ApiJson(req): ApiJson<EnrollRequest>,
) -> Result<Json<EnrollResponse>, ApiError> {
    validate_device_id(&req.device_id)?;
    validate_platform(req.platform.as_deref())?;
    // Per client IP, before the identity proof is verified: enrollment is open, and each
    // enrollment is a device with budgets of its own (SMS among them).
    let now_ms = state.now().saturating_mul(1000);
    let quota = moat_cluster::ratelimit::Quota::per_hour(state.config.enroll_per_ip_hour);
    let key = crate::extract::ip_rate_key("enroll", ip);
    state
        .enroll_limiter
        .check(now_ms, &[(key, quota)])
        .await
        .map_err(|r| {
            ApiError::rate_limited(r, "too many enrollments from this address; try again later")
        })?;
    let who = identify(
        &state,
        &headers,
        &method,
        "/v1/enroll",
        req.firebase_id_token.as_deref(),
    )
    .await?;
    let identity = who.identity();
    let now = state.now();
    match state.config.mode {
        Mode::Static => {
            let key = std::str::from_utf8(state.keys.static_key.expose()).unwrap_or_default();
            let payload = json!({"kind": "api_key", "key": key});
            // No device row: the static key is the same for everyone (seed 000 section 3.1).
            match remote(&state, &who) {
                Some((rtdb, uid)) => {
                    send_remote(&state, rtdb, uid, &identity, payload, now).await?;
                }
                None => {
                    let item = mailbox_item(&state, &identity, &payload, now)?;
                    state.store.put_mailbox_item(item, now).await?;
                }
            }
            let event = Issued {
                kind: audit::kind::STATIC_KEY_SENT,
                subject: None,
                device_id: &req.device_id,
                platform: req.platform.as_deref(),
            };
            record_issue(&state, &who, event, ip, now).await;
        }
        Mode::Dynamic => {
            let existing = refuse_if_revoked(&state, &identity, &req.device_id).await?;
            let (key, text) = ApiKey::generate()?;
            let key_text = std::str::from_utf8(text.expose())
                .unwrap_or_default()
                .to_owned();
            let cred = NewCredential {
                id: Uuid::new_v4(),
                identity: identity.clone(),
                device_id: req.device_id.clone(),
                mode: "dynamic".into(),
                platform: req.platform.clone(),
                credential: Credential {
                    key_lookup: Some(key.lookup.clone()),
                    key_hash: Some(key.hash(&state.keys.api_key_pepper).to_vec()),
                    signing_jwk: who.signing_jwk(),
                    ..Credential::default()
                },
            };
            let payload =
                move |device: Uuid| json!({"kind": "api_key", "key": key_text, "device": device});
            let device = issue(&state, &who, cred, existing, payload, now).await?;
            tracing::info!(device = %device.id, mode = "dynamic", "device enrolled");
            record_issue(
                &state,
                &who,
                Issued::of(&device, audit::kind::DEVICE_ENROLLED),
                ip,
                now,
            )
            .await;
        }
        Mode::Otp => {
            refuse_if_revoked(&state, &identity, &req.device_id).await?;
            let secret = random::secret(20)?;
            let step = i64::try_from(totp::time_step(now, OTP_STEP)).unwrap_or(0);
            let code = totp::hotp(secret.expose(), step as u64, OTP_DIGITS, totp::Hash::Sha1);
            let otp_id = format!("eo_{}", random::token(16)?);
            let expires_at = now + state.config.otp_ttl;
            let sealed = state.keys.data.seal(otp_id.as_bytes(), secret.expose())?;
            let payload =
                json!({"kind": "enrollment_otp", "code": code, "expires_at": rfc3339(expires_at)});
            let record = OtpRecord {
                id: otp_id,
                identity: identity.clone(),
                device_id: req.device_id.clone(),
                platform: req.platform.clone(),
                secret_sealed: sealed,
                step,
                attempts: 0,
                expires_at,
                used_at: None,
            };
            match remote(&state, &who) {
                Some((rtdb, uid)) => {
                    let sent = send_remote(&state, rtdb, uid, &identity, payload, now).await?;
                    if let Err(e) = state.store.put_enrollment_otp(record, None, now).await {
                        retract(&state, &sent, now).await;
                        return Err(e.into());
                    }
                }
                None => {
                    let item = mailbox_item(&state, &identity, &payload, now)?;
                    state
                        .store
                        .put_enrollment_otp(record, Some(item), now)
                        .await?;
                }
            }
        }
    }
    Ok(Json(EnrollResponse {
        channel: channel_name(&state, &who),
        expires_in: state.config.mailbox_ttl,
    }))
}

/// `POST /v1/enroll/confirm` (otp mode): exchanges the code for a client credential.
#[utoipa::path(post, path = "/v1/enroll/confirm", request_body = ConfirmRequest,
    responses((status = 200, body = EnrollResponse), (status = 401, description = "otp_invalid, otp_expired, identity_invalid"),
              (status = 403, description = "otp_locked or device_revoked"),
              (status = 409, description = "conflict: the server is not in otp mode, or a concurrent enrollment"),
              (status = 503, description = "unavailable")))]
pub async fn confirm(
    State(state): State<AppState>,
    method: Method,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ConfirmRequest>,
) -> Result<Json<EnrollResponse>, ApiError> {
    validate_device_id(&req.device_id)?;
    if req.otp.len() != OTP_DIGITS as usize || !req.otp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::validation("otp must be 6 digits"));
    }
    let who = identify(
        &state,
        &headers,
        &method,
        "/v1/enroll/confirm",
        req.firebase_id_token.as_deref(),
    )
    .await?;
    let identity = who.identity();
    if state.config.mode != Mode::Otp {
        return Err(ApiError::new(
            crate::error::Code::Conflict,
            "this server does not enroll in otp mode",
        ));
    }
    let otp_invalid = || ApiError::new(crate::error::Code::OtpInvalid, "the code is not valid");
    let (now, max) = (state.now(), state.config.otp_max_attempts);
    // One attempt is taken (checked and counted in one statement) before the comparison: of a
    // burst of guesses at most otp_max_attempts are ever compared.
    let attempt = state.store.take_otp_attempt(&identity, &req.device_id, max);
    let record = match otp::judge(attempt.await?, now, max, |record| {
        let secret = state
            .keys
            .data
            .open(record.id.as_bytes(), &record.secret_sealed)?;
        let step = u64::try_from(record.step).unwrap_or(0);
        let expected = totp::hotp(secret.expose(), step, OTP_DIGITS, totp::Hash::Sha1);
        Ok::<_, ApiError>(moat_core::secret::ct_eq(
            expected.as_bytes(),
            req.otp.as_bytes(),
        ))
    }) {
        Ok(record) => record,
        Err(otp::Failure::Error(e)) => return Err(e),
        Err(otp::Failure::Expired) => {
            return Err(ApiError::new(
                crate::error::Code::OtpExpired,
                "the code has expired; enroll again",
            ));
        }
        Err(failure) => {
            if let otp::Failure::Wrong { attempts, .. } = failure {
                tracing::info!(identity = %identity, attempts, "wrong enrollment code");
                if attempts == max {
                    let event = audit::event(
                        now,
                        audit::kind::ENROLLMENT_LOCKED,
                        format!("identity:{identity}"),
                    )
                    .ip(ip)
                    .detail(&json!({"device_id": req.device_id, "attempts": attempts}));
                    state.audit.record(event).await;
                }
            }
            return Err(if failure.is_locked() {
                ApiError::new(
                    crate::error::Code::OtpLocked,
                    "too many wrong codes; enroll again",
                )
            } else {
                otp_invalid()
            });
        }
    };
    let existing = refuse_if_revoked(&state, &identity, &req.device_id).await?;
    // Take the RSA key before consuming the code, so a drained pool does not burn the code.
    let pool = state.rsa_pool.as_ref().ok_or_else(ApiError::unavailable)?;
    let rsa = pool.take().await.ok_or_else(|| {
        tracing::warn!(
            "rsa key pool empty: confirmations are arriving faster than keys are generated"
        );
        ApiError::unavailable().retry_after(2)
    })?;
    if !state
        .store
        .consume_otp(&record.id, now, state.config.otp_max_attempts)
        .await?
    {
        return Err(otp_invalid());
    }
    let client_id = format!("mc_{}", random::token(16)?);
    let rsa_kid = format!("mk_{}", random::token(12)?);
    let hmac_secret = random::secret(32)?;
    let rsa_jwk = rsa.public_jwk()?;
    let cred = NewCredential {
        id: Uuid::new_v4(),
        identity: identity.clone(),
        device_id: req.device_id.clone(),
        mode: "otp".into(),
        platform: record.platform.clone(),
        credential: Credential {
            client_id: Some(client_id.clone()),
            hmac_secret_sealed: Some(
                state
                    .keys
                    .data
                    .seal(client_id.as_bytes(), hmac_secret.expose())?,
            ),
            rsa_kid: Some(rsa_kid.clone()),
            rsa_private_sealed: Some(
                state
                    .keys
                    .data
                    .seal(rsa_kid.as_bytes(), rsa.pkcs8().expose())?,
            ),
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
    let device = issue(&state, &who, cred, existing, payload, now).await?;
    tracing::info!(device = %device.id, mode = "otp", "device enrolled");
    record_issue(
        &state,
        &who,
        Issued::of(&device, audit::kind::DEVICE_CONFIRMED),
        ip,
        now,
    )
    .await;
    Ok(Json(EnrollResponse {
        channel: channel_name(&state, &who),
        expires_in: state.config.mailbox_ttl,
    }))
}

/// `GET /v1/mailbox`: items for the caller's identity, each returned once.
#[utoipa::path(get, path = "/v1/mailbox",
    responses((status = 200, body = MailboxResponse), (status = 401, description = "identity_invalid or replay_detected")))]
pub async fn mailbox(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
) -> Result<Json<MailboxResponse>, ApiError> {
    let proof = installation_identity(&state, &headers, &method, "/v1/mailbox").await?;
    let now = state.now();
    let taken = state
        .store
        .take_mailbox(&proof.identity(), now, MAILBOX_READ_LIMIT)
        .await?;
    let mut items = Vec::with_capacity(taken.len());
    for item in taken {
        let plain = state
            .keys
            .data
            .open(item.id.as_bytes(), &item.payload_sealed)?;
        let mut value: Value =
            serde_json::from_slice(plain.expose()).map_err(|e| ApiError::internal(&e))?;
        value["id"] = item.id.into();
        value["created_at"] = rfc3339(item.created_at).into();
        value["expires_at"] = value
            .get("expires_at")
            .cloned()
            .unwrap_or_else(|| rfc3339(item.expires_at).into());
        items.push(value);
    }
    Ok(Json(MailboxResponse { items }))
}
