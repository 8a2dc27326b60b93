//! Secret references in configuration: `env:NAME` or `file:PATH`, so that a configuration
//! file never has to contain the secret itself.

use moat_core::secret::SecretBytes;

/// Resolves a reference.
///
/// # Errors
/// A message naming the reference (never its value) when it cannot be read or is empty.
pub fn resolve(reference: &str) -> Result<SecretBytes, String> {
    let value = if let Some(name) = reference.strip_prefix("env:") {
        std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))?
    } else if let Some(path) = reference.strip_prefix("file:") {
        std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {path}: {e}"))?
            .trim_end()
            .to_owned()
    } else {
        return Err("secrets must be given as env:NAME or file:PATH".into());
    };
    if value.is_empty() {
        return Err(format!("{reference} is empty"));
    }
    Ok(SecretBytes::new(value.into_bytes()))
}
