//! Writing mailbox items to the Firebase Realtime Database through its REST API, and the
//! Google service-account credentials that authorise the writes.
//!
//! Each item is one `PUT <database_url>/<mailbox_root>/<uid>/<item id>.json`, removed with a
//! `DELETE` of the same path by the cleanup job. Requests carry `Authorization: Bearer <token>`:
//! an OAuth2 access token minted from the service account with the JWT-bearer grant (RFC 7523;
//! scopes `firebase.database` and `userinfo.email`, as Google documents for the REST API) and
//! cached until a minute before it expires, or the emulator's `owner` credential. Tokens never
//! go in the URL.
//!
//! Transient failures (connection errors, timeouts, 5xx, 429) are retried with backoff, three
//! attempts within about a second; anything else fails at once. A failure is reported to the
//! caller, which fails the enrollment (503) and leaves nothing behind.

use std::path::Path;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Mutex;

/// Scopes of the access token (Google's documented pair for the Realtime Database REST API).
pub const SCOPES: &str = "https://www.googleapis.com/auth/firebase.database https://www.googleapis.com/auth/userinfo.email";
const GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Attempts per write or delete.
const ATTEMPTS: u32 = 3;
/// Deadline of one attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a delivery did not happen.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The database or the token endpoint did not accept the request (after retries).
    #[error("{0}")]
    Failed(String),
}

#[derive(Deserialize)]
struct ServiceAccountFile {
    client_email: String,
    private_key: String,
    private_key_id: Option<String>,
    token_uri: Option<String>,
}

#[derive(Serialize)]
struct Assertion<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: i64,
}

/// A Google service account that mints access tokens.
pub struct ServiceAccount {
    email: String,
    token_uri: String,
    key: EncodingKey,
    key_id: Option<String>,
    token: Mutex<Option<(String, i64)>>,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

impl ServiceAccount {
    /// Reads the service-account JSON Google issues (`client_email`, `private_key`,
    /// `token_uri`).
    ///
    /// # Errors
    /// A message naming what is wrong (never the key).
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file: ServiceAccountFile = serde_json::from_slice(&text)
            .map_err(|_| format!("{}: not a service-account JSON file", path.display()))?;
        let key = EncodingKey::from_rsa_pem(file.private_key.as_bytes())
            .map_err(|_| format!("{}: private_key is not an RSA PEM key", path.display()))?;
        let token_uri = file
            .token_uri
            .unwrap_or_else(|| "https://oauth2.googleapis.com/token".into());
        if !(token_uri.starts_with("https://") || token_uri.starts_with("http://127.0.0.1")) {
            return Err(format!("{}: token_uri must be https://", path.display()));
        }
        Ok(Self {
            email: file.client_email,
            token_uri,
            key,
            key_id: file.private_key_id,
            token: Mutex::new(None),
        })
    }

    /// A valid access token: the cached one, or a new one from the token endpoint.
    ///
    /// # Errors
    /// [`DeliveryError`] if the endpoint refuses or cannot be reached.
    pub async fn access_token(
        &self,
        http: &reqwest::Client,
        now: i64,
    ) -> Result<String, DeliveryError> {
        let mut cached = self.token.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && now < *until
        {
            return Ok(token.clone());
        }
        let mut header = Header::new(Algorithm::RS256);
        header.kid.clone_from(&self.key_id);
        let assertion = jsonwebtoken::encode(
            &header,
            &Assertion {
                iss: &self.email,
                scope: SCOPES,
                aud: &self.token_uri,
                iat: now,
                exp: now + 3600,
            },
            &self.key,
        )
        .map_err(|e| DeliveryError::Failed(format!("signing the token request: {e}")))?;
        let response = http
            .post(&self.token_uri)
            .timeout(ATTEMPT_TIMEOUT)
            .form(&[("grant_type", GRANT), ("assertion", assertion.as_str())])
            .send()
            .await
            .map_err(|e| DeliveryError::Failed(format!("token endpoint: {e}")))?;
        if !response.status().is_success() {
            return Err(DeliveryError::Failed(format!(
                "token endpoint answered {}",
                response.status()
            )));
        }
        let t: TokenResponse = response
            .json()
            .await
            .map_err(|e| DeliveryError::Failed(format!("token endpoint: {e}")))?;
        // Renewed a minute early, so a token never expires in flight.
        *cached = Some((t.access_token.clone(), now + t.expires_in - 60));
        Ok(t.access_token)
    }
}

/// How writes are authorised.
#[derive(Debug)]
pub enum Authority {
    /// OAuth2 access tokens of a service account.
    ServiceAccount(ServiceAccount),
    /// The emulator's owner credential.
    EmulatorOwner,
}

/// The mailbox in the Realtime Database.
#[derive(Debug)]
pub struct Rtdb {
    base: String,
    query: Option<String>,
    root: String,
    authority: Authority,
    http: reqwest::Client,
}

impl Rtdb {
    /// A mailbox under `root` of the database at `database_url` (which may carry a query such
    /// as the emulator's `?ns=<name>`, kept on every request).
    pub fn new(database_url: &str, root: &str, authority: Authority) -> Self {
        let (base, query) = match database_url.split_once('?') {
            Some((b, q)) => (b.trim_end_matches('/').to_owned(), Some(q.to_owned())),
            None => (database_url.trim_end_matches('/').to_owned(), None),
        };
        Self {
            base,
            query,
            root: root.to_owned(),
            authority,
            http: reqwest::Client::builder()
                .timeout(ATTEMPT_TIMEOUT)
                .build()
                .unwrap_or_default(),
        }
    }

    /// The REST URL of an item (uid and id are validated by the callers to path-safe
    /// characters).
    fn url(&self, uid: &str, id: &str) -> String {
        let mut url = format!("{}/{}/{uid}/{id}.json", self.base, self.root);
        if let Some(q) = &self.query {
            url.push('?');
            url.push_str(q);
        }
        url
    }

    async fn bearer(&self, now: i64) -> Result<String, DeliveryError> {
        match &self.authority {
            Authority::ServiceAccount(sa) => sa.access_token(&self.http, now).await,
            Authority::EmulatorOwner => Ok("owner".into()),
        }
    }

    /// Writes one item.
    ///
    /// # Errors
    /// [`DeliveryError`] after the retries.
    pub async fn put(
        &self,
        uid: &str,
        id: &str,
        item: &Value,
        now: i64,
    ) -> Result<(), DeliveryError> {
        let body = serde_json::to_vec(item).map_err(|e| DeliveryError::Failed(e.to_string()))?;
        self.send(reqwest::Method::PUT, uid, id, Some(body), now)
            .await
    }

    /// Deletes one item (deleting a missing item succeeds).
    ///
    /// # Errors
    /// [`DeliveryError`] after the retries.
    pub async fn delete(&self, uid: &str, id: &str, now: i64) -> Result<(), DeliveryError> {
        self.send(reqwest::Method::DELETE, uid, id, None, now).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        uid: &str,
        id: &str,
        body: Option<Vec<u8>>,
        now: i64,
    ) -> Result<(), DeliveryError> {
        let url = self.url(uid, id);
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(150 * 3u64.pow(attempt - 1))).await;
            }
            let token = self.bearer(now).await?;
            let mut request = self.http.request(method.clone(), &url).bearer_auth(token);
            if let Some(b) = &body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(b.clone());
            }
            match request.send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) if r.status().is_server_error() || r.status().as_u16() == 429 => {
                    last = format!("database answered {}", r.status());
                }
                Ok(r) => {
                    return Err(DeliveryError::Failed(format!(
                        "database answered {}",
                        r.status()
                    )));
                }
                Err(e) => last = format!("database: {e}"),
            }
            tracing::warn!(attempt = attempt + 1, error = %last, "Realtime Database call failed");
        }
        Err(DeliveryError::Failed(last))
    }
}
