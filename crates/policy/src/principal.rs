//! Who a request was verified to come from, as the policy hands it to handlers and the
//! gateway.

use std::sync::Arc;

use moat_store::Device;

/// How the caller proved it is a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// `Moat-Device-Key` with a per-device key.
    ApiKey,
    /// `Moat-Device-Key` with the operator's static key (static mode).
    StaticKey,
    /// RFC 9421 `hmac-sha256` with the client credential.
    HmacSignature,
    /// RFC 9421 `ecdsa-p256-sha256`/`ed25519` with the installation key.
    InstallationSignature,
    /// No device credential (a user-only route).
    None,
}

/// The verified caller, available to handlers as an extension.
#[derive(Clone, Debug)]
pub struct Principal {
    /// The device, or `None` for the shared static key (or for a user-only route called
    /// without a device credential).
    pub device: Option<Arc<Device>>,
    /// How it proved itself.
    pub via: Via,
    /// The user, when the route requires `user`.
    pub user: Option<UserPrincipal>,
}

/// A verified user access token.
#[derive(Clone, Debug)]
pub struct UserPrincipal {
    /// `sub`.
    pub id: String,
    /// `iss`.
    pub issuer: String,
    /// Issued by this server (else by a configured external issuer).
    pub local: bool,
}
