//! Apple App Attest (server side). Filled in below.

use serde_json::{Map, Value};

use super::challenge::Challenge;
use crate::state::AppState;

/// Verifies an App Attest attestation or assertion answering the challenge.
pub async fn verify(_state: &AppState, _c: &Challenge, _device: &str, _fields: &Map<String, Value>, _now: i64) -> Result<(), String> {
    Err("app attest is not configured".into())
}
