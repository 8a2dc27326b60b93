//! The one error type of the crate.

/// Why a package could not be audited at all.
///
/// Problems confined to one entry (an unreadable or oversized file, a compression bomb, a name
/// that escapes the archive) are not errors: they become findings and the scan goes on, so one
/// hostile entry cannot hide the rest of the package.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The package file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file that was being read.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The input is neither a zip package nor a file format the scanner understands.
    #[error("not an app package: {0}")]
    NotAPackage(String),
    /// The zip structure is broken (truncated central directory, bad offsets, …).
    #[error("malformed package: {0}")]
    Malformed(String),
    /// The package exceeds a hard limit; it is refused rather than scanned partly.
    #[error("package refused: {0}")]
    Refused(String),
}
