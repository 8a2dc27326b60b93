//! Property lists (`Info.plist`, `GoogleService-Info.plist`): binary (`bplist00`) and XML.
//!
//! Both forms become one small tree. Strings keep their file offset so secrets in plist values
//! are located exactly. Binary plists are object graphs; a budget on visited objects and a
//! depth limit stop shared or cyclic references from expanding without bound.

use crate::bytes::{slice, u8_at, uint_be};

const MAX_DEPTH: usize = 32;
const MAX_NODES: usize = 200_000;

/// A plist value. Numbers, dates and data are not needed by any check and are kept opaque.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Bool(bool),
    Str {
        text: String,
        offset: usize,
        utf16: bool,
    },
    Array(Vec<Value>),
    Dict(Vec<(String, Value)>),
    Other,
}

impl Value {
    /// Dictionary lookup.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn is_true(&self) -> bool {
        matches!(self, Value::Bool(true))
    }

    /// Every string value in the tree (dictionary keys excluded).
    pub fn strings(&self, out: &mut Vec<(String, usize, bool)>) {
        match self {
            Value::Str {
                text,
                offset,
                utf16,
            } => out.push((text.clone(), *offset, *utf16)),
            Value::Array(items) => items.iter().for_each(|v| v.strings(out)),
            Value::Dict(entries) => entries.iter().for_each(|(_, v)| v.strings(out)),
            Value::Bool(_) | Value::Other => {}
        }
    }
}

/// True for a binary or XML plist.
pub(crate) fn is_plist(b: &[u8]) -> bool {
    b.starts_with(b"bplist00") || looks_like_xml_plist(b)
}

fn looks_like_xml_plist(b: &[u8]) -> bool {
    let head = b.get(..b.len().min(512)).unwrap_or_default();
    memchr::memmem::find(head, b"<plist").is_some()
        || memchr::memmem::find(head, b"<!DOCTYPE plist").is_some()
}

/// Parses either form.
pub(crate) fn parse(b: &[u8]) -> Option<Value> {
    if b.starts_with(b"bplist00") {
        Binary::new(b)?.parse_root()
    } else if looks_like_xml_plist(b) {
        parse_xml(b)
    } else {
        None
    }
}

struct Binary<'a> {
    b: &'a [u8],
    offset_size: usize,
    ref_size: usize,
    num_objects: u64,
    top: u64,
    table: usize,
    nodes: usize,
}

impl<'a> Binary<'a> {
    fn new(b: &'a [u8]) -> Option<Self> {
        let trailer = b.len().checked_sub(32)?;
        let offset_size = usize::from(u8_at(b, trailer + 6)?);
        let ref_size = usize::from(u8_at(b, trailer + 7)?);
        let num_objects = uint_be(b, trailer + 8, 8)?;
        let top = uint_be(b, trailer + 16, 8)?;
        let table = usize::try_from(uint_be(b, trailer + 24, 8)?).ok()?;
        if !(1..=8).contains(&offset_size) || !(1..=8).contains(&ref_size) || top >= num_objects {
            return None;
        }
        // The offset table must fit in the file.
        let needed = usize::try_from(num_objects)
            .ok()?
            .checked_mul(offset_size)?;
        slice(b, table, needed)?;
        Some(Self {
            b,
            offset_size,
            ref_size,
            num_objects,
            top,
            table,
            nodes: 0,
        })
    }

    fn parse_root(&mut self) -> Option<Value> {
        self.object(self.top, 0)
    }

    fn object_offset(&self, idx: u64) -> Option<usize> {
        if idx >= self.num_objects {
            return None;
        }
        let at = self
            .table
            .checked_add(usize::try_from(idx).ok()?.checked_mul(self.offset_size)?)?;
        usize::try_from(uint_be(self.b, at, self.offset_size)?).ok()
    }

    /// Length of a container or string: the low nibble, or a following int object when 0xF.
    fn length(&self, marker: u8, at: usize) -> Option<(usize, usize)> {
        let low = marker & 0x0f;
        if low != 0x0f {
            return Some((usize::from(low), at + 1));
        }
        let int_marker = u8_at(self.b, at + 1)?;
        if int_marker & 0xf0 != 0x10 {
            return None;
        }
        let size = 1usize << (int_marker & 0x0f).min(3);
        let len = usize::try_from(uint_be(self.b, at + 2, size)?).ok()?;
        Some((len, at + 2 + size))
    }

    fn object(&mut self, idx: u64, depth: usize) -> Option<Value> {
        self.nodes += 1;
        if depth > MAX_DEPTH || self.nodes > MAX_NODES {
            return None;
        }
        let at = self.object_offset(idx)?;
        let marker = u8_at(self.b, at)?;
        match marker >> 4 {
            0x0 => Some(match marker {
                0x08 => Value::Bool(false),
                0x09 => Value::Bool(true),
                _ => Value::Other,
            }),
            0x5 => {
                let (len, start) = self.length(marker, at)?;
                let bytes = slice(self.b, start, len)?;
                Some(Value::Str {
                    text: String::from_utf8_lossy(bytes).into_owned(),
                    offset: start,
                    utf16: false,
                })
            }
            0x6 => {
                let (len, start) = self.length(marker, at)?;
                let bytes = slice(self.b, start, len.checked_mul(2)?)?;
                let units: Vec<u16> = bytes
                    .chunks_exact(2)
                    .filter_map(|c| c.try_into().ok().map(u16::from_be_bytes))
                    .collect();
                Some(Value::Str {
                    text: String::from_utf16_lossy(&units),
                    offset: start,
                    utf16: true,
                })
            }
            0xA => {
                let (len, start) = self.length(marker, at)?;
                let refs = self.refs(start, len)?;
                let mut items = Vec::new();
                for r in refs {
                    items.push(self.object(r, depth + 1).unwrap_or(Value::Other));
                }
                Some(Value::Array(items))
            }
            0xD => {
                let (len, start) = self.length(marker, at)?;
                let keys = self.refs(start, len)?;
                let values = self.refs(start + len * self.ref_size, len)?;
                let mut entries = Vec::new();
                for (k, v) in keys.into_iter().zip(values) {
                    let key = match self.object(k, depth + 1) {
                        Some(Value::Str { text, .. }) => text,
                        _ => continue,
                    };
                    let value = self.object(v, depth + 1).unwrap_or(Value::Other);
                    entries.push((key, value));
                }
                Some(Value::Dict(entries))
            }
            _ => Some(Value::Other),
        }
    }

    fn refs(&self, start: usize, count: usize) -> Option<Vec<u64>> {
        // Bound the count by the bytes actually present before allocating.
        slice(self.b, start, count.checked_mul(self.ref_size)?)?;
        (0..count)
            .map(|i| uint_be(self.b, start + i * self.ref_size, self.ref_size))
            .collect()
    }
}

enum Token {
    Open(String),
    Close(String),
    Empty(String),
    Text(String, usize),
}

fn tokenize(b: &[u8]) -> Vec<Token> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < b.len() {
        let Some(lt) = memchr::memchr(b'<', b.get(pos..).unwrap_or_default()).map(|i| pos + i)
        else {
            break;
        };
        if lt > pos {
            let raw = b.get(pos..lt).unwrap_or_default();
            if raw.iter().any(|c| !c.is_ascii_whitespace()) {
                out.push(Token::Text(unescape(raw), pos));
            }
        }
        let rest = b.get(lt..).unwrap_or_default();
        let end_pat: &[u8] = if rest.starts_with(b"<!--") {
            b"-->"
        } else {
            b">"
        };
        let Some(gt) = memchr::memmem::find(rest, end_pat).map(|i| lt + i + end_pat.len()) else {
            break;
        };
        let tag = b.get(lt + 1..gt - end_pat.len()).unwrap_or_default();
        pos = gt;
        if tag.starts_with(b"?") || tag.starts_with(b"!") {
            continue;
        }
        let text = String::from_utf8_lossy(tag);
        let name: String = text
            .trim_start_matches('/')
            .split(|c: char| c.is_whitespace() || c == '/')
            .next()
            .unwrap_or_default()
            .to_owned();
        if text.starts_with('/') {
            out.push(Token::Close(name));
        } else if text.ends_with('/') {
            out.push(Token::Empty(name));
        } else {
            out.push(Token::Open(name));
        }
    }
    out
}

fn unescape(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn parse_xml(b: &[u8]) -> Option<Value> {
    let tokens = tokenize(b);
    let mut pos = 0;
    while let Some(t) = tokens.get(pos) {
        pos += 1;
        if matches!(t, Token::Open(n) if n == "plist") {
            return xml_value(&tokens, &mut pos, 0);
        }
    }
    None
}

fn xml_value(tokens: &[Token], pos: &mut usize, depth: usize) -> Option<Value> {
    if depth > MAX_DEPTH {
        return None;
    }
    let t = tokens.get(*pos)?;
    *pos += 1;
    match t {
        Token::Empty(n) => Some(match n.as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            "string" => Value::Str {
                text: String::new(),
                offset: 0,
                utf16: false,
            },
            _ => Value::Other,
        }),
        Token::Open(n) => match n.as_str() {
            "dict" => {
                let mut entries = Vec::new();
                loop {
                    match tokens.get(*pos)? {
                        Token::Close(c) if c == "dict" => {
                            *pos += 1;
                            return Some(Value::Dict(entries));
                        }
                        Token::Open(k) if k == "key" => {
                            *pos += 1;
                            let key = match tokens.get(*pos)? {
                                Token::Text(text, _) => {
                                    *pos += 1;
                                    text.clone()
                                }
                                _ => String::new(),
                            };
                            if matches!(tokens.get(*pos)?, Token::Close(c) if c == "key") {
                                *pos += 1;
                            }
                            let value = xml_value(tokens, pos, depth + 1)?;
                            entries.push((key, value));
                        }
                        _ => {
                            xml_value(tokens, pos, depth + 1)?;
                        }
                    }
                }
            }
            "array" => {
                let mut items = Vec::new();
                loop {
                    if matches!(tokens.get(*pos)?, Token::Close(c) if c == "array") {
                        *pos += 1;
                        return Some(Value::Array(items));
                    }
                    items.push(xml_value(tokens, pos, depth + 1)?);
                }
            }
            other => {
                let name = other.to_owned();
                let mut value = if name == "string" {
                    Value::Str {
                        text: String::new(),
                        offset: 0,
                        utf16: false,
                    }
                } else {
                    Value::Other
                };
                if let Some(Token::Text(text, at)) = tokens.get(*pos) {
                    *pos += 1;
                    if name == "string" {
                        value = Value::Str {
                            text: text.clone(),
                            offset: *at,
                            utf16: false,
                        };
                    }
                }
                if matches!(tokens.get(*pos), Some(Token::Close(c)) if *c == name) {
                    *pos += 1;
                }
                Some(value)
            }
        },
        Token::Text(..) | Token::Close(_) => Some(Value::Other),
    }
}
