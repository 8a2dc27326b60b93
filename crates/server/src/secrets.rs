//! Server secrets kept in the data directory: generated on first start, reused after.
//!
//! `secrets.json` (mode 0600, in a 0700 directory) holds the data key (seals secrets at
//! rest), the integrity secret, the admin token and the static key. Values set in the
//! configuration take precedence over the file. The data key comes from the file, or from
//! `server.data_key` (a secret reference) when several instances share one store
//! (PROTOCOL section 11); the file then holds no data key. A data key is only ever
//! generated for a store that holds no sealed data yet: changing it would make every sealed
//! value unreadable (see `crate::start::build_state`).
//!
//! The data directory also holds the SQLite database (phones, password hashes, the audit log),
//! whose files SQLite creates with the mode of the database file: the directory is the one
//! gate that covers all of them, whatever mode a file was given. So Moat creates it 0700 and
//! refuses to start with one that group or others can enter or list.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use moat_core::{b64, random};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Name of the secrets file in the data directory.
pub const FILE: &str = "secrets.json";

/// The secrets file's contents.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct Secrets {
    /// AES-256-GCM data key, base64url; empty (and absent from the file) when the
    /// configuration gives it (`server.data_key`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub data_key: String,
    /// Integrity token secret, base64url.
    pub integrity_secret: String,
    /// Admin bearer token.
    pub admin_token: String,
    /// Static-mode API key.
    pub static_key: String,
}

/// Errors reading or writing the secrets file.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// File system error.
    #[error("secrets file {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file exists but is not valid.
    #[error("secrets file {0} is not valid; refusing to overwrite it")]
    Invalid(String),
    /// The file is readable by others.
    #[error("secrets file {0} is readable by group or others (chmod 600 it)")]
    Permissions(String),
    /// The data directory can be reached by group or others.
    #[error(
        "data directory {path} has mode {mode:03o}: group or others can reach the database and \
         secrets in it (chmod 700 {path})"
    )]
    DirPermissions {
        /// The directory.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The data directory path names something that is not a directory.
    #[error("data directory {0} is not a directory")]
    NotADirectory(String),
    /// RNG failure.
    #[error("random generator failed")]
    Random,
}

fn generate(data_key: bool) -> Result<Secrets, SecretsError> {
    let token = |n| random::token(n).map_err(|_| SecretsError::Random);
    Ok(Secrets {
        data_key: if data_key { token(32)? } else { String::new() },
        integrity_secret: token(32)?,
        admin_token: token(32)?,
        static_key: format!("moat_sk_{}", token(32)?),
    })
}

/// Creates the data directory (and missing parents) 0700 if it does not exist; refuses one
/// that group or others can reach.
///
/// Created with its mode in the one `mkdir` call, not chmod-ed after, so it is never open,
/// even for an instant. An existing directory is not tightened behind the operator's back:
/// its mode may be deliberate (a backup group), and the refusal says how to fix it.
///
/// # Errors
/// [`SecretsError::DirPermissions`] for a directory group or others can reach,
/// [`SecretsError::NotADirectory`], or [`SecretsError::Io`].
pub fn prepare_dir(dir: &Path) -> Result<(), SecretsError> {
    let shown = || dir.display().to_string();
    // `recursive` also accepts a directory another instance created a moment ago.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| SecretsError::Io {
            path: shown(),
            source,
        })?;
    let meta = std::fs::metadata(dir).map_err(|source| SecretsError::Io {
        path: shown(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(SecretsError::NotADirectory(shown()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretsError::DirPermissions {
            path: shown(),
            mode,
        });
    }
    Ok(())
}

/// A short, public name of a data key (`dk_` and 8 characters of a keyed hash), logged at
/// start and shown in errors so that operators can tell which instances share a key
/// without ever seeing one.
pub fn data_key_id(key: &[u8]) -> String {
    use aws_lc_rs::hmac;
    let tag = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, key),
        b"moat data key id v1",
    );
    format!("dk_{}", &b64::url_encode(tag.as_ref())[..8])
}

/// Loads the secrets from `dir`, creating the directory and file on first start (with a new
/// data key if `with_data_key`, else without one). Returns the secrets and whether the file
/// was created by this call.
///
/// # Errors
/// [`SecretsError`] if the file cannot be read or written, is invalid, or is readable by
/// group or others, or if the directory can be reached by them (see [`prepare_dir`]).
pub fn load_or_create_with(
    dir: &Path,
    with_data_key: bool,
) -> Result<(Secrets, bool), SecretsError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| SecretsError::Io { path, source }
    };
    prepare_dir(dir)?;
    let path = dir.join(FILE);
    match std::fs::read(&path) {
        Ok(mut bytes) => {
            let mode = std::fs::metadata(&path)
                .map_err(io(&path))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                bytes.zeroize();
                return Err(SecretsError::Permissions(path.display().to_string()));
            }
            let parsed: Result<Secrets, _> = serde_json::from_slice(&bytes);
            bytes.zeroize();
            let secrets = parsed.map_err(|_| SecretsError::Invalid(path.display().to_string()))?;
            if !secrets.data_key.is_empty()
                && b64::url_decode(&secrets.data_key).map(|k| k.len()) != Ok(32)
            {
                return Err(SecretsError::Invalid(path.display().to_string()));
            }
            Ok((secrets, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secrets = generate(with_data_key)?;
            let mut text = serde_json::to_vec_pretty(&secrets).map_err(|_| SecretsError::Random)?;
            // Written whole to a private temporary file, then linked into place: link()
            // never replaces an existing file, so when several instances start at once on
            // one data directory exactly one set of secrets wins, and nobody can read a
            // half-written file.
            let tmp = dir.join(format!(
                ".{FILE}.{}",
                moat_core::random::token(8).map_err(|_| SecretsError::Random)?
            ));
            let written = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .and_then(|mut file| file.write_all(&text).and_then(|()| file.sync_all()));
            text.zeroize();
            let linked = written.and_then(|()| std::fs::hard_link(&tmp, &path));
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "generated server secrets on first start");
                    Ok((secrets, true))
                }
                // Another instance created it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    load_or_create_with(dir, with_data_key)
                }
                Err(e) => Err(io(&path)(e)),
            }
        }
        Err(e) => Err(io(&path)(e)),
    }
}

/// Secrets made for this process only, without a data key and never written: for an admin
/// command given `server.data_key` where there is no secrets file (it uses none of them).
///
/// # Errors
/// [`SecretsError::Random`].
pub fn unsaved() -> Result<Secrets, SecretsError> {
    generate(false)
}

/// [`load_or_create_with`] a data key: the secrets alone.
///
/// # Errors
/// As [`load_or_create_with`].
pub fn load_or_create(dir: &Path) -> Result<Secrets, SecretsError> {
    load_or_create_with(dir, true).map(|(secrets, _)| secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_starting_together_agree_on_one_set() {
        let dir = tempfile::tempdir().expect("tmp");
        let data = dir.path().join("data");
        let keys: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        load_or_create(&data)
                            .expect("load or create")
                            .data_key
                            .clone()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        assert!(keys.iter().all(|k| *k == keys[0]), "one set of secrets");
        let leftovers = std::fs::read_dir(&data).expect("dir").count();
        assert_eq!(leftovers, 1, "no temporary files left behind");
    }

    #[test]
    fn without_a_data_key_when_the_configuration_gives_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let data = dir.path().join("data");
        let (secrets, created) = load_or_create_with(&data, false).expect("create");
        assert!(created && secrets.data_key.is_empty());
        let text = std::fs::read_to_string(data.join(FILE)).expect("read");
        assert!(!text.contains("data_key"), "{text}");
        let (again, created) = load_or_create_with(&data, false).expect("reuse");
        assert!(!created && again.data_key.is_empty());
        assert_eq!(again.admin_token, secrets.admin_token);
        assert!(data_key_id(&[7; 32]).starts_with("dk_"));
        assert_ne!(data_key_id(&[7; 32]), data_key_id(&[8; 32]));
    }

    #[test]
    fn created_once_with_0600_and_reused() {
        let dir = tempfile::tempdir().expect("tmp");
        let data = dir.path().join("data");
        let first = load_or_create(&data).expect("create");
        let mode = std::fs::metadata(data.join(FILE))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = load_or_create(&data).expect("reuse");
        assert_eq!(first.data_key, second.data_key);
        assert_eq!(first.admin_token, second.admin_token);
        std::fs::set_permissions(data.join(FILE), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        assert!(matches!(
            load_or_create(&data),
            Err(SecretsError::Permissions(_))
        ));
    }
}
