//! The route table: every endpoint of the public listener, declared once, with what guards
//! it.
//!
//! Everything else is derived from [`ENDPOINTS`]: the handlers' `#[utoipa::path]`
//! annotations name their path by these constants, the router binds each entry to its
//! handler (`router.rs`, which refuses to build if an entry is unbound or a handler is not in
//! the table), the OpenAPI document is built from the same bindings, and configuration
//! validation reads the overridable paths ([`protected`]), their default policies
//! ([`default_policy`]) and the prefixes a gateway route may not take ([`reserved`]) from
//! here. Adding an endpoint is one entry here and one binding in the router.
//!
//! This module is a leaf (it knows no handler), so configuration can read it without
//! depending on the HTTP layer.

use moat_policy::Requirement;

/// `POST`: the open enrollment endpoint (PROTOCOL section 2).
pub const ENROLL: &str = "/v1/enroll";
/// `POST`: OTP confirmation of an enrollment.
pub const ENROLL_CONFIRM: &str = "/v1/enroll/confirm";
/// `GET`: the built-in mailbox, the side channel of the installation key.
pub const MAILBOX: &str = "/v1/mailbox";
/// `GET`: what Moat knows of the calling device.
pub const DEVICE: &str = "/v1/device";
/// `POST`: echoes a protected request (client integration checks).
pub const DEVICE_ECHO: &str = "/v1/device/echo";
/// `POST`: register a phone account (an SMS code is sent).
pub const REGISTER: &str = "/api/register";
/// `POST`: confirm a registration with its SMS code.
pub const REGISTER_CONFIRM: &str = "/api/register/confirm";
/// `POST`: send a code again.
pub const RESEND_OTP: &str = "/api/resend_otp";
/// `POST`: start a password reset (an SMS code is sent).
pub const PASSWORD_RESET: &str = "/api/password/reset";
/// `POST`: finish a password reset with its SMS code.
pub const PASSWORD_RESET_CONFIRM: &str = "/api/password/reset/confirm";
/// `POST`: the RFC 6749 token endpoint (password and refresh-token grants).
pub const TOKEN: &str = "/api/token";
/// `GET`: the signed-in user.
pub const ME: &str = "/api/me";
/// `POST`: a challenge for app attestation (PROTOCOL section 5).
pub const ATTEST_CHALLENGE: &str = "/v1/attest/challenge";
/// `POST`: the answer to a challenge, for an integrity token.
pub const ATTEST: &str = "/v1/attest";
/// `GET`: the public keys of Moat's access tokens.
pub const JWKS: &str = "/.well-known/jwks.json";
/// `GET`: the public key of the gateway's forwarding signatures.
pub const GATEWAY_JWKS: &str = "/.well-known/moat-gateway-jwks.json";
/// `GET`: the process answers.
pub const HEALTHZ: &str = "/healthz";
/// `GET`: the process and its store answer.
pub const READYZ: &str = "/readyz";
/// `GET`: the OpenAPI document of this listener.
pub const OPENAPI: &str = "/openapi.json";

/// The admin listener's path space, reserved on the public one too so that a gateway route
/// can never look like it.
pub const ADMIN: &str = "/admin";

/// What guards an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guard {
    /// No credential (health checks, key sets, the OpenAPI document).
    Open,
    /// A proof of the installation key (DPoP) or a Firebase ID token, checked by the handler.
    Identity,
    /// A route policy (the `protect` middleware), which a `[[route]] path` entry may set.
    Policy(DefaultPolicy),
}

/// The policy of a protected endpoint when no `[[route]]` entry sets one (PROTOCOL section 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultPolicy {
    /// `device`.
    Device,
    /// `device`, plus `integrity` when `attestation.enabled` (the account endpoints).
    Account,
    /// `user`.
    User,
}

/// One endpoint of the public listener.
#[derive(Clone, Copy, Debug)]
pub struct Endpoint {
    /// Its path.
    pub path: &'static str,
    /// What guards it.
    pub guard: Guard,
    /// Whether the OpenAPI document describes it (the gateway's key set is for upstreams,
    /// not apps, and the document does not describe itself).
    pub documented: bool,
}

const fn policy(path: &'static str, default: DefaultPolicy) -> Endpoint {
    Endpoint {
        path,
        guard: Guard::Policy(default),
        documented: true,
    }
}

const fn identity(path: &'static str) -> Endpoint {
    Endpoint {
        path,
        guard: Guard::Identity,
        documented: true,
    }
}

const fn open(path: &'static str) -> Endpoint {
    Endpoint {
        path,
        guard: Guard::Open,
        documented: true,
    }
}

/// Every endpoint of the public listener. The protected ones come in the order configuration
/// errors list them.
pub const ENDPOINTS: &[Endpoint] = &[
    policy(DEVICE, DefaultPolicy::Device),
    policy(DEVICE_ECHO, DefaultPolicy::Device),
    policy(REGISTER, DefaultPolicy::Account),
    policy(REGISTER_CONFIRM, DefaultPolicy::Account),
    policy(RESEND_OTP, DefaultPolicy::Account),
    policy(PASSWORD_RESET, DefaultPolicy::Account),
    policy(PASSWORD_RESET_CONFIRM, DefaultPolicy::Account),
    policy(TOKEN, DefaultPolicy::Account),
    policy(ME, DefaultPolicy::User),
    policy(ATTEST_CHALLENGE, DefaultPolicy::Device),
    policy(ATTEST, DefaultPolicy::Device),
    identity(ENROLL),
    identity(ENROLL_CONFIRM),
    identity(MAILBOX),
    open(JWKS),
    Endpoint {
        path: GATEWAY_JWKS,
        guard: Guard::Open,
        documented: false,
    },
    open(HEALTHZ),
    open(READYZ),
    Endpoint {
        path: OPENAPI,
        guard: Guard::Open,
        documented: false,
    },
];

/// The endpoint at `path`.
pub fn find(path: &str) -> Option<&'static Endpoint> {
    ENDPOINTS.iter().find(|e| e.path == path)
}

/// The paths whose policy a `[[route]] path` entry may set.
pub fn protected() -> impl Iterator<Item = &'static str> {
    ENDPOINTS
        .iter()
        .filter(|e| matches!(e.guard, Guard::Policy(_)))
        .map(|e| e.path)
}

/// The default policy of a protected endpoint, or `None` if `path` is not one.
pub fn default_policy(path: &str, attestation_enabled: bool) -> Option<Vec<Requirement>> {
    match find(path)?.guard {
        Guard::Policy(DefaultPolicy::Device) => Some(vec![Requirement::Device]),
        Guard::Policy(DefaultPolicy::Account) if attestation_enabled => {
            Some(vec![Requirement::Device, Requirement::Integrity])
        }
        Guard::Policy(DefaultPolicy::Account) => Some(vec![Requirement::Device]),
        Guard::Policy(DefaultPolicy::User) => Some(vec![Requirement::User]),
        Guard::Open | Guard::Identity => None,
    }
}

/// Whether a gateway route's `prefix` would overlap Moat's own path space: the first segment
/// of any endpoint, or the admin listener's.
pub fn reserved(prefix: &str) -> bool {
    ENDPOINTS
        .iter()
        .map(|e| first_segment(e.path))
        .chain([ADMIN])
        .any(|r| prefix == r || prefix.strip_prefix(r).is_some_and(|t| t.starts_with('/')))
}

/// `/v1` of `/v1/enroll`; the whole path when it has one segment.
fn first_segment(path: &'static str) -> &'static str {
    match path[1..].find('/') {
        Some(i) => &path[..=i],
        None => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_unique() {
        for (i, e) in ENDPOINTS.iter().enumerate() {
            assert!(
                ENDPOINTS[i + 1..].iter().all(|o| o.path != e.path),
                "{} twice",
                e.path
            );
        }
    }

    #[test]
    fn the_reserved_prefixes_are_moats_own_path_space() {
        for p in [
            "/v1",
            "/v1/x",
            "/api",
            "/api/me/x",
            "/admin",
            "/admin/x",
            "/.well-known",
            "/.well-known/x",
            "/healthz",
            "/readyz/x",
            "/openapi.json",
        ] {
            assert!(reserved(p), "{p}");
        }
        for p in ["/v10", "/apix", "/proxy", "/admins", "/healthzz", "/x/v1"] {
            assert!(!reserved(p), "{p}");
        }
    }

    #[test]
    fn default_policies_follow_protocol_section_6() {
        assert_eq!(default_policy(ME, true), Some(vec![Requirement::User]));
        assert_eq!(
            default_policy(REGISTER, true),
            Some(vec![Requirement::Device, Requirement::Integrity])
        );
        assert_eq!(
            default_policy(TOKEN, false),
            Some(vec![Requirement::Device])
        );
        assert_eq!(
            default_policy(ATTEST, true),
            Some(vec![Requirement::Device])
        );
        assert_eq!(default_policy(ENROLL, true), None);
        assert_eq!(default_policy("/nope", true), None);
    }

    #[test]
    fn the_configuration_docs_list_the_tables_protected_endpoints() {
        // docs/configuration.md's `route.path` row lists the paths a `[[route]]` may set, in
        // the table's order; `attestation.enabled` lists the account endpoints.
        let docs = include_str!("../../../docs/configuration.md");
        let listed = |key: &str| -> Vec<String> {
            let row = docs
                .lines()
                .find(|l| l.starts_with(&format!("| `{key}` |")))
                .unwrap_or_else(|| panic!("no row for {key}"));
            row.split('`')
                .skip(1)
                .step_by(2)
                .filter(|t| t.starts_with('/'))
                .fold(Vec::new(), |mut seen, t| {
                    // The row names `/api/me` again for its default.
                    if !seen.iter().any(|s: &String| s == t) {
                        seen.push(t.to_owned());
                    }
                    seen
                })
        };
        assert_eq!(listed("route.path"), protected().collect::<Vec<_>>());
        let account: Vec<&str> = ENDPOINTS
            .iter()
            .filter(|e| e.guard == Guard::Policy(DefaultPolicy::Account))
            .map(|e| e.path)
            .collect();
        let mut enabled = listed("attestation.enabled");
        enabled.retain(|p| p != ME);
        assert_eq!(enabled, account);
    }
}
