//! Platform attestation verifiers: each turns a platform's proof into a pass or fail for the
//! challenge it answers. Any error is a fail (the client only ever sees an integrity token).

use moat_core::secret::SecretBytes;
use moat_identity::issuers::{IssuerConfig, Issuers};
use moat_store::attest::AttestStore;
use serde_json::{Map, Value};

use crate::app_attest::AppAttestSettings;
use crate::challenge::Challenge;
use crate::error::Error;

/// `[attestation.play_integrity]`: keys from the Play Console (their base64 text, resolved
/// by the caller), the package and what its verdict must say.
#[derive(Clone, Debug)]
pub struct PlayIntegritySettings {
    /// The base64 AES-256 decryption key.
    pub decryption_key: SecretBytes,
    /// The base64 DER EC public verification key.
    pub verification_key: SecretBytes,
    /// Package name.
    pub package_name: String,
    /// Accepted signing-certificate SHA-256 digests (base64url); empty accepts any.
    pub certificate_digests: Vec<String>,
    /// Required device verdict.
    pub device_verdict: String,
    /// Oldest acceptable token, seconds.
    pub max_age: i64,
}

/// `[attestation.firebase_app_check]`.
#[derive(Clone, Debug)]
pub struct AppCheckSettings {
    /// Firebase project number.
    pub project_number: String,
    /// Accepted Firebase app ids (`sub`); empty accepts any app of the project.
    pub app_ids: Vec<String>,
    /// App Check JWKS.
    pub jwks_url: String,
}

/// Play Integrity as checked: the settings without the key text, and the keys built from it.
struct Play {
    package_name: String,
    certificate_digests: Vec<String>,
    device_verdict: String,
    max_age: i64,
    keys: moat_core::play_integrity::Keys,
}

/// Verifiers built from the settings at start.
pub struct Platforms {
    play: Option<Play>,
    app_check: Option<(AppCheckSettings, Issuers, IssuerConfig)>,
    app_attest: Option<AppAttestSettings>,
}

impl Platforms {
    /// Builds the configured verifiers (an absent setting leaves its platform failing).
    ///
    /// # Errors
    /// [`Error::PlayIntegrityKeys`] when the Play Console keys cannot be used.
    pub fn new(
        play_integrity: Option<PlayIntegritySettings>,
        app_check: Option<AppCheckSettings>,
        app_attest: Option<AppAttestSettings>,
    ) -> Result<Self, Error> {
        let play = match play_integrity {
            None => None,
            Some(p) => {
                let keys = moat_core::play_integrity::Keys::from_console(
                    &String::from_utf8_lossy(p.decryption_key.expose()),
                    &String::from_utf8_lossy(p.verification_key.expose()),
                )
                .map_err(Error::PlayIntegrityKeys)?;
                Some(Play {
                    package_name: p.package_name,
                    certificate_digests: p.certificate_digests,
                    device_verdict: p.device_verdict,
                    max_age: p.max_age,
                    keys,
                })
            }
        };
        let app_check = app_check.map(|c| {
            let issuer = IssuerConfig {
                issuer: format!(
                    "https://firebaseappcheck.googleapis.com/{}",
                    c.project_number
                ),
                jwks_url: c.jwks_url.clone(),
                audience: format!("projects/{}", c.project_number),
            };
            (c, Issuers::new(vec![issuer.clone()]), issuer)
        });
        Ok(Self {
            play,
            app_check,
            app_attest,
        })
    }

    /// Whether the platform attestation in `fields` is genuine and answers the challenge
    /// (App Attest keys and counters are kept in `store`).
    pub async fn verify(
        &self,
        store: &dyn AttestStore,
        c: &Challenge,
        device: &str,
        platform: &str,
        fields: &Map<String, Value>,
        now: i64,
    ) -> bool {
        let result = match platform {
            "play_integrity" => self.play_integrity(c, fields, now),
            "firebase_app_check" => self.app_check(c, fields, now).await,
            "app_attest" => match &self.app_attest {
                Some(cfg) => crate::app_attest::verify(cfg, store, c, device, fields, now).await,
                None => Err("app attest is not configured".to_owned()),
            },
            _ => Err("unknown platform".to_owned()),
        };
        match result {
            Ok(()) => true,
            Err(why) => {
                tracing::info!(platform, reason = %why, "platform attestation failed");
                false
            }
        }
    }

    fn play_integrity(
        &self,
        c: &Challenge,
        fields: &Map<String, Value>,
        now: i64,
    ) -> Result<(), String> {
        let cfg = self
            .play
            .as_ref()
            .ok_or("play integrity is not configured")?;
        if c.app_id != cfg.package_name {
            return Err("challenge was for another app".into());
        }
        let token = field(fields, "token").ok_or("token missing")?;
        let payload =
            moat_core::play_integrity::decode(token, &cfg.keys).map_err(|e| e.to_string())?;
        let binding = moat_core::b64::url_encode(c.nonce);
        moat_core::play_integrity::check(
            &payload,
            &moat_core::play_integrity::Expectation {
                package_name: &cfg.package_name,
                request_binding: &binding,
                certificate_digests: &cfg.certificate_digests,
                device_verdict: &cfg.device_verdict,
                now_ms: now.saturating_mul(1000),
                max_age_ms: cfg.max_age.saturating_mul(1000),
            },
        )
        .map_err(|e| e.to_string())
    }

    async fn app_check(
        &self,
        c: &Challenge,
        fields: &Map<String, Value>,
        now: i64,
    ) -> Result<(), String> {
        let (cfg, issuers, issuer) = self
            .app_check
            .as_ref()
            .ok_or("app check is not configured")?;
        let token = field(fields, "token").ok_or("token missing")?;
        let claims = issuers
            .verify(issuer, token, now)
            .await
            .map_err(|e| e.to_string())?;
        if !cfg.app_ids.is_empty() && !cfg.app_ids.contains(&claims.sub) {
            return Err("app id not accepted".into());
        }
        if c.app_id != claims.sub {
            return Err("challenge was for another app".into());
        }
        Ok(())
    }
}

fn field<'a>(fields: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    fields.get(name).and_then(Value::as_str)
}
