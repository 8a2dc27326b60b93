//! `[attestation]` and its platform tables: Play Integrity, App Attest and Firebase App
//! Check (PROTOCOL section 6).

use serde::Deserialize;

use super::errors::Errors;

/// Default `attestation.play_integrity.device_verdict`.
const DEFAULT_DEVICE_VERDICT: &str = "MEETS_DEVICE_INTEGRITY";
/// Default `attestation.play_integrity.max_age`, seconds.
const DEFAULT_PLAY_MAX_AGE: i64 = 300;
/// Default `attestation.app_attest.environment`.
const DEFAULT_APP_ATTEST_ENVIRONMENT: &str = "production";
/// Accepted `attestation.app_attest.environment` values.
const APP_ATTEST_ENVIRONMENTS: [&str; 3] = ["production", "development", "any"];
/// Default `attestation.firebase_app_check.jwks_url`.
const DEFAULT_APP_CHECK_JWKS: &str = "https://firebaseappcheck.googleapis.com/v1/jwks";

/// `[attestation]` as written. No `Debug`: its Play Integrity table may hold a key.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawAttestation {
    pub enabled: Option<bool>,
    pub play_integrity: Option<PlayIntegrityConfig>,
    pub app_attest: Option<AppAttestConfig>,
    pub firebase_app_check: Option<AppCheckConfig>,
}

/// `[attestation.play_integrity]`: keys from the Play Console (as `env:`/`file:` references
/// to their base64 text), the package and what its verdict must say.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlayIntegrityConfig {
    /// Reference to the base64 AES-256 decryption key.
    pub decryption_key: String,
    /// Reference to the base64 DER EC public verification key.
    pub verification_key: String,
    /// Package name.
    pub package_name: String,
    /// Accepted signing-certificate SHA-256 digests (base64url); empty accepts any.
    #[serde(default)]
    pub certificate_digests: Vec<String>,
    /// Required device verdict.
    #[serde(default = "default_device_verdict")]
    pub device_verdict: String,
    /// Oldest acceptable token, seconds.
    #[serde(default = "default_play_max_age")]
    pub max_age: i64,
}

/// By hand: `decryption_key` is meant to be a reference, but nothing refuses the key itself
/// until it is resolved at startup, so it is never shown.
impl std::fmt::Debug for PlayIntegrityConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlayIntegrityConfig")
            .field("decryption_key", &"<redacted>")
            .field("verification_key", &self.verification_key)
            .field("package_name", &self.package_name)
            .field("certificate_digests", &self.certificate_digests)
            .field("device_verdict", &self.device_verdict)
            .field("max_age", &self.max_age)
            .finish()
    }
}

fn default_device_verdict() -> String {
    DEFAULT_DEVICE_VERDICT.into()
}

fn default_play_max_age() -> i64 {
    DEFAULT_PLAY_MAX_AGE
}

/// `[attestation.app_attest]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppAttestConfig {
    /// Apple team id.
    pub team_id: String,
    /// Bundle id.
    pub bundle_id: String,
    /// `production`, `development` or `any`.
    #[serde(default = "default_environment")]
    pub environment: String,
}

fn default_environment() -> String {
    DEFAULT_APP_ATTEST_ENVIRONMENT.into()
}

/// `[attestation.firebase_app_check]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppCheckConfig {
    /// Firebase project number.
    pub project_number: String,
    /// Accepted Firebase app ids (`sub`); empty accepts any app of the project.
    #[serde(default)]
    pub app_ids: Vec<String>,
    /// App Check JWKS.
    #[serde(default = "default_app_check_jwks")]
    pub jwks_url: String,
}

fn default_app_check_jwks() -> String {
    DEFAULT_APP_CHECK_JWKS.into()
}

/// `[attestation]` validated; its fields are `Config`'s `attestation_enabled`,
/// `play_integrity`, `app_attest` and `app_check`.
pub(crate) struct Attestation {
    pub(crate) enabled: bool,
    pub(crate) play_integrity: Option<PlayIntegrityConfig>,
    pub(crate) app_attest: Option<AppAttestConfig>,
    pub(crate) app_check: Option<AppCheckConfig>,
}

/// Validates `[attestation]`.
pub(crate) fn validate(raw: RawAttestation, errors: &mut Errors) -> Attestation {
    if let Some(a) = &raw.app_attest
        && !APP_ATTEST_ENVIRONMENTS.contains(&a.environment.as_str())
    {
        errors.push("attestation.app_attest.environment: production, development or any");
    }
    Attestation {
        enabled: raw.enabled.unwrap_or(false),
        play_integrity: raw.play_integrity,
        app_attest: raw.app_attest,
        app_check: raw.firebase_app_check,
    }
}
