//! Route policies (PROTOCOL section 4) as axum middleware.
//!
//! For a protected route the middleware buffers the body (bounded), establishes which device
//! is calling, from an RFC 9421 signature or a `Moat-Device-Key`, checks every requirement of
//! the route's policy, decrypts a JWE body if one was sent, and only then calls the handler
//! with a [`Principal`] in the request extensions. A request that fails any check never
//! reaches the handler.
//!
//! Order of the signature checks, and why:
//! 1. parse the fields and find the key named by `keyid` (unknown: `credential_invalid`);
//! 2. coverage and time window (cheap, before any crypto);
//! 3. the signature itself;
//! 4. device status: only after the signature, so nobody without the key learns whether a
//!    device is revoked;
//! 5. `Content-Digest` against the body;
//! 6. the nonce, recorded last so that requests failing earlier cannot burn a client's nonces.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use std::borrow::Cow;

use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use moat_core::apikey::ApiKey;
use moat_core::httpsig::{self, Coverage, Message, ParsedSignature, VerifyingKey};
use moat_core::jwe::{self, KeyAlgorithm, RsaPrivateKey};
use moat_core::jwk::PublicJwk;
use moat_core::{digest, secret};
use moat_store::{Device, DeviceStatus};

use crate::config::{Mode, Requirement};
use crate::error::{ApiError, Code};
use crate::extract::{body_bytes, client_ip};
use crate::gateway::{RateKey, RateLimit};
use crate::names;
use crate::ratelimit::{Quota, Refusal};
use crate::state::AppState;

pub use moat_policy::{Principal, UserPrincipal, Via};

/// A device credential as looked up (before the per-request checks), cached briefly.
#[derive(Clone)]
pub struct CachedCredential {
    /// The device.
    pub device: Arc<Device>,
    /// Its verifying key (signature credentials).
    pub key: Option<Arc<VerifyingKey>>,
    /// Which kind of credential.
    pub via: Via,
}

impl CachedCredential {
    /// The cache key of the device holding API key `lookup`.
    pub fn api_key_cache_key(lookup: &str) -> [u8; 32] {
        crate::cache::parts_key(&[b"key", lookup.as_bytes()])
    }

    /// The cache key of the device signing with `keyid`.
    pub fn signature_cache_key(keyid: &str) -> [u8; 32] {
        crate::cache::parts_key(&[b"sig", keyid.as_bytes()])
    }
}

/// The request path's credential cache, as enrollment sees it: a re-enrolled device's old
/// credential is forgotten here at once.
pub struct ForgetCredentials(pub Arc<crate::cache::TtlCache<CachedCredential>>);

impl moat_enroll::CredentialCache for ForgetCredentials {
    fn forget(&self, d: &moat_store::Device) {
        if let Some(lookup) = &d.credential.key_lookup {
            self.0.remove(&CachedCredential::api_key_cache_key(lookup));
        }
        if let Some(client_id) = &d.credential.client_id {
            self.0
                .remove(&CachedCredential::signature_cache_key(client_id));
        }
    }
}

/// A store call on the request path, timed into `moat_store_latency_seconds`.
async fn timed<T>(state: &AppState, call: impl std::future::Future<Output = T>) -> T {
    crate::metrics::timed(&state.metrics.store_latency, call).await
}

/// Middleware state: the app state plus this route's policy.
#[derive(Clone)]
pub struct Protect {
    /// App state.
    pub state: AppState,
    /// Requirements, all of which must hold.
    pub policy: Arc<[Requirement]>,
    /// The route's rate limit, if any, with its quota and `RateLimit-Policy` value.
    limit: Option<(RateKey, Quota, HeaderValue)>,
    /// The route's name in rate-limit keys and logs.
    pub route: Arc<str>,
    /// Largest request body, bytes: the route's own limit or `server.max_body_bytes`.
    body_limit: usize,
}

impl Protect {
    /// The same policy with its own body limit (a gateway route's `max_body_bytes`).
    #[must_use]
    pub fn with_body_limit(mut self, limit: usize) -> Self {
        self.body_limit = limit;
        self
    }

    /// The policy of `route`: every requirement in `policy`, then `rate_limit`.
    pub fn new(
        state: AppState,
        policy: Arc<[Requirement]>,
        rate_limit: Option<RateLimit>,
        route: Arc<str>,
    ) -> Self {
        let limit = rate_limit.map(|rl| {
            let period = f64::from(rl.burst) / rl.per_second;
            let window = period.ceil().max(1.0);
            let quota = Quota {
                burst: rl.burst,
                period: std::time::Duration::from_secs_f64(period),
            };
            let policy = HeaderValue::from_str(&format!("\"moat\";q={};w={window}", rl.burst))
                .unwrap_or_else(|_| HeaderValue::from_static("\"moat\""));
            (rl.key, quota, policy)
        });
        Self {
            body_limit: state.config.max_body_bytes,
            state,
            policy,
            limit,
            route,
        }
    }
}

/// Applies the route's rate limit to a verified caller; returns the `RateLimit` header values.
async fn rate_limit(
    p: &Protect,
    parts: &Parts,
    principal: &Principal,
) -> Result<Option<(HeaderValue, HeaderValue)>, ApiError> {
    let Some((rate_key, quota, policy)) = &p.limit else {
        return Ok(None);
    };
    let mut key = String::with_capacity(p.route.len() + 48);
    key.push_str(&p.route);
    key.push('\0');
    match rate_key {
        RateKey::Device => match &principal.device {
            Some(d) => key.push_str(
                d.id.hyphenated()
                    .encode_lower(&mut uuid::Uuid::encode_buffer()),
            ),
            None => key.push_str("static"),
        },
        RateKey::User => match &principal.user {
            Some(u) => {
                key.push_str(&u.issuer);
                key.push('\0');
                key.push_str(&u.id);
            }
            None => key.push_str("anonymous"),
        },
        RateKey::Ip => {
            use std::fmt::Write as _;
            let _ = write!(
                key,
                "{}",
                client_ip(
                    &parts.headers,
                    &parts.extensions,
                    &p.state.config.trusted_proxies
                )
            );
        }
        RateKey::Route => {}
    }
    let (quota, policy) = (*quota, policy.clone());
    match p
        .state
        .route_limiter
        .check_one(p.state.now_ms(), &key, quota)
        .await
    {
        Ok(remaining) => {
            let value = HeaderValue::from_str(&format!("\"moat\";r={remaining}"))
                .map_err(|e| ApiError::internal(&e))?;
            Ok(Some((policy, value)))
        }
        Err(Refusal::Limited { retry_after, .. }) => Err(ApiError::new(
            crate::error::Code::RateLimited,
            "rate limit exceeded",
        )
        .retry_after(retry_after)
        .with_header("ratelimit-policy", policy)
        .with_header(
            "ratelimit",
            HeaderValue::from_str(&format!("\"moat\";r=0;t={retry_after}"))
                .map_err(|e| ApiError::internal(&e))?,
        )),
        Err(Refusal::Unavailable) => Err(ApiError::unavailable()),
    }
}

/// Credential headers that must appear at most once, and the refusal when one is repeated.
/// RFC 9421 and RFC 8941 would merge repeated `Signature` lines into one dictionary (the last
/// entry of a label winning); refusing the request instead leaves no doubt about which value
/// was checked and which one a backend behind the gateway might read.
static SINGLE: [(&HeaderName, Code); 6] = [
    (&names::SIGNATURE, Code::SignatureInvalid),
    (&names::SIGNATURE_INPUT, Code::SignatureInvalid),
    (&names::CONTENT_DIGEST, Code::SignatureInvalid),
    (&names::MOAT_DEVICE_KEY, Code::CredentialInvalid),
    (&names::MOAT_INTEGRITY, Code::IntegrityInvalid),
    (&header::AUTHORIZATION, Code::TokenInvalid),
];

fn refuse_repeated_credentials(parts: &Parts) -> Result<(), ApiError> {
    for (name, code) in &SINGLE {
        let mut values = parts.headers.get_all(*name).iter();
        if values.next().is_some() && values.next().is_some() {
            return Err(ApiError::new(
                *code,
                format!("the {name} header appears more than once"),
            ));
        }
    }
    Ok(())
}

/// The field's lines joined with `, ` (RFC 9110 section 5.3); borrowed when there is one.
fn joined<'a>(parts: &'a Parts, name: &HeaderName) -> Result<Option<Cow<'a, str>>, ApiError> {
    let mut out: Option<Cow<'a, str>> = None;
    for v in parts.headers.get_all(name) {
        let text = v
            .to_str()
            .map_err(|_| ApiError::malformed(format!("{name} is not ASCII")))?;
        out = Some(match out {
            Some(prev) => Cow::Owned([prev.as_ref(), text].join(", ")),
            None => Cow::Borrowed(text),
        });
    }
    Ok(out)
}

fn sig_error(detail: &str) -> ApiError {
    ApiError::new(crate::error::Code::SignatureInvalid, detail.to_owned())
}

async fn key_for(
    state: &AppState,
    keyid: &str,
) -> Result<(Arc<Device>, Arc<VerifyingKey>, Via), ApiError> {
    let ttl = i64::try_from(state.config.device_cache_ttl_ms).unwrap_or(0);
    let cache_key = CachedCredential::signature_cache_key(keyid);
    let now_ms = state.now_ms();
    if let Some(CachedCredential {
        device,
        key: Some(key),
        via,
    }) = (ttl > 0)
        .then(|| state.device_cache.get(&cache_key, now_ms))
        .flatten()
    {
        return Ok((device, key, via));
    }
    let unknown = || ApiError::credential("unknown keyid");
    let (device, key, via) = if keyid.starts_with("mc_") {
        let device = timed(state, state.store.device_by_client_id(keyid))
            .await?
            .ok_or_else(unknown)?;
        let sealed = device
            .credential
            .hmac_secret_sealed
            .as_deref()
            .ok_or_else(unknown)?;
        let secret = state.keys.data.open(keyid.as_bytes(), sealed)?;
        let key = VerifyingKey::hmac_sha256(secret.expose());
        (device, key, Via::HmacSignature)
    } else {
        if keyid.len() != 43 {
            return Err(unknown());
        }
        let device = timed(
            state,
            state.store.latest_active_device(&format!("inst:{keyid}")),
        )
        .await?
        .ok_or_else(unknown)?;
        let jwk_text = device
            .credential
            .signing_jwk
            .as_deref()
            .ok_or_else(unknown)?;
        let value: serde_json::Value =
            serde_json::from_str(jwk_text).map_err(|e| ApiError::internal(&e))?;
        let key = VerifyingKey::from_jwk(&PublicJwk::from_json(&value)?)?;
        (device, key, Via::InstallationSignature)
    };
    let (device, key) = (Arc::new(device), Arc::new(key));
    if ttl > 0 {
        state.device_cache.put(
            cache_key,
            CachedCredential {
                device: device.clone(),
                key: Some(key.clone()),
                via,
            },
            now_ms + ttl,
        );
    }
    Ok((device, key, via))
}

async fn verify_signature(
    state: &AppState,
    parts: &Parts,
    body: &[u8],
    now: i64,
    proven: &mut Option<uuid::Uuid>,
) -> Result<Principal, ApiError> {
    let input = joined(parts, &names::SIGNATURE_INPUT)?
        .ok_or_else(|| sig_error("Signature-Input is missing"))?;
    let signature =
        joined(parts, &names::SIGNATURE)?.ok_or_else(|| sig_error("Signature is missing"))?;
    let sig = ParsedSignature::parse(&input, &signature, "moat")?;
    let keyid = sig
        .params
        .keyid
        .as_deref()
        .ok_or_else(|| sig_error("keyid parameter missing"))?;
    let (device, key, via) = key_for(state, keyid).await?;

    // `@authority` and `@scheme` are the deployment's own (server.public_base_url), as DPoP's
    // `htu` is: taken from the client's `Host`, a request signed for another deployment would
    // replay here.
    let authority = state.config.public_authority.as_str();
    let scheme = state.config.public_scheme;
    let msg = Message {
        method: parts.method.as_str(),
        scheme,
        authority,
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &parts.headers,
    };
    httpsig::check_coverage(
        &sig,
        Coverage {
            has_body: !body.is_empty(),
            has_query: msg.query.is_some(),
            has_authorization: parts.headers.contains_key(header::AUTHORIZATION),
        },
    )?;
    httpsig::check_window(&sig.params, now, state.config.signature_max_skew)?;
    if sig.params.created.unwrap_or(i64::MIN) < state.replay.horizon() {
        // Its nonce may have been used before this process started: refused, as a replay
        // would be. Clients re-sign with the current time.
        return Err(ApiError::new(
            crate::error::Code::SignatureExpired,
            "signed before the server's replay memory begins; sign again",
        ));
    }
    if let Err(e) = sig.verify(&msg, &key) {
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        if let Some(host) = host.filter(|h| !h.eq_ignore_ascii_case(authority)) {
            // The likely cause, said plainly: a client signing the URL it called.
            return Err(sig_error(&format!(
                "signature does not verify; it may cover `{host}`, but this server's \
                 authority is `{authority}` (server.public_base_url)"
            )));
        }
        return Err(e.into());
    }
    *proven = Some(device.id);
    if device.status == DeviceStatus::Revoked {
        return Err(ApiError::revoked());
    }
    if let Some(field) = joined(parts, &names::CONTENT_DIGEST)? {
        digest::verify(&field, body)?;
    }
    let nonce = sig.params.nonce.as_deref().unwrap_or_default();
    let mut replay_key = Vec::with_capacity(keyid.len() + nonce.len() + 5);
    replay_key.extend_from_slice(b"sig\0");
    replay_key.extend_from_slice(keyid.as_bytes());
    replay_key.push(0);
    replay_key.extend_from_slice(nonce.as_bytes());
    let created = sig.params.created.unwrap_or(now);
    let fresh = state
        .replay
        .insert_once(
            &replay_key,
            created.max(now) + state.config.signature_max_skew + 1,
            now,
        )
        .await
        .map_err(|_| ApiError::unavailable())?;
    if !fresh {
        return Err(ApiError::new(
            crate::error::Code::ReplayDetected,
            "this signature nonce was already used",
        ));
    }
    Ok(Principal {
        device: Some(device),
        via,
        user: None,
    })
}

async fn verify_api_key(
    state: &AppState,
    value: &HeaderValue,
    proven: &mut Option<uuid::Uuid>,
) -> Result<Principal, ApiError> {
    let text = value
        .to_str()
        .map_err(|_| ApiError::credential("Moat-Device-Key is not ASCII"))?;
    if state.config.mode == Mode::Static
        && secret::ct_eq(text.as_bytes(), state.keys.static_key.expose())
    {
        return Ok(Principal {
            device: None,
            via: Via::StaticKey,
            user: None,
        });
    }
    let invalid = || ApiError::credential("the device key is not valid");
    let key = ApiKey::parse(text).map_err(|_| invalid())?;
    let ttl = i64::try_from(state.config.device_cache_ttl_ms).unwrap_or(0);
    let cache_key = CachedCredential::api_key_cache_key(&key.lookup);
    let now_ms = state.now_ms();
    let cached = if ttl > 0 {
        state.device_cache.get(&cache_key, now_ms)
    } else {
        None
    };
    let device = match cached {
        Some(c) => c.device,
        None => {
            let device = Arc::new(
                timed(state, state.store.device_by_key_lookup(&key.lookup))
                    .await?
                    .ok_or_else(invalid)?,
            );
            if ttl > 0 {
                state.device_cache.put(
                    cache_key,
                    CachedCredential {
                        device: device.clone(),
                        key: None,
                        via: Via::ApiKey,
                    },
                    now_ms + ttl,
                );
            }
            device
        }
    };
    let stored = device.credential.key_hash.as_deref().ok_or_else(invalid)?;
    if !key.matches(&state.keys.api_key_pepper, stored) {
        return Err(invalid());
    }
    *proven = Some(device.id);
    if device.status == DeviceStatus::Revoked {
        return Err(ApiError::revoked());
    }
    Ok(Principal {
        device: Some(device),
        via: Via::ApiKey,
        user: None,
    })
}

fn is_jose(parts: &Parts) -> bool {
    parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/jose")
        })
}

async fn decrypt_body(
    state: &AppState,
    principal: &Principal,
    body: &[u8],
) -> Result<Bytes, ApiError> {
    let no_key = || {
        ApiError::new(
            crate::error::Code::UnsupportedMediaType,
            "this device has no encryption key; send the body unencrypted",
        )
    };
    let device = principal.device.as_ref().ok_or_else(no_key)?;
    let (Some(kid), Some(sealed)) = (
        &device.credential.rsa_kid,
        &device.credential.rsa_private_sealed,
    ) else {
        return Err(no_key());
    };
    let compact = std::str::from_utf8(body)
        .map_err(|_| ApiError::malformed("JWE body is not ASCII"))?
        .trim()
        .to_owned();
    if jwe::peek_kid(&compact)?.as_deref() != Some(kid.as_str()) {
        return Err(ApiError::malformed(
            "JWE kid does not name this device's encryption key",
        ));
    }
    let pkcs8 = state.keys.data.open(kid.as_bytes(), sealed)?;
    // RSA decryption is a private-key operation (~1 ms): keep it off the async workers.
    let plain = tokio::task::spawn_blocking(move || {
        let key = RsaPrivateKey::from_pkcs8(pkcs8.expose())?;
        jwe::decrypt(&compact, &key, &[KeyAlgorithm::RsaOaep256])
    })
    .await
    .map_err(|e| ApiError::internal(&e))??;
    Ok(Bytes::from(plain))
}

fn token_error(detail: &str) -> ApiError {
    ApiError::new(crate::error::Code::TokenInvalid, detail.to_owned())
}

/// Checks the `Authorization: Bearer` access token. Moat's own tokens are bound to a device
/// (`cnf`), so they need that device's credential on the same request; external issuers'
/// tokens are checked against their JWKS.
async fn verify_user(
    state: &AppState,
    parts: &Parts,
    device: Option<&Principal>,
) -> Result<UserPrincipal, ApiError> {
    let token = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| token_error("an access token is required (Authorization: Bearer)"))?
        .trim();
    let now = state.now();
    // A token seen before is in the cache: skip even the unverified look at its issuer.
    let key = crate::cache::TtlCache::<crate::tokens::AccessClaims>::key(token.as_bytes());
    let claims = match state.tokens.cached(&key, now) {
        Some(claims) => claims,
        None => {
            let iss = crate::issuers::peek_issuer(token)
                .ok_or_else(|| token_error("malformed access token"))?;
            if iss != state.tokens.issuer() {
                let cfg = state
                    .issuers
                    .find(&iss)
                    .ok_or_else(|| token_error("unknown issuer"))?;
                // Boxed: this rare path (it may fetch the issuer's JWKS) would otherwise make
                // every request's future, copied when boxed by the middleware, 1 KiB larger.
                let claims = Box::pin(state.issuers.verify(cfg, token, now)).await?;
                return Ok(UserPrincipal {
                    id: claims.sub,
                    issuer: claims.iss,
                    local: false,
                });
            }
            state.tokens.verify_access_keyed(key, token, now)?
        }
    };
    let Some(caller) = device else {
        return Err(token_error(
            "this access token is bound to a device: send the device credential too",
        ));
    };
    let mut buf = uuid::Uuid::encode_buffer();
    let caller_device = match &caller.device {
        Some(d) => &*d.id.hyphenated().encode_lower(&mut buf),
        None => "static",
    };
    if claims.cnf.moat_device != caller_device {
        return Err(token_error("this access token belongs to another device"));
    }
    Ok(UserPrincipal {
        id: claims.sub,
        issuer: claims.iss,
        local: true,
    })
}

/// Checks `Moat-Integrity`: a valid, unexpired integrity token for the calling device, and,
/// when it carries `pay`, for this request's `Authorization` header.
fn verify_integrity(
    state: &AppState,
    parts: &Parts,
    caller: Option<&Principal>,
    now: i64,
) -> Result<(), ApiError> {
    let invalid = |why: &str| ApiError::new(crate::error::Code::IntegrityInvalid, why.to_owned());
    let token = parts
        .headers
        .get(&names::MOAT_INTEGRITY)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| invalid("an integrity token is required (Moat-Integrity)"))?;
    let claims = state.integrity.verify(token, now)?;
    let device = caller
        .and_then(|c| c.device.as_ref())
        .ok_or_else(|| invalid("the integrity token needs the device credential too"))?;
    if claims.sub
        != *device
            .id
            .hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer())
    {
        return Err(invalid("this integrity token belongs to another device"));
    }
    if let Some(pay) = &claims.pay {
        let auth = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes)
            .unwrap_or_default();
        let hash =
            moat_core::b64::url_encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, auth));
        if !secret::ct_eq(hash.as_bytes(), pay.as_bytes()) {
            return Err(invalid(
                "the integrity token is bound to another Authorization header",
            ));
        }
    }
    Ok(())
}

/// The middleware function.
///
/// # Errors
/// The problem of the first failed requirement.
pub async fn protect(State(p): State<Protect>, req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let mut proven = None;
    let outcome = checked(&p, req, &mut proven).await;
    p.state
        .metrics
        .verification
        .observe(started.elapsed().as_secs_f64());
    match outcome {
        Ok((req, limit_headers)) => {
            let mut response = next.run(req).await;
            if let Some((policy, remaining)) = limit_headers {
                response
                    .headers_mut()
                    .insert(names::RATELIMIT_POLICY.clone(), policy);
                response
                    .headers_mut()
                    .insert(names::RATELIMIT.clone(), remaining);
            }
            response
        }
        Err(e) => {
            let mut response = axum::response::IntoResponse::into_response(e);
            if let Some(id) = proven {
                response.extensions_mut().insert(RefusedDevice(id));
            }
            response
        }
    }
}

/// On a refusal: the device whose credential was proven before a later check refused the
/// request (revoked, replayed, rate limited, missing integrity…). Never set from an unproven
/// claim, so nobody can make another device look abusive.
#[derive(Clone, Copy, Debug)]
pub struct RefusedDevice(pub uuid::Uuid);

/// The `RateLimit` header values of an admitted request.
type LimitHeaders = Option<(HeaderValue, HeaderValue)>;

/// Every check of the route's policy; the request to pass on, or the refusal.
async fn checked(
    p: &Protect,
    req: Request,
    proven: &mut Option<uuid::Uuid>,
) -> Result<(Request, LimitHeaders), ApiError> {
    let state = &p.state;
    let (mut parts, body) = req.into_parts();
    refuse_repeated_credentials(&parts)?;
    let body = body_bytes(body, p.body_limit).await?;
    let now = state.now();
    let signed = parts.headers.contains_key(&names::SIGNATURE_INPUT)
        || parts.headers.contains_key(&names::SIGNATURE);
    let needs_signature = p.policy.contains(&Requirement::Signature);
    let needs_device = needs_signature || p.policy.contains(&Requirement::Device);
    // Any credential that is sent is checked, even where the route does not require it.
    let caller = if signed {
        Some(verify_signature(state, &parts, &body, now, proven).await?)
    } else if needs_signature {
        return Err(sig_error(
            "this endpoint requires an RFC 9421 request signature",
        ));
    } else if let Some(value) = parts.headers.get(&names::MOAT_DEVICE_KEY) {
        Some(verify_api_key(state, value, proven).await?)
    } else {
        None
    };
    if needs_device && caller.is_none() {
        return Err(ApiError::credential(
            "a device credential is required (Moat-Device-Key or a request signature)",
        ));
    }
    let user = if p.policy.contains(&Requirement::User) {
        Some(verify_user(state, &parts, caller.as_ref()).await?)
    } else {
        None
    };
    if p.policy.contains(&Requirement::Integrity) {
        verify_integrity(state, &parts, caller.as_ref(), now)?;
    }
    let mut principal = caller.unwrap_or(Principal {
        device: None,
        via: Via::None,
        user: None,
    });
    principal.user = user;
    let body = if is_jose(&parts) {
        let plain = decrypt_body(state, &principal, &body).await?;
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(plain.len()));
        plain
    } else {
        body
    };
    let limit_headers = rate_limit(p, &parts, &principal).await?;
    if let Some(device) = &principal.device {
        state.usage.record(device.id, now);
    }
    parts.extensions.insert(principal);
    Ok((Request::from_parts(parts, Body::from(body)), limit_headers))
}
