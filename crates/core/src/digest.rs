//! RFC 9530 `Content-Digest` with `sha-256` and `sha-512`.

use aws_lc_rs::digest;
use sfv::{BareItem, Item, ListEntry, Parser};

use crate::{Error, Result, b64, secret};

/// Longest `Content-Digest` value Moat parses, in bytes.
pub const MAX_HEADER_LEN: usize = 1024;

/// The `Content-Digest` value for `body` with SHA-256: `sha-256=:<base64>:`.
pub fn sha256_field(body: &[u8]) -> String {
    format!(
        "sha-256=:{}:",
        b64::std_encode(digest::digest(&digest::SHA256, body))
    )
}

/// Checks a `Content-Digest` value against `body`.
///
/// Every `sha-256` and `sha-512` member must match; other algorithms are ignored, and at least
/// one of the two must be present.
///
/// # Errors
/// [`Error::Malformed`] if the value is not a structured dictionary of byte sequences,
/// [`Error::Unsupported`] if it has neither algorithm, [`Error::DigestMismatch`] on mismatch.
pub fn verify(field: &str, body: &[u8]) -> Result<()> {
    if field.len() > MAX_HEADER_LEN {
        return Err(Error::Malformed("content-digest too long"));
    }
    let dict: sfv::Dictionary = Parser::new(field)
        .parse()
        .map_err(|_| Error::Malformed("content-digest is not a structured dictionary"))?;
    let mut checked = false;
    for (name, entry) in &dict {
        let algorithm = match name.as_str() {
            "sha-256" => &digest::SHA256,
            "sha-512" => &digest::SHA512,
            _ => continue,
        };
        let ListEntry::Item(Item {
            bare_item: BareItem::ByteSequence(expected),
            ..
        }) = entry
        else {
            return Err(Error::Malformed(
                "content-digest member is not a byte sequence",
            ));
        };
        let actual = digest::digest(algorithm, body);
        if !secret::ct_eq(actual.as_ref(), expected) {
            return Err(Error::DigestMismatch);
        }
        checked = true;
    }
    if checked {
        Ok(())
    } else {
        Err(Error::Unsupported(
            "content-digest has no sha-256 or sha-512 member",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9530_and_rfc9421_examples() {
        // RFC 9421 B.1: `{"hello": "world"}` and its sha-512 digest.
        let body = b"{\"hello\": \"world\"}";
        verify(
            "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
            body,
        )
        .expect("sha-512 example");
        // RFC 9530 section 2: the same body with sha-256.
        verify(
            "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
            body,
        )
        .expect("sha-256");
        assert_eq!(
            sha256_field(body),
            "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
        );
    }

    #[test]
    fn mismatch_and_unknown_algorithms() {
        let body = b"{\"hello\": \"world\"}";
        assert_eq!(
            verify(&sha256_field(b"other"), body),
            Err(Error::DigestMismatch)
        );
        assert_eq!(
            verify("md5=:AAAA:", body),
            Err(Error::Unsupported(
                "content-digest has no sha-256 or sha-512 member"
            ))
        );
        // A matching sha-256 next to a wrong sha-512 still fails.
        let both = format!("{}, sha-512=:AAAA:", sha256_field(body));
        assert_eq!(verify(&both, body), Err(Error::DigestMismatch));
        assert!(matches!(
            verify("sha-256=abc", body),
            Err(Error::Malformed(_))
        ));
    }
}
