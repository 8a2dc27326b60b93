//! The mailbox: sealed items in the store read by installations (`GET /v1/mailbox`), or
//! items written to the uid's node of the Realtime Database for Firebase identities; and
//! issuing a credential together with its item, all or nothing.

use std::sync::Arc;

use moat_core::clock::rfc3339;
use moat_core::random;
use moat_store::{Channel, Device, NewCredential, NewMailboxItem, StoreError};
use serde_json::Value;
use uuid::Uuid;

use crate::error::Error;
use crate::firebase::rtdb::Rtdb;
use crate::identify::{Proof, Who};
use crate::service::{Enrollment, KeyRing};

/// Most mailbox items returned by one read.
pub const MAILBOX_READ_LIMIT: u32 = 16;

/// An item written to the Realtime Database, with its index row.
pub(crate) struct Sent<'a> {
    rtdb: &'a Rtdb,
    uid: String,
    id: String,
}

/// Builds a sealed mailbox item. The sealed payload is bound to the item id.
fn mailbox_item(
    keys: &dyn KeyRing,
    mailbox_ttl: i64,
    identity: &str,
    payload: &Value,
    now: i64,
) -> Result<NewMailboxItem, Error> {
    let id = format!("mb_{}", random::token(16)?);
    let sealed = keys
        .data()
        .seal(id.as_bytes(), payload.to_string().as_bytes())?;
    Ok(NewMailboxItem {
        id,
        identity: identity.to_owned(),
        payload_sealed: sealed,
        expires_at: now + mailbox_ttl,
        channel: Channel::Builtin,
    })
}

/// A store refusal of an issue: a conflict means the device was revoked meanwhile.
fn issued(result: Result<Device, StoreError>) -> Result<Device, Error> {
    result.map_err(|e| match e {
        StoreError::Conflict(_) => Error::Revoked,
        other => other.into(),
    })
}

impl Enrollment {
    /// The Realtime Database mailbox of `who`, if its items go there.
    pub(crate) fn remote(&self, who: &Who) -> Option<(&Rtdb, String)> {
        match who {
            Who::Firebase(uid) => self
                .firebase
                .as_ref()
                .and_then(|f| f.rtdb.as_ref())
                .map(|r| (r, uid.to_string())),
            Who::Installation(_) => None,
        }
    }

    /// `builtin` or `firebase`: where `who` reads its mailbox.
    pub(crate) fn channel_name(&self, who: &Who) -> &'static str {
        if self.remote(who).is_some() {
            "firebase"
        } else {
            "builtin"
        }
    }

    /// A sealed item of the built-in mailbox.
    pub(crate) fn builtin_item(
        &self,
        identity: &str,
        payload: &Value,
        now: i64,
    ) -> Result<NewMailboxItem, Error> {
        mailbox_item(
            &*self.keys,
            self.settings.mailbox_ttl,
            identity,
            payload,
            now,
        )
    }

    /// A mailbox builder for `issue_credential`: the payload is made once the device row
    /// exists, so it names the device id the store actually wrote.
    fn builder(
        &self,
        identity: &str,
        now: i64,
        payload: impl FnOnce(&Device) -> Value + Send + 'static,
    ) -> moat_store::MailboxBuilder {
        let keys: Arc<dyn KeyRing> = self.keys.clone();
        let (ttl, identity) = (self.settings.mailbox_ttl, identity.to_owned());
        Box::new(move |device: &Device| {
            mailbox_item(&*keys, ttl, &identity, &payload(device), now)
                .map_err(|e| StoreError::Backend(format!("sealing mailbox item: {e}").into()))
        })
    }

    /// Writes `payload` to the uid's Realtime Database mailbox. Its index row is stored
    /// first, so the cleanup job can always find (and delete) what was written; if the write
    /// fails, the item is deleted again where it may have landed, and the enrollment fails
    /// ([`Error::Unavailable`]).
    pub(crate) async fn send_remote<'a>(
        &self,
        rtdb: &'a Rtdb,
        uid: String,
        identity: &str,
        mut payload: Value,
        now: i64,
    ) -> Result<Sent<'a>, Error> {
        let id = format!("mb_{}", random::token(16)?);
        let expires_at = now + self.settings.mailbox_ttl;
        payload["id"] = id.clone().into();
        payload["created_at"] = rfc3339(now).into();
        if payload.get("expires_at").is_none() {
            payload["expires_at"] = rfc3339(expires_at).into();
        }
        self.store
            .put_mailbox_item(
                NewMailboxItem {
                    id: id.clone(),
                    identity: identity.to_owned(),
                    payload_sealed: Vec::new(),
                    expires_at,
                    channel: Channel::Firebase,
                },
                now,
            )
            .await?;
        let sent = Sent { rtdb, uid, id };
        if let Err(e) = rtdb.put(&sent.uid, &sent.id, &payload, now).await {
            tracing::warn!(error = %e, "mailbox delivery to the Realtime Database failed");
            self.retract(&sent, now).await;
            return Err(Error::Unavailable);
        }
        Ok(sent)
    }

    /// Deletes a delivered item whose enrollment did not complete. If the database cannot be
    /// reached now, the index row stays and the cleanup job deletes the item when it expires
    /// (its credential was never stored, so it opens nothing meanwhile).
    pub(crate) async fn retract(&self, sent: &Sent<'_>, now: i64) {
        match sent.rtdb.delete(&sent.uid, &sent.id, now).await {
            Ok(()) => {
                if let Err(e) = self.store.remove_mailbox_item(&sent.id).await {
                    tracing::warn!(error = %e, "cannot remove a mailbox index row; cleanup will");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, item = %sent.id, "cannot retract a delivered item; cleanup will delete it at expiry")
            }
        }
    }

    /// Issues `cred` and delivers `payload(device id)` to `who`'s mailbox, all or nothing:
    /// built in, the device row and the item are one transaction; through Firebase, the item
    /// is written first and retracted if the device row then cannot be written.
    pub(crate) async fn issue(
        &self,
        who: &Who,
        cred: NewCredential,
        existing: Option<Device>,
        payload: impl FnOnce(Uuid) -> Value + Send + 'static,
        now: i64,
    ) -> Result<Device, Error> {
        let identity = cred.identity.clone();
        let Some((rtdb, uid)) = self.remote(who) else {
            let build = self.builder(&identity, now, move |device| payload(device.id));
            return issued(self.store.issue_credential(cred, Some(build), now).await);
        };
        // The device keeps its id on re-enrollment, so the item can name it before the row is
        // written.
        let id = existing.map_or(cred.id, |d| d.id);
        let sent = self
            .send_remote(rtdb, uid, &identity, payload(id), now)
            .await?;
        match self.store.issue_credential(cred, None, now).await {
            Ok(device) if device.id == id => Ok(device),
            Ok(_) => {
                self.retract(&sent, now).await;
                Err(Error::Concurrent)
            }
            Err(e) => {
                self.retract(&sent, now).await;
                issued(Err(e))
            }
        }
    }

    /// Reads the built-in mailbox of the installation proving itself with `proof`: its items,
    /// oldest first, each returned once.
    ///
    /// # Errors
    /// As [`Enrollment::installation_identity`]; the store's; [`Error::Core`] if an item
    /// does not open.
    pub async fn read_mailbox(&self, proof: Proof<'_>, now: i64) -> Result<Vec<Value>, Error> {
        let proof = self.installation_identity(proof, now).await?;
        let taken = self
            .store
            .take_mailbox(&proof.identity(), now, MAILBOX_READ_LIMIT)
            .await?;
        let mut items = Vec::with_capacity(taken.len());
        for item in taken {
            let plain = self
                .keys
                .data()
                .open(item.id.as_bytes(), &item.payload_sealed)?;
            let mut value: Value = serde_json::from_slice(plain.expose())
                .map_err(|e| Error::Internal(e.to_string()))?;
            value["id"] = item.id.into();
            value["created_at"] = rfc3339(item.created_at).into();
            value["expires_at"] = value
                .get("expires_at")
                .cloned()
                .unwrap_or_else(|| rfc3339(item.expires_at).into());
            items.push(value);
        }
        Ok(items)
    }
}
