//! Apple App Attest on the server: the challenge nonce is the client data.
//!
//! The app passes the 32 nonce bytes as client data: to `attestKey` the first time
//! (`{"platform":"app_attest","key_id","attestation"}`, base64), to
//! `generateAssertion` afterwards (`{"platform":"app_attest","key_id","assertion"}`). Moat
//! checks them with [`moat_core::app_attest`]; an attested key is stored for the device and
//! its counter must grow with every assertion.

use moat_core::app_attest::{self, Environment};
use moat_store::attest::{AttestKey, AttestStore};
use serde_json::{Map, Value};

use crate::challenge::Challenge;

/// `[attestation.app_attest]`: the app whose keys are accepted.
#[derive(Clone, Debug)]
pub struct AppAttestSettings {
    /// Apple team id.
    pub team_id: String,
    /// Bundle id.
    pub bundle_id: String,
    /// `production`, `development` or `any`.
    pub environment: String,
}

fn b64(fields: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let text = fields
        .get(name)
        .and_then(Value::as_str)
        .ok_or(format!("{name} missing"))?;
    moat_core::b64::std_decode(text)
        .or_else(|_| moat_core::b64::url_decode(text))
        .map_err(|_| format!("{name} is not base64"))
}

/// Verifies an App Attest attestation or assertion answering the challenge.
///
/// # Errors
/// Why it failed (logged, never shown to the client).
pub async fn verify(
    cfg: &AppAttestSettings,
    store: &dyn AttestStore,
    c: &Challenge,
    device: &str,
    fields: &Map<String, Value>,
    now: i64,
) -> Result<(), String> {
    if c.app_id != cfg.bundle_id {
        return Err("challenge was for another app".into());
    }
    let app_id = format!("{}.{}", cfg.team_id, cfg.bundle_id);
    let client_data_hash: [u8; 32] =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &c.nonce)
            .as_ref()
            .try_into()
            .map_err(|_| "digest")?;
    let key_id = b64(fields, "key_id")?;
    let key_text = moat_core::b64::url_encode(&key_id);
    if fields.contains_key("attestation") {
        let attestation = b64(fields, "attestation")?;
        let root = app_attest::apple_root_der().map_err(|e| e.to_string())?;
        let at = u64::try_from(now).unwrap_or(0);
        let ok = app_attest::verify_attestation(
            &attestation,
            &client_data_hash,
            &app_id,
            &key_id,
            &root,
            at,
        )
        .map_err(|e| e.to_string())?;
        let env = match ok.environment {
            Environment::Production => "production",
            _ => "development",
        };
        if cfg.environment != "any" && cfg.environment != env {
            return Err(format!("{env} key, {} required", cfg.environment));
        }
        store
            .put_attest_key(
                AttestKey {
                    key_id: key_text,
                    device: device.to_owned(),
                    public_key: ok.public_key.to_vec(),
                    counter: 0,
                    environment: env.into(),
                },
                now,
            )
            .await
            .map_err(|e| e.to_string())?;
        return Ok(());
    }
    let assertion = b64(fields, "assertion")?;
    let key = store
        .attest_key(&key_text)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("unknown key id")?;
    if key.device != device {
        return Err("key attested by another device".into());
    }
    let previous = u32::try_from(key.counter).unwrap_or(u32::MAX);
    let counter = app_attest::verify_assertion(
        &assertion,
        &client_data_hash,
        &app_id,
        &key.public_key,
        previous,
    )
    .map_err(|e| e.to_string())?;
    if !store
        .advance_attest_counter(&key.key_id, key.counter, i64::from(counter))
        .await
        .map_err(|e| e.to_string())?
    {
        return Err("counter moved concurrently".into());
    }
    Ok(())
}
