//! `[sms]`, `[sms.twilio]` and `[sms.webhook]`: the SMS sender, the message and the pumping
//! budgets.

use serde::Deserialize;

use super::errors::{Errors, is_reference};
use moat_accounts::sms::guard::Limits;

/// Default `sms.app_name`, the name in the message text.
const DEFAULT_APP_NAME: &str = "Moat";
/// Default `sms.code_ttl`, seconds.
const DEFAULT_CODE_TTL: i64 = 600;
/// Default `sms.cost_per_sms`, in `sms.currency`.
const DEFAULT_COST_PER_SMS: f64 = 0.05;
/// Accepted `sms.cost_per_sms`.
const COST_RANGE: std::ops::RangeInclusive<f64> = 0.0..=100.0;
/// Default `sms.currency`.
const DEFAULT_CURRENCY: &str = "USD";
/// Default `sms.twilio.base_url`.
const DEFAULT_TWILIO_BASE_URL: &str = "https://api.twilio.com";

/// `[sms]` as written. No `Debug`: its sender tables may hold secrets by mistake.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawSms {
    pub sender: Option<String>,
    pub app_name: Option<String>,
    pub code_ttl: Option<i64>,
    pub cooldown: Option<u64>,
    pub per_phone_hour: Option<u32>,
    pub per_device_hour: Option<u32>,
    pub per_ip_hour: Option<u32>,
    pub per_country_hour: Option<u32>,
    pub global_hour: Option<u32>,
    pub allowed_countries: Option<Vec<String>>,
    pub cost_per_sms: Option<f64>,
    pub currency: Option<String>,
    #[serde(default)]
    pub twilio: RawTwilio,
    #[serde(default)]
    pub webhook: RawWebhook,
}

/// `[sms.twilio]` as written. No `Debug`: `auth_token` may be the token by mistake.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawTwilio {
    pub account_sid: Option<String>,
    pub auth_token: Option<String>,
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
    pub status_callback: Option<String>,
    pub base_url: Option<String>,
}

/// `[sms.webhook]` as written. No `Debug`: `secret` may be the secret by mistake.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawWebhook {
    pub url: Option<String>,
    pub secret: Option<String>,
}

/// The SMS sender and its settings.
#[non_exhaustive]
#[derive(Clone)]
pub enum SmsSenderConfig {
    /// Kept in the store (development).
    Outbox,
    /// Twilio's Messages API.
    Twilio {
        /// API base URL.
        base_url: String,
        /// Account SID.
        account_sid: String,
        /// Secret reference of the auth token (`env:`/`file:`).
        auth_token: String,
        /// Sender number.
        from: Option<String>,
        /// Messaging service.
        messaging_service_sid: Option<String>,
        /// Delivery status callback URL.
        status_callback: Option<String>,
    },
    /// Signed JSON POST.
    Webhook {
        /// Receiver URL.
        url: String,
        /// Secret reference of the signing secret.
        secret: String,
    },
}

/// By hand, so that the secret references are not shown: they are checked to be references,
/// but a log line need not even name where the secret is kept.
impl std::fmt::Debug for SmsSenderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Outbox => f.write_str("Outbox"),
            Self::Twilio {
                base_url,
                account_sid,
                auth_token: _,
                from,
                messaging_service_sid,
                status_callback,
            } => f
                .debug_struct("Twilio")
                .field("base_url", base_url)
                .field("account_sid", account_sid)
                .field("auth_token", &"<redacted>")
                .field("from", from)
                .field("messaging_service_sid", messaging_service_sid)
                .field("status_callback", status_callback)
                .finish(),
            Self::Webhook { url, secret: _ } => f
                .debug_struct("Webhook")
                .field("url", url)
                .field("secret", &"<redacted>")
                .finish(),
        }
    }
}

/// SMS settings.
#[derive(Clone, Debug)]
pub struct SmsConfig {
    /// Sender.
    pub sender: SmsSenderConfig,
    /// Name in the message text.
    pub app_name: String,
    /// Code lifetime, seconds.
    pub code_ttl: i64,
    /// Pumping budgets.
    pub limits: Limits,
    /// Estimated cost of one SMS (for reporting).
    pub cost_per_sms: f64,
    /// ISO 4217 currency of `cost_per_sms`.
    pub currency: String,
}

/// Validates `[sms]`.
pub(crate) fn validate(raw: RawSms, errors: &mut Errors) -> SmsConfig {
    let sender = sender(&raw, errors);
    for reference in [
        raw.twilio.auth_token.as_deref(),
        raw.webhook.secret.as_deref(),
    ]
    .into_iter()
    .flatten()
    {
        if !is_reference(reference) {
            errors.push("sms: secrets must be references (env:NAME or file:PATH), not values");
        }
    }
    let defaults = Limits::default();
    let limits = Limits {
        cooldown: raw.cooldown.unwrap_or(defaults.cooldown),
        per_phone_hour: raw.per_phone_hour.unwrap_or(defaults.per_phone_hour),
        per_device_hour: raw.per_device_hour.unwrap_or(defaults.per_device_hour),
        per_ip_hour: raw.per_ip_hour.unwrap_or(defaults.per_ip_hour),
        per_country_hour: raw.per_country_hour.unwrap_or(defaults.per_country_hour),
        global_hour: raw.global_hour.unwrap_or(defaults.global_hour),
        allowed_countries: raw.allowed_countries.unwrap_or_default(),
    };
    for code in &limits.allowed_countries {
        // ISO 3166 alpha-2, as phone numbers are attributed: `USA` or `us` would refuse
        // every number of the country meant.
        if code.len() != 2
            || !code.bytes().all(|b| b.is_ascii_uppercase())
            || phonenumber::metadata::DATABASE
                .by_id(code.as_str())
                .is_none()
        {
            errors.push(format!(
                "sms.allowed_countries: `{code}` is not an ISO 3166 two-letter country code (like \"US\", \"GB\")"
            ));
        }
    }
    for (name, v) in [
        ("per_phone_hour", limits.per_phone_hour),
        ("per_device_hour", limits.per_device_hour),
        ("per_ip_hour", limits.per_ip_hour),
        ("per_country_hour", limits.per_country_hour),
        ("global_hour", limits.global_hour),
    ] {
        if v == 0 {
            errors.push(format!("sms.{name}: must be positive"));
        }
    }
    let currency = raw.currency.unwrap_or_else(|| DEFAULT_CURRENCY.into());
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        errors.push("sms.currency: must be an ISO 4217 code such as USD");
    }
    if raw.cost_per_sms.is_some_and(|c| !COST_RANGE.contains(&c)) {
        errors.push("sms.cost_per_sms: must be between 0 and 100");
    }
    SmsConfig {
        sender,
        app_name: raw.app_name.unwrap_or_else(|| DEFAULT_APP_NAME.into()),
        code_ttl: errors.positive(raw.code_ttl, DEFAULT_CODE_TTL, "sms.code_ttl"),
        limits,
        cost_per_sms: raw.cost_per_sms.unwrap_or(DEFAULT_COST_PER_SMS),
        currency,
    }
}

/// `sms.sender` and the table of the sender it names. An incomplete sender is reported and
/// stands as the outbox, so that the rest of the file is still checked.
fn sender(raw: &RawSms, errors: &mut Errors) -> SmsSenderConfig {
    let (twilio, webhook) = (&raw.twilio, &raw.webhook);
    match raw.sender.as_deref() {
        None | Some("outbox") => SmsSenderConfig::Outbox,
        Some("twilio") => {
            if twilio.from.is_none() && twilio.messaging_service_sid.is_none() {
                errors.push("sms.twilio: set `from` or `messaging_service_sid`");
            }
            let (Some(sid), Some(token)) = (twilio.account_sid.clone(), twilio.auth_token.clone())
            else {
                errors.push(
                    "sms.twilio: account_sid and auth_token (env:NAME or file:PATH) are required",
                );
                return SmsSenderConfig::Outbox;
            };
            SmsSenderConfig::Twilio {
                base_url: twilio
                    .base_url
                    .clone()
                    .unwrap_or_else(|| DEFAULT_TWILIO_BASE_URL.into()),
                account_sid: sid,
                auth_token: token,
                from: twilio.from.clone(),
                messaging_service_sid: twilio.messaging_service_sid.clone(),
                status_callback: twilio.status_callback.clone(),
            }
        }
        Some("webhook") => match (webhook.url.clone(), webhook.secret.clone()) {
            (Some(url), Some(secret)) => SmsSenderConfig::Webhook { url, secret },
            _ => {
                errors.push("sms.webhook: url and secret (env:NAME or file:PATH) are required");
                SmsSenderConfig::Outbox
            }
        },
        Some(other) => {
            errors.push(format!(
                "sms.sender: `{other}` is not outbox, twilio or webhook"
            ));
            SmsSenderConfig::Outbox
        }
    }
}
