//! `[admin]`: the admin listener and its bearer token.

use std::net::SocketAddr;

use serde::Deserialize;

use super::errors::Errors;
use super::server::socket_addr;

/// Default admin listener.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9091";
/// Shortest `admin.token` accepted, characters.
const MIN_TOKEN_LEN: usize = 32;

/// `[admin]` as written. No `Debug`: it holds the admin token.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RawAdmin {
    pub listen: Option<String>,
    pub token: Option<String>,
}

/// `[admin]` validated. No `Debug`: it holds the admin token.
pub(crate) struct Admin {
    pub(crate) listen: SocketAddr,
    pub(crate) token: Option<String>,
}

/// Validates `[admin]`; `server_listen` is the public listener, which it may not share.
pub(crate) fn validate(raw: RawAdmin, server_listen: SocketAddr, errors: &mut Errors) -> Admin {
    let listen = socket_addr(raw.listen, DEFAULT_ADMIN_LISTEN, "admin.listen", errors);
    if listen == server_listen {
        errors.push(format!(
            "admin.listen: `{listen}` is server.listen's address too; the admin listener needs an address of its own"
        ));
    }
    if let Some(token) = &raw.token
        && token.len() < MIN_TOKEN_LEN
    {
        errors.push("admin.token: must be at least 32 characters");
    }
    Admin {
        listen,
        token: raw.token,
    }
}
