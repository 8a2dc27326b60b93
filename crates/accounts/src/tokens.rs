//! User tokens: ES256 access tokens (JWT) with rotating keys and a JWKS, and opaque refresh
//! tokens that rotate on every use.
//!
//! Access token claims: `iss` (the server's public base URL), `sub` (user id), `iat`, `exp`
//! (15 min by default), `jti`, and `cnf: {"moat_device": "<device uuid>"}` naming the device
//! that logged in: the token is accepted only together with that device's own credential, so
//! a token copied off one phone is useless on another.
//!
//! Keys live in the store (private part sealed). The current key signs; retired keys stay in
//! the JWKS, and keep verifying, until every token they signed has expired. Each instance
//! reloads the key set from the store every few seconds, so a rotation made anywhere takes
//! effect everywhere within [`RELOAD_EVERY`].

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use moat_cluster::cache::TtlCache;
use moat_core::apikey::{ApiKey, REFRESH_PREFIX};
use moat_core::dpop::InstallationKey;
use moat_identity::jwt::{self, verify_issued};
use moat_store::accounts::{AccountStore, RefreshToken, SigningKeyRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::{Error, KeyRing};

/// How often each instance reloads the signing keys (and integrity secrets) from the store:
/// the bound within which a rotation made on one instance takes effect on all of them.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// The device binding of an access token (RFC 7800 `cnf`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Confirmation {
    /// Device uuid, or `static` in static mode.
    pub moat_device: String,
}

/// Access token claims.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// User id.
    pub sub: String,
    /// Issued at.
    pub iat: i64,
    /// Expiry.
    pub exp: i64,
    /// Token id.
    pub jti: String,
    /// Device binding.
    pub cnf: Confirmation,
}

struct KeySet {
    current: Option<(String, EncodingKey)>,
    decoding: HashMap<String, DecodingKey>,
    jwks: Value,
    /// `(kid, retired_at)` of the keys loaded: a reload that finds the same set (nearly every
    /// one, every second) rebuilds nothing.
    loaded: Vec<(String, Option<i64>)>,
}

/// Signs and verifies access tokens.
pub struct TokenService {
    issuer: String,
    access_ttl: i64,
    refresh_ttl: i64,
    set: RwLock<KeySet>,
    /// Verified tokens by SHA-256, until they expire: one ES256 verify per token.
    verified: TtlCache<AccessClaims>,
}

fn new_key_record(keys: &dyn KeyRing, now: i64) -> Result<SigningKeyRecord, Error> {
    let (key, pkcs8) = InstallationKey::generate_p256()?;
    let kid = format!("ak_{}", moat_core::random::token(12)?);
    let mut jwk = key.public_jwk().to_json();
    jwk["kid"] = kid.clone().into();
    jwk["alg"] = "ES256".into();
    jwk["use"] = "sig".into();
    Ok(SigningKeyRecord {
        private_sealed: keys.data().seal(kid.as_bytes(), &pkcs8)?,
        kid,
        public_jwk: jwk.to_string(),
        created_at: now,
        retired_at: None,
    })
}

impl TokenService {
    /// A service issuing tokens as `issuer`.
    pub fn new(issuer: String, access_ttl: i64, refresh_ttl: i64) -> Self {
        Self {
            issuer,
            access_ttl,
            refresh_ttl,
            set: RwLock::new(KeySet {
                current: None,
                decoding: HashMap::new(),
                jwks: serde_json::json!({"keys": []}),
                loaded: Vec::new(),
            }),
            verified: TtlCache::new(100_000),
        }
    }

    /// Access token lifetime, seconds.
    pub fn access_ttl(&self) -> i64 {
        self.access_ttl
    }

    /// The issuer (`iss`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Loads the keys from the store, creating the first one if there is none.
    ///
    /// # Errors
    /// Store unavailable, or a sealed key that does not open.
    pub async fn reload(
        &self,
        store: &dyn AccountStore,
        keys: &dyn KeyRing,
        now: i64,
    ) -> Result<(), Error> {
        let mut records = store.signing_keys().await?;
        if !records.iter().any(|r| r.retired_at.is_none()) {
            store
                .rotate_signing_key(new_key_record(keys, now)?, now)
                .await?;
            records = store.signing_keys().await?;
        }
        // A retired key verifies (and is published) until its last token has expired.
        records.retain(|r| r.retired_at.is_none_or(|at| at + self.access_ttl >= now));
        let loaded: Vec<(String, Option<i64>)> = records
            .iter()
            .map(|r| (r.kid.clone(), r.retired_at))
            .collect();
        if self
            .set
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .loaded
            == loaded
        {
            return Ok(());
        }
        let mut current = None;
        let mut decoding = HashMap::new();
        let mut published = Vec::new();
        for r in records {
            let jwk: Value =
                serde_json::from_str(&r.public_jwk).map_err(|e| Error::internal(&e))?;
            let x = jwk["x"].as_str().unwrap_or_default();
            let y = jwk["y"].as_str().unwrap_or_default();
            decoding.insert(
                r.kid.clone(),
                DecodingKey::from_ec_components(x, y).map_err(|e| Error::internal(&e))?,
            );
            if r.retired_at.is_none() && current.is_none() {
                let pkcs8 = keys.data().open(r.kid.as_bytes(), &r.private_sealed)?;
                current = Some((r.kid.clone(), EncodingKey::from_ec_der(pkcs8.expose())));
            }
            published.push(jwk);
        }
        let mut set = self
            .set
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *set = KeySet {
            current,
            decoding,
            jwks: serde_json::json!({ "keys": published }),
            loaded,
        };
        Ok(())
    }

    /// Makes a new current key and retires the old one.
    ///
    /// # Errors
    /// Store unavailable.
    pub async fn rotate(
        &self,
        store: &dyn AccountStore,
        keys: &dyn KeyRing,
        now: i64,
    ) -> Result<String, Error> {
        let record = new_key_record(keys, now)?;
        let kid = record.kid.clone();
        store.rotate_signing_key(record, now).await?;
        self.reload(store, keys, now).await?;
        tracing::info!(kid = %kid, "access-token signing key rotated");
        Ok(kid)
    }

    /// The published JWKS.
    pub fn jwks(&self) -> Value {
        self.set
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .jwks
            .clone()
    }

    /// Issues an access token for `user` bound to `device`.
    ///
    /// # Errors
    /// [`Error::Unavailable`] if no key is loaded.
    pub fn issue_access(&self, user: Uuid, device: &str, now: i64) -> Result<String, Error> {
        let set = self
            .set
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (kid, key) = set.current.as_ref().ok_or(Error::Unavailable)?;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.clone());
        header.typ = Some("at+jwt".into());
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: user.to_string(),
            iat: now,
            exp: now + self.access_ttl,
            jti: moat_core::random::token(16)?,
            cnf: Confirmation {
                moat_device: device.to_owned(),
            },
        };
        jsonwebtoken::encode(&header, &claims, key).map_err(|e| Error::internal(&e))
    }

    /// A token verified earlier and not yet expired, by its cache key
    /// ([`TtlCache::key`] of the token).
    pub fn cached(&self, key: &[u8; 32], now: i64) -> Option<AccessClaims> {
        self.verified.get(key, now.saturating_mul(1000))
    }

    /// Verifies one of this server's access tokens (cached by SHA-256 until it expires).
    ///
    /// # Errors
    /// [`Error::TokenInvalid`], or [`Error::TokenExpired`] for a token past its `exp`.
    pub fn verify_access(&self, token: &str, now: i64) -> Result<AccessClaims, Error> {
        self.verify_access_keyed(TtlCache::<AccessClaims>::key(token.as_bytes()), token, now)
    }

    /// As [`Self::verify_access`], with the token's cache key already computed.
    ///
    /// # Errors
    /// As [`Self::verify_access`].
    pub fn verify_access_keyed(
        &self,
        key: [u8; 32],
        token: &str,
        now: i64,
    ) -> Result<AccessClaims, Error> {
        self.verified
            .get_or_try_insert(key, now.saturating_mul(1000), || {
                let claims = self.verify_uncached(token, now)?;
                let exp = claims.exp.saturating_mul(1000);
                Ok((claims, exp))
            })
    }

    fn verify_uncached(&self, token: &str, now: i64) -> Result<AccessClaims, Error> {
        let set = self
            .set
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        verify_issued(token, Algorithm::ES256, &set.decoding, &self.issuer, now).map_err(|why| {
            if why == jwt::EXPIRED {
                // RFC 6750 section 3.1 (PROTOCOL section 1): the app should refresh.
                Error::TokenExpired
            } else {
                Error::TokenInvalid(why.to_owned())
            }
        })
    }

    /// Issues a refresh token in `family` and stores its hash.
    ///
    /// # Errors
    /// Store unavailable.
    pub async fn issue_refresh(
        &self,
        store: &dyn AccountStore,
        keys: &dyn KeyRing,
        user: Uuid,
        device: &str,
        family: &str,
        now: i64,
    ) -> Result<String, Error> {
        let (record, text) = self.new_refresh(keys, user, device, family, now)?;
        store.insert_refresh_token(record).await?;
        Ok(text)
    }

    /// A new refresh token of `family`, not stored yet (a rotation stores it together with
    /// spending its predecessor): its record and its text.
    ///
    /// # Errors
    /// If the random generator fails.
    pub fn new_refresh(
        &self,
        keys: &dyn KeyRing,
        user: Uuid,
        device: &str,
        family: &str,
        now: i64,
    ) -> Result<(RefreshToken, String), Error> {
        let (token, text) = ApiKey::generate_with_prefix(REFRESH_PREFIX)?;
        let record = RefreshToken {
            lookup: token.lookup.clone(),
            hash: token.hash(keys.pepper()).to_vec(),
            family: family.to_owned(),
            user_id: user,
            device: device.to_owned(),
            status: "active".into(),
            created_at: now,
            expires_at: now + self.refresh_ttl,
        };
        Ok((record, String::from_utf8_lossy(text.expose()).into_owned()))
    }
}

impl moat_identity::jwt::Expiring for AccessClaims {
    fn exp(&self) -> i64 {
        self.exp
    }
}
