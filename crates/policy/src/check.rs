//! The whole check of one request against its route's policy, in order (see the crate
//! documentation for the order and why).

use std::net::IpAddr;

use bytes::Bytes;
use http::HeaderMap;
use http::request::Parts;
use moat_core::names;

use crate::body::is_jose;
use crate::error::Error;
use crate::headers::refuse_repeated_credentials;
use crate::route::Route;
use crate::verifier::{Now, Verified, Verifier};
use crate::{Principal, Requirement, Via};

impl Verifier {
    /// The checks on the headers alone, made before the body is read: a request repeating a
    /// credential header is refused without reading its body.
    ///
    /// # Errors
    /// [`Error::Repeated`].
    pub fn screen(&self, headers: &HeaderMap) -> Result<(), Error> {
        refuse_repeated_credentials(headers)
    }

    /// Every check of `route`'s policy on a request (after [`Self::screen`], with its whole
    /// body): the caller, the body to pass on and the `RateLimit` values, or the refusal of
    /// the first check that failed.
    ///
    /// `proven` is set to the device whose credential was proven, as soon as it is, so that a
    /// refusal by a later check can be counted against that device (never from an unproven
    /// claim, so nobody can make another device look abusive). `client_ip` is asked only by
    /// routes limited per client IP.
    ///
    /// # Errors
    /// The refusal of the first failed check.
    pub async fn verify(
        &self,
        route: &Route,
        parts: &Parts,
        body: Bytes,
        now: Now,
        client_ip: impl FnOnce() -> IpAddr,
        proven: &mut Option<uuid::Uuid>,
    ) -> Result<Verified, Error> {
        let headers = &parts.headers;
        let signed = headers.contains_key(&names::SIGNATURE_INPUT)
            || headers.contains_key(&names::SIGNATURE);
        let needs_signature = route.requires(Requirement::Signature);
        let needs_device = needs_signature || route.requires(Requirement::Device);
        // Any credential that is sent is checked, even where the route does not require it.
        let caller = if signed {
            Some(self.verify_signature(parts, &body, now, proven).await?)
        } else if needs_signature {
            return Err(Error::SignatureInvalid(
                "this endpoint requires an RFC 9421 request signature".into(),
            ));
        } else if let Some(value) = headers.get(&names::MOAT_DEVICE_KEY) {
            Some(self.verify_api_key(value, now, proven).await?)
        } else {
            None
        };
        if needs_device && caller.is_none() {
            return Err(Error::CredentialInvalid(
                "a device credential is required (Moat-Device-Key or a request signature)",
            ));
        }
        let user = if route.requires(Requirement::User) {
            Some(self.verify_user(parts, caller.as_ref(), now.secs).await?)
        } else {
            None
        };
        if route.requires(Requirement::Integrity) {
            self.verify_integrity(parts, caller.as_ref(), now.secs)?;
        }
        let mut principal = caller.unwrap_or(Principal {
            device: None,
            via: Via::None,
            user: None,
        });
        principal.user = user;
        let (body, decrypted) = if is_jose(headers) {
            (self.decrypt_body(&principal, &body).await?, true)
        } else {
            (body, false)
        };
        let rate_limit = self
            .rate_limit(route, &principal, now.millis, client_ip)
            .await?;
        if let Some(device) = &principal.device {
            self.services.usage.record(device.id, now.secs);
        }
        Ok(Verified {
            principal,
            body,
            decrypted,
            rate_limit,
        })
    }
}
