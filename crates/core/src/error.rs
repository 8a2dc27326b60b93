use std::fmt;

/// Everything that can go wrong in Moat's protocol code.
///
/// Each variant names the kind of failure; the `&'static str` says which check failed, in
/// words safe to show a client (never a secret or an input value). The server maps each kind
/// to one problem code at its HTTP edge.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The input is not well-formed (bad base64, JSON, structured field, compact form).
    Malformed(&'static str),
    /// A DPoP proof or identity token failed a check.
    IdentityInvalid(&'static str),
    /// An HTTP message signature failed a check (coverage, parameters, the signature itself).
    SignatureInvalid(&'static str),
    /// A signature's `created`/`expires` window does not include now.
    SignatureExpired,
    /// `Content-Digest` does not match the body.
    DigestMismatch,
    /// A JWE could not be decrypted, or a sealed value could not be opened.
    DecryptionFailed,
    /// An algorithm, component or parameter that Moat does not accept.
    Unsupported(&'static str),
    /// The crypto library refused an operation that should not fail (key generation, RNG).
    Crypto,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(what) => write!(f, "malformed input: {what}"),
            Self::IdentityInvalid(what) => write!(f, "identity proof invalid: {what}"),
            Self::SignatureInvalid(what) => write!(f, "signature invalid: {what}"),
            Self::SignatureExpired => f.write_str("signature outside its validity window"),
            Self::DigestMismatch => f.write_str("content-digest does not match the body"),
            Self::DecryptionFailed => f.write_str("decryption failed"),
            Self::Unsupported(what) => write!(f, "unsupported: {what}"),
            Self::Crypto => f.write_str("cryptographic operation failed"),
        }
    }
}

impl std::error::Error for Error {}
