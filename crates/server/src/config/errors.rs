//! The collector every section's check adds its problems to, and the error that reports them.

/// Every problem found in a configuration.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

/// The problems found so far. Each section's check adds to it and carries on with a
/// placeholder value, so that every problem of a file is reported at once rather than the
/// first one.
#[derive(Debug, Default)]
pub(crate) struct Errors(Vec<String>);

impl Errors {
    /// Records one problem.
    pub(crate) fn push(&mut self, message: impl Into<String>) {
        self.0.push(message.into());
    }

    /// Records the problems of `other`, in order.
    pub(crate) fn append(&mut self, mut other: Errors) {
        self.0.append(&mut other.0);
    }

    /// Whether nothing was found.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems as a [`ConfigError`].
    pub(crate) fn into_error(self) -> ConfigError {
        ConfigError(self.0)
    }

    /// `value`, else `default`; recorded as a problem of `key` unless positive.
    pub(crate) fn positive(&mut self, value: Option<i64>, default: i64, key: &str) -> i64 {
        let v = value.unwrap_or(default);
        if v <= 0 {
            self.push(format!("{key}: must be positive"));
        }
        v
    }
}

/// Whether `value` is a secret reference (`env:NAME` or `file:PATH`) rather than the secret.
pub(crate) fn is_reference(value: &str) -> bool {
    value.starts_with("env:") || value.starts_with("file:")
}
