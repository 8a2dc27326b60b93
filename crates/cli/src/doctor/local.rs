//! Checks of this machine and of the configuration itself: the data directory, the secrets,
//! the TLS files, the public URL, the listen addresses and the admin token.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;
use std::sync::Arc;

use zeroize::Zeroize as _;

use super::outcome::{Outcome, fail, ok, warn};

/// A certificate expiring sooner than this is a warning.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// Creates and removes an empty, uniquely named file in `dir`.
pub fn probe_write(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".moat-doctor-{}", uuid::Uuid::new_v4().simple()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&probe)?;
    std::fs::remove_file(&probe)
}

pub fn check_data_dir(dir: &Path) -> Outcome {
    let shown = dir.display();
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => fail(format!("{shown} is not a directory")),
        Ok(meta) => {
            if let Err(e) = probe_write(dir) {
                return fail(format!("{shown} is not writable: {e}"));
            }
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 == 0 {
                ok(format!("{shown}: writable, mode {mode:03o}"))
            } else {
                fail(format!(
                    "{shown}: mode {mode:03o} lets group or others in; the server refuses to \
                     start with it (chmod 700 it)"
                ))
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            // The server creates it (and any missing parents): the nearest existing ancestor
            // must be writable.
            let mut ancestor = dir;
            let existing = loop {
                match ancestor.parent() {
                    Some(p) if p.as_os_str().is_empty() => break Path::new("."),
                    Some(p) if p.exists() => break p,
                    Some(p) => ancestor = p,
                    None => break Path::new("/"),
                }
            };
            match probe_write(existing) {
                Ok(()) => ok(format!(
                    "{shown} does not exist yet; the server creates it (0700) on first start"
                )),
                Err(e) => fail(format!(
                    "{shown} does not exist and cannot be created in {}: {e}",
                    existing.display()
                )),
            }
        }
        Err(e) => fail(format!("{shown}: {e}")),
    }
}

/// The secrets file, if it exists: `Err` when it exists but the server would refuse it.
pub fn read_secrets(dir: &Path) -> Result<Option<(moat_server::secrets::Secrets, u32)>, String> {
    let path = dir.join(moat_server::secrets::FILE);
    let shown = path.display();
    let meta = match std::fs::metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{shown}: {e}")),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{shown}: mode {mode:03o}; the server refuses a secrets file group or others can \
             read (chmod 600 it)"
        ));
    }
    let mut bytes = std::fs::read(&path).map_err(|e| format!("{shown}: {e}"))?;
    let parsed: Result<moat_server::secrets::Secrets, _> = serde_json::from_slice(&bytes);
    bytes.zeroize();
    let secrets = parsed.map_err(|_| {
        format!("{shown} is not a valid secrets file; the server refuses to start with it")
    })?;
    // Empty when `server.data_key` gives the key (PROTOCOL section 11).
    if !secrets.data_key.is_empty()
        && moat_core::b64::url_decode(&secrets.data_key).map(|k| k.len()) != Ok(32)
    {
        return Err(format!(
            "{shown}: data_key is not 32 bytes of base64url; the server refuses to start with it"
        ));
    }
    Ok(Some((secrets, mode)))
}

pub fn check_secrets_file(dir: &Path) -> Outcome {
    let path = dir.join(moat_server::secrets::FILE);
    match read_secrets(dir) {
        Ok(Some((_, mode))) => ok(format!("{}: valid, mode {mode:03o}", path.display())),
        Ok(None) => ok(format!(
            "{} does not exist yet; the server generates it (0600) on first start",
            path.display()
        )),
        Err(e) => fail(e),
    }
}

/// `server.data_key` (PROTOCOL section 11): it resolves to a 32-byte key; shown by its
/// public id, which every instance of one store must share.
pub fn check_data_key(reference: &str) -> Outcome {
    match moat_server::configured_data_key(reference) {
        Ok(key) => ok(format!(
            "{reference}: a 32-byte key, id {} (the same on every instance of the store)",
            moat_server::secrets::data_key_id(key.expose())
        )),
        Err(e) => fail(e.to_string()),
    }
}

pub fn check_tls(cert_path: &Path, key_path: &Path) -> Outcome {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let cert_bytes = match std::fs::read(cert_path) {
        Ok(b) => b,
        Err(e) => return fail(format!("{}: {e}", cert_path.display())),
    };
    let certs: Vec<CertificateDer<'static>> =
        match CertificateDer::pem_slice_iter(&cert_bytes).collect::<Result<Vec<_>, _>>() {
            Ok(c) if !c.is_empty() => c,
            _ => return fail(format!("{}: no PEM certificate", cert_path.display())),
        };
    let mut key_bytes = match std::fs::read(key_path) {
        Ok(b) => b,
        Err(e) => return fail(format!("{}: {e}", key_path.display())),
    };
    let key = PrivateKeyDer::from_pem_slice(&key_bytes);
    key_bytes.zeroize();
    let Ok(key) = key else {
        return fail(format!("{}: no PEM private key", key_path.display()));
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let built = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs.clone(), key));
    if let Err(e) = built {
        return fail(format!(
            "{} and {}: {e}",
            cert_path.display(),
            key_path.display()
        ));
    }
    let not_after = match x509_parser::parse_x509_certificate(certs[0].as_ref()) {
        Ok((_, cert)) => (
            cert.validity().not_before.timestamp(),
            cert.validity().not_after.timestamp(),
        ),
        Err(e) => return fail(format!("{}: {e}", cert_path.display())),
    };
    let (not_before, not_after) = not_after;
    let now = moat_client::unix_now();
    let date = moat_core::clock::rfc3339;
    let days = (not_after - now).div_euclid(86_400);
    let key_mode = std::fs::metadata(key_path).map_or(0, |m| m.permissions().mode() & 0o777);
    if not_after <= now {
        fail(format!(
            "{}: expired on {}",
            cert_path.display(),
            date(not_after)
        ))
    } else if not_before > now {
        fail(format!(
            "{}: not valid before {}",
            cert_path.display(),
            date(not_before)
        ))
    } else if days < EXPIRY_WARNING_DAYS {
        warn(format!(
            "{}: expires in {days} days ({}); renew it",
            cert_path.display(),
            date(not_after)
        ))
    } else if key_mode & 0o077 != 0 {
        warn(format!(
            "{}: valid until {}, but the key {} has mode {key_mode:03o} (chmod 600 it)",
            cert_path.display(),
            date(not_after),
            key_path.display()
        ))
    } else {
        ok(format!(
            "{}: valid until {} ({days} days), the key matches",
            cert_path.display(),
            date(not_after)
        ))
    }
}

/// Whether `server.public_base_url` is a URL clients can use to reach this listener. Every
/// DPoP `htu` and signature authority is checked against it, so a mismatch refuses every
/// enrollment while the server looks healthy.
pub fn check_public_url(config: &moat_server::Config) -> Outcome {
    let url = &config.public_base_url;
    if config.tls.is_some() && config.public_scheme == "http" {
        return fail(format!(
            "{url} is http://, but the public listener speaks TLS: clients call https://, and every enrollment would be refused (`htu does not match`); set server.public_base_url to https://…"
        ));
    }
    if config.tls.is_none() && config.public_scheme == "https" {
        return warn(format!(
            "{url} is https:// and the public listener speaks plain HTTP: right only behind a TLS-terminating proxy"
        ));
    }
    let authority = &config.public_authority;
    let port = authority
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .unwrap_or(if config.public_scheme == "https" {
            443
        } else {
            80
        });
    let host = authority
        .rsplit_once(':')
        .map_or(authority.as_str(), |(h, _)| h);
    let local = matches!(host, "127.0.0.1" | "localhost" | "[::1]");
    if local && port != config.listen.port() {
        return warn(format!(
            "{url} names port {port} on this machine, but server.listen is {}: clients must call exactly public_base_url",
            config.listen
        ));
    }
    ok(format!(
        "clients must call {url} exactly (DPoP htu and signatures are checked against it; an Android emulator reaches the host as 10.0.2.2, which needs public_base_url = \"{}://10.0.2.2:{}\")",
        config.public_scheme,
        config.listen.port()
    ))
}

pub fn check_listen(addr: SocketAddr) -> Outcome {
    match std::net::TcpListener::bind(addr) {
        Ok(_) => ok(format!("{addr} is free")),
        Err(e) if e.kind() == ErrorKind::AddrInUse => warn(format!(
            "{addr} is in use (a running server? `moat serve` cannot start next to it)"
        )),
        Err(e) => fail(format!("{addr}: cannot bind: {e}")),
    }
}

/// An upper bound on a token's entropy, bits: its length times log2 of the smaller of its
/// character classes' size and the distinct characters it uses.
pub fn entropy_bits(token: &str) -> f64 {
    let chars: Vec<char> = token.chars().collect();
    let mut classes = 0u32;
    if chars.iter().any(char::is_ascii_lowercase) {
        classes += 26;
    }
    if chars.iter().any(char::is_ascii_uppercase) {
        classes += 26;
    }
    if chars.iter().any(char::is_ascii_digit) {
        classes += 10;
    }
    if chars.iter().any(|c| !c.is_ascii_alphanumeric()) {
        classes += 33;
    }
    let distinct = chars.iter().collect::<std::collections::HashSet<_>>().len() as u32;
    let alphabet = classes.min(distinct).max(1);
    chars.len() as f64 * f64::from(alphabet).log2()
}

pub fn check_admin_token(configured: Option<&str>, dir: &Path) -> Outcome {
    const STRONG_BITS: f64 = 128.0;
    match configured {
        Some(token) => {
            let bits = entropy_bits(token);
            if bits < STRONG_BITS {
                warn(format!(
                    "admin.token is weak (at most ~{bits:.0} bits); use 32 random bytes, e.g. \
                     `openssl rand -base64 32`"
                ))
            } else {
                ok(format!(
                    "set in the configuration ({} characters, at most ~{bits:.0} bits)",
                    token.chars().count()
                ))
            }
        }
        None => match read_secrets(dir) {
            Ok(Some((secrets, _))) if entropy_bits(&secrets.admin_token) >= STRONG_BITS => {
                ok(format!(
                    "generated into {}",
                    dir.join(moat_server::secrets::FILE).display()
                ))
            }
            Ok(Some(_)) => warn(format!(
                "the admin token in {} is weak; set admin.token to 32 random bytes",
                dir.join(moat_server::secrets::FILE).display()
            )),
            Ok(None) => ok("not set; the server generates a random one on first start"),
            Err(e) => fail(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::outcome::Status;
    use super::*;

    #[test]
    fn entropy_estimate_tells_random_from_patterned_tokens() {
        assert!(entropy_bits("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa") < 1.0);
        assert!(entropy_bits("passwordpasswordpasswordpassword") < 128.0);
        assert!(entropy_bits("Jq3v_8ZkPw-2LxN7cRt5Ya9UeHb4Ms6Df1Gz0KoTnVi") >= 128.0);
    }

    #[test]
    fn certificate_expiry_is_checked() {
        let dir = tempfile::tempdir().expect("tmp");
        let write = |not_after: time::OffsetDateTime| {
            let key = rcgen::KeyPair::generate().expect("key");
            let mut params =
                rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
            params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
            params.not_after = not_after;
            let cert = params.self_signed(&key).expect("cert");
            let (c, k) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            std::fs::write(&c, cert.pem()).expect("write");
            std::fs::write(&k, key.serialize_pem()).expect("write");
            std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            (c, k)
        };
        let now = time::OffsetDateTime::now_utc();
        let (c, k) = write(now + time::Duration::days(200));
        assert_eq!(check_tls(&c, &k).0, Status::Ok, "{:?}", check_tls(&c, &k));
        let (c, k) = write(now + time::Duration::days(10));
        let (status, detail) = check_tls(&c, &k);
        assert_eq!(status, Status::Warn);
        assert!(detail.contains("expires in"), "{detail}");
        let (c, k) = write(now - time::Duration::hours(1));
        assert_eq!(check_tls(&c, &k).0, Status::Fail);
        // A key that is not the certificate's.
        let (c, _) = write(now + time::Duration::days(200));
        let stray = dir.path().join("stray.pem");
        let other = rcgen::KeyPair::generate().expect("key");
        std::fs::write(&stray, other.serialize_pem()).expect("write");
        assert_eq!(check_tls(&c, &stray).0, Status::Fail);
    }
}
