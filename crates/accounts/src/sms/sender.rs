//! SMS senders: `outbox` (development: kept in the store), `twilio` (Twilio's Messages REST
//! API), `webhook` (a signed JSON POST to the operator's own service).

use std::time::Duration;

use async_trait::async_trait;
use aws_lc_rs::hmac;
use moat_core::secret::SecretBytes;

/// One message to deliver.
#[derive(Debug)]
pub struct Outgoing<'a> {
    /// Message id (idempotency key for the receiver).
    pub id: &'a str,
    /// E.164 phone.
    pub to: &'a str,
    /// Text.
    pub body: &'a str,
    /// Why it is sent.
    pub purpose: &'a str,
    /// Creation, Unix seconds.
    pub created_at: i64,
}

/// Why a send failed.
#[derive(Debug)]
pub struct SendError {
    /// Worth trying again (timeouts, 429, 5xx).
    pub retryable: bool,
    /// What happened, safe to store and show the operator (no secret).
    pub detail: String,
}

/// A way to deliver SMS.
#[async_trait]
pub trait SmsSender: Send + Sync + 'static {
    /// The configuration name.
    fn name(&self) -> &'static str;
    /// Delivers one message; returns the provider's message id.
    async fn send(&self, message: &Outgoing<'_>) -> Result<Option<String>, SendError>;
}

/// Keeps messages in the store (readable with `GET /admin/v1/sms/outbox`).
pub struct Outbox;

#[async_trait]
impl SmsSender for Outbox {
    fn name(&self) -> &'static str {
        "outbox"
    }

    async fn send(&self, _message: &Outgoing<'_>) -> Result<Option<String>, SendError> {
        Ok(None)
    }
}

fn transport(e: reqwest::Error) -> SendError {
    // reqwest errors can carry the URL; ours never holds a secret (Twilio's credentials go in
    // the Authorization header), but keep the text short anyway.
    SendError {
        retryable: true,
        detail: format!("transport: {}", e.without_url()),
    }
}

fn by_status(status: reqwest::StatusCode, body: &str) -> SendError {
    let retryable = status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
    let snippet: String = body.chars().take(200).collect();
    SendError {
        retryable,
        detail: format!("HTTP {}: {snippet}", status.as_u16()),
    }
}

/// Twilio's Messages API: `POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json` with a
/// form body (`To`, `From` or `MessagingServiceSid`, `Body`, optional `StatusCallback`) and
/// HTTP basic auth (Account SID, Auth Token).
pub struct Twilio {
    /// API base, `https://api.twilio.com` (a loopback server in tests).
    pub base_url: String,
    /// Account SID.
    pub account_sid: String,
    /// Auth token.
    pub auth_token: SecretBytes,
    /// Sender number.
    pub from: Option<String>,
    /// Or a messaging service.
    pub messaging_service_sid: Option<String>,
    /// Where Twilio reports delivery status.
    pub status_callback: Option<String>,
    /// HTTP client (with timeouts).
    pub http: reqwest::Client,
}

#[async_trait]
impl SmsSender for Twilio {
    fn name(&self) -> &'static str {
        "twilio"
    }

    async fn send(&self, m: &Outgoing<'_>) -> Result<Option<String>, SendError> {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.base_url.trim_end_matches('/'),
            self.account_sid
        );
        let mut form: Vec<(&str, &str)> = vec![("To", m.to), ("Body", m.body)];
        if let Some(from) = &self.from {
            form.push(("From", from));
        }
        if let Some(service) = &self.messaging_service_sid {
            form.push(("MessagingServiceSid", service));
        }
        if let Some(cb) = &self.status_callback {
            form.push(("StatusCallback", cb));
        }
        let token = std::str::from_utf8(self.auth_token.expose()).unwrap_or_default();
        let response = self
            .http
            .post(url)
            .basic_auth(&self.account_sid, Some(token))
            .form(&form)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let body = response.text().await.map_err(transport)?;
        if !status.is_success() {
            return Err(by_status(status, &body));
        }
        let sid = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("sid").and_then(|s| s.as_str()).map(str::to_owned));
        Ok(sid)
    }
}

/// A JSON POST `{"id","to","body","purpose","created_at"}` to the operator's URL, with
/// `Moat-Webhook-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` so the
/// receiver can check it came from Moat and is fresh.
pub struct Webhook {
    /// Receiver URL.
    pub url: String,
    /// Shared secret.
    pub secret: SecretBytes,
    /// HTTP client.
    pub http: reqwest::Client,
}

/// The webhook signature header value for `body` at `timestamp`.
pub fn webhook_signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

#[async_trait]
impl SmsSender for Webhook {
    fn name(&self) -> &'static str {
        "webhook"
    }

    async fn send(&self, m: &Outgoing<'_>) -> Result<Option<String>, SendError> {
        let body = serde_json::json!({
            "id": m.id, "to": m.to, "body": m.body, "purpose": m.purpose, "created_at": moat_core::clock::rfc3339(m.created_at),
        })
        .to_string();
        let now = moat_core::clock::Clock::now(&moat_core::clock::SystemClock);
        let response = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header(
                "moat-webhook-signature",
                webhook_signature(self.secret.expose(), now, body.as_bytes()),
            )
            .body(body)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(by_status(status, &text));
        }
        Ok(Some(m.id.to_owned()))
    }
}

/// HTTP client for senders: bounded connect and total timeouts.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
}
