//! The Firebase path of seed 000, as the app walks it: sign in to Firebase anonymously (Auth
//! REST API, or its emulator), enroll with the ID token, and read the credential from the
//! uid's own node of the Realtime Database (REST API, `?auth=<ID token>`: Firebase's documented
//! way for REST clients; the security rules let only that uid read it).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::Client;
use crate::credential::Credential;
use crate::error::{Error, Result};

/// The Firebase settings an app ships with (its `google-services.json` or
/// `GoogleService-Info.plist`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FirebaseApp {
    /// Web API key (an identifier of the project, not a secret).
    pub api_key: String,
    /// Auth REST base: `https://identitytoolkit.googleapis.com`, or the emulator's
    /// `http://127.0.0.1:9099/identitytoolkit.googleapis.com`.
    pub auth_url: String,
    /// Realtime Database URL.
    pub database_url: String,
    /// The server's `firebase.mailbox_root`.
    pub mailbox_root: String,
}

/// A signed-in Firebase user.
#[derive(Clone, Serialize, Deserialize)]
pub struct FirebaseUser {
    /// The uid.
    pub uid: String,
    /// The ID token (about an hour).
    pub id_token: String,
}

impl std::fmt::Debug for FirebaseUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirebaseUser")
            .field("uid", &self.uid)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignUp {
    local_id: String,
    id_token: String,
}

impl FirebaseApp {
    /// The production Auth endpoint.
    pub const AUTH_URL: &'static str = "https://identitytoolkit.googleapis.com";

    /// Signs in anonymously (`accounts:signUp` with no credentials).
    ///
    /// # Errors
    /// [`Error::Http`] or [`Error::Invalid`] when Firebase refuses.
    pub async fn sign_in_anonymously(&self, http: &reqwest::Client) -> Result<FirebaseUser> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/v1/accounts:signUp", self.auth_url.trim_end_matches('/')),
            &[("key", self.api_key.as_str())],
        )
        .map_err(|e| Error::Invalid(format!("auth URL: {e}")))?;
        let response = http
            .post(url)
            .json(&serde_json::json!({"returnSecureToken": true}))
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(Error::Invalid(format!(
                "Firebase sign-in answered {}",
                response.status()
            )));
        }
        let s: SignUp = response.json().await?;
        Ok(FirebaseUser {
            uid: s.local_id,
            id_token: s.id_token,
        })
    }

    /// The items in the user's mailbox node, oldest first (they stay until the server's
    /// cleanup job removes them: clients cannot write there).
    ///
    /// # Errors
    /// [`Error::Http`], or [`Error::Mailbox`] when the database refuses the read.
    pub async fn read_mailbox(
        &self,
        http: &reqwest::Client,
        user: &FirebaseUser,
    ) -> Result<Vec<Value>> {
        let (base, query) = match self.database_url.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (self.database_url.as_str(), None),
        };
        let mut url = reqwest::Url::parse(&format!(
            "{}/{}/{}.json",
            base.trim_end_matches('/'),
            self.mailbox_root.trim_matches('/'),
            user.uid
        ))
        .map_err(|e| Error::Invalid(format!("database URL: {e}")))?;
        url.set_query(query);
        url.query_pairs_mut().append_pair("auth", &user.id_token);
        let response = http.get(url).send().await?;
        if !response.status().is_success() {
            return Err(Error::Mailbox(format!(
                "the database refused the read ({})",
                response.status()
            )));
        }
        let node: Value = response.json().await?;
        let mut items: Vec<Value> = match node {
            Value::Object(map) => map.into_iter().map(|(_, v)| v).collect(),
            _ => Vec::new(),
        };
        items.sort_by(|a, b| {
            a["created_at"]
                .as_str()
                .cmp(&b["created_at"].as_str())
                .then(a["id"].as_str().cmp(&b["id"].as_str()))
        });
        Ok(items)
    }
}

impl Client {
    async fn firebase_post(&self, path: &str, body: &Value) -> Result<Value> {
        let r = Self::read(self.http.post(self.url(path)?).json(body).send().await?).await?;
        if r.status != 200 {
            return Err(Self::problem(&r));
        }
        r.json()
    }

    /// `POST /v1/enroll` with a Firebase identity.
    ///
    /// # Errors
    /// [`Error::Problem`] when refused.
    pub async fn enroll_firebase(
        &mut self,
        user: &FirebaseUser,
        device_id: &str,
        platform: Option<&str>,
    ) -> Result<Value> {
        let mut body =
            serde_json::json!({"device_id": device_id, "firebase_id_token": user.id_token});
        if let Some(p) = platform {
            body["platform"] = p.into();
        }
        let out = self.firebase_post("/v1/enroll", &body).await?;
        self.device_id = Some(device_id.to_owned());
        Ok(out)
    }

    /// `POST /v1/enroll/confirm` with a Firebase identity.
    ///
    /// # Errors
    /// [`Error::Problem`] when refused.
    pub async fn confirm_firebase(
        &self,
        user: &FirebaseUser,
        device_id: &str,
        otp: &str,
    ) -> Result<Value> {
        self.firebase_post(
            "/v1/enroll/confirm",
            &serde_json::json!({"device_id": device_id, "otp": otp, "firebase_id_token": user.id_token}),
        )
        .await
    }

    async fn firebase_item(
        &self,
        app: &FirebaseApp,
        user: &FirebaseUser,
        kinds: &[&str],
        newer_than: Option<&str>,
    ) -> Result<Value> {
        for attempt in 0..20u64 {
            if let Some(item) = app
                .read_mailbox(&self.http, user)
                .await?
                .into_iter()
                .rev()
                .find(|i| {
                    kinds.iter().any(|k| i["kind"] == *k)
                        && newer_than.is_none_or(|t| i["created_at"].as_str() >= Some(t))
                })
            {
                return Ok(item);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50 * (attempt + 1))).await;
        }
        Err(Error::Mailbox(format!("no {kinds:?} item arrived")))
    }

    /// The whole Firebase enrollment: enroll with the ID token, read the uid's mailbox node,
    /// confirm the code in `otp` mode, read the credential. Stores and returns it.
    ///
    /// # Errors
    /// [`Error::Problem`] when a step is refused, [`Error::Mailbox`] if nothing arrives.
    pub async fn enroll_and_fetch_firebase(
        &mut self,
        app: &FirebaseApp,
        user: &FirebaseUser,
        device_id: &str,
        platform: Option<&str>,
    ) -> Result<Credential> {
        let started = now_rfc3339_floor();
        self.enroll_firebase(user, device_id, platform).await?;
        let item = self
            .firebase_item(
                app,
                user,
                &["api_key", "enrollment_otp"],
                Some(started.as_str()),
            )
            .await?;
        let item = match crate::enroll::otp_code(&item)? {
            Some(code) => {
                self.confirm_firebase(user, device_id, &code).await?;
                self.firebase_item(app, user, &["client_credential"], Some(started.as_str()))
                    .await?
            }
            None => item,
        };
        self.adopt(item)
    }
}

/// Now, RFC 3339 UTC to the second, a minute early (items older than this belong to earlier
/// enrollments; the minute absorbs clock differences between phone and server).
fn now_rfc3339_floor() -> String {
    let t = crate::sign::unix_now() - 60;
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
