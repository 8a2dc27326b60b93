//! `[firebase]`: Firebase identity and Realtime Database delivery (seed 000).

use std::path::PathBuf;

use serde::Deserialize;

use super::errors::Errors;

/// Google's x509 certificates for Firebase ID tokens.
pub const FIREBASE_CERTS_URL: &str =
    "https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com";
/// Default `firebase.mailbox_root`: the node under which each uid's mailbox lives.
const DEFAULT_MAILBOX_ROOT: &str = "moat/mailbox";
/// Longest `firebase.project_id`, characters.
const MAX_PROJECT_ID_LEN: usize = 128;

/// `[firebase]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawFirebase {
    pub project_id: Option<String>,
    pub database_url: Option<String>,
    pub service_account: Option<PathBuf>,
    pub auth_emulator_host: Option<String>,
    pub mailbox_root: Option<String>,
    pub certs_url: Option<String>,
    pub database_emulator: Option<bool>,
}

/// `[firebase]`: Firebase identity and Realtime Database delivery (seed 000).
#[derive(Clone, Debug)]
pub struct FirebaseConfig {
    /// Firebase project id: the `aud` of ID tokens, and part of their `iss`.
    pub project_id: String,
    /// Realtime Database URL (`https://<db>.firebaseio.com`), for `delivery.channel = "firebase"`.
    pub database_url: Option<String>,
    /// Service-account JSON file: the database writes are authorised with OAuth2 access tokens
    /// minted from it.
    pub service_account: Option<PathBuf>,
    /// Set only with the Auth emulator: its unsigned ID tokens are then accepted.
    pub auth_emulator_host: Option<String>,
    /// Node under which each uid's mailbox lives.
    pub mailbox_root: String,
    /// Where the ID-token certificates are fetched (Google's, unless testing).
    pub certs_url: String,
    /// The database is an emulator: write with its owner credential (`Bearer owner`).
    pub database_emulator: bool,
}

/// Whether `url` is plain HTTP to this machine (allowed for emulators and tests only).
fn loopback(url: &str) -> bool {
    [
        "http://127.0.0.1:",
        "http://127.0.0.1/",
        "http://localhost:",
        "http://[::1]:",
    ]
    .iter()
    .any(|p| url.starts_with(p))
}

/// Validates `[firebase]`, which the Firebase identity (`identity_firebase`, from
/// `enrollment.identity`) and delivery (`delivery_firebase`, from `delivery.channel`) need.
pub(crate) fn validate(
    raw: Option<RawFirebase>,
    identity_firebase: bool,
    delivery_firebase: bool,
    errors: &mut Errors,
) -> Option<FirebaseConfig> {
    let Some(f) = raw else {
        if identity_firebase || delivery_firebase {
            errors.push(
                "firebase: the Firebase identity or delivery needs a [firebase] section with project_id",
            );
        }
        return None;
    };
    let project_id = f.project_id.unwrap_or_default();
    if project_id.is_empty()
        || project_id.len() > MAX_PROJECT_ID_LEN
        || !project_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        errors.push("firebase.project_id: required, letters, digits and -");
    }
    let mailbox_root = f
        .mailbox_root
        .unwrap_or_else(|| DEFAULT_MAILBOX_ROOT.into())
        .trim_matches('/')
        .to_owned();
    let segment_ok = |seg: &str| {
        !seg.is_empty()
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    };
    if !mailbox_root.split('/').all(segment_ok) {
        errors.push("firebase.mailbox_root: path segments of letters, digits, _ and -");
    }
    let database_emulator = f.database_emulator.unwrap_or(false);
    if delivery_firebase {
        match &f.database_url {
            Some(url)
                if url.starts_with("https://")
                    || ((database_emulator || loopback(url)) && url.starts_with("http://")) => {}
            Some(_) => errors.push(
                "firebase.database_url: must be https:// (http:// only on loopback or with database_emulator = true)",
            ),
            None => errors.push(
                "firebase.database_url: required with delivery.channel = \"firebase\"",
            ),
        }
        if f.service_account.is_none() && !database_emulator {
            errors.push(
                "firebase.service_account: required with delivery.channel = \"firebase\" (or database_emulator = true)",
            );
        }
        if !identity_firebase {
            errors.push(
                "delivery.channel: firebase delivers to Firebase uids; add \"firebase\" to enrollment.identity",
            );
        }
    }
    let certs_url = f.certs_url.unwrap_or_else(|| FIREBASE_CERTS_URL.into());
    if !(certs_url.starts_with("https://") || certs_url.starts_with("http://127.0.0.1")) {
        errors.push("firebase.certs_url: must be https:// (or loopback http for tests)");
    }
    Some(FirebaseConfig {
        project_id,
        database_url: f.database_url.map(|u| u.trim_end_matches('/').to_owned()),
        service_account: f.service_account,
        auth_emulator_host: f.auth_emulator_host,
        mailbox_root,
        certs_url,
        database_emulator,
    })
}
