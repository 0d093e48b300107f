//! Values that may hold credentials: a channel's URL (webhook tokens live in
//! its path, query or userinfo) and an SMTP password. Their `Display` and
//! `Debug` show them redacted, so that no log, status or error carries them;
//! the real value is reached only through `expose`, by the code that sends.

use std::fmt;

use url::Url;

/// A secret string: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The value itself: for the code that authenticates, never for a message.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How much of a URL's path a redacted form keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathShown {
    /// The whole path (generic webhooks: secrets belong in the query,
    /// userinfo or a header).
    Whole,
    /// Its first segment only: Slack and Discord put the token in the path.
    First,
}

/// A URL whose `Display` and `Debug` hide its userinfo (`***@`), its query
/// (`?***`) and, for Slack and Discord, its path past the first segment.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl {
    url: Url,
    shown: PathShown,
}

impl SecretUrl {
    pub fn new(url: Url, shown: PathShown) -> Self {
        SecretUrl { url, shown }
    }

    /// The full URL: for the HTTP client only.
    pub fn expose(&self) -> &Url {
        &self.url
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let u = &self.url;
        let user = if u.username().is_empty() && u.password().is_none() {
            ""
        } else {
            "***@"
        };
        let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
        let host = u.host_str().unwrap_or("");
        write!(f, "{}://{user}{host}{port}", u.scheme())?;
        match self.shown {
            PathShown::Whole => f.write_str(u.path())?,
            PathShown::First => {
                let mut segments = u.path().trim_start_matches('/').splitn(2, '/');
                let first = segments.next().unwrap_or_default();
                write!(f, "/{first}")?;
                if segments.next().is_some_and(|rest| !rest.is_empty()) {
                    f.write_str("/***")?;
                }
            }
        }
        if u.query().is_some() {
            f.write_str("?***")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(url: &str, shown: PathShown) -> String {
        SecretUrl::new(Url::parse(url).unwrap(), shown).to_string()
    }

    #[test]
    fn credentials_never_show() {
        assert_eq!(
            shown("https://u:pw@hooks.example/a/b?token=t", PathShown::Whole),
            "https://***@hooks.example/a/b?***"
        );
        assert_eq!(
            shown(
                "https://hooks.slack.com/services/T0/B0/XYZ",
                PathShown::First
            ),
            "https://hooks.slack.com/services/***"
        );
        assert_eq!(
            shown("http://127.0.0.1:9000/hook", PathShown::First),
            "http://127.0.0.1:9000/hook"
        );
        assert_eq!(format!("{:?}", Secret::new("pw")), "***");
    }
}
