//! Integrity tokens (seed 002): HS256 JWS, `kid` in the header; claims `iss`, `sub` (device
//! uuid), `iat`, `exp`, `jti`, optional `pay`. Signed with the secret shared with the API
//! servers, or, when the attestation failed, with a fresh random secret: the token looks the
//! same (same header, same claim names, same size) and only the API server can tell.
//!
//! Secrets rotate (`moat admin integrity rotate`); a retired secret keeps verifying until the
//! last token it signed has expired.

use std::collections::HashMap;
use std::sync::RwLock;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use moat_cluster::cache::TtlCache;
use moat_core::seal::DataKey;
use moat_store::attest::{AttestStore, IntegrityKey};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Integrity token claims.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IntegrityClaims {
    /// Issuer.
    pub iss: String,
    /// Device uuid.
    pub sub: String,
    /// Issued at.
    pub iat: i64,
    /// Expiry.
    pub exp: i64,
    /// Token id.
    pub jti: String,
    /// base64url(SHA-256(Authorization header value)) the token is bound to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pay: Option<String>,
}

struct Set {
    current: Option<(String, EncodingKey)>,
    decoding: HashMap<String, DecodingKey>,
    exported: Vec<(String, String, bool)>,
    /// `(kid, retired_at)` of the secrets loaded: a reload that finds the same set rebuilds
    /// (and unseals) nothing.
    loaded: Vec<(String, Option<i64>)>,
}

/// Issues and verifies integrity tokens.
pub struct IntegrityService {
    issuer: String,
    ttl: i64,
    set: RwLock<Set>,
    verified: TtlCache<IntegrityClaims>,
}

fn kid_for(secret: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret);
    format!("ik_{}", &moat_core::b64::url_encode(d.as_ref())[..12])
}

impl IntegrityService {
    /// A service issuing as `issuer` with tokens living `ttl` seconds.
    pub fn new(issuer: String, ttl: i64) -> Self {
        Self {
            issuer,
            ttl,
            set: RwLock::new(Set {
                current: None,
                decoding: HashMap::new(),
                exported: Vec::new(),
                loaded: Vec::new(),
            }),
            verified: TtlCache::new(100_000),
        }
    }

    /// Token lifetime, seconds.
    pub fn ttl(&self) -> i64 {
        self.ttl
    }

    /// Loads the secrets (sealed with `data`), storing `initial` as the first one if there
    /// is none.
    ///
    /// # Errors
    /// Store unavailable, or a secret that `data` does not open.
    pub async fn reload(
        &self,
        store: &dyn AttestStore,
        data: &DataKey,
        initial: &[u8],
        now: i64,
    ) -> Result<(), Error> {
        let mut records = store.integrity_keys().await?;
        if !records.iter().any(|r| r.retired_at.is_none()) {
            let kid = kid_for(initial);
            store
                .rotate_integrity_key(
                    IntegrityKey {
                        secret_sealed: data.seal(kid.as_bytes(), initial)?,
                        kid,
                        created_at: now,
                        retired_at: None,
                    },
                    now,
                )
                .await?;
            records = store.integrity_keys().await?;
        }
        records.retain(|r| r.retired_at.is_none_or(|at| at + self.ttl >= now));
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
        let mut set = Set {
            current: None,
            decoding: HashMap::new(),
            exported: Vec::new(),
            loaded,
        };
        for r in records {
            let secret = data.open(r.kid.as_bytes(), &r.secret_sealed)?;
            set.decoding
                .insert(r.kid.clone(), DecodingKey::from_secret(secret.expose()));
            let current = r.retired_at.is_none() && set.current.is_none();
            if current {
                set.current = Some((r.kid.clone(), EncodingKey::from_secret(secret.expose())));
            }
            set.exported.push((
                r.kid.clone(),
                moat_core::b64::url_encode(secret.expose()),
                current,
            ));
        }
        *self
            .set
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = set;
        Ok(())
    }

    /// A new current secret (sealed with `data`); the previous one verifies until its tokens
    /// expire.
    ///
    /// # Errors
    /// Store unavailable.
    pub async fn rotate(
        &self,
        store: &dyn AttestStore,
        data: &DataKey,
        now: i64,
    ) -> Result<String, Error> {
        let secret = moat_core::random::secret(32)?;
        let kid = kid_for(secret.expose());
        store
            .rotate_integrity_key(
                IntegrityKey {
                    secret_sealed: data.seal(kid.as_bytes(), secret.expose())?,
                    kid: kid.clone(),
                    created_at: now,
                    retired_at: None,
                },
                now,
            )
            .await?;
        self.reload(store, data, secret.expose(), now).await?;
        tracing::info!(kid = %kid, "integrity secret rotated");
        Ok(kid)
    }

    /// The secrets API servers need: `(kid, base64url secret, current)`.
    pub fn export(&self) -> Vec<(String, String, bool)> {
        self.set
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .exported
            .clone()
    }

    /// Issues a token for `device`. With `genuine` false the token has the same header and
    /// claims but is signed with a random secret nobody keeps.
    ///
    /// # Errors
    /// [`Error::Unavailable`] if no secret is loaded.
    pub fn issue(
        &self,
        device: &str,
        pay: Option<String>,
        genuine: bool,
        now: i64,
    ) -> Result<String, Error> {
        let set = self
            .set
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (kid, key) = set.current.as_ref().ok_or(Error::Unavailable)?;
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.clone());
        let claims = IntegrityClaims {
            iss: self.issuer.clone(),
            sub: device.to_owned(),
            iat: now,
            exp: now + self.ttl,
            jti: moat_core::random::token(16)?,
            pay,
        };
        let throwaway;
        let key = if genuine {
            key
        } else {
            throwaway = EncodingKey::from_secret(moat_core::random::secret(32)?.expose());
            &throwaway
        };
        jsonwebtoken::encode(&header, &claims, key).map_err(|e| Error::Internal(e.to_string()))
    }

    /// Verifies a token.
    ///
    /// # Errors
    /// [`Error::IntegrityInvalid`] with the reason.
    pub fn verify(&self, token: &str, now: i64) -> Result<IntegrityClaims, Error> {
        let key = TtlCache::<IntegrityClaims>::key(token.as_bytes());
        self.verified
            .get_or_try_insert(key, now.saturating_mul(1000), || {
                let claims = self.verify_uncached(token, now)?;
                let exp = claims.exp.saturating_mul(1000);
                Ok((claims, exp))
            })
    }

    fn verify_uncached(&self, token: &str, now: i64) -> Result<IntegrityClaims, Error> {
        let set = self
            .set
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        moat_identity::jwt::verify_issued(token, Algorithm::HS256, &set.decoding, &self.issuer, now)
            .map_err(Error::IntegrityInvalid)
    }
}

impl moat_identity::jwt::Expiring for IntegrityClaims {
    fn exp(&self) -> i64 {
        self.exp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_genuine_tokens_verify_and_a_rotation_keeps_the_old_secret_verifying() {
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        let opened = moat_store::open("sqlite::memory:", &moat_store::PoolOptions::default())
            .await
            .expect("store");
        let data = DataKey::new(&[1; 32]).expect("data key");
        let service = IntegrityService::new("https://moat.test".into(), 300);
        // jsonwebtoken checks `exp` against the system clock too: use it.
        let now = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_secs(),
        )
        .expect("seconds");
        assert!(matches!(
            service.issue("d", None, true, now),
            Err(Error::Unavailable)
        ));
        service
            .reload(&*opened.attest, &data, &[2; 32], now)
            .await
            .expect("reload");
        let genuine = service.issue("d", None, true, now).expect("issue");
        let failing = service.issue("d", None, false, now).expect("issue");
        assert_eq!(genuine.len(), failing.len(), "pass and fail look alike");
        assert_eq!(service.verify(&genuine, now).expect("genuine").sub, "d");
        assert!(matches!(
            service.verify(&failing, now),
            Err(Error::IntegrityInvalid(_))
        ));
        let kid = service
            .rotate(&*opened.attest, &data, now + 10)
            .await
            .expect("rotate");
        let exported = service.export();
        assert_eq!(exported.len(), 2);
        assert!(exported.iter().any(|(k, _, current)| *k == kid && *current));
        assert!(service.verify(&genuine, now + 10).is_ok());
    }
}
