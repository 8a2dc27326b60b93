//! What a check finds ([`Outcome`]), and helpers that word it without secrets.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
/// How a check came out.
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    /// The name reports use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }
}

/// A check's status and its one-line detail.
pub type Outcome = (Status, String);

pub fn ok(detail: impl Into<String>) -> Outcome {
    (Status::Ok, detail.into())
}

pub fn warn(detail: impl Into<String>) -> Outcome {
    (Status::Warn, detail.into())
}

pub fn fail(detail: impl Into<String>) -> Outcome {
    (Status::Fail, detail.into())
}

/// `scheme://host:port/path` of a URL, without credentials, query or fragment.
pub fn location(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let path = if u.path() == "/" { "" } else { u.path() };
            format!(
                "{}://{}{port}{path}",
                u.scheme(),
                u.host_str().unwrap_or("")
            )
        }
        Err(_) => format!("{}:…", url.split(':').next().unwrap_or("")),
    }
}

/// `text` with the password of `url` (if any) blotted out.
pub fn redact(text: &str, url: &str) -> String {
    match reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_owned))
    {
        Some(password) if !password.is_empty() => text.replace(&password, "***"),
        _ => text.to_owned(),
    }
}

/// An error and its causes on one line.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out += &format!(": {text}");
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_and_errors_never_carry_the_password() {
        let url = "postgres://moat:s3cret@db.internal:5433/moat?sslmode=require";
        assert_eq!(location(url), "postgres://db.internal:5433/moat");
        assert_eq!(
            redact("password s3cret refused", url),
            "password *** refused"
        );
    }
}
