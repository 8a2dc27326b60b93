//! RFC 9421 HTTP Message Signatures for requests.
//!
//! Moat accepts three algorithms: `hmac-sha256` (the client credential's shared secret),
//! `ecdsa-p256-sha256` and `ed25519` (the device's installation key, so no shared secret
//! exists at all). The server parses the `Signature-Input`/`Signature` pair with
//! [`ParsedSignature::parse`], looks up the key named by `keyid`, checks Moat's coverage
//! rules with [`check_coverage`] and the time window with [`check_window`], then verifies
//! with [`ParsedSignature::verify`]. Replay (`nonce`) bookkeeping is the server's job.
//!
//! Structured fields are parsed and serialized with the `sfv` crate (RFC 8941/9651); the
//! `@signature-params` line is the re-serialization of the parsed inner list, as section 2.3
//! defines it, so a client's spacing choices cannot change what is verified.

use aws_lc_rs::hmac;
use aws_lc_rs::signature::{self, ParsedPublicKey};
use http::HeaderMap;
use sfv::{BareItem, FieldType as _, InnerList, Item, Key, ListEntry, Parameters, Parser};

use crate::dpop::InstallationKey;
use crate::jwk::PublicJwk;
use crate::{Error, Result, b64};

/// Longest `Signature-Input` or `Signature` value Moat parses, in bytes.
pub const MAX_HEADER_LEN: usize = 8192;
/// Most covered components Moat accepts in one signature.
pub const MAX_COMPONENTS: usize = 32;

/// The request being signed or verified, as the client addressed it.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    /// Method, e.g. `POST`.
    pub method: &'a str,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// Host and optional port, as in the `Host` header.
    pub authority: &'a str,
    /// Absolute path, as sent (percent-encoding kept).
    pub path: &'a str,
    /// Query string without the leading `?`, if any.
    pub query: Option<&'a str>,
    /// Header fields.
    pub headers: &'a HeaderMap,
}

/// Signature algorithms Moat accepts.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// `hmac-sha256`.
    HmacSha256,
    /// `ecdsa-p256-sha256` (raw `r ‖ s`).
    EcdsaP256Sha256,
    /// `ed25519`.
    Ed25519,
}

impl Algorithm {
    /// The algorithm's registered name.
    pub fn name(self) -> &'static str {
        match self {
            Self::HmacSha256 => "hmac-sha256",
            Self::EcdsaP256Sha256 => "ecdsa-p256-sha256",
            Self::Ed25519 => "ed25519",
        }
    }
}

/// Signature parameters (RFC 9421 section 2.3) that Moat reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params {
    /// `created`, Unix seconds.
    pub created: Option<i64>,
    /// `expires`, Unix seconds.
    pub expires: Option<i64>,
    /// `nonce`.
    pub nonce: Option<String>,
    /// `keyid`.
    pub keyid: Option<String>,
    /// `alg`.
    pub alg: Option<String>,
    /// `tag`.
    pub tag: Option<String>,
}

mod fast;

/// A covered component: its name, and whether its identifier carried parameters (`;sf`,
/// `;key=…`, …), which Moat refuses when it builds the signature base.
#[derive(Clone, Debug)]
struct Component {
    name: String,
    has_params: bool,
}

/// A signature chosen from a request's `Signature-Input` and `Signature` fields.
#[derive(Clone, Debug)]
pub struct ParsedSignature {
    /// Its label.
    pub label: String,
    /// Its parameters.
    pub params: Params,
    components: Vec<Component>,
    params_value: String,
    signature: Vec<u8>,
}

fn key(name: &str) -> Result<Key> {
    Key::from_string(name.to_owned()).map_err(|_| Error::Malformed("invalid structured-field key"))
}

fn string_param(params: &Parameters, name: &str) -> Result<Option<String>> {
    match params.get(name) {
        None => Ok(None),
        Some(BareItem::String(s)) => Ok(Some(s.as_str().to_owned())),
        Some(_) => Err(Error::SignatureInvalid(
            "signature parameter has the wrong type",
        )),
    }
}

fn int_param(params: &Parameters, name: &str) -> Result<Option<i64>> {
    match params.get(name) {
        None => Ok(None),
        Some(BareItem::Integer(i)) => Ok(Some(i64::from(*i))),
        Some(_) => Err(Error::SignatureInvalid(
            "signature parameter has the wrong type",
        )),
    }
}

impl ParsedSignature {
    /// Parses both fields and picks the signature labelled `preferred`, else the first one.
    ///
    /// # Errors
    /// [`Error::Malformed`] for fields that are not valid structured dictionaries, and
    /// [`Error::SignatureInvalid`] when the chosen label has no matching signature.
    pub fn parse(signature_input: &str, signature: &str, preferred: &str) -> Result<Self> {
        if signature_input.len() > MAX_HEADER_LEN || signature.len() > MAX_HEADER_LEN {
            return Err(Error::Malformed("signature field too long"));
        }
        if let Some(parsed) = fast::parse(signature_input, signature) {
            return Ok(parsed);
        }
        Self::parse_general(signature_input, signature, preferred)
    }

    /// [`Self::parse`] for any structured-field syntax, with the `sfv` crate.
    fn parse_general(signature_input: &str, signature: &str, preferred: &str) -> Result<Self> {
        let inputs: sfv::Dictionary = Parser::new(signature_input)
            .parse()
            .map_err(|_| Error::Malformed("Signature-Input is not a structured dictionary"))?;
        let signatures: sfv::Dictionary = Parser::new(signature)
            .parse()
            .map_err(|_| Error::Malformed("Signature is not a structured dictionary"))?;
        let (label, entry) = inputs
            .get_key_value(preferred)
            .or_else(|| inputs.first())
            .ok_or(Error::Malformed("Signature-Input is empty"))?;
        let ListEntry::InnerList(list) = entry else {
            return Err(Error::Malformed(
                "Signature-Input member is not an inner list",
            ));
        };
        if list.items.len() > MAX_COMPONENTS {
            return Err(Error::SignatureInvalid("too many covered components"));
        }
        let sig = match signatures.get(label.as_str()) {
            Some(ListEntry::Item(Item {
                bare_item: BareItem::ByteSequence(bytes),
                ..
            })) => bytes.clone(),
            Some(_) => return Err(Error::Malformed("Signature member is not a byte sequence")),
            None => return Err(Error::SignatureInvalid("no Signature for the chosen label")),
        };
        let mut components = Vec::with_capacity(list.items.len());
        for item in &list.items {
            let BareItem::String(name) = &item.bare_item else {
                return Err(Error::Malformed("component identifier is not a string"));
            };
            components.push(Component {
                name: name.as_str().to_owned(),
                has_params: !item.params.is_empty(),
            });
        }
        let params = Params {
            created: int_param(&list.params, "created")?,
            expires: int_param(&list.params, "expires")?,
            nonce: string_param(&list.params, "nonce")?,
            keyid: string_param(&list.params, "keyid")?,
            alg: string_param(&list.params, "alg")?,
            tag: string_param(&list.params, "tag")?,
        };
        let params_value = serialize_inner_list(list)?;
        Ok(Self {
            label: label.as_str().to_owned(),
            params,
            components,
            params_value,
            signature: sig,
        })
    }

    /// Names of the covered components, in order (`@method`, `content-digest`, …).
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.components.iter().map(|c| c.name.as_str())
    }

    /// Builds the signature base (RFC 9421 section 2.5) for this signature over `msg`.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for components or component parameters Moat does not accept,
    /// [`Error::SignatureInvalid`] when a covered field is absent or repeated.
    pub fn signature_base(&self, msg: &Message<'_>) -> Result<String> {
        signature_base(&self.components, &self.params_value, msg)
    }

    /// Verifies the signature over `msg` with `key`.
    ///
    /// # Errors
    /// As [`Self::signature_base`], and [`Error::SignatureInvalid`] if `alg` names another
    /// algorithm than the key's or the signature does not verify.
    pub fn verify(&self, msg: &Message<'_>, key: &VerifyingKey) -> Result<()> {
        if let Some(alg) = &self.params.alg
            && alg != key.algorithm().name()
        {
            return Err(Error::SignatureInvalid("alg does not match the key"));
        }
        let base = self.signature_base(msg)?;
        key.verify(base.as_bytes(), &self.signature)
    }
}

fn serialize_inner_list(list: &InnerList) -> Result<String> {
    let entry: sfv::List = vec![ListEntry::InnerList(list.clone())];
    entry
        .serialize()
        .ok_or(Error::Malformed("empty signature parameters"))
}

fn normalized_authority(scheme: &str, authority: &str) -> String {
    let lower = authority.to_ascii_lowercase();
    match (scheme, lower.rsplit_once(':')) {
        ("https", Some((host, "443"))) | ("http", Some((host, "80"))) => host.to_owned(),
        _ => lower,
    }
}

/// Appends the field's lines, trimmed and joined with `, `, to `out`.
fn push_field_value(out: &mut String, headers: &HeaderMap, name: &str) -> Result<()> {
    let mut any = false;
    for value in headers.get_all(name) {
        let text = value
            .to_str()
            .map_err(|_| Error::SignatureInvalid("covered field is not visible ASCII"))?;
        if any {
            out.push_str(", ");
        }
        out.push_str(text.trim_matches([' ', '\t']));
        any = true;
    }
    if any {
        Ok(())
    } else {
        Err(Error::SignatureInvalid("covered field is absent"))
    }
}

/// Appends the value of component `name` of `msg` to `out` (RFC 9421 section 2).
fn push_component_value(out: &mut String, name: &str, msg: &Message<'_>) -> Result<()> {
    let path = if msg.path.is_empty() { "/" } else { msg.path };
    match name {
        "@method" => out.push_str(msg.method),
        "@scheme" => out.push_str(&msg.scheme.to_ascii_lowercase()),
        "@authority" => out.push_str(&normalized_authority(msg.scheme, msg.authority)),
        "@path" => out.push_str(path),
        "@query" => {
            out.push('?');
            out.push_str(msg.query.unwrap_or(""));
        }
        "@request-target" | "@target-uri" => {
            if name == "@target-uri" {
                out.push_str(msg.scheme);
                out.push_str("://");
                out.push_str(&normalized_authority(msg.scheme, msg.authority));
            }
            out.push_str(path);
            if let Some(q) = msg.query {
                out.push('?');
                out.push_str(q);
            }
        }
        n if n.starts_with('@') => return Err(Error::Unsupported("derived component")),
        n if n.bytes().any(|b| b.is_ascii_uppercase()) => {
            return Err(Error::SignatureInvalid("field names must be lowercase"));
        }
        n => push_field_value(out, msg.headers, n)?,
    }
    Ok(())
}

/// Appends `name` as a structured-field string (RFC 9651 section 4.1.6).
fn push_sf_string(out: &mut String, name: &str) {
    out.push('"');
    for ch in name.chars() {
        if ch == '"' || ch == '\\' {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('"');
}

fn signature_base(
    components: &[Component],
    params_value: &str,
    msg: &Message<'_>,
) -> Result<String> {
    let mut base = String::with_capacity(256 + params_value.len());
    for (i, c) in components.iter().enumerate() {
        if c.has_params {
            // `sf`, `key`, `bs`, `req`, `tr` and `name` change how a value is derived; Moat's
            // clients never need them, and refusing them keeps one canonical base per request.
            return Err(Error::Unsupported("component parameters"));
        }
        if components[..i].iter().any(|p| p.name == c.name) {
            return Err(Error::SignatureInvalid("component covered twice"));
        }
        push_sf_string(&mut base, &c.name);
        base.push_str(": ");
        push_component_value(&mut base, &c.name, msg)?;
        base.push('\n');
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(params_value);
    Ok(base)
}

/// A key that verifies signatures.
pub enum VerifyingKey {
    /// `hmac-sha256` with the client credential's secret (boxed: the key schedule is large).
    Hmac(Box<hmac::Key>),
    /// `ecdsa-p256-sha256` with a parsed P-256 public key.
    EcdsaP256(ParsedPublicKey),
    /// `ed25519` with a parsed Ed25519 public key.
    Ed25519(ParsedPublicKey),
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifyingKey({})", self.algorithm().name())
    }
}

impl VerifyingKey {
    /// An `hmac-sha256` key from the shared secret.
    pub fn hmac_sha256(secret: &[u8]) -> Self {
        Self::Hmac(Box::new(hmac::Key::new(hmac::HMAC_SHA256, secret)))
    }

    /// A key for `ecdsa-p256-sha256` or `ed25519` from a public JWK.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for RSA JWKs.
    pub fn from_jwk(jwk: &PublicJwk) -> Result<Self> {
        match jwk {
            PublicJwk::P256 { .. } => {
                let point = jwk.sec1_point().ok_or(Error::Crypto)?;
                ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .map(Self::EcdsaP256)
                    .map_err(|_| Error::Malformed("ec point"))
            }
            PublicJwk::Ed25519 { x } => ParsedPublicKey::new(&signature::ED25519, x)
                .map(Self::Ed25519)
                .map_err(|_| Error::Malformed("ed25519 key")),
            _ => Err(Error::Unsupported("signature key type")),
        }
    }

    /// The algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Self::Hmac(_) => Algorithm::HmacSha256,
            Self::EcdsaP256(_) => Algorithm::EcdsaP256Sha256,
            Self::Ed25519(_) => Algorithm::Ed25519,
        }
    }

    /// Verifies `signature` over `base`; HMAC tags are compared in constant time.
    ///
    /// # Errors
    /// [`Error::SignatureInvalid`] when the signature does not verify.
    pub fn verify(&self, base: &[u8], signature: &[u8]) -> Result<()> {
        let ok = match self {
            Self::Hmac(k) => hmac::verify(k, base, signature).is_ok(),
            Self::EcdsaP256(k) | Self::Ed25519(k) => k.verify_sig(base, signature).is_ok(),
        };
        if ok {
            Ok(())
        } else {
            Err(Error::SignatureInvalid("signature does not verify"))
        }
    }
}

/// A key that makes signatures (client side).
#[derive(Clone, Copy)]
pub enum SigningKey<'a> {
    /// `hmac-sha256` with the client credential's secret.
    Hmac(&'a hmac::Key),
    /// `ecdsa-p256-sha256` or `ed25519` with the installation key.
    Installation(&'a InstallationKey),
}

impl SigningKey<'_> {
    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Self::Hmac(_) => Algorithm::HmacSha256,
            Self::Installation(InstallationKey::P256(_)) => Algorithm::EcdsaP256Sha256,
            Self::Installation(InstallationKey::Ed25519(_)) => Algorithm::Ed25519,
        }
    }
}

/// The two header values of a signature made by [`sign`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureHeaders {
    /// Value for `Signature-Input`.
    pub signature_input: String,
    /// Value for `Signature`.
    pub signature: String,
}

/// Signs `msg`, covering `components` in order, with `params` in the order
/// `created, expires, nonce, keyid, alg, tag`.
///
/// # Errors
/// As for building a signature base, and [`Error::Crypto`] if signing fails.
pub fn sign(
    label: &str,
    components: &[&str],
    params: &Params,
    msg: &Message<'_>,
    signer: SigningKey<'_>,
) -> Result<SignatureHeaders> {
    // The inner list is written in canonical form directly (RFC 9651 section 4.1), the same
    // text the structured-field serializer gives, without building its maps.
    let mut params_value = String::with_capacity(160);
    let mut covered = Vec::with_capacity(components.len());
    params_value.push('(');
    for (i, c) in components.iter().enumerate() {
        if !is_sf_string(c) {
            return Err(Error::Malformed("component name"));
        }
        if i > 0 {
            params_value.push(' ');
        }
        push_sf_string(&mut params_value, c);
        covered.push(Component {
            name: (*c).to_owned(),
            has_params: false,
        });
    }
    params_value.push(')');
    for (name, value) in [("created", params.created), ("expires", params.expires)] {
        if let Some(v) = value {
            if v.unsigned_abs() > 999_999_999_999_999 {
                return Err(Error::Malformed("integer out of range"));
            }
            params_value.push(';');
            params_value.push_str(name);
            params_value.push('=');
            params_value.push_str(&v.to_string());
        }
    }
    for (name, value) in [
        ("nonce", &params.nonce),
        ("keyid", &params.keyid),
        ("alg", &params.alg),
        ("tag", &params.tag),
    ] {
        if let Some(v) = value {
            if !is_sf_string(v) {
                return Err(Error::Malformed(
                    "signature parameter is not a valid string",
                ));
            }
            params_value.push(';');
            params_value.push_str(name);
            params_value.push('=');
            push_sf_string(&mut params_value, v);
        }
    }
    let base = signature_base(&covered, &params_value, msg)?;
    let sig = match signer {
        SigningKey::Hmac(k) => hmac::sign(k, base.as_bytes()).as_ref().to_vec(),
        SigningKey::Installation(k) => k.sign(base.as_bytes())?,
    };
    key_check(label)?;
    Ok(SignatureHeaders {
        signature_input: format!("{label}={params_value}"),
        signature: format!("{label}=:{}:", b64::std_encode(sig)),
    })
}

fn key_check(label: &str) -> Result<()> {
    key(label).map(|_| ())
}

/// Whether `s` can be a structured-field string (visible ASCII and space).
fn is_sf_string(s: &str) -> bool {
    s.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// What Moat knows about a request when it checks which components a signature covers.
#[derive(Clone, Copy, Debug, Default)]
pub struct Coverage {
    /// The request has a non-empty body.
    pub has_body: bool,
    /// The request URL has a query.
    pub has_query: bool,
    /// The request carries an `Authorization` header.
    pub has_authorization: bool,
}

/// Checks Moat's coverage rules (PROTOCOL section 4): `@method`; `@target-uri` or both
/// `@authority` and `@path` (plus `@query` when there is a query); `content-digest` when the
/// body is not empty; `authorization` when that header is sent; and `created` plus a `nonce`
/// of at least 8 characters.
///
/// # Errors
/// [`Error::SignatureInvalid`] naming the first rule that is not met.
pub fn check_coverage(sig: &ParsedSignature, req: Coverage) -> Result<()> {
    let has = |name: &str| sig.components().any(|c| c == name);
    if !has("@method") {
        return Err(Error::SignatureInvalid("@method not covered"));
    }
    let target = has("@target-uri");
    if !(target || has("@authority") && has("@path")) {
        return Err(Error::SignatureInvalid(
            "@target-uri or @authority and @path not covered",
        ));
    }
    if req.has_query && !target && !has("@query") {
        return Err(Error::SignatureInvalid("@query not covered"));
    }
    if req.has_body && !has("content-digest") {
        return Err(Error::SignatureInvalid("content-digest not covered"));
    }
    if req.has_authorization && !has("authorization") {
        return Err(Error::SignatureInvalid("authorization not covered"));
    }
    if sig.params.created.is_none() {
        return Err(Error::SignatureInvalid("created parameter missing"));
    }
    match &sig.params.nonce {
        Some(n) if n.len() >= 8 => {}
        _ => {
            return Err(Error::SignatureInvalid(
                "nonce parameter missing or shorter than 8",
            ));
        }
    }
    Ok(())
}

/// Checks `created` is within `max_skew` seconds of `now` and `expires`, if any, has not
/// passed.
///
/// # Errors
/// [`Error::SignatureExpired`] outside the window, [`Error::SignatureInvalid`] without
/// `created`.
pub fn check_window(params: &Params, now: i64, max_skew: i64) -> Result<()> {
    let created = params
        .created
        .ok_or(Error::SignatureInvalid("created parameter missing"))?;
    // `abs_diff` rather than `(now - created).abs()`, which overflows for a `created` at the
    // ends of i64 (the parser bounds it to 15 digits, but `Params` is public).
    if created.abs_diff(now) > u64::try_from(max_skew).unwrap_or(0) {
        return Err(Error::SignatureExpired);
    }
    if let Some(expires) = params.expires
        && (expires < now || expires < created)
    {
        return Err(Error::SignatureExpired);
    }
    Ok(())
}

/// Panics if the canonical-form recognizer accepts the fields and the general parser parses
/// them differently, or refuses them; returns whether the recognizer accepted them.
#[cfg(any(test, feature = "fuzzing"))]
fn assert_parsers_agree(signature_input: &str, signature: &str) -> bool {
    let Some(fast) = fast::parse(signature_input, signature) else {
        return false;
    };
    let general = ParsedSignature::parse_general(signature_input, signature, &fast.label)
        .unwrap_or_else(|e| {
            panic!("the general parser refuses ({e}) what the recognizer accepts: {signature_input:?} {signature:?}")
        });
    assert_eq!(fast.label, general.label);
    assert_eq!(fast.params, general.params);
    assert_eq!(
        fast.params_value, general.params_value,
        "serialized parameters"
    );
    assert_eq!(fast.signature, general.signature);
    let names = |p: &ParsedSignature| {
        p.components
            .iter()
            .map(|c| (c.name.clone(), c.has_params))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&fast), names(&general));
    true
}

/// Entry points for the cargo-fuzz targets in `fuzz/`; not part of the API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    /// Panics if the canonical-form recognizer accepts fields and the general parser parses
    /// them differently (or refuses them).
    pub fn parsers_agree(signature_input: &str, signature: &str) {
        super::assert_parsers_agree(signature_input, signature);
    }
}

#[cfg(test)]
mod tests;
