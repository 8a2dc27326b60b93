//! `[enrollment]`: how devices enroll, which identities they may have, and its limits.

use serde::Deserialize;

use super::errors::Errors;

/// Default lifetime of mailbox items and enrollment codes, seconds.
pub const DEFAULT_MAILBOX_TTL: i64 = 600;
/// Enrollments one client IP may make per hour. High enough for a carrier-grade NAT's
/// installs at a busy hour (enrollment happens once per install), low enough that one host
/// cannot mint the thousands of devices (each with a fresh per-device SMS budget) a pumping
/// run wants.
pub const DEFAULT_ENROLL_PER_IP_HOUR: i64 = 120;
/// Default number of pre-generated RSA keys.
pub const DEFAULT_RSA_POOL: usize = 32;
/// Largest `enrollment.rsa_pool_size`: a larger value is lowered to it.
const MAX_RSA_POOL: usize = 4096;
/// Default `enrollment.mode`.
const DEFAULT_MODE: &str = "dynamic";
/// Default `enrollment.otp_max_attempts`: wrong codes before the enrollment locks.
const DEFAULT_OTP_MAX_ATTEMPTS: i64 = 5;
/// Shortest `enrollment.static_key` accepted, characters.
const MIN_STATIC_KEY_LEN: usize = 32;

/// Enrollment mode (seed 000 sections 3.1-3.3): the enrollment service's own type.
pub use moat_enroll::Mode;

/// `[enrollment]` as written. No `Debug`: it holds the static key.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawEnrollment {
    pub mode: Option<String>,
    pub static_key: Option<String>,
    pub identity: Option<Vec<String>>,
    pub otp_ttl: Option<i64>,
    pub mailbox_ttl: Option<i64>,
    pub otp_max_attempts: Option<i64>,
    pub rsa_pool_size: Option<usize>,
    pub per_ip_hour: Option<i64>,
}

/// `[enrollment]` validated; its fields are `Config`'s of the same names. No `Debug`: it
/// holds the static key.
pub(crate) struct Enrollment {
    pub(crate) mode: Mode,
    pub(crate) static_key: Option<String>,
    pub(crate) identity_installation: bool,
    pub(crate) identity_firebase: bool,
    pub(crate) otp_ttl: i64,
    pub(crate) mailbox_ttl: i64,
    pub(crate) otp_max_attempts: i64,
    pub(crate) per_ip_hour: u32,
    pub(crate) rsa_pool_size: usize,
}

/// Validates `[enrollment]`.
pub(crate) fn validate(raw: RawEnrollment, errors: &mut Errors) -> Enrollment {
    let mut identity_installation = raw.identity.is_none();
    let mut identity_firebase = false;
    for id in raw.identity.as_deref().unwrap_or(&[]) {
        match id.as_str() {
            "installation" => identity_installation = true,
            "firebase" => identity_firebase = true,
            other => errors.push(format!(
                "enrollment.identity: `{other}` is not installation or firebase"
            )),
        }
    }
    if !identity_installation && !identity_firebase {
        errors.push("enrollment.identity: enable installation, firebase or both");
    }
    let mode = match raw.mode.as_deref().unwrap_or(DEFAULT_MODE) {
        "static" => Mode::Static,
        "dynamic" => Mode::Dynamic,
        "otp" => Mode::Otp,
        other => {
            errors.push(format!(
                "enrollment.mode: `{other}` is not static, dynamic or otp"
            ));
            Mode::Dynamic
        }
    };
    if let Some(key) = &raw.static_key
        && key.len() < MIN_STATIC_KEY_LEN
    {
        errors.push("enrollment.static_key: must be at least 32 characters");
    }
    let otp_ttl = errors.positive(raw.otp_ttl, DEFAULT_MAILBOX_TTL, "enrollment.otp_ttl");
    let mailbox_ttl = errors.positive(
        raw.mailbox_ttl,
        DEFAULT_MAILBOX_TTL,
        "enrollment.mailbox_ttl",
    );
    let otp_max_attempts = errors.positive(
        raw.otp_max_attempts,
        DEFAULT_OTP_MAX_ATTEMPTS,
        "enrollment.otp_max_attempts",
    );
    let per_ip_hour = u32::try_from(errors.positive(
        raw.per_ip_hour,
        DEFAULT_ENROLL_PER_IP_HOUR,
        "enrollment.per_ip_hour",
    ))
    .unwrap_or(u32::MAX);
    Enrollment {
        mode,
        static_key: raw.static_key,
        identity_installation,
        identity_firebase,
        otp_ttl,
        mailbox_ttl,
        otp_max_attempts,
        per_ip_hour,
        rsa_pool_size: raw
            .rsa_pool_size
            .unwrap_or(DEFAULT_RSA_POOL)
            .clamp(1, MAX_RSA_POOL),
    }
}
