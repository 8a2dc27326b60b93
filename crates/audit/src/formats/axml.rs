//! Android binary resources: the string pool shared by binary XML (`AndroidManifest.xml`,
//! `res/**/*.xml`) and `resources.arsc`, and the element/attribute events of binary XML.
//!
//! Attributes in the `android:` namespace are identified by their resource id (from the
//! resource map chunk), as the platform does, so an obfuscated or renamed attribute string
//! cannot hide `debuggable`.

use crate::bytes::{u8_at, u16le, u32le};
use crate::segment::Segment;

const RES_STRING_POOL: u16 = 0x0001;
const RES_TABLE: u16 = 0x0002;
const RES_XML: u16 = 0x0003;
const RES_XML_START_ELEMENT: u16 = 0x0102;
const RES_XML_END_ELEMENT: u16 = 0x0103;
const RES_XML_RESOURCE_MAP: u16 = 0x0180;
const UTF8_FLAG: u32 = 0x100;
const NO_INDEX: u32 = 0xffff_ffff;
const MAX_ELEMENTS: usize = 200_000;

/// `Res_value` data types used here.
const TYPE_REFERENCE: u8 = 0x01;
const TYPE_STRING: u8 = 0x03;
const TYPE_INT_DEC: u8 = 0x10;
const TYPE_INT_HEX: u8 = 0x11;
const TYPE_INT_BOOLEAN: u8 = 0x12;

/// One string of a pool: its text and where its first character sits in the file.
pub(crate) struct PoolString {
    pub offset: usize,
    pub text: String,
    pub utf16: bool,
}

/// A typed attribute value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Bool(bool),
    Int(u32),
    Str(String),
    Reference(u32),
    Other,
}

/// One attribute of a start element.
pub(crate) struct Attr {
    pub name: String,
    pub res_id: Option<u32>,
    pub value: Value,
    /// File offset of the attribute record.
    pub offset: usize,
}

/// A start element with the names of the elements it is nested in.
pub(crate) struct Element {
    pub name: String,
    pub ancestors: Vec<String>,
    pub attrs: Vec<Attr>,
    pub offset: usize,
}

impl Element {
    /// The attribute with resource id `id`, or failing that with local name `name`.
    pub fn attr(&self, id: u32, name: &str) -> Option<&Attr> {
        self.attrs
            .iter()
            .find(|a| a.res_id == Some(id))
            .or_else(|| self.attrs.iter().find(|a| a.name == name))
    }
}

/// A parsed binary XML document.
pub(crate) struct Document {
    pub strings: Vec<PoolString>,
    pub elements: Vec<Element>,
}

impl Document {
    /// Name of the root element.
    pub fn root(&self) -> Option<&str> {
        self.elements.first().map(|e| e.name.as_str())
    }
}

/// True for a binary XML header.
pub(crate) fn is_axml(b: &[u8]) -> bool {
    u16le(b, 0) == Some(RES_XML) && u16le(b, 2) == Some(8)
}

/// True for a `resources.arsc` table header.
pub(crate) fn is_arsc(b: &[u8]) -> bool {
    u16le(b, 0) == Some(RES_TABLE) && u16le(b, 2) == Some(12)
}

/// Parses the string pool chunk at `off`.
pub(crate) fn string_pool(b: &[u8], off: usize) -> Option<Vec<PoolString>> {
    if u16le(b, off)? != RES_STRING_POOL {
        return None;
    }
    let chunk_size = u32le(b, off + 4)? as usize;
    let chunk = b.get(off..off.checked_add(chunk_size)?)?;
    let count = u32le(chunk, 8)? as usize;
    let flags = u32le(chunk, 16)?;
    let strings_start = u32le(chunk, 20)? as usize;
    let header_size = usize::from(u16le(chunk, 2)?);
    if count > chunk_size / 4 {
        return None;
    }
    let utf8 = flags & UTF8_FLAG != 0;
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let rel = u32le(chunk, header_size + i * 4)? as usize;
        let at = strings_start.checked_add(rel)?;
        let parsed = if utf8 {
            utf8_string(chunk, at)
        } else {
            utf16_string(chunk, at)
        };
        // An unreadable string keeps its index (attribute names refer to strings by index).
        let (text, text_at) = parsed.unwrap_or_default();
        out.push(PoolString {
            offset: off + text_at,
            text,
            utf16: !utf8,
        });
    }
    Some(out)
}

fn utf8_string(chunk: &[u8], at: usize) -> Option<(String, usize)> {
    // Two lengths, each one or two bytes: UTF-16 units (ignored) then bytes.
    let mut p = at;
    let skip = if u8_at(chunk, p)? & 0x80 != 0 { 2 } else { 1 };
    p += skip;
    let b0 = u8_at(chunk, p)?;
    let len = if b0 & 0x80 != 0 {
        let b1 = u8_at(chunk, p + 1)?;
        p += 2;
        (usize::from(b0 & 0x7f) << 8) | usize::from(b1)
    } else {
        p += 1;
        usize::from(b0)
    };
    let bytes = chunk.get(p..p.checked_add(len)?)?;
    Some((String::from_utf8_lossy(bytes).into_owned(), p))
}

fn utf16_string(chunk: &[u8], at: usize) -> Option<(String, usize)> {
    let mut p = at;
    let first = u16le(chunk, p)?;
    let len = if first & 0x8000 != 0 {
        let second = u16le(chunk, p + 2)?;
        p += 4;
        (usize::from(first & 0x7fff) << 16) | usize::from(second)
    } else {
        p += 2;
        usize::from(first)
    };
    let bytes = chunk.get(p..p.checked_add(len.checked_mul(2)?)?)?;
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| {
            u16::from_le_bytes([
                c.first().copied().unwrap_or(0),
                c.get(1).copied().unwrap_or(0),
            ])
        })
        .collect();
    Some((String::from_utf16_lossy(&units), p))
}

/// Segments for the scanner from a pool's strings.
pub(crate) fn pool_segments(pool: &[PoolString]) -> Vec<Segment<'static>> {
    pool.iter()
        .filter(|s| s.text.len() >= super::MIN_STRING)
        .map(|s| {
            if s.utf16 {
                Segment::utf16(s.offset, s.text.clone())
            } else {
                Segment::owned(s.offset, s.text.clone().into_bytes())
            }
        })
        .collect()
}

/// The value strings of `resources.arsc` (the contents of `strings.xml` and friends).
pub(crate) fn arsc_strings(b: &[u8]) -> Option<Vec<PoolString>> {
    if !is_arsc(b) {
        return None;
    }
    // The global value pool is the first chunk after the 12-byte table header.
    string_pool(b, 12)
}

/// Parses a binary XML document.
pub(crate) fn parse(b: &[u8]) -> Option<Document> {
    if !is_axml(b) {
        return None;
    }
    let total = (u32le(b, 4)? as usize).min(b.len());
    let mut strings = Vec::new();
    let mut res_ids: Vec<u32> = Vec::new();
    let mut elements = Vec::new();
    let mut stack: Vec<String> = Vec::new();
    let mut off = 8;
    while off + 8 <= total {
        let kind = u16le(b, off)?;
        let header = usize::from(u16le(b, off + 2)?);
        let size = u32le(b, off + 4)? as usize;
        if size < 8 || off.checked_add(size)? > total {
            break;
        }
        match kind {
            RES_STRING_POOL => strings = string_pool(b, off).unwrap_or_default(),
            RES_XML_RESOURCE_MAP => {
                let mut p = off + header;
                while p + 4 <= off + size {
                    res_ids.push(u32le(b, p)?);
                    p += 4;
                }
            }
            RES_XML_START_ELEMENT if elements.len() < MAX_ELEMENTS => {
                let ext = off + header;
                let name = string_at(&strings, u32le(b, ext + 4)?);
                let attr_start = usize::from(u16le(b, ext + 8)?);
                let attr_size = usize::from(u16le(b, ext + 10)?).max(20);
                let attr_count = usize::from(u16le(b, ext + 12)?);
                let mut attrs = Vec::new();
                for i in 0..attr_count {
                    let a = ext + attr_start + i * attr_size;
                    if a + 20 > off + size {
                        break;
                    }
                    let name_idx = u32le(b, a + 4)?;
                    let raw = u32le(b, a + 8)?;
                    let data_type = u8_at(b, a + 15)?;
                    let data = u32le(b, a + 16)?;
                    let value = match data_type {
                        TYPE_INT_BOOLEAN => Value::Bool(data != 0),
                        TYPE_INT_DEC | TYPE_INT_HEX => Value::Int(data),
                        TYPE_REFERENCE => Value::Reference(data),
                        TYPE_STRING => Value::Str(string_at(&strings, data)),
                        _ if raw != NO_INDEX => Value::Str(string_at(&strings, raw)),
                        _ => Value::Other,
                    };
                    attrs.push(Attr {
                        name: string_at(&strings, name_idx),
                        res_id: res_ids.get(name_idx as usize).copied(),
                        value,
                        offset: a,
                    });
                }
                elements.push(Element {
                    name: name.clone(),
                    ancestors: stack.clone(),
                    attrs,
                    offset: off,
                });
                stack.push(name);
            }
            RES_XML_END_ELEMENT => {
                stack.pop();
            }
            _ => {}
        }
        off += size;
    }
    Some(Document { strings, elements })
}

fn string_at(strings: &[PoolString], idx: u32) -> String {
    strings
        .get(idx as usize)
        .map(|s| s.text.clone())
        .unwrap_or_default()
}
