//! Checks of the services the configuration names: Redis, Firebase, the upstream, SMS.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use moat_server::config::SmsSenderConfig;

use super::outcome::{Outcome, chain, fail, location, ok, redact, warn};

pub async fn check_redis(config: moat_cluster::redis::RedisConfig) -> Outcome {
    let at = location(&config.url);
    let redis = match moat_cluster::redis::Redis::connect(&config).await {
        Ok(r) => r,
        Err(e) => {
            // The client's error names only its kind; the operating system's is plainer.
            let os = match reqwest::Url::parse(&config.url) {
                Ok(u) => match (u.host_str(), u.port().unwrap_or(6379)) {
                    (Some(host), port) => tokio::net::TcpStream::connect((
                        host.trim_start_matches('[').trim_end_matches(']'),
                        port,
                    ))
                    .await
                    .err()
                    .map(|e| format!(" ({e})")),
                    (None, _) => None,
                },
                Err(_) => None,
            };
            return fail(format!(
                "{at}: {}{}",
                redact(&e, &config.url),
                os.unwrap_or_default()
            ));
        }
    };
    match redis.ping().await {
        Ok(()) => ok(format!("{at}: answers PING")),
        Err(_) => fail(format!("{at}: connected, but PING failed")),
    }
}

pub fn check_service_account(path: &Path) -> Outcome {
    if let Err(e) = moat_enroll::firebase::rtdb::ServiceAccount::load(path) {
        return fail(e);
    }
    let mode = std::fs::metadata(path).map_or(0, |m| m.permissions().mode() & 0o777);
    if mode & 0o077 == 0 {
        ok(format!(
            "{}: a service account with an RSA key, mode {mode:03o}",
            path.display()
        ))
    } else {
        warn(format!(
            "{}: parses, but mode {mode:03o} lets group or others read its private key (chmod \
             600 it)",
            path.display()
        ))
    }
}

/// Whether `url` answers HTTP at all (any status): a HEAD request, redirects not followed.
pub async fn check_http(url: &str, limit: Duration) -> Outcome {
    let at = location(url);
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // A safety net: the check's own time limit ends it first.
        .timeout(limit + Duration::from_secs(1))
        .build()
    {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot make an HTTP client: {e}")),
    };
    match client.head(url).send().await {
        Ok(response) => ok(format!(
            "{at}: answered HTTP {}",
            response.status().as_u16()
        )),
        Err(e) => fail(format!("{at}: {}", chain(&e.without_url()))),
    }
}

/// `host:port` accepts TCP connections.
pub async fn check_host_port(host_port: &str) -> Outcome {
    let Some((host, port)) = host_port.rsplit_once(':') else {
        return fail(format!("`{host_port}` is not host:port"));
    };
    let Ok(port) = port.parse::<u16>() else {
        return fail(format!("`{host_port}` is not host:port"));
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match tokio::net::TcpStream::connect((host, port)).await {
        Ok(_) => ok(format!("{host_port} accepts connections")),
        Err(e) => fail(format!("{host_port}: {e}")),
    }
}

/// Resolves each `(what, reference)`; the first that fails, by name.
pub fn resolve_all(refs: &[(String, String)]) -> Result<(), String> {
    for (what, reference) in refs {
        moat_server::secret_ref::resolve(reference).map_err(|e| format!("{what}: {e}"))?;
    }
    Ok(())
}

pub async fn check_upstream(url: &str, refs: &[(String, String)], limit: Duration) -> Outcome {
    if let Err(e) = resolve_all(refs) {
        return fail(format!("{e} (the server cannot start)"));
    }
    let (status, detail) = check_http(url, limit).await;
    match refs.len() {
        0 => (status, detail),
        n => (status, format!("{detail}; {n} injected secrets resolve")),
    }
}

pub async fn check_sms(sender: SmsSenderConfig, limit: Duration) -> Outcome {
    let (name, url, refs) = match sender {
        SmsSenderConfig::Twilio {
            base_url,
            auth_token,
            ..
        } => (
            "twilio",
            base_url,
            vec![("sms.twilio.auth_token".to_owned(), auth_token)],
        ),
        SmsSenderConfig::Webhook { url, secret } => (
            "webhook",
            url,
            vec![("sms.webhook.secret".to_owned(), secret)],
        ),
        _ => {
            return ok("outbox sender: messages are kept in the store (development), not sent");
        }
    };
    if let Err(e) = resolve_all(&refs) {
        return fail(format!("{name}: {e} (the server cannot start)"));
    }
    let (status, detail) = check_http(&url, limit).await;
    (status, format!("{name} (its secret resolves): {detail}"))
}
