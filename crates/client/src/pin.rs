//! Certificate pinning: trust a server because its key is one the app ships, not because a
//! CA vouched for it.
//!
//! A pin is `sha256/<base64 of SHA-256(SubjectPublicKeyInfo)>`, the form Android's network
//! security config (`<pin digest="SHA-256">`), OkHttp and iOS pinning libraries use. With pins
//! set, the SDK accepts a TLS server if and only if the SPKI of its end-entity certificate
//! matches one of them (self-signed development certificates included), and still checks
//! that the server holds the key (the handshake signature).

use std::sync::Arc;

use aws_lc_rs::digest;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

use crate::error::{Error, Result};

/// The pin of a SubjectPublicKeyInfo (DER): `sha256/<base64>`.
pub fn spki_pin(spki_der: &[u8]) -> String {
    format!(
        "sha256/{}",
        moat_core::b64::std_encode(digest::digest(&digest::SHA256, spki_der))
    )
}

/// The pin of a certificate's public key.
///
/// # Errors
/// [`Error::Invalid`] if the certificate cannot be parsed.
pub fn certificate_pin(cert_der: &[u8]) -> Result<String> {
    let der = CertificateDer::from(cert_der);
    let cert = webpki::EndEntityCert::try_from(&der)
        .map_err(|e| Error::Invalid(format!("certificate: {e}")))?;
    Ok(spki_pin(cert.subject_public_key_info().as_ref()))
}

#[derive(Debug)]
struct PinVerifier {
    pins: Vec<String>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let pin = certificate_pin(end_entity.as_ref())
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if self.pins.contains(&pin) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// An HTTP client that trusts only servers whose key matches one of `pins`.
///
/// # Errors
/// [`Error::Invalid`] for a pin not of the form `sha256/<base64 of 32 bytes>`.
pub fn pinned_http_client(pins: &[String]) -> Result<reqwest::Client> {
    for pin in pins {
        let ok = pin
            .strip_prefix("sha256/")
            .and_then(|b| moat_core::b64::std_decode(b).ok())
            .is_some_and(|h| h.len() == 32);
        if !ok {
            return Err(Error::Invalid(format!(
                "pin `{pin}` is not sha256/<base64 SHA-256>"
            )));
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Invalid(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinVerifier {
            pins: pins.to_vec(),
            provider,
        }))
        .with_no_client_auth();
    // A preconfigured TLS config is used as is, so offer HTTP/2 and HTTP/1.1 here.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .build()
        .map_err(|e| Error::Invalid(format!("http client: {e}")))
}
