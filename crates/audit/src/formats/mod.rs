//! Parsers for the file formats inside app packages. Each one works on a byte slice, checks
//! every offset and length it reads, and answers `None` for input it cannot make sense of (the
//! caller then falls back to scanning the raw bytes).

pub(crate) mod axml;
pub(crate) mod dex;
pub(crate) mod elf;
pub(crate) mod macho;
pub(crate) mod plist;

/// Strings shorter than this cannot hold any secret a rule looks for; skipping them keeps the
/// per-string overhead off the thousands of short names in a string table.
pub(crate) const MIN_STRING: usize = 8;
