//! Encrypted request bodies: a JWE sealed to the calling device's RSA key.

use bytes::Bytes;
use http::{HeaderMap, header};
use moat_core::jwe::{self, KeyAlgorithm, RsaPrivateKey};

use crate::Principal;
use crate::error::Error;
use crate::verifier::Verifier;

/// Whether the body is a JWE (`Content-Type: application/jose`).
pub(crate) fn is_jose(headers: &HeaderMap) -> bool {
    headers
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

impl Verifier {
    /// The plaintext of a JWE body sealed to the calling device's encryption key.
    pub(crate) async fn decrypt_body(
        &self,
        principal: &Principal,
        body: &[u8],
    ) -> Result<Bytes, Error> {
        let device = principal.device.as_ref().ok_or(Error::NoEncryptionKey)?;
        let (Some(kid), Some(sealed)) = (
            &device.credential.rsa_kid,
            &device.credential.rsa_private_sealed,
        ) else {
            return Err(Error::NoEncryptionKey);
        };
        let compact = std::str::from_utf8(body)
            .map_err(|_| Error::Malformed("JWE body is not ASCII".into()))?
            .trim()
            .to_owned();
        if jwe::peek_kid(&compact)?.as_deref() != Some(kid.as_str()) {
            return Err(Error::Malformed(
                "JWE kid does not name this device's encryption key".into(),
            ));
        }
        let pkcs8 = self.services.keys.data().open(kid.as_bytes(), sealed)?;
        // RSA decryption is a private-key operation (~1 ms): keep it off the async workers.
        let plain = tokio::task::spawn_blocking(move || {
            let key = RsaPrivateKey::from_pkcs8(pkcs8.expose())?;
            jwe::decrypt(&compact, &key, &[KeyAlgorithm::RsaOaep256])
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
        Ok(Bytes::from(plain))
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue, header};

    use super::is_jose;

    #[test]
    fn only_application_jose_is_an_encrypted_body() {
        let mut headers = HeaderMap::new();
        assert!(!is_jose(&headers));
        for (value, jose) in [
            ("application/jose", true),
            ("Application/JOSE; charset=utf-8", true),
            ("application/json", false),
            ("application/jose+json", false),
        ] {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            assert_eq!(is_jose(&headers), jose, "{value}");
        }
    }
}
