//! Firebase ID tokens, verified the way Firebase documents for third-party backends:
//! RS256 signed by one of Google's keys (x509 certificates published at the certificates URL,
//! cached for as long as its `Cache-Control: max-age` says, and fetched again when a token names
//! a `kid` not seen yet), `aud` = the project id, `iss` = `https://securetoken.google.com/<project>`,
//! `sub` non-empty (it is the uid), `iat` and `auth_time` in the past, `exp` in the future.
//!
//! With the Auth emulator configured (`firebase.auth_emulator_host`), the emulator's unsigned
//! tokens (`alg: none`) are accepted too, with the same claim checks; without it, an unsigned
//! token is refused like any other bad token. The server logs a warning at start in that mode.
//!
//! A verified token is remembered (by its SHA-256) until it expires, so one device enrolling
//! and confirming pays one RSA verification.

use std::collections::HashMap;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use moat_core::b64;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};

use moat_cluster::cache::TtlCache;

use crate::error::Error;

/// Shortest time between two certificate fetches caused by unknown `kid`s: a flood of made-up
/// `kid`s cannot turn Moat into a request amplifier against Google.
const MIN_REFETCH: i64 = 30;
/// Certificates are kept at most this long whatever `max-age` says, and this long when the
/// response has none.
const MAX_AGE: i64 = 6 * 3600;
/// Accepted clock skew for `iat` and `auth_time` in the future, seconds.
const SKEW: i64 = 60;
/// Longest token accepted, bytes.
const MAX_TOKEN: usize = 8192;

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    crit: Option<Value>,
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    iat: i64,
    exp: i64,
    auth_time: Option<i64>,
}

struct Certs {
    keys: HashMap<String, Arc<DecodingKey>>,
    fresh_until: i64,
    fetched_at: i64,
}

/// Verifies Firebase ID tokens of one project.
pub struct IdTokens {
    project_id: String,
    issuer: String,
    certs_url: String,
    emulator: bool,
    http: reqwest::Client,
    certs: RwLock<Certs>,
    fetching: Mutex<()>,
    verified: TtlCache<Arc<str>>,
}

fn invalid(detail: &str) -> Error {
    Error::identity(format!("Firebase ID token rejected: {detail}"))
}

/// Whether a uid can name a Realtime Database node and a Moat identity: Firebase's own uids
/// (anonymous and provider ones) are letters and digits; anything else is refused rather than
/// escaped.
pub fn uid_ok(uid: &str) -> bool {
    (1..=128).contains(&uid.len())
        && uid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// `max-age` of a `Cache-Control` value, if any.
fn max_age(cache_control: &str) -> Option<i64> {
    cache_control.split(',').find_map(|d| {
        let (name, value) = d.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| value.trim().trim_matches('"').parse().ok())
            .flatten()
    })
}

impl IdTokens {
    /// A verifier for `project_id`, fetching certificates from `certs_url`.
    pub fn new(project_id: &str, certs_url: &str, emulator: bool) -> Self {
        Self {
            project_id: project_id.to_owned(),
            issuer: format!("https://securetoken.google.com/{project_id}"),
            certs_url: certs_url.to_owned(),
            emulator,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            certs: RwLock::new(Certs {
                keys: HashMap::new(),
                fresh_until: 0,
                fetched_at: i64::MIN / 2,
            }),
            fetching: Mutex::new(()),
            verified: TtlCache::new(100_000),
        }
    }

    /// Verifies `token` and returns the uid.
    ///
    /// # Errors
    /// [`Error::Identity`] for any bad token; [`Error::Unavailable`] if the certificates cannot
    /// be fetched and none cached can decide.
    pub async fn verify(&self, token: &str, now: i64) -> Result<Arc<str>, Error> {
        if token.len() > MAX_TOKEN {
            return Err(invalid("too long"));
        }
        let cache_key = TtlCache::<Arc<str>>::key(token.as_bytes());
        if let Some(uid) = self.verified.get(&cache_key, now.saturating_mul(1000)) {
            return Ok(uid);
        }
        let mut parts = token.split('.');
        let (Some(head), Some(body), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("not a JWT"));
        };
        let header: Header = b64::url_decode(head)
            .ok()
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or_else(|| invalid("bad header"))?;
        // RFC 7515 section 4.1.11: no critical extension is understood here.
        if header.crit.is_some() {
            return Err(invalid("unsupported critical header"));
        }
        let claims: Claims = match header.alg.as_str() {
            "RS256" => {
                let kid = header.kid.ok_or_else(|| invalid("no kid"))?;
                let key = self.key(&kid, now).await?;
                let mut validation = Validation::new(Algorithm::RS256);
                // Claims are checked below, with Firebase's rules and our clock.
                validation.validate_exp = false;
                validation.validate_aud = false;
                validation.required_spec_claims.clear();
                jsonwebtoken::decode::<Claims>(token, &key, &validation)
                    .map_err(|_| invalid("bad signature or claims"))?
                    .claims
            }
            "none" if self.emulator && sig.is_empty() => b64::url_decode(body)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .ok_or_else(|| invalid("bad claims"))?,
            "none" => return Err(invalid("unsigned tokens come only from the Auth emulator")),
            _ => return Err(invalid("Firebase ID tokens are RS256")),
        };
        if claims.aud != self.project_id {
            return Err(invalid("issued for another project (aud)"));
        }
        if claims.iss != self.issuer {
            return Err(invalid("issued for another project (iss)"));
        }
        if claims.exp <= now {
            return Err(invalid("expired"));
        }
        if claims.iat > now + SKEW || claims.auth_time.unwrap_or(claims.iat) > now + SKEW {
            return Err(invalid("issued in the future"));
        }
        if !uid_ok(&claims.sub) {
            return Err(invalid("sub is not a Firebase uid"));
        }
        let uid: Arc<str> = claims.sub.into();
        self.verified
            .put(cache_key, uid.clone(), claims.exp.saturating_mul(1000));
        Ok(uid)
    }

    /// The key for `kid`: from the cache while it is fresh, else fetched (again).
    async fn key(&self, kid: &str, now: i64) -> Result<Arc<DecodingKey>, Error> {
        {
            let certs = self.certs.read().await;
            if now < certs.fresh_until
                && let Some(key) = certs.keys.get(kid)
            {
                return Ok(key.clone());
            }
        }
        // One fetch at a time; whoever waited re-checks what the fetch brought.
        let _one = self.fetching.lock().await;
        {
            let certs = self.certs.read().await;
            let stale = now >= certs.fresh_until;
            match certs.keys.get(kid) {
                Some(key) if !stale => return Ok(key.clone()),
                None if !stale && certs.fetched_at + MIN_REFETCH > now => {
                    return Err(invalid("unknown kid"));
                }
                _ => {}
            }
        }
        match self.fetch(now).await {
            Ok(fresh) => {
                let key = fresh.keys.get(kid).cloned();
                *self.certs.write().await = fresh;
                key.ok_or_else(|| invalid("unknown kid"))
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot fetch the Firebase ID-token certificates");
                // A key we had stays usable while Google cannot be reached: it was published
                // by Google and the token's own expiry still bounds its use.
                let certs = self.certs.read().await;
                certs.keys.get(kid).cloned().ok_or(Error::Unavailable)
            }
        }
    }

    async fn fetch(&self, now: i64) -> Result<Certs, String> {
        let response = self
            .http
            .get(&self.certs_url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let age = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age)
            .unwrap_or(MAX_AGE)
            .clamp(0, MAX_AGE);
        let bytes = response.bytes().await.map_err(|e| e.to_string())?;
        if bytes.len() > 256 * 1024 {
            return Err("certificate document too large".into());
        }
        let pems: HashMap<String, String> =
            serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        let mut keys = HashMap::with_capacity(pems.len());
        for (kid, pem) in pems.into_iter().take(64) {
            match DecodingKey::from_rsa_pem(pem.as_bytes()) {
                Ok(key) => {
                    keys.insert(kid, Arc::new(key));
                }
                Err(e) => {
                    tracing::warn!(kid = %kid, error = %e, "skipping an unreadable certificate")
                }
            }
        }
        Ok(Certs {
            keys,
            fresh_until: now + age,
            fetched_at: now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            max_age("public, max-age=19302, must-revalidate, no-transform"),
            Some(19302)
        );
        assert_eq!(max_age("no-cache"), None);
        assert_eq!(max_age("Max-Age=\"60\""), Some(60));
    }

    #[test]
    fn uids_that_could_escape_a_database_path_are_refused() {
        assert!(uid_ok("kX3bq9UMlPd2Rt7Hq1FzS0bB2aE3"));
        for bad in [
            "",
            "a/b",
            "a.b",
            "a$b",
            "a#b",
            "a[b]",
            "..",
            &"a".repeat(129),
        ] {
            assert!(!uid_ok(bad), "{bad}");
        }
    }
}
