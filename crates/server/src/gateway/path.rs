//! Safe joining of a client path onto a fixed upstream base: the gateway is not an open
//! proxy.
//!
//! The part of the path after the route prefix is appended to the upstream URL's path as the
//! client sent it (percent-encoding kept), after refusing anything that could move the request
//! elsewhere: dot segments (`.`, `..`, also percent-encoded), encoded slashes and backslashes
//! (`%2F`, `%5C`), raw backslashes, empty segments (`//`), NUL and control characters, and
//! `@`/`:` in the first segment tricks are impossible because the authority is never taken
//! from the client.

/// Why a path was refused.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused(pub &'static str);

/// Checks the remainder of a path after the route prefix (`""` or starting with `/`).
///
/// # Errors
/// [`Refused`] naming the rule.
pub fn check_rest(rest: &str) -> Result<(), Refused> {
    if rest.is_empty() {
        return Ok(());
    }
    if !rest.starts_with('/') {
        return Err(Refused("path does not continue the route prefix"));
    }
    let bytes = rest.as_bytes();
    for (i, _) in rest.match_indices('%') {
        let code = [
            bytes.get(i + 1).map_or(0, u8::to_ascii_lowercase),
            bytes.get(i + 2).map_or(0, u8::to_ascii_lowercase),
        ];
        if matches!(&code, b"2f" | b"5c" | b"2e" | b"00" | b"25") {
            return Err(Refused(
                "encoded slash, backslash, dot, NUL or percent in path",
            ));
        }
    }
    if rest.bytes().any(|b| b == b'\\' || b < 0x20 || b == 0x7f) {
        return Err(Refused("backslash or control character in path"));
    }
    for segment in rest[1..].split('/') {
        match segment {
            "." | ".." => return Err(Refused("dot segment in path")),
            "" if rest.len() > 1 && !rest.ends_with('/') => {
                return Err(Refused("empty segment in path"));
            }
            _ => {}
        }
    }
    if rest.contains("//") {
        return Err(Refused("empty segment in path"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_traversal_and_smuggling() {
        for ok in [
            "",
            "/",
            "/tiles",
            "/tiles/3/4.png",
            "/a-b_c~d/e%20f",
            "/dir/",
        ] {
            assert_eq!(check_rest(ok), Ok(()), "{ok}");
        }
        for bad in [
            "/../admin",
            "/a/../../etc/passwd",
            "/./x",
            "/a/..",
            "/%2e%2e/x",
            "/.%2E/x",
            "/a%2Fb",
            "/a%2fb",
            "/a%5Cb",
            "/a\\b",
            "//evil.example/x",
            "/a//b",
            "/a%00b",
            "/a%252e%252e",
            "/a\nb",
            "x",
        ] {
            assert!(check_rest(bad).is_err(), "{bad:?}");
        }
    }
}
