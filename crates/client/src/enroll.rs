//! Enrollment: the DPoP-proved identity calls, the mailbox, and the whole flow that ends with
//! a stored credential.

use std::time::Duration;

use http::Method;
use serde_json::Value;

use crate::client::Client;
use crate::credential::Credential;
use crate::error::{Error, Result};

/// The code of an `enrollment_otp` mailbox item (`None` for any other kind).
pub(crate) fn otp_code(item: &Value) -> Result<Option<String>> {
    if item["kind"] != "enrollment_otp" {
        return Ok(None);
    }
    item["code"]
        .as_str()
        .map(|c| Some(c.to_owned()))
        .ok_or_else(|| Error::Mailbox("otp item has no code".into()))
}

impl Client {
    async fn identity_post(&self, path: &str, body: &Value) -> Result<Value> {
        let proof = self.dpop(&Method::POST, path)?;
        let r = Self::read(
            self.http
                .post(self.url(path)?)
                .header("dpop", proof)
                .json(body)
                .send()
                .await?,
        )
        .await?;
        if r.status != 200 {
            return Err(Self::problem(&r));
        }
        r.json()
    }

    /// `POST /v1/enroll`.
    ///
    /// # Errors
    /// [`Error::Problem`] when refused.
    pub async fn enroll(&mut self, device_id: &str, platform: Option<&str>) -> Result<Value> {
        let mut body = serde_json::json!({"device_id": device_id});
        if let Some(p) = platform {
            body["platform"] = p.into();
        }
        let out = self.identity_post("/v1/enroll", &body).await?;
        self.device_id = Some(device_id.to_owned());
        Ok(out)
    }

    /// `POST /v1/enroll/confirm`.
    ///
    /// # Errors
    /// [`Error::Problem`] when refused.
    pub async fn confirm(&self, device_id: &str, otp: &str) -> Result<Value> {
        self.identity_post(
            "/v1/enroll/confirm",
            &serde_json::json!({"device_id": device_id, "otp": otp}),
        )
        .await
    }

    /// `GET /v1/mailbox`: the items waiting for this identity (each returned once).
    ///
    /// # Errors
    /// [`Error::Problem`] when refused.
    pub async fn mailbox(&self) -> Result<Vec<Value>> {
        let proof = self.dpop(&Method::GET, "/v1/mailbox")?;
        let r = Self::read(
            self.http
                .get(self.url("/v1/mailbox")?)
                .header("dpop", proof)
                .send()
                .await?,
        )
        .await?;
        if r.status != 200 {
            return Err(Self::problem(&r));
        }
        Ok(r.json()?
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    async fn wait_for(&self, kind: &str) -> Result<Value> {
        // The built-in mailbox is written before enroll answers; polling covers delivery
        // channels that are asynchronous.
        for attempt in 0..20u64 {
            if let Some(item) = self
                .mailbox()
                .await?
                .into_iter()
                .rev()
                .find(|i| i["kind"] == kind)
            {
                return Ok(item);
            }
            tokio::time::sleep(Duration::from_millis(50 * (attempt + 1))).await;
        }
        Err(Error::Mailbox(format!("no `{kind}` item arrived")))
    }

    /// The whole enrollment: enroll, read the mailbox, confirm the code if the server is in
    /// `otp` mode, read the credential. Stores and returns it.
    ///
    /// # Errors
    /// [`Error::Problem`] when a step is refused, [`Error::Mailbox`] if nothing arrives.
    pub async fn enroll_and_fetch(
        &mut self,
        device_id: &str,
        platform: Option<&str>,
    ) -> Result<Credential> {
        self.enroll(device_id, platform).await?;
        let mut item = None;
        for attempt in 0..20u64 {
            item = self
                .mailbox()
                .await?
                .into_iter()
                .rev()
                .find(|i| i["kind"] == "api_key" || i["kind"] == "enrollment_otp");
            if item.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50 * (attempt + 1))).await;
        }
        let item = item.ok_or_else(|| Error::Mailbox("no enrollment item arrived".into()))?;
        let item = match otp_code(&item)? {
            Some(code) => {
                self.confirm(device_id, &code).await?;
                self.wait_for("client_credential").await?
            }
            None => item,
        };
        self.adopt(item)
    }

    /// Stores the credential a mailbox item carries, and returns it.
    pub(crate) fn adopt(&mut self, item: Value) -> Result<Credential> {
        let credential: Credential = serde_json::from_value(item)
            .map_err(|e| Error::Mailbox(format!("unexpected item: {e}")))?;
        self.set_credential(Some(credential.clone()))?;
        Ok(credential)
    }
}
