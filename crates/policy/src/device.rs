//! Which device is calling: from an RFC 9421 signature or a `Moat-Device-Key`, through the
//! short-lived credential cache.

use std::sync::Arc;

use http::request::Parts;
use http::{HeaderValue, header};
use moat_core::apikey::ApiKey;
use moat_core::httpsig::{self, Coverage, Message, ParsedSignature, VerifyingKey};
use moat_core::jwk::PublicJwk;
use moat_core::{digest, names, secret};
use moat_store::{Device, DeviceStatus};

use crate::error::Error;
use crate::headers::joined;
use crate::verifier::{Now, Verifier};
use crate::{CachedCredential, Principal, Via};

fn sig_error(detail: &'static str) -> Error {
    Error::SignatureInvalid(detail.into())
}

impl Verifier {
    /// The device and verifying key named by `keyid`, from the cache or the store.
    async fn key_for(
        &self,
        keyid: &str,
        now_ms: i64,
    ) -> Result<(Arc<Device>, Arc<VerifyingKey>, Via), Error> {
        let ttl = self.cache_ttl;
        let cache = &self.services.device_cache;
        let cache_key = CachedCredential::signature_cache_key(keyid);
        if let Some(CachedCredential {
            device,
            key: Some(key),
            via,
        }) = (ttl > 0).then(|| cache.get(&cache_key, now_ms)).flatten()
        {
            return Ok((device, key, via));
        }
        let store = &self.services.store;
        let unknown = || Error::CredentialInvalid("unknown keyid");
        let (device, key, via) = if keyid.starts_with("mc_") {
            let device = self
                .timed(store.device_by_client_id(keyid))
                .await?
                .ok_or_else(unknown)?;
            let sealed = device
                .credential
                .hmac_secret_sealed
                .as_deref()
                .ok_or_else(unknown)?;
            let secret = self.services.keys.data().open(keyid.as_bytes(), sealed)?;
            let key = VerifyingKey::hmac_sha256(secret.expose());
            (device, key, Via::HmacSignature)
        } else {
            if keyid.len() != 43 {
                return Err(unknown());
            }
            let device = self
                .timed(store.latest_active_device(&format!("inst:{keyid}")))
                .await?
                .ok_or_else(unknown)?;
            let jwk_text = device
                .credential
                .signing_jwk
                .as_deref()
                .ok_or_else(unknown)?;
            let value: serde_json::Value =
                serde_json::from_str(jwk_text).map_err(|e| Error::Internal(e.to_string()))?;
            let key = VerifyingKey::from_jwk(&PublicJwk::from_json(&value)?)?;
            (device, key, Via::InstallationSignature)
        };
        let (device, key) = (Arc::new(device), Arc::new(key));
        if ttl > 0 {
            cache.put(
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

    /// Checks the request's RFC 9421 signature, in the order given in the crate
    /// documentation; `proven` is set once the signature verifies.
    pub(crate) async fn verify_signature(
        &self,
        parts: &Parts,
        body: &[u8],
        now: Now,
        proven: &mut Option<uuid::Uuid>,
    ) -> Result<Principal, Error> {
        let headers = &parts.headers;
        let input = joined(headers, &names::SIGNATURE_INPUT)?
            .ok_or_else(|| sig_error("Signature-Input is missing"))?;
        let signature =
            joined(headers, &names::SIGNATURE)?.ok_or_else(|| sig_error("Signature is missing"))?;
        let sig = ParsedSignature::parse(&input, &signature, "moat")?;
        let keyid = sig
            .params
            .keyid
            .as_deref()
            .ok_or_else(|| sig_error("keyid parameter missing"))?;
        let (device, key, via) = self.key_for(keyid, now.millis).await?;

        // `@authority` and `@scheme` are the deployment's own (server.public_base_url), as
        // DPoP's `htu` is: taken from the client's `Host`, a request signed for another
        // deployment would replay here.
        let authority = self.settings.public_authority.as_str();
        let scheme = self.settings.public_scheme;
        let max_skew = self.settings.signature_max_skew;
        let msg = Message {
            method: parts.method.as_str(),
            scheme,
            authority,
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers,
        };
        httpsig::check_coverage(
            &sig,
            Coverage {
                has_body: !body.is_empty(),
                has_query: msg.query.is_some(),
                has_authorization: headers.contains_key(header::AUTHORIZATION),
            },
        )?;
        httpsig::check_window(&sig.params, now.secs, max_skew)?;
        let replay = &self.services.replay;
        if sig.params.created.unwrap_or(i64::MIN) < replay.horizon() {
            // Its nonce may have been used before this process started: refused, as a replay
            // would be. Clients re-sign with the current time.
            return Err(Error::SignedBeforeHorizon);
        }
        if let Err(e) = sig.verify(&msg, &key) {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
            if let Some(host) = host.filter(|h| !h.eq_ignore_ascii_case(authority)) {
                // The likely cause, said plainly: a client signing the URL it called.
                return Err(Error::SignatureInvalid(
                    format!(
                        "signature does not verify; it may cover `{host}`, but this server's \
                         authority is `{authority}` (server.public_base_url)"
                    )
                    .into(),
                ));
            }
            return Err(e.into());
        }
        *proven = Some(device.id);
        if device.status == DeviceStatus::Revoked {
            return Err(Error::Revoked);
        }
        if let Some(field) = joined(headers, &names::CONTENT_DIGEST)? {
            digest::verify(&field, body)?;
        }
        let nonce = sig.params.nonce.as_deref().unwrap_or_default();
        let mut replay_key = Vec::with_capacity(keyid.len() + nonce.len() + 5);
        replay_key.extend_from_slice(b"sig\0");
        replay_key.extend_from_slice(keyid.as_bytes());
        replay_key.push(0);
        replay_key.extend_from_slice(nonce.as_bytes());
        let created = sig.params.created.unwrap_or(now.secs);
        let fresh = replay
            .insert_once(&replay_key, created.max(now.secs) + max_skew + 1, now.secs)
            .await
            .map_err(|_| Error::Unavailable)?;
        if !fresh {
            return Err(Error::Replayed);
        }
        Ok(Principal {
            device: Some(device),
            via,
            user: None,
        })
    }

    /// Checks a `Moat-Device-Key`: the static key (static mode) or a device's API key;
    /// `proven` is set once the key matches.
    pub(crate) async fn verify_api_key(
        &self,
        value: &HeaderValue,
        now: Now,
        proven: &mut Option<uuid::Uuid>,
    ) -> Result<Principal, Error> {
        let text = value
            .to_str()
            .map_err(|_| Error::CredentialInvalid("Moat-Device-Key is not ASCII"))?;
        let keys = &self.services.keys;
        if self.settings.static_mode && secret::ct_eq(text.as_bytes(), keys.static_key().expose()) {
            return Ok(Principal {
                device: None,
                via: Via::StaticKey,
                user: None,
            });
        }
        let invalid = || Error::CredentialInvalid("the device key is not valid");
        let key = ApiKey::parse(text).map_err(|_| invalid())?;
        let ttl = self.cache_ttl;
        let cache = &self.services.device_cache;
        let cache_key = CachedCredential::api_key_cache_key(&key.lookup);
        let cached = if ttl > 0 {
            cache.get(&cache_key, now.millis)
        } else {
            None
        };
        let device = match cached {
            Some(c) => c.device,
            None => {
                let device = Arc::new(
                    self.timed(self.services.store.device_by_key_lookup(&key.lookup))
                        .await?
                        .ok_or_else(invalid)?,
                );
                if ttl > 0 {
                    cache.put(
                        cache_key,
                        CachedCredential {
                            device: device.clone(),
                            key: None,
                            via: Via::ApiKey,
                        },
                        now.millis + ttl,
                    );
                }
                device
            }
        };
        let stored = device.credential.key_hash.as_deref().ok_or_else(invalid)?;
        if !key.matches(keys.api_key_pepper(), stored) {
            return Err(invalid());
        }
        *proven = Some(device.id);
        if device.status == DeviceStatus::Revoked {
            return Err(Error::Revoked);
        }
        Ok(Principal {
            device: Some(device),
            via: Via::ApiKey,
            user: None,
        })
    }
}
