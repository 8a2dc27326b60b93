//! `[delivery]`: where credentials of enrolled devices are delivered.

use serde::Deserialize;

use super::errors::Errors;

/// `[delivery]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawDelivery {
    pub channel: Option<String>,
}

/// Validates `[delivery]`: whether credentials go to the Realtime Database. A Firebase
/// identity (`identity_firebase`) reads its mailbox only there.
pub(crate) fn validate(raw: RawDelivery, identity_firebase: bool, errors: &mut Errors) -> bool {
    let firebase = match raw.channel.as_deref() {
        None | Some("builtin") => false,
        Some("firebase") => true,
        Some(other) => {
            errors.push(format!(
                "delivery.channel: `{other}` is not builtin or firebase"
            ));
            false
        }
    };
    if identity_firebase && !firebase {
        errors.push(
            "enrollment.identity: a Firebase identity reads its mailbox in the Realtime Database; set delivery.channel = \"firebase\"",
        );
    }
    firebase
}
