//! DEX (Dalvik executable): the string table.
//!
//! Every string constant of the app's Java/Kotlin code is one `string_data_item`, reached
//! through `string_ids`: a ULEB128 UTF-16 length followed by MUTF-8 bytes and a NUL. Secrets
//! are ASCII, and MUTF-8 encodes ASCII as itself, so the raw bytes are scanned as they are and
//! offsets are exact file offsets.

use crate::bytes::{slice, u32le, uleb128};
use crate::segment::Segment;

const HEADER_SIZE: usize = 0x70;

/// True for `dex\n0NN\0` magic.
pub(crate) fn is_dex(b: &[u8]) -> bool {
    b.len() >= HEADER_SIZE
        && b.starts_with(b"dex\n")
        && b.get(4..7)
            .is_some_and(|v| v.iter().all(u8::is_ascii_digit))
        && b.get(7) == Some(&0)
}

/// The strings of the string table, each with its file offset. `None` if the header is not a
/// DEX header or the table lies outside the file.
pub(crate) fn strings(b: &[u8]) -> Option<Vec<Segment<'_>>> {
    if !is_dex(b) {
        return None;
    }
    let count = u32le(b, 0x38)? as usize;
    let ids_off = u32le(b, 0x3c)? as usize;
    // Each id takes four bytes: a count the file cannot hold is a lie, not a reason to allocate.
    let ids = slice(b, ids_off, count.checked_mul(4)?)?;
    let mut out = Vec::new();
    for id in ids.chunks_exact(4) {
        let Some(data_off) = u32le(id, 0).map(|v| v as usize) else {
            continue;
        };
        // A broken id skips that string; the rest of the table is still worth scanning.
        let Some((_utf16_len, n)) = uleb128(b, data_off) else {
            continue;
        };
        let start = data_off + n;
        let Some(rest) = b.get(start..) else { continue };
        let len = memchr::memchr(0, rest).unwrap_or(rest.len());
        if len >= super::MIN_STRING
            && let Some(text) = rest.get(..len)
        {
            out.push(Segment::borrowed(start, text));
        }
    }
    Some(out)
}
