//! External OAuth2/OIDC issuers for the `user` requirement (Keycloak, Auth0, Firebase Auth…):
//! tokens are verified against the issuer's JWKS, fetched over HTTP and cached; an unknown
//! `kid` triggers a refetch (at most one every [`MIN_REFETCH`]), so a key rotation at the
//! issuer is picked up without a restart and a flood of made-up `kid`s cannot turn Moat into
//! a request amplifier.

use std::collections::HashMap;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::RwLock;

use crate::Error;

/// Shortest time between two fetches of one issuer's JWKS.
pub const MIN_REFETCH: i64 = 30;
/// How long a JWKS is used before it is refreshed.
pub const MAX_AGE: i64 = 3600;

/// One configured issuer.
#[derive(Clone, Debug)]
pub struct IssuerConfig {
    /// `iss` value.
    pub issuer: String,
    /// JWKS URL.
    pub jwks_url: String,
    /// Expected `aud`.
    pub audience: String,
}

struct Cached {
    keys: HashMap<String, (Algorithm, DecodingKey)>,
    fetched_at: i64,
}

/// The issuers and their cached key sets.
pub struct Issuers {
    configs: Vec<IssuerConfig>,
    cache: RwLock<HashMap<String, Cached>>,
    http: reqwest::Client,
}

/// Claims read from an external token.
#[derive(Debug, Deserialize)]
pub struct ExternalClaims {
    /// Issuer.
    pub iss: String,
    /// Subject.
    pub sub: String,
}

#[derive(Deserialize)]
struct IssOnly {
    iss: Option<String>,
}

/// The `iss` claim of a JWT, read without verifying it (only to choose the verifier).
pub fn peek_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = moat_core::b64::url_decode(payload).ok()?;
    serde_json::from_slice::<IssOnly>(&bytes).ok()?.iss
}

impl Issuers {
    /// The configured issuers.
    pub fn new(configs: Vec<IssuerConfig>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self {
            configs,
            cache: RwLock::new(HashMap::new()),
            http,
        }
    }

    /// The configuration for `iss`, if it is one of ours.
    pub fn find(&self, iss: &str) -> Option<&IssuerConfig> {
        self.configs.iter().find(|c| c.issuer == iss)
    }

    async fn fetch(&self, cfg: &IssuerConfig, now: i64) -> Result<(), Error> {
        let response = self.http.get(&cfg.jwks_url).send().await.map_err(|e| {
            tracing::warn!(issuer = %cfg.issuer, error = %e.without_url(), "cannot fetch issuer JWKS");
            Error::Unavailable
        })?;
        if !response.status().is_success() {
            tracing::warn!(issuer = %cfg.issuer, status = response.status().as_u16(), "issuer JWKS answered an error");
            return Err(Error::Unavailable);
        }
        let set: JwkSet = response.json().await.map_err(|_| Error::Unavailable)?;
        let mut keys = HashMap::new();
        for jwk in set.keys.iter().take(64) {
            let (Some(kid), Some(alg)) = (&jwk.common.key_id, jwk.common.key_algorithm) else {
                continue;
            };
            let Ok(alg) = alg.to_string().parse::<Algorithm>() else {
                continue;
            };
            if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
                continue;
            }
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.insert(kid.clone(), (alg, key));
            }
        }
        self.cache.write().await.insert(
            cfg.issuer.clone(),
            Cached {
                keys,
                fetched_at: now,
            },
        );
        Ok(())
    }

    /// Verifies a token from a configured issuer.
    ///
    /// # Errors
    /// [`Error::Invalid`], or [`Error::Unavailable`] when the issuer's JWKS cannot be fetched.
    pub async fn verify(
        &self,
        cfg: &IssuerConfig,
        token: &str,
        now: i64,
    ) -> Result<ExternalClaims, Error> {
        let invalid = Error::Invalid;
        let header = crate::jwt::header(token).map_err(invalid)?;
        let kid = header.kid.ok_or_else(|| invalid("token has no kid"))?;
        let (stale, known, last) = {
            let cache = self.cache.read().await;
            match cache.get(&cfg.issuer) {
                Some(c) => (
                    c.fetched_at + MAX_AGE < now,
                    c.keys.contains_key(&kid),
                    c.fetched_at,
                ),
                None => (true, false, i64::MIN / 2),
            }
        };
        if stale || (!known && last + MIN_REFETCH <= now) {
            self.fetch(cfg, now).await?;
        }
        let cache = self.cache.read().await;
        let (alg, key) = cache
            .get(&cfg.issuer)
            .and_then(|c| c.keys.get(&kid))
            .ok_or_else(|| invalid("unknown kid"))?;
        if header.alg != *alg {
            return Err(invalid("algorithm does not match the issuer's key"));
        }
        let mut validation = Validation::new(*alg);
        validation.set_issuer(&[&cfg.issuer]);
        validation.set_audience(&[&cfg.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        validation.leeway = 30;
        let data = jsonwebtoken::decode::<ExternalClaims>(token, key, &validation)
            .map_err(|_| invalid("token rejected"))?;
        Ok(data.claims)
    }
}
