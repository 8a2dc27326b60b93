//! Safe joining of a client path onto a fixed upstream base: the gateway is not an open
//! proxy.
//!
//! The part of the path after the route prefix is appended to the upstream URL's path as the
//! client sent it (percent-encoding kept), after refusing anything that could move the request
//! elsewhere: dot segments (`.`, `..`, also percent-encoded), encoded slashes and backslashes
//! (`%2F`, `%5C`), raw backslashes, empty segments (`//`), NUL and control characters, and
//! `@`/`:` in the first segment tricks are impossible because the authority is never taken
//! from the client.

/// Checks a request path before any route's policy is chosen, so that the policy is chosen on
/// the path the upstream will interpret, whatever its spelling:
/// - `;` anywhere: Tomcat and Spring strip path parameters (`/a;x/..;/admin`) and then
///   resolve what is left, walking out of a route's base;
/// - a percent-escape of an unreserved character (`%61` for `a`, `%2E` for `.`): RFC 3986
///   section 6.2.2.2 makes `/events/%61dmin` and `/events/admin` the same resource, and
///   upstreams decode it, but a prefix match would not; producers must not send these
///   (section 2.3), so they are refused rather than decoded, which also leaves the path a
///   client signed untouched; a `%` not followed by two hex digits, which upstreams read
///   differently, too;
/// - a path that spells a gateway route's prefix in another case (`/events/ADMIN/x` beside a
///   route `/events/admin`): matching is case-sensitive as RFC 3986 says, but a
///   case-insensitive backend (IIS, some Spring and Express set-ups) would serve the
///   protected prefix under a weaker route's policy.
///
/// # Errors
/// [`Refused`] naming the rule.
pub fn check_target<'a>(
    path: &str,
    prefixes: impl IntoIterator<Item = &'a str>,
) -> Result<(), Refused> {
    let bytes = path.as_bytes();
    if bytes.iter().any(|&b| b == b';' || b == b'%') {
        if bytes.contains(&b';') {
            return Err(Refused("`;` path parameter in path"));
        }
        for (i, _) in path.match_indices('%') {
            let hex = |j: usize| {
                bytes
                    .get(j)
                    .and_then(|b| char::from(*b).to_digit(16))
                    .and_then(|d| u8::try_from(d).ok())
            };
            let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
                return Err(Refused("malformed percent-escape in path"));
            };
            let decoded = hi << 4 | lo;
            if decoded.is_ascii_alphanumeric() || matches!(decoded, b'-' | b'.' | b'_' | b'~') {
                return Err(Refused(
                    "percent-escaped unreserved character in path (send it unescaped)",
                ));
            }
        }
    }
    for prefix in prefixes {
        let n = prefix.len();
        if let Some(head) = path.get(..n)
            && (path.len() == n || bytes[n] == b'/')
            && head != prefix
            && head.eq_ignore_ascii_case(prefix)
        {
            return Err(Refused(
                "path differs from a route prefix only in letter case",
            ));
        }
    }
    Ok(())
}

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
    fn targets_spelled_to_dodge_a_prefix_are_refused() {
        let prefixes = ["/events", "/events/admin"];
        for ok in [
            "/events",
            "/events/",
            "/events/admin",
            "/events/admin/",
            "/events/admin/x",
            "/events/x%20y",
            "/events/%E2%82%AC",
            "/events/a%2Fb",
            "/eventsADMIN",
            "/v1/device",
        ] {
            assert_eq!(check_target(ok, prefixes), Ok(()), "{ok}");
        }
        for bad in [
            "/events/%61dmin/x",
            "/events/%41dmin",
            "/events/admin%2e/x",
            "/events/%2e%2e/x",
            "/events/%7e",
            "/events/%5f",
            "/events/%zz",
            "/events/%4",
            "/events/%",
            "/events/ADMIN/x",
            "/events/Admin",
            "/EVENTS/admin/x",
            "/Events",
            "/events/admin;x/y",
            "/events/..;/admin",
            "/events/.;/admin",
            "/events;/admin",
        ] {
            assert!(check_target(bad, prefixes).is_err(), "{bad:?}");
        }
    }

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
