//! RFC 9421 `Signature-Input` / `Signature` parsing, signature-base construction and
//! verification, over an arbitrary request.
//!
//! Input (UTF-8):
//! ```text
//! <Signature-Input value>
//! <Signature value>
//! <METHOD> <scheme>://<authority><path>?<query>
//! <name>: <value>        (any number of header lines)
//! ```
//!
//! Beyond "no panic", three properties:
//! - the canonical-form recognizer and the general structured-field parser agree on every
//!   input the recognizer accepts;
//! - the `@signature-params` line is canonical: re-parsing it as the `Signature-Input` gives
//!   the same parameters and the same signature base (so spacing cannot change what is
//!   verified);
//! - whatever Moat's own `sign` produces over the parsed components and parameters, parse and
//!   verify accept.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_core::httpsig::{
    self, Coverage, Params, ParsedSignature, SigningKey, VerifyingKey, check_coverage, check_window,
};
use moat_fuzz::{HMAC_SECRET, NOW, Request, VERIFYING_KEYS, first_line};

fuzz_target!(init: moat_fuzz::seeds::on_request(), |data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (signature_input, rest) = first_line(text);
    let (signature, request) = first_line(rest);
    let request = Request::parse(request);
    let msg = request.message();

    moat_core::httpsig::fuzzing::parsers_agree(signature_input, signature);

    // The server prefers the label `sig` and falls back to the first one.
    let Ok(parsed) = ParsedSignature::parse(signature_input, signature, "sig") else {
        return;
    };
    let _ = check_coverage(
        &parsed,
        Coverage {
            has_body: true,
            has_query: msg.query.is_some(),
            has_authorization: request.headers().contains_key(http::header::AUTHORIZATION),
        },
    );
    let _ = check_window(&parsed.params, NOW, 300);
    for key in VERIFYING_KEYS.iter() {
        let _ = parsed.verify(&msg, key);
    }

    let Ok(base) = parsed.signature_base(&msg) else {
        return;
    };
    // Header values cannot hold a newline, so the last line is always the parameters line.
    let last = base.rsplit('\n').next().unwrap_or(&base);
    let params_value = last
        .strip_prefix("\"@signature-params\": ")
        .expect("the signature base ends with @signature-params");
    let canonical = format!("{}={params_value}", parsed.label);
    let again = ParsedSignature::parse(&canonical, signature, &parsed.label)
        .expect("the canonical Signature-Input parses");
    assert_eq!(again.params, parsed.params);
    assert_eq!(again.signature_base(&msg).as_deref(), Ok(base.as_str()));

    let components: Vec<&str> = parsed.components().collect();
    let params = Params {
        alg: None,
        ..parsed.params.clone()
    };
    let hmac = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &HMAC_SECRET);
    if let Ok(headers) = httpsig::sign(
        &parsed.label,
        &components,
        &params,
        &msg,
        SigningKey::Hmac(&hmac),
    ) {
        let own = ParsedSignature::parse(&headers.signature_input, &headers.signature, "sig")
            .expect("Moat's own signature headers parse");
        own.verify(&msg, &VerifyingKey::hmac_sha256(&HMAC_SECRET))
            .expect("Moat's own signature verifies");
    }
});
