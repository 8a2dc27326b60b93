//! Loading and validation: defaults, the environment over the file, and every problem of a
//! file reported together.

use super::*;
fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn defaults_run_on_one_machine() {
    let c = Config::load(None, &env(&[])).expect("defaults");
    assert_eq!(c.mode, Mode::Dynamic);
    assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(c.public_base_url, "http://127.0.0.1:8080");
    assert_eq!(c.store_url, "sqlite://./moat-data/moat.db");
    assert_eq!(c.policy("/v1/device"), vec![Requirement::Device]);
}

#[test]
fn env_overrides_file() {
    let file = "[enrollment]\nmode = \"static\"\n[[route]]\npath = \"/v1/device\"\nrequire = [\"signature\"]\n";
    let c = Config::load(
        Some(file),
        &env(&[
            ("MOAT_ENROLLMENT__MODE", "otp"),
            ("MOAT_SERVER__MAX_BODY_BYTES", "2048"),
        ]),
    )
    .expect("config");
    assert_eq!(c.mode, Mode::Otp);
    assert_eq!(c.max_body_bytes, 2048);
    assert_eq!(c.policy("/v1/device"), vec![Requirement::Signature]);
    assert_eq!(c.policy("/v1/device/echo"), vec![Requirement::Device]);
}

#[test]
fn all_errors_reported_at_once() {
    let file = "[server]\nlisten = \"nope\"\n[enrollment]\nmode = \"magic\"\n[[route]]\npath = \"/x\"\nrequire = [\"device\"]\n";
    let err = Config::load(Some(file), &env(&[])).expect_err("invalid");
    assert_eq!(err.0.len(), 3, "{err}");
    let typo = Config::load(Some("[server]\nlisen = \"x\"\n"), &env(&[])).expect_err("typo");
    assert!(typo.to_string().contains("lisen"), "{typo}");
}

/// Type errors of the file and the environment are all reported, with value errors, in
/// words a user knows; before, the first type error stopped everything, as `expected
/// usize`.
#[test]
fn type_errors_of_file_and_environment_are_reported_together_in_words() {
    let file = "[server]\nmax_body_bytes = \"1MB\"\nlisten = 5\nbogus = 1\n\
                    [[route]]\npath = \"/v1/device\"\nrequire = [\"device\"]\n\
                    [[route]]\nprefix = \"/x\"\nupstream = \"http://a\"\nrequire = [\"device\"]\ntimeout = \"slow\"\n\
                    [sms]\nallowed_countries = [\"USA\", \"us\", \"GB\"]\n[enrollment]\nmode = \"magic\"\n";
    let err = Config::load(
        Some(file),
        &env(&[("MOAT_SERVER__HEADER_TIMEOUT", "\"soon\"")]),
    )
    .expect_err("invalid");
    let all = err.to_string();
    for expected in [
        "server.max_body_bytes: expected a whole number of bytes, got the text \"1MB\"",
        "server.listen: expected text in quotes, got the number `5`",
        "server.bogus: unknown key `bogus`",
        "route[1].timeout: expected a whole number of seconds, got the text \"slow\"",
        "server.header_timeout: expected a whole number of seconds, got the text \"soon\"",
        "sms.allowed_countries: `USA` is not an ISO 3166 two-letter country code",
        "sms.allowed_countries: `us` is not an ISO 3166 two-letter country code",
        "enrollment.mode",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
    assert!(!all.contains("`GB`"), "{all}");
    assert!(!all.contains("usize") && !all.contains("u64"), "{all}");
    assert_eq!(err.0.len(), 8, "{all}");
}

#[test]
fn admin_listen_must_differ_and_tls_defaults_to_https() {
    let err = Config::load(
        Some("[server]\nlisten = \"127.0.0.1:9000\"\n[admin]\nlisten = \"127.0.0.1:9000\"\n"),
        &env(&[]),
    )
    .expect_err("same address");
    assert!(err.to_string().contains("admin.listen"), "{err}");
    let c = Config::load(
            Some("[server]\nlisten = \"127.0.0.1:8443\"\n[server.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n"),
            &env(&[]),
        )
        .expect("tls");
    assert_eq!(c.public_base_url, "https://127.0.0.1:8443");
    assert_eq!(
        (c.public_scheme, c.public_authority.as_str()),
        ("https", "127.0.0.1:8443")
    );
}

#[test]
fn firebase_settings_are_checked_together() {
    let err = |file: &str| {
        Config::load(Some(file), &env(&[]))
            .expect_err("invalid")
            .to_string()
    };
    let e = err("[enrollment]\nidentity = [\"firebase\"]\n");
    assert!(
        e.contains("delivery.channel") && e.contains("[firebase]"),
        "{e}"
    );
    let e = err(
        "[enrollment]\nidentity = [\"firebase\"]\n[delivery]\nchannel = \"firebase\"\n\
             [firebase]\nproject_id = \"p\"\ndatabase_url = \"http://db.example\"\n",
    );
    assert!(
        e.contains("firebase.database_url") && e.contains("service_account"),
        "{e}"
    );
    let e = err("[firebase]\nproject_id = \"p\"\nmailbox_root = \"a/../b\"\n");
    assert!(e.contains("mailbox_root"), "{e}");
    let ok = Config::load(
            Some(
                "[enrollment]\nidentity = [\"installation\", \"firebase\"]\n[delivery]\nchannel = \"firebase\"\n\
                 [firebase]\nproject_id = \"demo-moat\"\ndatabase_url = \"http://127.0.0.1:9000?ns=demo-moat\"\n\
                 database_emulator = true\nauth_emulator_host = \"127.0.0.1:9099\"\n",
            ),
            &env(&[]),
        )
        .expect("emulator setup");
    assert!(ok.identity_installation && ok.identity_firebase && ok.delivery_firebase);
    let f = ok.firebase.expect("firebase");
    assert_eq!(f.mailbox_root, "moat/mailbox");
    assert_eq!(f.certs_url, FIREBASE_CERTS_URL);
}

/// Problems of different sections are reported together, including those that used to stop
/// the check: an incomplete Twilio sender returned before any later section was looked at,
/// and the App Attest environment was checked only when nothing else was wrong.
#[test]
fn problems_of_different_sections_are_reported_together() {
    let file = "[server]\nlisten = \"nope\"\n\
                [sms]\nsender = \"twilio\"\n\
                [cleanup]\ndormant_days = 0\n\
                [attestation.app_attest]\nteam_id = \"T\"\nbundle_id = \"b\"\nenvironment = \"staging\"\n\
                [[route]]\nprefix = \"/x\"\nupstream = \"http://a\"\nrequire = [\"device\"]\n\
                rate_limit = { key = \"everyone\", per_second = 1, per_hour = 5 }\n";
    let err = Config::load(Some(file), &env(&[])).expect_err("invalid");
    let all = err.to_string();
    for expected in [
        "server.listen: `nope` is not an address:port",
        "sms.twilio: set `from` or `messaging_service_sid`",
        "sms.twilio: account_sid and auth_token (env:NAME or file:PATH) are required",
        "cleanup.dormant_days: must be positive",
        "attestation.app_attest.environment: production, development or any",
        "route[0].rate_limit: key `everyone` is not device, user, ip or route",
        "route[0].rate_limit: only key, per_second and burst are allowed",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
    assert_eq!(err.0.len(), 7, "{all}");
}

/// A rate limit without `per_second` says so once: the burst, which defaults to it, is not
/// checked against a rate that is not there.
#[test]
fn a_rate_limit_without_a_rate_is_one_problem() {
    let file =
        "[[route]]\npath = \"/v1/device\"\nrequire = [\"device\"]\nrate_limit = { burst = 0 }\n";
    let err = Config::load(Some(file), &env(&[])).expect_err("invalid");
    assert_eq!(
        err.0,
        vec!["route[0].rate_limit: per_second is required".to_owned()]
    );
    let ok = Config::load(
        Some("[[route]]\npath = \"/v1/device\"\nrequire = [\"device\"]\nrate_limit = { key = \"ip\", per_second = 2.5 }\n"),
        &env(&[]),
    )
    .expect("valid");
    let limit = ok.rate_limit("/v1/device").expect("rate limit");
    assert_eq!((limit.per_second, limit.burst), (2.5, 3));
}

/// `Debug` of a configuration shows no secret: a panic message or a log line may print it.
#[test]
fn debug_shows_no_secret() {
    let token = "admin-token-admin-token-admin-token";
    let key = "static-key-static-key-static-key-static";
    let file = format!(
        "[admin]\ntoken = \"{token}\"\n[enrollment]\nmode = \"static\"\nstatic_key = \"{key}\"\n\
         [integrity]\nsecret = \"{}\"\n[store]\nurl = \"postgres://moat:hunter2@db/moat\"\n\
         [redis]\nurl = \"redis://:hunter3@cache\"\n\
         [sms]\nsender = \"webhook\"\n[sms.webhook]\nurl = \"https://hook\"\nsecret = \"env:HOOK_SECRET\"\n",
        "A".repeat(43)
    );
    let c = Config::load(Some(&file), &env(&[])).expect("valid");
    let shown = format!("{c:?}");
    for secret in [token, key, "AAAA", "hunter2", "hunter3", "HOOK_SECRET"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(
        shown.contains("admin_token: Some(\"<redacted>\")"),
        "{shown}"
    );
    assert!(shown.contains("store_url: postgres:<redacted>"), "{shown}");
}
