//! A run of text to scan and where it sits in its file.

use std::borrow::Cow;

/// Text extracted from a file: one string-table entry, one section, or the whole file.
pub(crate) struct Segment<'a> {
    /// File offset of the first byte (or first UTF-16 unit) of `text`.
    pub base: u64,
    /// The bytes to scan. Strings decoded from UTF-16 are held as UTF-8.
    pub text: Cow<'a, [u8]>,
    /// `text` was decoded from UTF-16, so offsets advance two bytes per UTF-16 unit.
    pub utf16: bool,
}

impl<'a> Segment<'a> {
    pub fn borrowed(base: usize, text: &'a [u8]) -> Self {
        Self {
            base: base as u64,
            text: Cow::Borrowed(text),
            utf16: false,
        }
    }

    pub fn owned(base: usize, text: Vec<u8>) -> Self {
        Self {
            base: base as u64,
            text: Cow::Owned(text),
            utf16: false,
        }
    }

    pub fn utf16(base: usize, text: String) -> Self {
        Self {
            base: base as u64,
            text: Cow::Owned(text.into_bytes()),
            utf16: true,
        }
    }

    /// File offset of byte `i` of `text`.
    pub fn offset_of(&self, i: usize) -> u64 {
        let i = i.min(self.text.len());
        if self.utf16 {
            let prefix = self.text.get(..i).unwrap_or_default();
            let units = String::from_utf8_lossy(prefix).encode_utf16().count() as u64;
            self.base + 2 * units
        } else {
            self.base + i as u64
        }
    }
}
