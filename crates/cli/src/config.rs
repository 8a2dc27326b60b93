//! Loading the server's configuration for the commands that need it.

use std::path::Path;

use anyhow::Result;
use moat_server::Config;

/// The configuration in `path`, or the embedded defaults (with the environment's overrides)
/// without one. An unreadable file is a configuration error (exit 64).
pub fn load_config(path: Option<&Path>) -> Result<Config> {
    let text = match path {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| {
            // A configuration problem (exit 64), said plainly.
            moat_server::config::ConfigError(vec![format!(
                "--config {}: cannot read the file ({e})",
                p.display()
            )])
        })?),
        None => None,
    };
    Ok(Config::load(text.as_deref(), &moat_server::config::Env)?)
}
