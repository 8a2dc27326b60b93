//! `moat device …`: a CLI that plays the app (enrolls, calls the API, keeps its state in a
//! file).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use moat_client::{Auth, CallOptions, Client, Credential, DeviceState, Payload, Response};

use crate::args::{AuthArg, DeviceCommand};

fn save(path: &Path, state: &DeviceState) -> Result<()> {
    save_private(path, &serde_json::to_vec_pretty(state)?)
}

/// Writes `text` to `path`, 0600, replacing it atomically.
fn save_private(path: &Path, text: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(text)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn load(path: &Path) -> Result<Option<DeviceState>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
            format!("{} is not a device state file", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn describe(c: &Client) -> serde_json::Value {
    let credential = match c.credential() {
        Some(Credential::ApiKey { device, .. }) => {
            serde_json::json!({"kind": "api_key", "device": device})
        }
        Some(Credential::ClientCredential {
            device, client_id, ..
        }) => {
            serde_json::json!({"kind": "client_credential", "device": device, "client_id": client_id})
        }
        Some(_) => serde_json::json!({"kind": "other"}),
        None => serde_json::Value::Null,
    };
    serde_json::json!({
        "server": c.state().server,
        "device_id": c.state().device_id,
        "identity": format!("inst:{}", c.thumbprint()),
        "credential": credential,
    })
}

/// `--server` as the SDK takes it: a bare `host:port` (what a listen address looks like)
/// means plain HTTP, which is what `moat serve` speaks without `[server.tls]`.
fn server_url(server: &str) -> String {
    if server.contains("://") {
        server.to_owned()
    } else {
        let url = format!("http://{server}");
        eprintln!("--server has no scheme: using {url}");
        url
    }
}

fn load_device(path: &Path) -> Result<DeviceState> {
    load(path)?.with_context(|| {
        format!(
            "no device state at {}; run `moat device enroll` first",
            path.display()
        )
    })
}

/// `--data`: the text itself, `@FILE`, or `@-` for standard input (as curl takes it).
fn read_data(text: &str) -> Result<Vec<u8>> {
    match text.strip_prefix('@') {
        Some("-") => {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
                .context("reading --data from standard input")?;
            Ok(bytes)
        }
        Some(file) => std::fs::read(file).with_context(|| format!("reading --data from {file}")),
        None => Ok(text.as_bytes().to_vec()),
    }
}

/// The user session `moat device login` keeps beside the device state.
#[derive(serde::Serialize, serde::Deserialize)]
struct Session {
    access_token: String,
    refresh_token: String,
    /// Unix time the access token expires.
    expires_at: i64,
}

/// `moat-device.json` → `moat-device.session.json`: beside the device whose credential the
/// tokens are bound to (`cnf`), so another `--state` never sends them.
fn session_path(state: &Path) -> PathBuf {
    let stem = state.file_stem().map_or_else(
        || "moat-device".to_owned(),
        |s| s.to_string_lossy().into_owned(),
    );
    state.with_file_name(format!("{stem}.session.json"))
}

fn load_session(path: &Path) -> Result<Option<Session>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                format!("{} is not a session file", path.display())
            })?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// A session from a token response (RFC 6749 section 5.1); `previous` keeps the refresh
/// token when the server did not rotate it.
fn session_from(response: &Response, previous: Option<&Session>) -> Result<Session> {
    if response.status != 200 {
        bail!(
            "the server answered {}: {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        );
    }
    let v = response.json()?;
    let access_token = v["access_token"]
        .as_str()
        .context("the token response has no access_token")?
        .to_owned();
    let refresh_token = match (v["refresh_token"].as_str(), previous) {
        (Some(r), _) => r.to_owned(),
        (None, Some(p)) => p.refresh_token.clone(),
        (None, None) => bail!("the token response has no refresh_token"),
    };
    let expires_in = v["expires_in"].as_i64().unwrap_or(0);
    Ok(Session {
        access_token,
        refresh_token,
        expires_at: moat_client::unix_now() + expires_in,
    })
}

/// Trades the refresh token for new tokens and saves them at once: the old refresh token is
/// spent, and presenting it again would revoke the whole family.
async fn refresh(client: &Client, session: &mut Session, path: &Path) -> Result<()> {
    let response = client
        .call_form(
            "/api/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &session.refresh_token),
            ],
            CallOptions::default(),
        )
        .await?;
    let renewed = session_from(&response, Some(session))
        .context("refreshing the user session (run `moat device login` again)")?;
    save_private(path, &serde_json::to_vec_pretty(&renewed)?)?;
    eprintln!("refreshed the user session");
    *session = renewed;
    Ok(())
}

#[allow(clippy::too_many_arguments)] // one call's parts, sent twice at most
async fn send(
    client: &Client,
    method: &http::Method,
    target: &str,
    payload: Payload<'_>,
    headers: &[(String, String)],
    session: Option<&Session>,
    auth: Auth,
    encrypt: bool,
) -> Result<Response> {
    let mut headers = headers.to_vec();
    if let Some(session) = session {
        headers.push((
            "authorization".to_owned(),
            format!("Bearer {}", session.access_token),
        ));
    }
    Ok(client
        .call_payload(
            method.clone(),
            target,
            payload,
            CallOptions {
                auth,
                encrypt,
                headers,
            },
        )
        .await?)
}

pub async fn device(command: DeviceCommand, path: &Path) -> Result<()> {
    match command {
        DeviceCommand::Enroll {
            server,
            device_id,
            platform,
            pins,
            firebase,
            firebase_api_key,
            firebase_auth_url,
            firebase_database_url,
            firebase_mailbox_root,
        } => {
            let server = server_url(&server);
            let platform = platform.as_str();
            let mut client = match load(path)? {
                Some(mut state)
                    if state.server.trim_end_matches('/') == server.trim_end_matches('/') =>
                {
                    if !pins.is_empty() {
                        state.pins = pins;
                    }
                    Client::from_state(&state)?
                }
                _ if !pins.is_empty() => Client::generate_pinned(&server, &pins)?,
                _ => Client::generate(&server)?,
            };
            let device_id = device_id
                .or_else(|| client.state().device_id)
                .unwrap_or_else(|| format!("cli-{}", uuid::Uuid::new_v4()));
            if firebase {
                let app = moat_client::firebase::FirebaseApp {
                    api_key: firebase_api_key.unwrap_or_default(),
                    auth_url: firebase_auth_url,
                    database_url: firebase_database_url.unwrap_or_default(),
                    mailbox_root: firebase_mailbox_root,
                };
                let http = reqwest::Client::new();
                let user = app
                    .sign_in_anonymously(&http)
                    .await
                    .context("signing in to Firebase")?;
                eprintln!("signed in to Firebase as uid {}", user.uid);
                client
                    .enroll_and_fetch_firebase(&app, &user, &device_id, Some(platform))
                    .await?;
                save(path, &client.state())?;
                let mut shown = describe(&client);
                shown["identity"] = format!("fb:{}", user.uid).into();
                println!("{}", serde_json::to_string_pretty(&shown)?);
                return Ok(());
            }
            client.enroll_and_fetch(&device_id, Some(platform)).await?;
            save(path, &client.state())?;
            println!("{}", serde_json::to_string_pretty(&describe(&client))?);
        }
        DeviceCommand::Call {
            method,
            path: target,
            data,
            form,
            header,
            user,
            encrypt,
            auth,
        } => {
            let client = Client::from_state(&load_device(path)?)?;
            let method = http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                .context("invalid method")?;
            let body = match data {
                Some(text) => Some(
                    serde_json::from_slice::<serde_json::Value>(&read_data(&text)?)
                        .context("--data is not JSON")?,
                ),
                None => None,
            };
            let auth = match auth {
                AuthArg::Auto => Auth::Auto,
                AuthArg::Key => Auth::ApiKey,
                AuthArg::Hmac => Auth::HmacSignature,
                AuthArg::Installation => Auth::InstallationSignature,
                AuthArg::None => Auth::None,
            };
            let form: Vec<(&str, &str)> =
                form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let payload = match &body {
                Some(v) => Payload::Json(v),
                None if !form.is_empty() => Payload::Form(&form),
                None => Payload::None,
            };
            let session_path = session_path(path);
            let mut session = if user {
                let mut session = load_session(&session_path)?.with_context(|| {
                    format!(
                        "no user session at {}; run `moat device login` first",
                        session_path.display()
                    )
                })?;
                if session.expires_at <= moat_client::unix_now() + 10 {
                    refresh(&client, &mut session, &session_path).await?;
                }
                Some(session)
            } else {
                None
            };
            let mut response = send(
                &client,
                &method,
                &target,
                payload,
                &header,
                session.as_ref(),
                auth,
                encrypt,
            )
            .await?;
            // Expired early (a clock ahead of ours, or a shorter lifetime than it said):
            // refresh once and send again; a 401 means the server did nothing with the call.
            if let Some(session) = session.as_mut()
                && response.status == 401
                && response
                    .problem_code()
                    .is_some_and(|c| c == "token_expired")
            {
                refresh(&client, session, &session_path).await?;
                response = send(
                    &client,
                    &method,
                    &target,
                    payload,
                    &header,
                    Some(session),
                    auth,
                    encrypt,
                )
                .await?;
            }
            eprintln!("HTTP {}", response.status);
            // The body as it came (it need not be text), and a reader that stops early
            // (`| head`) is not an error.
            let mut stdout = std::io::stdout().lock();
            match stdout
                .write_all(&response.body)
                .and_then(|()| stdout.write_all(b"\n"))
                .and_then(|()| stdout.flush())
            {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    return Err(e).context("writing the response");
                }
                _ => {}
            }
            if response.status >= 400 {
                bail!("the server answered {}", response.status);
            }
        }
        DeviceCommand::Login {
            phone,
            password,
            password_stdin,
        } => {
            let client = Client::from_state(&load_device(path)?)?;
            let password = match password {
                Some(p) if !password_stdin => zeroize::Zeroizing::new(p),
                _ if password_stdin => {
                    let mut line = zeroize::Zeroizing::new(String::new());
                    std::io::stdin()
                        .read_line(&mut line)
                        .context("reading the password from standard input")?;
                    zeroize::Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_owned())
                }
                _ => bail!("give the password with --password-stdin or MOAT_PASSWORD"),
            };
            let response = client
                .call_form(
                    "/api/token",
                    &[
                        ("grant_type", "password"),
                        ("username", &phone),
                        ("password", &password),
                    ],
                    CallOptions::default(),
                )
                .await?;
            let session = session_from(&response, None)?;
            let session_path = session_path(path);
            save_private(&session_path, &serde_json::to_vec_pretty(&session)?)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "logged_in": phone,
                    "session": session_path.display().to_string(),
                    "expires_in": session.expires_at - moat_client::unix_now(),
                }))?
            );
        }
        DeviceCommand::Logout => {
            let session_path = session_path(path);
            match std::fs::remove_file(&session_path) {
                Ok(()) => eprintln!("removed {}", session_path.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    eprintln!("no session at {}", session_path.display());
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("removing {}", session_path.display()));
                }
            }
        }
        DeviceCommand::Show => {
            let state =
                load(path)?.with_context(|| format!("no device state at {}", path.display()))?;
            println!(
                "{}",
                serde_json::to_string_pretty(&describe(&Client::from_state(&state)?))?
            );
        }
    }
    Ok(())
}
