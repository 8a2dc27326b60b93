//! ELF (Android native libraries): read-only and initialised data sections.
//!
//! String literals of C, C++, Rust and Go code end up in `.rodata` (and relocated constants in
//! `.data.rel.ro`/`.data`). Scanning only those sections skips the symbol tables, whose
//! thousands of mangled names look random to an entropy test and are never secrets.

use crate::bytes::{slice, u16be, u16le, u32be, u32le, u64be, u64le};
use crate::segment::Segment;

const SHT_NOBITS: u32 = 8;
const MAX_SECTIONS: usize = 4096;

/// True for the `\x7fELF` magic.
pub(crate) fn is_elf(b: &[u8]) -> bool {
    b.starts_with(b"\x7fELF")
}

/// The data sections as whole blobs (tokens are found by the scanner). `None` when the file
/// has no usable section headers.
pub(crate) fn data_sections(b: &[u8]) -> Option<Vec<Segment<'_>>> {
    if !is_elf(b) {
        return None;
    }
    let is64 = match b.get(4) {
        Some(1) => false,
        Some(2) => true,
        _ => return None,
    };
    let le = match b.get(5) {
        Some(1) => true,
        Some(2) => false,
        _ => return None,
    };
    let r16 = |o: usize| if le { u16le(b, o) } else { u16be(b, o) };
    let r32 = |o: usize| if le { u32le(b, o) } else { u32be(b, o) };
    let r64 = |o: usize| if le { u64le(b, o) } else { u64be(b, o) };
    let (shoff, shentsize, shnum, shstrndx) = if is64 {
        (r64(0x28)?, r16(0x3a)?, r16(0x3c)?, r16(0x3e)?)
    } else {
        (u64::from(r32(0x20)?), r16(0x2e)?, r16(0x30)?, r16(0x32)?)
    };
    let shoff = usize::try_from(shoff).ok()?;
    let shentsize = usize::from(shentsize);
    let shnum = usize::from(shnum).min(MAX_SECTIONS);
    if shnum == 0 || shentsize < if is64 { 64 } else { 40 } {
        return None;
    }
    // (name offset, type, file offset, size)
    let header = |i: usize| -> Option<(u32, u32, u64, u64)> {
        let h = shoff.checked_add(i.checked_mul(shentsize)?)?;
        if is64 {
            Some((r32(h)?, r32(h + 4)?, r64(h + 24)?, r64(h + 32)?))
        } else {
            Some((
                r32(h)?,
                r32(h + 4)?,
                u64::from(r32(h + 16)?),
                u64::from(r32(h + 20)?),
            ))
        }
    };
    let (_, _, strtab_off, strtab_size) = header(usize::from(shstrndx))?;
    let strtab = slice(
        b,
        usize::try_from(strtab_off).ok()?,
        usize::try_from(strtab_size).ok()?,
    )?;
    let mut out = Vec::new();
    for i in 0..shnum {
        let Some((name_off, kind, off, size)) = header(i) else {
            break;
        };
        if kind == SHT_NOBITS {
            continue;
        }
        let name = strtab
            .get(name_off as usize..)
            .and_then(|n| n.split(|&c| c == 0).next())
            .unwrap_or_default();
        let wanted = name.starts_with(b".rodata")
            || name.starts_with(b".data.rel.ro")
            || name == b".data"
            || name == b".go.buildinfo";
        if !wanted {
            continue;
        }
        let (Ok(off), Ok(size)) = (usize::try_from(off), usize::try_from(size)) else {
            continue;
        };
        if let Some(data) = slice(b, off, size) {
            out.push(Segment::borrowed(off, data));
        }
    }
    Some(out)
}
