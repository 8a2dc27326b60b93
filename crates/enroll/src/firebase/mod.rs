//! Seed 000 exactly as written: Firebase as the identity (ID tokens, `fb:<uid>`) and the
//! Realtime Database as the mailbox only that uid can read.

pub mod idtoken;
pub mod rtdb;

use std::path::PathBuf;

use serde_json::{Value, json};

/// `[firebase]` settings, as plain values.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Firebase project id: the `aud` of ID tokens, and part of their `iss`.
    pub project_id: String,
    /// Realtime Database URL, for delivery through Firebase.
    pub database_url: Option<String>,
    /// Service-account JSON file authorising the database writes; without it, writes use the
    /// database emulator's owner credential.
    pub service_account: Option<PathBuf>,
    /// Set only with the Auth emulator: its unsigned ID tokens are then accepted.
    pub auth_emulator_host: Option<String>,
    /// Node under which each uid's mailbox lives.
    pub mailbox_root: String,
    /// Where the ID-token certificates are fetched.
    pub certs_url: String,
}

/// The Firebase side of a server.
pub struct Firebase {
    /// ID-token verification.
    pub tokens: idtoken::IdTokens,
    /// Realtime Database delivery, when `delivery.channel = "firebase"`.
    pub rtdb: Option<rtdb::Rtdb>,
}

impl Firebase {
    /// Sets up from configuration (reads the service-account file).
    ///
    /// # Errors
    /// A message naming the problem.
    pub fn new(config: &Settings, deliver: bool) -> Result<Self, String> {
        let emulator = config.auth_emulator_host.is_some();
        if emulator {
            tracing::warn!(
                host = config.auth_emulator_host.as_deref().unwrap_or_default(),
                "FIREBASE AUTH EMULATOR MODE: unsigned ID tokens are accepted. Anyone can \
                 mint one: never set firebase.auth_emulator_host in production"
            );
        }
        let rtdb = if deliver {
            let url = config
                .database_url
                .as_deref()
                .ok_or("firebase.database_url is required")?;
            let authority = match &config.service_account {
                Some(path) => rtdb::Authority::ServiceAccount(rtdb::ServiceAccount::load(path)?),
                None => {
                    tracing::warn!(
                        "Realtime Database emulator mode: writing with the emulator's owner credential"
                    );
                    rtdb::Authority::EmulatorOwner
                }
            };
            Some(rtdb::Rtdb::new(url, &config.mailbox_root, authority))
        } else {
            None
        };
        Ok(Self {
            tokens: idtoken::IdTokens::new(&config.project_id, &config.certs_url, emulator),
            rtdb,
        })
    }
}

/// `database.rules.json` for a mailbox under `root` (`moat/mailbox`): each signed-in user may
/// read its own node `<root>/<uid>` (and what is under it), nobody else may read it, and no
/// client may write anywhere: only the server, whose service-account access bypasses rules,
/// writes. Everything else in the database is closed too; merge these rules into an existing
/// rules file if the app uses the database for other things.
pub fn rules(root: &str) -> Value {
    let mut node = json!({
        "$uid": {
            ".read": "auth != null && auth.uid === $uid",
            ".write": false
        }
    });
    for segment in root.split('/').filter(|s| !s.is_empty()).rev() {
        node = json!({ segment: node });
    }
    let mut top = json!({ ".read": false, ".write": false });
    if let (Some(top_map), Some(node_map)) = (top.as_object_mut(), node.as_object()) {
        for (k, v) in node_map {
            top_map.insert(k.clone(), v.clone());
        }
    }
    json!({ "rules": top })
}

#[cfg(test)]
mod tests {
    #[test]
    fn rules_nest_the_root_path() {
        let r = super::rules("moat/mailbox");
        assert_eq!(r["rules"][".write"], false);
        assert_eq!(r["rules"][".read"], false);
        assert_eq!(
            r["rules"]["moat"]["mailbox"]["$uid"][".read"],
            "auth != null && auth.uid === $uid"
        );
        assert_eq!(r["rules"]["moat"]["mailbox"]["$uid"][".write"], false);
    }
}
