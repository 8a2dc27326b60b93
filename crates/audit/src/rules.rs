//! The rules: one id per kind of finding, with its default severity and the fix.

use crate::finding::Severity;

/// A rule as reports and SARIF describe it.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// Stable id (`google-api-key`).
    pub id: &'static str,
    /// Short title.
    pub name: &'static str,
    /// Default severity; a finding may be rated lower (e.g. an expired token).
    pub severity: Severity,
    /// What the rule finds and why it matters.
    pub description: &'static str,
    /// What to do about it.
    pub help: &'static str,
}

const ROTATE: &str = "Every copy of the app already shipped gives this credential away: revoke or rotate it, then keep the new one on the server (`moat audit` prints the Moat route that injects it).";

macro_rules! rule {
    ($id:literal, $name:literal, $sev:ident, $desc:expr, $help:expr) => {
        Rule {
            id: $id,
            name: $name,
            severity: Severity::$sev,
            description: $desc,
            help: $help,
        }
    };
}

/// Every rule, in the order reports list them.
pub const RULES: &[Rule] = &[
    rule!(
        "google-api-key",
        "Google API key",
        High,
        "A Google API key (`AIza…`). Unrestricted keys bill the owner for Maps, Places, Gemini and other APIs anyone calls with them.",
        ROTATE
    ),
    rule!(
        "firebase-web-api-key",
        "Firebase web API key",
        Medium,
        "The API key of a Firebase configuration. Firebase treats it as an identifier, but an unrestricted key also works for other Google APIs.",
        "Restrict the key in the Cloud console to the Firebase APIs and to the app's package and signing certificate; enforce App Check."
    ),
    rule!(
        "firebase-database-url",
        "Firebase Realtime Database URL",
        Medium,
        "A Realtime Database URL. Anyone can query it directly; only its security rules stand in the way.",
        "Check that the database rules deny unauthenticated reads and writes, or serve the data through the Moat gateway with the database secret injected."
    ),
    rule!(
        "aws-access-key-id",
        "AWS access key id",
        High,
        "An AWS access key id (`AKIA…`/`ASIA…`). With its secret key it signs requests to the AWS account.",
        "Deactivate the key in IAM. Apps should get short-lived credentials (Cognito, STS) or call your backend; SigV4-signed requests cannot be re-signed by a header-injecting proxy."
    ),
    rule!(
        "aws-secret-access-key",
        "AWS secret access key",
        Critical,
        "An AWS secret access key next to its key id.",
        "Deactivate the key pair in IAM and review CloudTrail for its use."
    ),
    rule!(
        "stripe-secret-key",
        "Stripe secret key",
        Critical,
        "A live Stripe secret key (`sk_live_`): full access to the Stripe account, payments and refunds included.",
        ROTATE
    ),
    rule!(
        "stripe-restricted-key",
        "Stripe restricted key",
        High,
        "A live Stripe restricted key (`rk_live_`).",
        ROTATE
    ),
    rule!(
        "stripe-test-key",
        "Stripe test-mode secret key",
        Low,
        "A Stripe test-mode secret key: no money moves, but it reveals the account and its test data.",
        "Remove test keys from release builds."
    ),
    rule!(
        "stripe-publishable-key",
        "Stripe publishable key",
        Info,
        "A Stripe publishable key (`pk_`). It is meant to ship in apps.",
        "Nothing to do."
    ),
    rule!(
        "twilio-account-sid",
        "Twilio account SID",
        Low,
        "A Twilio account SID (`AC…`): an identifier, dangerous only with the auth token.",
        "Check that no auth token or API key secret ships with it."
    ),
    rule!(
        "twilio-api-key",
        "Twilio API key SID",
        Medium,
        "A Twilio API key SID (`SK…`); its secret is usually close by.",
        ROTATE
    ),
    rule!(
        "twilio-auth-token",
        "Twilio auth token",
        Critical,
        "A 32-hex-digit token next to a Twilio account SID: with it anyone can send SMS on the account (SMS pumping).",
        ROTATE
    ),
    rule!(
        "slack-token",
        "Slack token",
        High,
        "A Slack bot, user or app token (`xox…-`).",
        ROTATE
    ),
    rule!(
        "slack-webhook",
        "Slack incoming webhook",
        High,
        "A Slack incoming-webhook URL: anyone can post into the channel.",
        "Revoke the webhook in Slack; post from the server (the Moat route below keeps the URL in server configuration)."
    ),
    rule!(
        "github-token",
        "GitHub token",
        Critical,
        "A GitHub personal access, OAuth, app or refresh token.",
        ROTATE
    ),
    rule!(
        "private-key-pem",
        "Private key (PEM)",
        Critical,
        "A PEM private key. Whoever has the app has the key.",
        "Revoke whatever the key authenticates (certificate, SSH access, signing) and keep private keys off the device (use the platform keystore for per-device keys)."
    ),
    rule!(
        "private-key-der",
        "Private key (DER)",
        Critical,
        "A DER-encoded private key (PKCS#8, PKCS#1 or SEC1), possibly base64-encoded.",
        "Revoke whatever the key authenticates and keep private keys off the device."
    ),
    rule!(
        "bundled-keystore",
        "Bundled keystore",
        Medium,
        "A PKCS#12/JKS/BKS keystore file shipped in the package. Its password is usually in the code.",
        "Do not ship client certificates with the app; enroll devices instead (Moat's enrollment gives each install its own credential)."
    ),
    rule!(
        "jwt",
        "JSON Web Token",
        High,
        "A signed JWT embedded in the app: a bearer credential for whatever API accepts it.",
        ROTATE
    ),
    rule!(
        "basic-auth-url",
        "URL with credentials",
        High,
        "A URL carrying a user name and password (`scheme://user:pass@host`).",
        ROTATE
    ),
    rule!(
        "high-entropy-string",
        "High-entropy string",
        Medium,
        "A random-looking string that may be a secret. Rated by its randomness and by a nearby name such as `secret` or `token`.",
        "Check what it is; if it is a credential, rotate it and keep it on the server."
    ),
    rule!(
        "android-debuggable",
        "Android app is debuggable",
        High,
        "`android:debuggable=\"true\"`: anyone can attach a debugger, read memory and run code in the app's process.",
        "Build release packages without `debuggable`."
    ),
    rule!(
        "android-allow-backup",
        "Android backup allowed",
        Medium,
        "`android:allowBackup` is true or unset (it defaults to true): the app's data, tokens included, can be copied off the device by backup.",
        "Set `android:allowBackup=\"false\"` or exclude credentials with backup rules."
    ),
    rule!(
        "android-cleartext-traffic",
        "Android cleartext traffic allowed",
        Medium,
        "The app may send plain HTTP (`usesCleartextTraffic` or `cleartextTrafficPermitted`), which anyone on the network can read and change.",
        "Use HTTPS everywhere and set `cleartextTrafficPermitted=\"false\"`."
    ),
    rule!(
        "android-no-certificate-pins",
        "No certificate pins (Android)",
        Low,
        "The network security config declares no `<pin-set>`: a proxy with a trusted CA can read and replay the app's traffic.",
        "Pin the API's key (`moat tls self-signed` prints the pin in network_security_config form)."
    ),
    rule!(
        "android-user-ca-trusted",
        "Android trusts user-installed CAs",
        Medium,
        "The network security config trusts user-installed certificates outside debug overrides, so an interception proxy needs no root.",
        "Remove `<certificates src=\"user\"/>` from release trust anchors."
    ),
    rule!(
        "ios-ats-arbitrary-loads",
        "iOS App Transport Security disabled",
        Medium,
        "`NSAllowsArbitraryLoads` is true: the app may use plain HTTP and weak TLS to any host.",
        "Remove it; list narrow `NSExceptionDomains` if a host really needs one."
    ),
    rule!(
        "ios-ats-exception",
        "iOS ATS exception allows HTTP",
        Low,
        "An `NSExceptionDomains` entry allows insecure HTTP loads for a domain.",
        "Serve that domain over HTTPS and remove the exception."
    ),
    rule!(
        "ios-no-certificate-pins",
        "No certificate pins declared (iOS)",
        Info,
        "Info.plist has no `NSPinnedDomains`; pins may still be set in code.",
        "Pin the API's key (NSPinnedDomains or a pinning library)."
    ),
    rule!(
        "ios-get-task-allow",
        "iOS app is debuggable",
        High,
        "The embedded provisioning profile grants `get-task-allow`: a development build that debuggers can attach to.",
        "Ship App Store or enterprise builds, not development-signed ones."
    ),
    rule!(
        "archive-path-traversal",
        "Entry name escapes the archive",
        High,
        "An entry name is absolute or contains `..`: extracting the package writes outside the target directory. The entry is not scanned.",
        "Rebuild the package; a name like this is a sign of tampering."
    ),
    rule!(
        "archive-compression-bomb",
        "Compression bomb",
        High,
        "An entry expands far beyond any real file (or beyond its declared size); it was not decompressed.",
        "Rebuild the package; a file like this is a sign of tampering."
    ),
    rule!(
        "archive-entry-skipped",
        "Entry not scanned",
        Info,
        "An entry could not be scanned: too large, encrypted, unsupported compression or unreadable.",
        "Scan that file separately if it may hold secrets."
    ),
];

/// Looks a rule up by id.
#[must_use]
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}
