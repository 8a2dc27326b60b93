//! Tokens in scanned text: their characters, runs and boundaries.

pub(crate) fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

pub(crate) fn is_b64_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=' | b'_' | b'-')
}

/// True when the bytes just outside `[start, end)` do not continue the token.
pub(crate) fn bounded(text: &[u8], start: usize, end: usize, cont: fn(u8) -> bool) -> bool {
    let before = start
        .checked_sub(1)
        .and_then(|i| text.get(i))
        .is_none_or(|&c| !cont(c));
    let after = text.get(end).is_none_or(|&c| !cont(c));
    before && after
}

pub(crate) fn window(text: &[u8], start: usize, end: usize, radius: usize) -> (usize, &[u8]) {
    let lo = start.saturating_sub(radius);
    let hi = end.saturating_add(radius).min(text.len());
    (lo, text.get(lo..hi).unwrap_or_default())
}

pub(crate) fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Maximal runs of bytes satisfying `f`, as (start, end), lazily (a blob can hold millions).
pub(crate) fn tokens(text: &[u8], f: fn(u8) -> bool) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < text.len() && !text.get(i).is_some_and(|&c| f(c)) {
            i += 1;
        }
        if i >= text.len() {
            return None;
        }
        let start = i;
        while text.get(i).is_some_and(|&c| f(c)) {
            i += 1;
        }
        Some((start, i))
    })
}

pub(crate) fn mixed_case_with_digits(t: &[u8]) -> bool {
    t.iter().any(u8::is_ascii_uppercase)
        && t.iter().any(u8::is_ascii_lowercase)
        && t.iter().any(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_boundaries() {
        let t: Vec<_> = tokens(b"  ab-c d ", is_token_char).collect();
        assert_eq!(t, [(2, 6), (7, 8)]);
        assert!(bounded(b"x AIza y", 2, 6, is_token_char));
        assert!(!bounded(b"xAIza y", 1, 5, is_token_char));
    }
}
