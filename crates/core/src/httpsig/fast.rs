//! The parse of `Signature-Input`/`Signature` for the one shape clients send: a single
//! label, an inner list of plain component strings, and parameters that are integers,
//! strings or tokens, all in canonical form (RFC 9651 section 4.1 serialization).
//!
//! It exists for speed: the general structured-field parse (the `sfv` crate) builds ordered
//! maps and then serializes the inner list again for the `@signature-params` line, which
//! was most of the cost of checking a signature. For canonical input the serialization is
//! the input itself, so this parser only recognizes it and borrows it.
//!
//! It never decides a request on its own: anything else (several labels, spaces outside the
//! canonical places, escapes, component parameters, decimals, booleans, byte sequences,
//! duplicate keys, a parameter of the wrong type, non-canonical base64) returns `None` and
//! the general parser gives the answer. What it accepts, it parses exactly as that parser
//! does; a test compares the two on generated inputs.

use super::{Component, MAX_COMPONENTS, Params, ParsedSignature};

fn is_key_start(b: u8) -> bool {
    b.is_ascii_lowercase() || b == b'*'
}

fn is_key_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.' | b'*')
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// A parameter value in canonical form.
enum Value<'a> {
    Integer(i64),
    String(&'a str),
    Token,
}

struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        (self.peek()? == b).then(|| self.pos += 1)
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        &self.text[start..self.pos]
    }

    fn key(&mut self) -> Option<&'a str> {
        if !is_key_start(self.peek()?) {
            return None;
        }
        Some(self.take_while(is_key_char))
    }

    /// A string without escapes (an escape is canonical, but rare enough to leave to the
    /// general parser).
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let s = self.take_while(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\');
        self.eat(b'"')?;
        Some(s)
    }

    /// A canonical integer: no leading zeros, no `-0`, at most 15 digits, not a decimal.
    fn integer(&mut self) -> Option<i64> {
        let negative = self.eat(b'-').is_some();
        let digits = self.take_while(|b| b.is_ascii_digit());
        let canonical = match digits.as_bytes() {
            [] => false,
            [b'0'] => !negative,
            [b'0', ..] => false,
            d => d.len() <= 15,
        };
        if !canonical || self.peek() == Some(b'.') {
            return None;
        }
        let magnitude: i64 = digits.parse().ok()?;
        Some(if negative { -magnitude } else { magnitude })
    }

    fn value(&mut self) -> Option<Value<'a>> {
        match self.peek()? {
            b'"' => self.string().map(Value::String),
            b'-' | b'0'..=b'9' => self.integer().map(Value::Integer),
            b if b.is_ascii_alphabetic() || b == b'*' => {
                self.pos += 1;
                self.take_while(|b| is_tchar(b) || b == b':' || b == b'/');
                Some(Value::Token)
            }
            _ => None,
        }
    }
}

/// Parses canonical single-label fields; `None` for anything else (see the module docs).
pub(super) fn parse(signature_input: &str, signature: &str) -> Option<ParsedSignature> {
    let mut c = Cursor {
        text: signature_input,
        pos: 0,
    };
    let label = c.key()?;
    c.eat(b'=')?;
    let params_start = c.pos;
    c.eat(b'(')?;
    let mut components = Vec::with_capacity(8);
    if c.eat(b')').is_none() {
        loop {
            let name = c.string()?;
            components.push(Component {
                name: name.to_owned(),
                has_params: false,
            });
            match c.peek()? {
                b')' => {
                    c.pos += 1;
                    break;
                }
                b' ' if c.text.as_bytes().get(c.pos + 1) == Some(&b'"') => c.pos += 1,
                _ => return None,
            }
        }
    }
    if components.len() > MAX_COMPONENTS {
        return None;
    }
    let mut params = Params::default();
    let mut seen: Vec<&str> = Vec::with_capacity(6);
    while c.eat(b';').is_some() {
        let key = c.key()?;
        if seen.contains(&key) {
            return None;
        }
        seen.push(key);
        c.eat(b'=')?;
        let value = c.value()?;
        match (key, value) {
            ("created", Value::Integer(i)) => params.created = Some(i),
            ("expires", Value::Integer(i)) => params.expires = Some(i),
            ("created" | "expires", _) => return None,
            ("nonce", Value::String(s)) => params.nonce = Some(s.to_owned()),
            ("keyid", Value::String(s)) => params.keyid = Some(s.to_owned()),
            ("alg", Value::String(s)) => params.alg = Some(s.to_owned()),
            ("tag", Value::String(s)) => params.tag = Some(s.to_owned()),
            ("nonce" | "keyid" | "alg" | "tag", _) => return None,
            _ => {}
        }
    }
    if c.pos != signature_input.len() {
        return None;
    }
    let bytes = signature
        .strip_prefix(label)?
        .strip_prefix("=:")?
        .strip_suffix(':')?;
    if !bytes
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
    {
        return None;
    }
    let signature = crate::b64::std_decode(bytes).ok()?;
    Some(ParsedSignature {
        label: label.to_owned(),
        params,
        components,
        params_value: signature_input[params_start..].to_owned(),
        signature,
    })
}
