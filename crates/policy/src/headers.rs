//! Reading credential headers: each at most once, a field's lines joined.

use std::borrow::Cow;

use http::{HeaderMap, HeaderName, header};
use moat_core::names;

use crate::error::{Credential, Error};

/// Credential headers that must appear at most once, and the kind of credential each one
/// carries. RFC 9421 and RFC 8941 would merge repeated `Signature` lines into one dictionary
/// (the last entry of a label winning); refusing the request instead leaves no doubt about
/// which value was checked and which one a backend behind the gateway might read.
static SINGLE: [(&HeaderName, Credential); 6] = [
    (&names::SIGNATURE, Credential::Signature),
    (&names::SIGNATURE_INPUT, Credential::Signature),
    (&names::CONTENT_DIGEST, Credential::Signature),
    (&names::MOAT_DEVICE_KEY, Credential::DeviceKey),
    (&names::MOAT_INTEGRITY, Credential::Integrity),
    (&header::AUTHORIZATION, Credential::Token),
];

/// Refuses a request that repeats a credential header.
pub(crate) fn refuse_repeated_credentials(headers: &HeaderMap) -> Result<(), Error> {
    for (name, credential) in &SINGLE {
        let mut values = headers.get_all(*name).iter();
        if values.next().is_some() && values.next().is_some() {
            return Err(Error::Repeated {
                header: (*name).clone(),
                credential: *credential,
            });
        }
    }
    Ok(())
}

/// The field's lines joined with `, ` (RFC 9110 section 5.3); borrowed when there is one.
pub(crate) fn joined<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<Option<Cow<'a, str>>, Error> {
    let mut out: Option<Cow<'a, str>> = None;
    for v in headers.get_all(name) {
        let text = v
            .to_str()
            .map_err(|_| Error::Malformed(format!("{name} is not ASCII").into()))?;
        out = Some(match out {
            Some(prev) => Cow::Owned([prev.as_ref(), text].join(", ")),
            None => Cow::Borrowed(text),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue, header};
    use moat_core::names;

    use super::{joined, refuse_repeated_credentials};
    use crate::error::{Credential, Error};

    #[test]
    fn a_repeated_credential_header_is_refused_with_its_kind() {
        let mut headers = HeaderMap::new();
        headers.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer a"));
        headers.append(&names::MOAT_DEVICE_KEY, HeaderValue::from_static("k"));
        assert!(refuse_repeated_credentials(&headers).is_ok());
        headers.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer b"));
        let e = refuse_repeated_credentials(&headers).expect_err("repeated");
        assert!(matches!(
            e,
            Error::Repeated {
                credential: Credential::Token,
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            "the authorization header appears more than once"
        );
    }

    #[test]
    fn a_field_of_several_lines_is_joined_and_one_line_is_borrowed() {
        let mut headers = HeaderMap::new();
        assert!(
            joined(&headers, &names::SIGNATURE)
                .expect("ascii")
                .is_none()
        );
        headers.append(&names::SIGNATURE, HeaderValue::from_static("a=:x:"));
        let one = joined(&headers, &names::SIGNATURE)
            .expect("ascii")
            .expect("present");
        assert!(matches!(one, std::borrow::Cow::Borrowed("a=:x:")));
        headers.append(&names::SIGNATURE, HeaderValue::from_static("b=:y:"));
        let two = joined(&headers, &names::SIGNATURE)
            .expect("ascii")
            .expect("present");
        assert_eq!(two, "a=:x:, b=:y:");
        headers.append(
            &names::SIGNATURE,
            HeaderValue::from_bytes(b"\xff").expect("a header value"),
        );
        let e = joined(&headers, &names::SIGNATURE).expect_err("not ascii");
        assert_eq!(e.to_string(), "signature is not ASCII");
    }
}
