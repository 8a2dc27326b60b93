//! Who is enrolling: the installation key of a verified DPoP proof, or the uid of a verified
//! Firebase ID token. Both checks fail closed: anything not positively verified is refused.

use std::sync::Arc;

use moat_core::dpop::{self, VerifiedProof};

use crate::error::Error;
use crate::service::Enrollment;

/// The identity proof a request carries, as received.
#[derive(Clone, Copy, Debug)]
pub struct Proof<'a> {
    /// The request method.
    pub method: &'a str,
    /// The request path (the proof's `htu` is the public base URL followed by it).
    pub path: &'a str,
    /// The raw values of every `DPoP` header of the request, in order.
    pub dpop: &'a [&'a [u8]],
}

/// Who is enrolling.
pub enum Who {
    /// The installation key of a verified DPoP proof.
    Installation(VerifiedProof),
    /// The uid of a verified Firebase ID token.
    Firebase(Arc<str>),
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
    pub(crate) fn signing_jwk(&self) -> Option<String> {
        match self {
            Self::Installation(p) => Some(p.jwk.to_json().to_string()),
            Self::Firebase(_) => None,
        }
    }
}

/// Whether a header value is text as HTTP header values are read: visible ASCII and tabs.
fn header_text(value: &[u8]) -> Option<&str> {
    value
        .iter()
        .all(|&b| b == b'\t' || (32..127).contains(&b))
        .then(|| std::str::from_utf8(value).ok())
        .flatten()
}

impl Enrollment {
    /// Checks the request's DPoP proof and its `jti`; returns the installation identity.
    ///
    /// # Errors
    /// [`Error::Identity`] for a missing or bad proof, [`Error::Replay`] for a reused `jti`,
    /// [`Error::Unavailable`] if the replay cache cannot answer.
    pub async fn installation_identity(
        &self,
        proof: Proof<'_>,
        now: i64,
    ) -> Result<VerifiedProof, Error> {
        let [value] = proof.dpop else {
            return Err(Error::identity("exactly one DPoP header is required"));
        };
        let text = header_text(value).ok_or_else(|| Error::identity("DPoP header is not ASCII"))?;
        let url = format!("{}{}", self.settings.public_base_url, proof.path);
        let skew = self.settings.dpop_max_skew;
        let verified = dpop::verify(
            text,
            &dpop::Expectation {
                method: proof.method,
                url: &url,
                now,
                max_skew: skew,
            },
        )
        .map_err(|e| match e {
            moat_core::Error::Malformed(_) | moat_core::Error::Unsupported(_) => {
                Error::identity(format!("DPoP proof rejected: {e}"))
            }
            // The URL a proof must name is public (server.public_base_url): saying it turns a
            // client configured with `localhost` for `127.0.0.1`, or an emulator's `10.0.2.2`,
            // from a dead end into a one-line fix.
            moat_core::Error::IdentityInvalid(why) if why.contains("htu") => Error::identity(
                format!("{why}: this server expects `{url}` (server.public_base_url)"),
            ),
            other => Error::Core(other),
        })?;
        if verified.iat < self.replay.horizon() {
            // Its jti may have been used before this process started.
            return Err(Error::identity(
                "DPoP proof made before the server's replay memory begins; make a new one",
            ));
        }
        let key = format!("dpop\0{}\0{}", verified.thumbprint, verified.jti);
        let expires = verified.iat.max(now) + skew + 1;
        let fresh = self
            .replay
            .insert_once(key.as_bytes(), expires, now)
            .await
            .map_err(|_| Error::Unavailable)?;
        if !fresh {
            return Err(Error::Replay);
        }
        Ok(verified)
    }

    /// Identifies the caller: by the Firebase ID token from the body when there is one (and
    /// the Firebase identity is enabled), else by the DPoP proof of the installation key.
    ///
    /// # Errors
    /// [`Error::Identity`] for a missing, refused or not-enabled identity; as
    /// [`Enrollment::installation_identity`] otherwise.
    pub async fn identify(
        &self,
        proof: Proof<'_>,
        firebase_id_token: Option<&str>,
        now: i64,
    ) -> Result<Who, Error> {
        match firebase_id_token {
            Some(token) => {
                let firebase = self
                    .firebase
                    .as_ref()
                    .filter(|_| self.settings.identity_firebase)
                    .ok_or_else(|| {
                        Error::identity("the Firebase identity is not enabled on this server")
                    })?;
                Ok(Who::Firebase(firebase.tokens.verify(token, now).await?))
            }
            None if self.settings.identity_installation => Ok(Who::Installation(
                self.installation_identity(proof, now).await?,
            )),
            None => Err(Error::identity(
                "a Firebase ID token (firebase_id_token) is required",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::header_text;

    #[test]
    fn header_text_is_visible_ascii_and_tabs() {
        assert_eq!(header_text(b"ey.J\tx"), Some("ey.J\tx"));
        assert_eq!(header_text(b"a\x7fb"), None);
        assert_eq!(header_text(b"a\nb"), None);
        assert_eq!(header_text("é".as_bytes()), None);
    }
}
