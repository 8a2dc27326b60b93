//! Phone numbers: parsed and validated with libphonenumber's metadata (`phonenumber` crate),
//! normalised to E.164.

use crate::Error;

/// A valid phone number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Phone {
    /// E.164 form, e.g. `+14155550123`.
    pub e164: String,
    /// ISO 3166 region, e.g. `US`.
    pub region: String,
}

/// Parses an E.164 number (a leading `+` is required: Moat does not guess a region).
///
/// # Errors
/// [`Error::Invalid`] when it is not a valid number.
pub fn parse(text: &str) -> Result<Phone, Error> {
    let invalid = || Error::Invalid("phone must be a valid E.164 number, e.g. +14155550123".into());
    // libphonenumber is lenient (it skips letters and symbols it does not understand, so
    // "+3936400246157*" parses); only digits and the usual separators are accepted here, which
    // is also what the OpenAPI pattern documents.
    if text.len() > 32
        || !text.starts_with('+')
        || !text[1..]
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b' ' | b'(' | b')' | b'-' | b'.'))
    {
        return Err(invalid());
    }
    let number = phonenumber::parse(None, text).map_err(|_| invalid())?;
    if !phonenumber::is_valid(&number) {
        return Err(invalid());
    }
    let region = number
        .country()
        .id()
        .map(|id| id.as_ref().to_owned())
        .ok_or_else(invalid)?;
    Ok(Phone {
        e164: number.format().mode(phonenumber::Mode::E164).to_string(),
        region,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_refuses() {
        let p = parse("+1 (415) 555-2671").expect("valid US number");
        assert_eq!(p.e164, "+14155552671");
        assert_eq!(p.region, "US");
        assert_eq!(parse("+44 20 7946 0958").expect("GB").region, "GB");
        for bad in [
            "+3936400246157*",
            "+1 415 555 2671 ext",
            " +14155552671",
            "4155552671",
            "+1 555",
            "+999 123",
            "not a phone",
            "+14155552671000000000000000000000000",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
