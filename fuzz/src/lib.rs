//! Fixtures shared by the fuzz targets and by [`seeds`], which writes the seed corpora: fixed keys (from published test vectors where one exists, so that seeds made once
//! stay valid), input splitting, and builders for tokens signed or encrypted with those keys.
//!
//! Several targets have a "signed" mode: the fuzzer supplies the claims (or payload) and the
//! target signs or encrypts them with a fixed key before calling the verifier. Without it a
//! fuzzer never gets past the signature check and the claim checks behind it are never run.

use std::sync::LazyLock;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::key_wrap::{AES_256, KeyEncryptionKey, KeyWrap as _};
use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PrivateDecryptingKey};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use http::{HeaderMap, HeaderName, HeaderValue};
use moat_core::b64;
use moat_core::dpop::InstallationKey;
use moat_core::httpsig::{Message, VerifyingKey};
use moat_core::jwe::RsaPrivateKey;
use serde_json::Value;

pub mod seeds;

/// The published test vectors, as checked by `moat-core`'s own unit tests.
pub mod vectors {
    /// RFC 9421 Appendix B keys, messages and signatures.
    pub const RFC9421: &str = include_str!("../../crates/core/vectors/rfc9421_appendix_b.json");
    /// RFC 9449 DPoP proofs.
    pub const RFC9449: &str = include_str!("../../crates/core/vectors/rfc9449_dpop.json");
    /// RFC 7516 Appendix A JWEs and their keys.
    pub const RFC7516: &str =
        include_str!("../../crates/core/vectors/jose_rfc7516_appendix_a_jwe.json");
    /// Apple App Attest sample attestations and assertions.
    pub const APP_ATTEST: &str =
        include_str!("../../crates/core/vectors/apple_app_attest_samples.json");
}

/// Parses one of the [`vectors`] files.
///
/// # Panics
/// If the file is not JSON (it is part of the repository).
pub fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("vector file is JSON")
}

fn str_at<'v>(v: &'v Value, pointer: &str) -> &'v str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("vector member {pointer}"))
}

fn b64u_at(v: &Value, pointer: &str) -> Vec<u8> {
    b64::url_decode(str_at(v, pointer)).expect("vector member is base64url")
}

/// The fixed "now" of every target, Unix seconds: RFC 9421's examples' `created`, a moment
/// before every test key's certificate or token expires.
pub const NOW: i64 = 1_618_884_473;

/// RFC 9421 B.1.5 shared secret (`hmac-sha256`).
pub static HMAC_SECRET: LazyLock<Vec<u8>> = LazyLock::new(|| {
    b64::std_decode(str_at(
        &json(vectors::RFC9421),
        "/keys/test-shared-secret/secret_base64",
    ))
    .expect("secret is base64")
});

/// RFC 9421 B.1.3 `test-key-ecc-p256`, as an installation key that signs.
pub static P256: LazyLock<InstallationKey> = LazyLock::new(|| {
    let v = json(vectors::RFC9421);
    let jwk = "/keys/test-key-ecc-p256/jwk";
    let point = [
        &[4u8][..],
        &b64u_at(&v, &format!("{jwk}/x")),
        &b64u_at(&v, &format!("{jwk}/y")),
    ]
    .concat();
    InstallationKey::P256(
        EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &b64u_at(&v, &format!("{jwk}/d")),
            &point,
        )
        .expect("RFC 9421 P-256 key"),
    )
});

/// RFC 9421 B.1.4 `test-key-ed25519`, as an installation key that signs.
pub static ED25519: LazyLock<InstallationKey> = LazyLock::new(|| {
    let v = json(vectors::RFC9421);
    InstallationKey::Ed25519(
        Ed25519KeyPair::from_seed_unchecked(&b64u_at(&v, "/keys/test-key-ed25519/jwk/d"))
            .expect("RFC 9421 Ed25519 key"),
    )
});

/// The three verifying keys Moat accepts, one of each algorithm.
pub static VERIFYING_KEYS: LazyLock<[VerifyingKey; 3]> = LazyLock::new(|| {
    let public = |k: &InstallationKey| {
        VerifyingKey::from_jwk(&k.public_jwk()).expect("installation key's public half")
    };
    [
        VerifyingKey::hmac_sha256(&HMAC_SECRET),
        public(&P256),
        public(&ED25519),
    ]
});

/// Splits at the first `\n`: `(first line, rest)`.
pub fn first_line(text: &str) -> (&str, &str) {
    text.split_once('\n').unwrap_or((text, ""))
}

/// A request described as text, for the signature targets:
///
/// ```text
/// POST https://example.com/foo?param=Value
/// host: example.com
/// content-digest: sha-512=:…:
/// ```
///
/// The first line is the method and the target URI; each later `name: value` line is a header
/// (lines that are not a valid header are skipped, as an HTTP parser would refuse them).
pub struct Request {
    method: String,
    scheme: String,
    authority: String,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
}

impl Request {
    /// Parses the description; never fails, odd input gives odd requests.
    pub fn parse(text: &str) -> Self {
        let (request_line, header_lines) = first_line(text);
        let (method, target) = request_line.split_once(' ').unwrap_or((request_line, ""));
        let (scheme, rest) = target.split_once("://").unwrap_or(("https", target));
        let (authority, path_query) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
        let (path, query) = match path_query.split_once('?') {
            Some((p, q)) => (p, Some(q.to_owned())),
            None => (path_query, None),
        };
        let mut headers = HeaderMap::new();
        for line in header_lines.lines() {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.trim().as_bytes()),
                HeaderValue::from_str(value.trim()),
            ) {
                headers.append(name, value);
            }
        }
        Self {
            method: method.to_owned(),
            scheme: scheme.to_owned(),
            authority: authority.to_owned(),
            path: path.to_owned(),
            query,
            headers,
        }
    }

    /// The request as `httpsig` sees it.
    pub fn message(&self) -> Message<'_> {
        Message {
            method: &self.method,
            scheme: &self.scheme,
            authority: &self.authority,
            path: &self.path,
            query: self.query.as_deref(),
            headers: &self.headers,
        }
    }

    /// Its headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
}

/// A compact JWS over `header` and `payload` (both taken as given, not re-serialized).
///
/// # Panics
/// If signing fails (it does not for these keys).
pub fn jws(header: &[u8], payload: &[u8], key: &InstallationKey) -> String {
    let input = format!("{}.{}", b64::url_encode(header), b64::url_encode(payload));
    let signature = key.sign(input.as_bytes()).expect("sign");
    format!("{input}.{}", b64::url_encode(signature))
}

/// The DPoP protected header for `key`, with its public JWK.
pub fn dpop_header(key: &InstallationKey) -> Vec<u8> {
    serde_json::json!({"typ": "dpop+jwt", "alg": key.jws_alg(), "jwk": key.public_jwk().to_json()})
        .to_string()
        .into_bytes()
}

/// The expectation of the DPoP target: RFC 9449 section 4.1's first proof.
pub const DPOP_METHOD: &str = "POST";
/// See [`DPOP_METHOD`].
pub const DPOP_URL: &str = "https://server.example.com/token";
/// See [`DPOP_METHOD`]; the `iat` of RFC 9449's first proof.
pub const DPOP_NOW: i64 = 1_562_262_616;
/// See [`DPOP_METHOD`].
pub const DPOP_MAX_SKEW: i64 = 60;

/// RFC 7516 A.1's 2048-bit recipient key: fixed, so that seed JWEs made once keep decrypting.
pub static JWE_KEY: LazyLock<RsaPrivateKey> = LazyLock::new(|| {
    let v = json(vectors::RFC7516);
    RsaPrivateKey::from_private_jwk(&v["A1"]["recipient_private_key_jwk"]).expect("RFC 7516 key")
});

/// The content-encryption key of the structured JWE mode.
const JWE_CEK: [u8; 32] = [0x5a; 32];

/// [`JWE_CEK`] encrypted to [`JWE_KEY`] with `RSA-OAEP-256`, once (OAEP is randomized and RSA
/// is the slow part).
static JWE_ENCRYPTED_KEY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let private = PrivateDecryptingKey::from_pkcs8(JWE_KEY.pkcs8().expose()).expect("pkcs8");
    let public = OaepPublicEncryptingKey::new(private.public_key()).expect("oaep key");
    let mut out = vec![0u8; public.ciphertext_size()];
    let len = public
        .encrypt(&OAEP_SHA256_MGF1SHA256, &JWE_CEK, &mut out, None)
        .expect("encrypt cek")
        .len();
    out.truncate(len);
    out
});

/// A compact JWE with the protected header `header` (as given) around `plaintext`, encrypted
/// correctly for [`JWE_KEY`]: whenever Moat accepts the header it must decrypt to `plaintext`.
///
/// # Panics
/// If AES-GCM fails (it does not).
pub fn jwe_for_fixed_key(header: &[u8], plaintext: &[u8]) -> String {
    let h64 = b64::url_encode(header);
    let iv = [7u8; 12];
    let aead = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &JWE_CEK).expect("cek"));
    let mut data = plaintext.to_vec();
    let tag = aead
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(iv),
            Aad::from(h64.as_bytes()),
            &mut data,
        )
        .expect("seal");
    format!(
        "{h64}.{}.{}.{}.{}",
        b64::url_encode(&*JWE_ENCRYPTED_KEY),
        b64::url_encode(iv),
        b64::url_encode(data),
        b64::url_encode(tag.as_ref())
    )
}

/// Play Integrity decryption key (AES-256) of the fuzz targets.
pub const PLAY_DECRYPTION_KEY: [u8; 32] = [0x3c; 32];

/// Play Integrity keys as the Play Console would show them: the fixed AES key, and the
/// RFC 9421 P-256 key's SubjectPublicKeyInfo as the verification key.
pub static PLAY_KEYS: LazyLock<moat_core::play_integrity::Keys> = LazyLock::new(|| {
    let InstallationKey::P256(pair) = &*P256 else {
        unreachable!("P256 is a P-256 key")
    };
    let spki = pair.public_key().as_der().expect("spki");
    moat_core::play_integrity::Keys::from_console(
        &b64::std_encode(PLAY_DECRYPTION_KEY),
        &b64::std_encode(spki.as_ref()),
    )
    .expect("play keys")
});

/// A Play Integrity token (`A256KW` + `A256GCM` JWE around an `ES256` JWS) carrying
/// `payload` as given, made with [`PLAY_KEYS`].
///
/// # Panics
/// If a fixed-key operation fails (it does not).
pub fn play_token(payload: &[u8]) -> String {
    let jws = jws(br#"{"alg":"ES256"}"#, payload, &P256);
    let h64 = b64::url_encode(br#"{"alg":"A256KW","enc":"A256GCM"}"#);
    let cek = [0x11u8; 32];
    let kek = KeyEncryptionKey::new(&AES_256, &PLAY_DECRYPTION_KEY).expect("kek");
    let mut wrapped = [0u8; 40];
    let wrapped = kek.wrap(&cek, &mut wrapped).expect("wrap");
    let iv = [9u8; 12];
    let aead = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &cek).expect("cek"));
    let mut data = jws.into_bytes();
    let tag = aead
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(iv),
            Aad::from(h64.as_bytes()),
            &mut data,
        )
        .expect("seal");
    format!(
        "{h64}.{}.{}.{}.{}",
        b64::url_encode(wrapped),
        b64::url_encode(iv),
        b64::url_encode(data),
        b64::url_encode(tag.as_ref())
    )
}

/// What the Play Integrity target expects a verdict to say.
pub const PLAY_PACKAGE: &str = "com.example.moat";
/// See [`PLAY_PACKAGE`]: the request binding.
pub const PLAY_BINDING: &str = "bW9hdC1mdXp6LWNoYWxsZW5nZQ";

/// The server's token services with fixed secrets, for the `integrity_token` target.
pub mod server {
    use std::sync::LazyLock;

    use jsonwebtoken::EncodingKey;
    use moat_core::b64;
    use moat_server::attest::integrity::IntegrityService;
    use moat_server::config::Config;
    use moat_server::secrets::Secrets;
    use moat_server::state::Keys;
    use moat_server::tokens::TokenService;

    /// The integrity-token secret: fixed, so that seed tokens made once stay valid.
    pub const INTEGRITY_SECRET: &[u8] = b"moat fuzz integrity secret 32 b!";
    /// The issuer (`iss`) of both services.
    pub const ISSUER: &str = "https://moat.example";

    /// Both services, loaded from an in-memory store.
    pub struct Services {
        /// Integrity tokens (HS256).
        pub integrity: IntegrityService,
        /// The integrity secret's `kid`.
        pub integrity_kid: String,
        /// Access tokens (ES256).
        pub tokens: TokenService,
        /// The access-token key's `kid`.
        pub access_kid: String,
        /// The access-token signing key (generated by the store on first load, so random per
        /// process: access-token seeds are claims for the signed mode, not tokens).
        pub access_key: EncodingKey,
    }

    /// Loaded once per process.
    ///
    /// # Panics
    /// If the in-memory store cannot be set up.
    pub static SERVICES: LazyLock<Services> = LazyLock::new(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let opened = rt
            .block_on(moat_store::open(
                "sqlite::memory:",
                &moat_store::PoolOptions::default(),
            ))
            .expect("in-memory store");
        let config = Config::load(None, &Vec::<(String, String)>::new()).expect("default config");
        let secrets = Secrets {
            data_key: b64::url_encode([0x42u8; 32]),
            integrity_secret: b64::url_encode(INTEGRITY_SECRET),
            admin_token: "fuzz-admin".into(),
            static_key: "fuzz-static".into(),
        };
        let keys = Keys::new(&secrets, &config).expect("keys");
        let integrity = IntegrityService::new(ISSUER.into(), 300);
        rt.block_on(integrity.reload(&*opened.attest, &keys, INTEGRITY_SECRET, super::NOW))
            .expect("integrity secrets");
        let integrity_kid = integrity.export()[0].0.clone();
        let tokens = TokenService::new(ISSUER.into(), 900, 86_400);
        rt.block_on(tokens.reload(&*opened.accounts, &keys, super::NOW))
            .expect("access keys");
        let record = rt
            .block_on(opened.accounts.signing_keys())
            .expect("signing keys")
            .into_iter()
            .find(|r| r.retired_at.is_none())
            .expect("current signing key");
        let pkcs8 = keys
            .data
            .open(record.kid.as_bytes(), &record.private_sealed)
            .expect("sealed key opens");
        Services {
            integrity,
            integrity_kid,
            tokens,
            access_kid: record.kid,
            access_key: EncodingKey::from_ec_der(pkcs8.expose()),
        }
    });
}
