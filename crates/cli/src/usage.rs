//! The error that makes `moat` exit 64 (EX_USAGE).

/// A problem with the command's arguments or input files: `moat` exits 64 (EX_USAGE).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}
