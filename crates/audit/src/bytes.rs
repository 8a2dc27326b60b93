//! Bounds-checked little/big-endian reads. Every parser goes through these, so a truncated or
//! lying length field yields `None` instead of a panic.

pub(crate) fn slice(b: &[u8], off: usize, len: usize) -> Option<&[u8]> {
    b.get(off..off.checked_add(len)?)
}

pub(crate) fn u8_at(b: &[u8], off: usize) -> Option<u8> {
    b.get(off).copied()
}

pub(crate) fn u16le(b: &[u8], off: usize) -> Option<u16> {
    slice(b, off, 2)?.try_into().ok().map(u16::from_le_bytes)
}

pub(crate) fn u32le(b: &[u8], off: usize) -> Option<u32> {
    slice(b, off, 4)?.try_into().ok().map(u32::from_le_bytes)
}

pub(crate) fn u64le(b: &[u8], off: usize) -> Option<u64> {
    slice(b, off, 8)?.try_into().ok().map(u64::from_le_bytes)
}

pub(crate) fn u16be(b: &[u8], off: usize) -> Option<u16> {
    slice(b, off, 2)?.try_into().ok().map(u16::from_be_bytes)
}

pub(crate) fn u32be(b: &[u8], off: usize) -> Option<u32> {
    slice(b, off, 4)?.try_into().ok().map(u32::from_be_bytes)
}

pub(crate) fn u64be(b: &[u8], off: usize) -> Option<u64> {
    slice(b, off, 8)?.try_into().ok().map(u64::from_be_bytes)
}

/// Reads an unsigned big- or little-endian integer of 1 to 8 bytes.
pub(crate) fn uint_be(b: &[u8], off: usize, size: usize) -> Option<u64> {
    if size == 0 || size > 8 {
        return None;
    }
    Some(
        slice(b, off, size)?
            .iter()
            .fold(0u64, |acc, &x| (acc << 8) | u64::from(x)),
    )
}

/// ULEB128 (DEX): value and number of bytes read; at most 5 bytes for a u32.
pub(crate) fn uleb128(b: &[u8], off: usize) -> Option<(u32, usize)> {
    let mut value: u32 = 0;
    for i in 0..5 {
        let byte = u8_at(b, off.checked_add(i)?)?;
        value |= u32::from(byte & 0x7f).checked_shl(7 * i as u32)?;
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}
