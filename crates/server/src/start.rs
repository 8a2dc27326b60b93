//! Start-up: the configured SMS sender, the data key and secrets, the store, and the
//! application state built from them (with the init lease that lets instances sharing a store
//! start together).

use std::sync::Arc;

use moat_core::clock::Clock;

pub use crate::error::ServerError;
use crate::{AppState, Config, config, secret_ref, secrets, state};
use moat_accounts::sms;

/// Builds the configured SMS sender, resolving its secret references.
///
/// # Errors
/// [`ServerError::Setup`] naming the reference that cannot be read.
pub fn sms_sender(config: &Config) -> Result<Arc<dyn sms::sender::SmsSender>, ServerError> {
    use config::SmsSenderConfig as C;
    Ok(match &config.sms.sender {
        C::Outbox => Arc::new(sms::sender::Outbox),
        C::Twilio {
            base_url,
            account_sid,
            auth_token,
            from,
            messaging_service_sid,
            status_callback,
        } => Arc::new(sms::sender::Twilio {
            base_url: base_url.clone(),
            account_sid: account_sid.clone(),
            auth_token: secret_ref::resolve(auth_token)
                .map_err(|e| ServerError::Setup(format!("sms.twilio.auth_token: {e}")))?,
            from: from.clone(),
            messaging_service_sid: messaging_service_sid.clone(),
            status_callback: status_callback.clone(),
            http: sms::sender::http_client(),
        }),
        C::Webhook { url, secret } => Arc::new(sms::sender::Webhook {
            url: url.clone(),
            secret: secret_ref::resolve(secret)
                .map_err(|e| ServerError::Setup(format!("sms.webhook.secret: {e}")))?,
            http: sms::sender::http_client(),
        }),
    })
}

/// What a state is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Purpose {
    /// `moat serve`: everything; the store and the secrets are created on first start.
    Serve,
    /// Operator commands run against the store: gateway routes, the SMS sender and the
    /// attestation platforms' keys are left out (their secret references are not resolved),
    /// and unless `create` the store and a data key must exist already.
    Admin {
        /// Create the store and the secrets when there are none.
        create: bool,
    },
}

/// The lease held while an instance checks its data key against the store and creates the
/// first sealed keys: instances starting together on an empty store take turns, so the
/// second finds the first's keys (and refuses a different data key) instead of adding its
/// own.
const INIT_LEASE: &str = "init";
/// How long the init lease is held at most (a crashed holder frees it after this).
const INIT_LEASE_SECONDS: i64 = 30;
/// How long a start waits for another instance's init lease.
const INIT_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Where the deployment's data key is documented, for error messages.
const DATA_KEY_HELP: &str = "set server.data_key = \"env:NAME\" (or \"file:PATH\") on every \
     instance to the deployment's data key (base64url of 32 bytes; a single instance's is the \
     data_key of its secrets.json); see docs/deploy.md, \"Several instances\"";

/// Opens the store and loads (or creates) the secrets, for `moat serve`.
///
/// # Errors
/// [`ServerError`] if the data directory, secrets or store cannot be used.
pub async fn build_state(config: Config, clock: Arc<dyn Clock>) -> Result<AppState, ServerError> {
    build_state_for(config, clock, Purpose::Serve).await
}

/// Resolves `server.data_key`: base64url (padding allowed) of 32 bytes.
///
/// # Errors
/// [`ServerError::DataKey`] naming the reference (never the value) when it cannot be read or
/// is not a 32-byte key.
pub fn configured_data_key(reference: &str) -> Result<moat_core::secret::SecretBytes, ServerError> {
    let text = secret_ref::resolve(reference)
        .map_err(|e| ServerError::DataKey(format!("server.data_key: {e}")))?;
    let trimmed = String::from_utf8_lossy(text.expose())
        .trim()
        .trim_end_matches('=')
        .to_owned();
    match moat_core::b64::url_decode(&trimmed) {
        Ok(key) if key.len() == 32 => Ok(moat_core::secret::SecretBytes::new(key)),
        _ => Err(ServerError::DataKey(format!(
            "server.data_key: {reference} is not base64url of 32 bytes \
             (make one with `head -c 32 /dev/urandom | basenc --base64url`)"
        ))),
    }
}

/// One sealed record of the store (a token signing key, else an integrity secret), with
/// the associated data it was sealed with: what a data key must open.
async fn sealed_sample(
    opened: &moat_store::Opened,
) -> Result<Option<(String, Vec<u8>)>, ServerError> {
    if let Some(r) = opened.accounts.signing_keys().await?.into_iter().next() {
        return Ok(Some((r.kid, r.private_sealed)));
    }
    Ok(opened
        .attest
        .integrity_keys()
        .await?
        .into_iter()
        .next()
        .map(|r| (r.kid, r.secret_sealed)))
}

/// Opens the store and loads (or creates) the secrets.
///
/// The data key comes from `server.data_key` or the data dir's secrets file. A key is
/// generated (into the secrets file) only for a store that holds no sealed data; a key that
/// does not open what the store holds is refused (PROTOCOL section 11). The check and the
/// creation of the first sealed keys happen under the store's `init` lease, so instances
/// starting together on an empty store agree.
///
/// # Errors
/// [`ServerError`] if the data directory, secrets or store cannot be used,
/// [`ServerError::Missing`] for an admin state without `create` when there is no store or
/// no data key, [`ServerError::DataKey`] when the data key is missing or wrong.
#[allow(clippy::too_many_lines)]
pub async fn build_state_for(
    mut config: Config,
    clock: Arc<dyn Clock>,
    purpose: Purpose,
) -> Result<AppState, ServerError> {
    let shown = moat_store::shown_url(&config.store_url);
    let dir = config.data_dir.clone();
    let secrets_path = dir.join(secrets::FILE);
    // An admin command that may not create anything writes nothing into the data dir.
    let read_only = purpose == (Purpose::Admin { create: false });
    if read_only {
        if !moat_store::exists(&config.store_url).await? {
            return Err(ServerError::Missing(format!(
                "there is no store at {shown}: nothing was created (pass --config with the \
                 server's configuration, run where its data directory is, or add --create to \
                 create an empty store)"
            )));
        }
        if config.data_key.is_none() && !secrets_path.exists() {
            return Err(ServerError::Missing(format!(
                "the store at {shown} exists but this command has no data key: \
                 server.data_key is not set and there is no {} (pass --config with the \
                 server's configuration; nothing was created)",
                secrets_path.display()
            )));
        }
    }
    if let Purpose::Admin { .. } = purpose {
        // Admin commands use neither the gateway nor an SMS provider nor attestation keys:
        // an unset `env:MAPS_KEY` of a route must not stop a revocation.
        config.upstreams.clear();
        config.play_integrity = None;
    }
    // One crypto backend for JWTs too; the error only means it was installed already.
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    // rustls (Redis over TLS, PostgreSQL over TLS) uses the one crypto backend too.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let sender: Arc<dyn sms::sender::SmsSender> = match purpose {
        Purpose::Serve => sms_sender(&config)?,
        Purpose::Admin { .. } => Arc::new(sms::sender::Outbox),
    };
    let configured = config
        .data_key
        .as_deref()
        .map(configured_data_key)
        .transpose()?;
    // The data directory first (the SQLite store lives in it), then the store: no key is
    // generated before the store has been looked at.
    if !read_only || dir.exists() {
        secrets::prepare_dir(&dir)?;
    }
    let opened = moat_store::open(&config.store_url, &config.store_pool).await?;
    let holder = moat_core::random::token(12)
        .map_err(|_| ServerError::Setup("random generator failed".into()))?;
    let waited = std::time::Instant::now();
    loop {
        let now = clock.now();
        if opened
            .store
            .acquire_lease(INIT_LEASE, &holder, now, now + INIT_LEASE_SECONDS)
            .await?
        {
            break;
        }
        if waited.elapsed() > INIT_WAIT {
            return Err(ServerError::Setup(format!(
                "another instance has been setting up the store at {shown} for over a minute \
                 (its `init` lease); try again"
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let built = async {
        let sealed = sealed_sample(&opened).await?;
        let (secrets, created) = if read_only && !secrets_path.exists() {
            // `server.data_key` is set (checked above): the file's other values are not used.
            (secrets::unsaved()?, false)
        } else if configured.is_some() || sealed.is_none() || secrets_path.exists() {
            secrets::load_or_create_with(&dir, configured.is_none())?
        } else {
            return Err(ServerError::DataKey(format!(
                "the store at {shown} already holds sealed data, and this instance has no data \
                 key (server.data_key is not set and there is no {}); it will not generate a \
                 second key for that store: {DATA_KEY_HELP}",
                secrets_path.display()
            )));
        };
        let (data_key, source) = match configured {
            Some(key) => (
                key,
                format!(
                    "server.data_key ({})",
                    config.data_key.as_deref().unwrap_or("")
                ),
            ),
            None if secrets.data_key.is_empty() => {
                return Err(ServerError::DataKey(format!(
                    "{} holds no data key (it was written by an instance given \
                     server.data_key), and server.data_key is not set: {DATA_KEY_HELP}",
                    secrets_path.display()
                )));
            }
            None => (
                moat_core::secret::SecretBytes::new(moat_core::b64::url_decode(&secrets.data_key)?),
                if created {
                    format!("{}, generated at this start", secrets_path.display())
                } else {
                    secrets_path.display().to_string()
                },
            ),
        };
        let id = secrets::data_key_id(data_key.expose());
        let keys = state::Keys::new(&data_key, &secrets, &config)?;
        if let Some((kid, sealed)) = &sealed
            && keys.data.open(kid.as_bytes(), sealed).is_err()
        {
            return Err(ServerError::DataKey(format!(
                "the store at {shown} holds data sealed with another data key than this \
                 instance's ({id}, from {source}); this instance will not start with it: \
                 {DATA_KEY_HELP}"
            )));
        }
        tracing::info!(data_key = %id, source = %source, store = %shown, "data key");
        let redis = match &config.redis {
            Some(r) => Some(Arc::new(
                moat_cluster::redis::Redis::connect(r)
                    .await
                    .map_err(|e| ServerError::Setup(format!("redis: {e}")))?,
            )),
            None => None,
        };
        let state = AppState::new(
            config,
            opened.store.clone(),
            opened.accounts.clone(),
            opened.attest.clone(),
            opened.ops.clone(),
            sender,
            keys,
            clock.clone(),
            redis,
        )
        .map_err(|e| match e {
            ServerError::Setup(m) => ServerError::Setup(format!("starting: {m}")),
            other => other,
        })?;
        state
            .tokens
            .reload(&*state.accounts, &state.keys, state.now())
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "loading token signing keys");
                ServerError::Setup(format!(
                    "loading token signing keys: {}",
                    crate::error::ApiError::from(e).code()
                ))
            })?;
        state
            .attestation
            .reload_integrity(
                &state.keys.data,
                state.keys.initial_integrity_secret.expose(),
                state.now(),
            )
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "loading integrity secrets");
                let code = crate::error::ApiError::from(e).code();
                ServerError::Setup(format!("loading integrity secrets: {code}"))
            })?;
        Ok::<AppState, ServerError>(state)
    }
    .await;
    // Free the lease for the next instance (it expires by itself if this fails).
    let now = clock.now();
    if let Err(e) = opened
        .store
        .acquire_lease(INIT_LEASE, &holder, now, now)
        .await
    {
        tracing::warn!(error = %e, "could not free the init lease; it expires by itself");
    }
    let state = built?;
    state
        .attestation
        .reload_decoys()
        .await
        .map_err(|e| ServerError::Setup(format!("loading registered package sizes: {e}")))?;
    Ok(state)
}
