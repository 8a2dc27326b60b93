//! Platform attestation verifiers: each turns a platform's proof into a pass or fail for the
//! challenge it answers. Any error is a fail (the client only ever sees an integrity token).

use serde_json::{Map, Value};

use super::challenge::Challenge;
use crate::config::Config;
use crate::issuers::{IssuerConfig, Issuers};
use crate::state::AppState;

/// Verifiers built from the configuration at start.
pub struct Platforms {
    play: Option<(
        crate::config::PlayIntegrityConfig,
        moat_core::play_integrity::Keys,
    )>,
    app_check: Option<(crate::config::AppCheckConfig, Issuers, IssuerConfig)>,
}

impl Platforms {
    /// Resolves the platforms' secret references.
    ///
    /// # Errors
    /// A message naming the setting that cannot be used.
    pub fn new(config: &Config) -> Result<Self, String> {
        let play = match &config.play_integrity {
            None => None,
            Some(p) => {
                let dk = crate::secret_ref::resolve(&p.decryption_key)
                    .map_err(|e| format!("attestation.play_integrity.decryption_key: {e}"))?;
                let vk = crate::secret_ref::resolve(&p.verification_key)
                    .map_err(|e| format!("attestation.play_integrity.verification_key: {e}"))?;
                let keys = moat_core::play_integrity::Keys::from_console(
                    &String::from_utf8_lossy(dk.expose()),
                    &String::from_utf8_lossy(vk.expose()),
                )
                .map_err(|e| format!("attestation.play_integrity: {e}"))?;
                Some((p.clone(), keys))
            }
        };
        let app_check = config.app_check.as_ref().map(|c| {
            let issuer = IssuerConfig {
                issuer: format!(
                    "https://firebaseappcheck.googleapis.com/{}",
                    c.project_number
                ),
                jwks_url: c.jwks_url.clone(),
                audience: format!("projects/{}", c.project_number),
            };
            (c.clone(), Issuers::new(vec![issuer.clone()]), issuer)
        });
        Ok(Self { play, app_check })
    }
}

fn field<'a>(fields: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    fields.get(name).and_then(Value::as_str)
}

/// Whether the platform attestation in `fields` is genuine and answers the challenge.
pub async fn verify(
    state: &AppState,
    c: &Challenge,
    device: &str,
    platform: &str,
    fields: &Map<String, Value>,
    now: i64,
) -> bool {
    let result = match platform {
        "play_integrity" => play_integrity(state, c, fields, now),
        "firebase_app_check" => app_check(state, c, fields, now).await,
        "app_attest" => super::app_attest::verify(state, c, device, fields, now).await,
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
    state: &AppState,
    c: &Challenge,
    fields: &Map<String, Value>,
    now: i64,
) -> Result<(), String> {
    let (cfg, keys) = state
        .platforms
        .play
        .as_ref()
        .ok_or("play integrity is not configured")?;
    if c.app_id != cfg.package_name {
        return Err("challenge was for another app".into());
    }
    let token = field(fields, "token").ok_or("token missing")?;
    let payload = moat_core::play_integrity::decode(token, keys).map_err(|e| e.to_string())?;
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
    state: &AppState,
    c: &Challenge,
    fields: &Map<String, Value>,
    now: i64,
) -> Result<(), String> {
    let (cfg, issuers, issuer) = state
        .platforms
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
