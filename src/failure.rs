//! Why a URL produced nothing to keep, as a type.
//!
//! One [`Failure`] names each way a page can fail. It is what failure
//! records store, what run figures count by, and what the retry table
//! (`retry::for_failure`) judges. It is written as a short stable name
//! (`timeout`, `http_503`, …): in the store, in `runs --json`, in
//! `crawld failures` and in summaries, so that stored records and scripts
//! reading them keep working.

use std::borrow::Cow;
use std::fmt;

/// The kind of a page's failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Failure {
    /// An HTTP status that is not a success (`http_404`, `http_503`, …).
    Status(u16),
    /// No answer within the profile's `timeout`.
    Timeout,
    /// The connection could not be made.
    Connect,
    /// The TLS handshake failed: an untrusted, expired or mismatched
    /// certificate.
    Tls,
    /// The body stopped arriving or arrived broken.
    Body,
    /// Another transport error.
    Request,
    /// The HTTP client could not be built for this request.
    Client,
    /// The body is larger than `max_body`.
    TooLarge,
    /// The page nests elements too deep, or costs too much, to parse.
    TooDeep,
    /// The HTML parser failed on the page.
    Parse,
    /// The task handling the URL panicked.
    Panic,
    /// Too many redirects, or a redirect loop.
    RedirectLoop,
    /// A redirect led where the follow rules do not go.
    RedirectRefused,
    /// robots.txt disallows the URL (counted, not fetched).
    RobotsDisallowed,
    /// The host's robots.txt could not be had: the host is not crawled.
    RobotsUnavailable,
    /// The URL, or its host's address, is internal and the target may not
    /// reach it.
    AddressRefused,
    /// A sitemap could not be fetched or read (its URL is the sitemap's; the
    /// run goes on without it).
    Sitemap,
}

impl Failure {
    /// Every kind but [`Failure::Status`], with its name.
    const NAMED: [(Failure, &'static str); 16] = [
        (Failure::Timeout, "timeout"),
        (Failure::Connect, "connect"),
        (Failure::Tls, "tls"),
        (Failure::Body, "body"),
        (Failure::Request, "request"),
        (Failure::Client, "client"),
        (Failure::TooLarge, "too_large"),
        (Failure::TooDeep, "too_deep"),
        (Failure::Parse, "parse"),
        (Failure::Panic, "panic"),
        (Failure::RedirectLoop, "redirect"),
        (Failure::RedirectRefused, "redirect_refused"),
        (Failure::RobotsDisallowed, "robots_disallowed"),
        (Failure::RobotsUnavailable, "robots_unavailable"),
        (Failure::AddressRefused, "address_refused"),
        (Failure::Sitemap, "sitemap"),
    ];

    /// The stable name (`timeout`, `http_503`, …).
    pub fn name(self) -> Cow<'static, str> {
        if let Failure::Status(status) = self {
            return Cow::Owned(format!("http_{status}"));
        }
        let name = Failure::NAMED
            .iter()
            .find(|(kind, _)| *kind == self)
            .map_or("unknown", |(_, name)| name);
        Cow::Borrowed(name)
    }

    /// The kind a stable name stands for.
    pub fn from_name(name: &str) -> Option<Failure> {
        if let Some(status) = name.strip_prefix("http_") {
            return status.parse().ok().map(Failure::Status);
        }
        Failure::NAMED
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(kind, _)| *kind)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl serde::Serialize for Failure {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Failure {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = Cow::<str>::deserialize(d)?;
        Failure::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown failure kind {name:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_what_older_versions_stored() {
        for (kind, name) in Failure::NAMED {
            assert_eq!(kind.name(), name);
            assert_eq!(Failure::from_name(name), Some(kind));
        }
        assert_eq!(Failure::Status(503).name(), "http_503");
        assert_eq!(Failure::from_name("http_404"), Some(Failure::Status(404)));
        assert_eq!(Failure::from_name("http_x"), None);
        assert_eq!(Failure::from_name("nonsense"), None);
        let json = serde_json::to_string(&[Failure::Tls, Failure::Status(429)]).unwrap();
        assert_eq!(json, r#"["tls","http_429"]"#);
        let counts: std::collections::BTreeMap<Failure, u64> =
            serde_json::from_str(r#"{"timeout":2,"http_500":1}"#).unwrap();
        assert_eq!(counts[&Failure::Timeout], 2);
        assert_eq!(counts[&Failure::Status(500)], 1);
    }
}
