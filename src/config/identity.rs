//! Who crawld says it is, and how it reaches a site: identities (header
//! sets rotated with sessions) and proxy URLs whose credentials never reach
//! a log.

/// One identity: a User-Agent and the headers sent with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub user_agent: String,
    /// Every header of the identity, User-Agent first, validated once here
    /// rather than on each request.
    pub headers: Vec<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>,
}

impl Identity {
    pub(super) fn plain(user_agent: &str) -> Self {
        Identity {
            user_agent: user_agent.to_owned(),
            headers: reqwest::header::HeaderValue::from_str(user_agent)
                .map(|v| vec![(reqwest::header::USER_AGENT, v)])
                .unwrap_or_default(),
        }
    }
}

/// A proxy URL. Its credentials never reach a log: `Display` and `Debug`
/// show `user:***@`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ProxyUrl(url::Url);

impl ProxyUrl {
    /// Parses an `http://` or `https://` proxy URL.
    pub fn parse(s: &str) -> Result<Self, String> {
        // The text may hold credentials: the error does not repeat it.
        let url = url::Url::parse(s).map_err(|e| format!("not a valid proxy URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!(
                "proxy {} must be an http:// or https:// URL with a host",
                ProxyUrl(url)
            ));
        }
        Ok(ProxyUrl(url))
    }

    /// The full URL, credentials included: for the HTTP client only.
    pub fn secret_url(&self) -> &url::Url {
        &self.0
    }
}

impl std::fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let u = &self.0;
        let user = if u.username().is_empty() && u.password().is_none() {
            String::new()
        } else {
            format!("{}:***@", u.username())
        };
        let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
        write!(
            f,
            "{}://{user}{}{port}",
            u.scheme(),
            u.host_str().unwrap_or("")
        )
    }
}

impl std::fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProxyUrl({self})")
    }
}

pub(super) fn user_agent(s: &str) -> Result<String, String> {
    if s.trim().is_empty() || reqwest::header::HeaderValue::from_str(s).is_err() {
        return Err("user_agent must be a non-empty header value".into());
    }
    Ok(s.to_owned())
}

pub(super) fn identity(raw: &super::raw::RawIdentity) -> Result<Identity, String> {
    use reqwest::header::{HeaderName, HeaderValue, ACCEPT_LANGUAGE};
    let mut id = Identity::plain(&user_agent(raw.user_agent.get_ref())?);
    let value = |name: &str, v: &str| {
        // The value may be a secret: the error names the header only.
        HeaderValue::from_str(v).map_err(|_| format!("{name}: not a valid header value"))
    };
    if let Some(lang) = &raw.accept_language {
        id.headers
            .push((ACCEPT_LANGUAGE, value("accept_language", lang.get_ref())?));
    }
    for (name, v) in &raw.headers {
        let hname = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("{name:?} is not a valid HTTP header name"))?;
        if hname == reqwest::header::USER_AGENT {
            return Err("set the User-Agent with user_agent, not in headers".into());
        }
        id.headers.push((hname, value(name, v.get_ref())?));
    }
    Ok(id)
}
