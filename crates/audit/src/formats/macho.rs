//! Mach-O (iOS executables and frameworks): C-string literal sections.
//!
//! String literals of Objective-C, Swift (longer than 15 bytes) and C land in sections of type
//! `S_CSTRING_LITERALS`, normally `__TEXT,__cstring`. Thin 32/64-bit little-endian images and
//! fat (universal) files are read; the `__objc_*` name tables are skipped because they hold
//! selector and class names, never secrets.

use crate::bytes::{slice, u32be, u32le, u64be, u64le};
use crate::segment::Segment;

const MH_MAGIC: u32 = 0xfeed_face;
const MH_MAGIC_64: u32 = 0xfeed_facf;
const FAT_MAGIC: u32 = 0xcafe_babe;
const FAT_MAGIC_64: u32 = 0xcafe_babf;
const LC_SEGMENT: u32 = 0x1;
const LC_SEGMENT_64: u32 = 0x19;
const S_CSTRING_LITERALS: u32 = 0x2;
const MAX_LOAD_COMMANDS: u32 = 10_000;
const MAX_FAT_ARCHS: u32 = 64;

/// True for a thin little-endian or a fat Mach-O header.
pub(crate) fn is_macho(b: &[u8]) -> bool {
    matches!(u32le(b, 0), Some(MH_MAGIC | MH_MAGIC_64)) || fat_archs(b).is_some()
}

/// (offset, size) of each slice of a fat file. Java class files share the 0xcafebabe magic;
/// their next field is a version number of 45 or more, which no real fat file has as its
/// architecture count (the rule `file(1)` uses).
fn fat_archs(b: &[u8]) -> Option<Vec<(usize, usize)>> {
    let magic = u32be(b, 0)?;
    if magic != FAT_MAGIC && magic != FAT_MAGIC_64 {
        return None;
    }
    let n = u32be(b, 4)?;
    if n == 0 || n >= 45 || n > MAX_FAT_ARCHS {
        return None;
    }
    let mut out = Vec::new();
    for i in 0..n as usize {
        let (off, size) = if magic == FAT_MAGIC {
            let a = 8 + i * 20;
            (u64::from(u32be(b, a + 8)?), u64::from(u32be(b, a + 12)?))
        } else {
            let a = 8 + i * 32;
            (u64be(b, a + 8)?, u64be(b, a + 16)?)
        };
        out.push((usize::try_from(off).ok()?, usize::try_from(size).ok()?));
    }
    Some(out)
}

/// The C strings of every literal section, with file offsets (fat slices included).
pub(crate) fn cstrings(b: &[u8]) -> Option<Vec<Segment<'_>>> {
    let mut ranges = Vec::new();
    if let Some(archs) = fat_archs(b) {
        for (off, size) in archs {
            // A broken slice is skipped; the others may still parse.
            if let Some(image) = slice(b, off, size) {
                let _ = thin_sections(image, off, &mut ranges);
            }
        }
    } else {
        thin_sections(b, 0, &mut ranges)?;
    }
    let mut out = Vec::new();
    for (start, len) in ranges {
        let Some(section) = slice(b, start, len) else {
            continue;
        };
        let mut pos = 0;
        for s in section.split(|&c| c == 0) {
            if s.len() >= super::MIN_STRING {
                out.push(Segment::borrowed(start + pos, s));
            }
            pos += s.len() + 1;
        }
    }
    Some(out)
}

/// Appends (file offset, size) of the literal sections of one thin image starting at `base`.
fn thin_sections(b: &[u8], base: usize, out: &mut Vec<(usize, usize)>) -> Option<()> {
    let magic = u32le(b, 0)?;
    let (header, is64) = match magic {
        MH_MAGIC_64 => (32usize, true),
        MH_MAGIC => (28usize, false),
        _ => return None,
    };
    let ncmds = u32le(b, 16)?.min(MAX_LOAD_COMMANDS);
    let mut cmd_off = header;
    for _ in 0..ncmds {
        let cmd = u32le(b, cmd_off)?;
        let cmdsize = u32le(b, cmd_off + 4)? as usize;
        if cmdsize < 8 {
            return None;
        }
        let command = slice(b, cmd_off, cmdsize)?;
        if (cmd == LC_SEGMENT_64 && is64) || (cmd == LC_SEGMENT && !is64) {
            let (nsects_at, first, stride) = if is64 { (64, 72, 80) } else { (48, 56, 68) };
            let nsects = u32le(command, nsects_at)? as usize;
            for i in 0..nsects {
                let s = first + i * stride;
                let Some(sect) = slice(command, s, stride) else {
                    break;
                };
                let (size, offset, flags) = if is64 {
                    (u64le(sect, 40)?, u32le(sect, 48)?, u32le(sect, 64)?)
                } else {
                    (
                        u64::from(u32le(sect, 36)?),
                        u32le(sect, 40)?,
                        u32le(sect, 56)?,
                    )
                };
                let name = sect.get(..16)?;
                if flags & 0xff == S_CSTRING_LITERALS && !name.starts_with(b"__objc_") {
                    out.push((base + offset as usize, usize::try_from(size).ok()?));
                }
            }
        }
        cmd_off = cmd_off.checked_add(cmdsize)?;
    }
    Some(())
}
