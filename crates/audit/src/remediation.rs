//! The fix Moat offers: a gateway route that keeps a third-party credential on the server.
//!
//! The app stops calling the provider and calls the route instead; Moat checks the device
//! (signature and integrity token), then forwards with the secret injected from the server's
//! environment. The snippets use the syntax of `[[route]]` in the gateway documentation and
//! name the environment variable whose value is the whole header or parameter value.

use crate::finding::Finding;

// The provider is part of what a scan reports, so it lives with the finding; re-exported here
// where the fixes per provider are.
pub use crate::finding::Provider;

impl Finding {
    /// The Moat route that keeps this credential on the server, when it is one Moat can
    /// inject (see [`route_snippet`]).
    #[must_use]
    pub fn route_snippet(&self) -> Option<String> {
        route_snippet(self)
    }
}

/// The route snippet for a finding, or `None` when the credential is not one a header or query
/// parameter can carry (AWS signatures, private keys, settings).
#[must_use]
pub fn route_snippet(f: &Finding) -> Option<String> {
    let provider = f.provider?;
    let what = crate::rules::rule(f.rule).map_or(f.rule, |r| r.name);
    let route = |name: &str, upstream: &str, inject: &str, note: &str, methods: &str| {
        format!(
            "# Keep the {what} on the server: the app calls {prefix}/… instead of {upstream}/…\n\
             # {note}\n\
             [[route]]\n\
             prefix = \"{prefix}\"\n\
             upstream = \"{upstream}\"\n\
             require = [\"signature\", \"integrity\"]\n\
             {methods}{inject}\n",
            prefix = format!("/proxy/{name}"),
        )
    };
    Some(match provider {
        Provider::Google => route(
            "google",
            "https://maps.googleapis.com",
            "inject_query = { \"key\" = \"env:GOOGLE_API_KEY\" }",
            "GOOGLE_API_KEY holds a new key; point upstream at the Google API the app uses.",
            "methods = [\"GET\"]\n",
        ),
        Provider::FirebaseDatabase => {
            let upstream = f.upstream.clone()?;
            route(
                "firebase-db",
                &upstream,
                "inject_query = { \"auth\" = \"env:FIREBASE_DB_SECRET\" }",
                "FIREBASE_DB_SECRET holds a database secret or a service token; lock the rules down to it.",
                "",
            )
        }
        Provider::Stripe => route(
            "stripe",
            "https://api.stripe.com",
            "inject_headers = { \"Authorization\" = \"env:STRIPE_AUTHORIZATION\" }",
            "STRIPE_AUTHORIZATION holds \"Bearer <new secret or restricted key>\".",
            "methods = [\"GET\", \"POST\"]\n",
        ),
        Provider::Twilio => route(
            "twilio",
            "https://api.twilio.com",
            "inject_headers = { \"Authorization\" = \"env:TWILIO_AUTHORIZATION\" }",
            "TWILIO_AUTHORIZATION holds \"Basic <base64 of ACCOUNT_SID:AUTH_TOKEN>\"; prefer Moat's own SMS sender ([sms.twilio]) with its pumping budgets.",
            "methods = [\"POST\"]\n",
        ),
        Provider::Slack => route(
            "slack",
            "https://slack.com/api",
            "inject_headers = { \"Authorization\" = \"env:SLACK_AUTHORIZATION\" }",
            "SLACK_AUTHORIZATION holds \"Bearer <new token>\".",
            "methods = [\"POST\"]\n",
        ),
        Provider::SlackWebhook => format!(
            "# Keep the {what} on the server: the app POSTs to /proxy/slack-hook instead.\n\
             # The webhook path is the secret: put the new one in the server's configuration only.\n\
             [[route]]\n\
             prefix = \"/proxy/slack-hook\"\n\
             upstream = \"https://hooks.slack.com/services/T00000000/B00000000/REPLACE_WITH_NEW_PATH\"\n\
             require = [\"signature\", \"integrity\"]\n\
             methods = [\"POST\"]\n\
             rate_limit = {{ key = \"device\", per_second = 1, burst = 5 }}\n"
        ),
        Provider::GitHub => route(
            "github",
            "https://api.github.com",
            "inject_headers = { \"Authorization\" = \"env:GITHUB_AUTHORIZATION\" }",
            "GITHUB_AUTHORIZATION holds \"Bearer <new token>\" with the narrowest scopes.",
            "methods = [\"GET\"]\n",
        ),
        Provider::BasicAuth => {
            let upstream = f.upstream.clone()?;
            let name = route_name(&upstream);
            let var = format!(
                "{}_AUTHORIZATION",
                name.to_ascii_uppercase().replace('-', "_")
            );
            route(
                &name,
                &upstream,
                &format!("inject_headers = {{ \"Authorization\" = \"env:{var}\" }}"),
                &format!("{var} holds \"Basic <base64 of user:new password>\"."),
                "",
            )
        }
        Provider::Bearer => route(
            "api",
            "https://api.example.com",
            "inject_headers = { \"Authorization\" = \"env:API_AUTHORIZATION\" }",
            "API_AUTHORIZATION holds \"Bearer <new token>\"; set upstream to the API that accepts it.",
            "",
        ),
        Provider::Aws => return None,
    })
}

/// A route name from a host: lower-case letters, digits and dashes.
fn route_name(upstream: &str) -> String {
    let host = upstream
        .split("://")
        .nth(1)
        .unwrap_or(upstream)
        .split([':', '/'])
        .next()
        .unwrap_or_default();
    let name: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches('-').to_owned();
    if name.is_empty() {
        "api".to_owned()
    } else {
        name
    }
}
