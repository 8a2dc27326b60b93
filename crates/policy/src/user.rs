//! The requirements beyond the device: a user access token and an integrity token.

use http::request::Parts;
use http::{HeaderValue, header};
use moat_accounts::tokens::AccessClaims;
use moat_cluster::cache::TtlCache;
use moat_core::{names, secret};

use crate::error::Error;
use crate::verifier::Verifier;
use crate::{Principal, UserPrincipal};

impl Verifier {
    /// Checks the `Authorization: Bearer` access token. Moat's own tokens are bound to a
    /// device (`cnf`), so they need that device's credential on the same request; external
    /// issuers' tokens are checked against their JWKS.
    pub(crate) async fn verify_user(
        &self,
        parts: &Parts,
        device: Option<&Principal>,
        now: i64,
    ) -> Result<UserPrincipal, Error> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(Error::TokenInvalid(
                "an access token is required (Authorization: Bearer)",
            ))?
            .trim();
        let tokens = &self.services.tokens;
        // A token seen before is in the cache: skip even the unverified look at its issuer.
        let key = TtlCache::<AccessClaims>::key(token.as_bytes());
        let claims = match tokens.cached(&key, now) {
            Some(claims) => claims,
            None => {
                let iss = moat_identity::issuers::peek_issuer(token)
                    .ok_or(Error::TokenInvalid("malformed access token"))?;
                if iss != tokens.issuer() {
                    let issuers = &self.services.issuers;
                    let cfg = issuers
                        .find(&iss)
                        .ok_or(Error::TokenInvalid("unknown issuer"))?;
                    // Boxed: this rare path (it may fetch the issuer's JWKS) would otherwise
                    // make every request's future, copied when boxed by the middleware, 1 KiB
                    // larger.
                    let claims = Box::pin(issuers.verify(cfg, token, now)).await?;
                    return Ok(UserPrincipal {
                        id: claims.sub,
                        issuer: claims.iss,
                        local: false,
                    });
                }
                tokens.verify_access_keyed(key, token, now)?
            }
        };
        let Some(caller) = device else {
            return Err(Error::TokenInvalid(
                "this access token is bound to a device: send the device credential too",
            ));
        };
        let mut buf = uuid::Uuid::encode_buffer();
        let caller_device = match &caller.device {
            Some(d) => &*d.id.hyphenated().encode_lower(&mut buf),
            None => "static",
        };
        if claims.cnf.moat_device != caller_device {
            return Err(Error::TokenInvalid(
                "this access token belongs to another device",
            ));
        }
        Ok(UserPrincipal {
            id: claims.sub,
            issuer: claims.iss,
            local: true,
        })
    }

    /// Checks `Moat-Integrity`: a valid, unexpired integrity token for the calling device,
    /// and, when it carries `pay`, for this request's `Authorization` header.
    pub(crate) fn verify_integrity(
        &self,
        parts: &Parts,
        caller: Option<&Principal>,
        now: i64,
    ) -> Result<(), Error> {
        let token = parts
            .headers
            .get(&names::MOAT_INTEGRITY)
            .and_then(|v| v.to_str().ok())
            .ok_or(Error::IntegrityInvalid(
                "an integrity token is required (Moat-Integrity)",
            ))?;
        let claims = self.services.attestation.integrity().verify(token, now)?;
        let device = caller
            .and_then(|c| c.device.as_ref())
            .ok_or(Error::IntegrityInvalid(
                "the integrity token needs the device credential too",
            ))?;
        if claims.sub
            != *device
                .id
                .hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer())
        {
            return Err(Error::IntegrityInvalid(
                "this integrity token belongs to another device",
            ));
        }
        if let Some(pay) = &claims.pay {
            let auth = parts
                .headers
                .get(header::AUTHORIZATION)
                .map(HeaderValue::as_bytes)
                .unwrap_or_default();
            let hash = moat_core::b64::url_encode(aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                auth,
            ));
            if !secret::ct_eq(hash.as_bytes(), pay.as_bytes()) {
                return Err(Error::IntegrityInvalid(
                    "the integrity token is bound to another Authorization header",
                ));
            }
        }
        Ok(())
    }
}
