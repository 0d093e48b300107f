//! Who may read the listener: nobody needs a token on loopback; a
//! non-loopback address needs one, and then every request carries it, as
//! `Authorization: Bearer TOKEN` or as `?token=TOKEN` (for a browser's
//! address bar). The token is compared in constant time and never logged.
//!
//! Without a token, a request must name a loopback host (`localhost`,
//! `*.localhost`, `127.0.0.0/8`, `[::1]`) or one the user allowed
//! (`--http-allow-host`): a web page that rebinds its own DNS name to
//! 127.0.0.1 could otherwise read the dashboard through the visitor's
//! browser, which sends that page's name as `Host`.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::WebError;

/// Shortest token accepted: a guessable one protects nothing.
pub const MIN_TOKEN_LEN: usize = 16;

/// The environment variable that holds the token itself (the flag
/// `--http-token-file` names a file that holds it).
pub const TOKEN_ENV: &str = "CRAWLD_HTTP_TOKEN";

/// The listener's token. Its `Debug` hides it, so that no log shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(…)")
    }
}

impl Token {
    /// Checks `text` (surrounding whitespace removed): long enough, and only
    /// visible ASCII, so that it fits a header and a URL as it is.
    pub fn new(text: &str, from: &str) -> Result<Token, WebError> {
        let t = text.trim();
        if t.len() < MIN_TOKEN_LEN {
            return Err(WebError::TokenTooShort {
                from: from.to_owned(),
                len: t.len(),
            });
        }
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(WebError::TokenCharacters {
                from: from.to_owned(),
            });
        }
        Ok(Token(t.to_owned()))
    }

    /// Whether `given` is the token, in time independent of where they differ.
    pub fn matches(&self, given: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), given.as_bytes());
        // The length is not secret (it is at least MIN_TOKEN_LEN); the bytes are.
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// The token from `--http-token-file` (which wins) or `CRAWLD_HTTP_TOKEN`.
pub fn resolve(file: Option<&Path>, env: Option<String>) -> Result<Option<Token>, WebError> {
    match (file, env) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).map_err(|source| WebError::TokenFile {
                path: PathBuf::from(path),
                source,
            })?;
            Token::new(&text, &path.display().to_string()).map(Some)
        }
        (None, Some(text)) => Token::new(&text, TOKEN_ENV).map(Some),
        (None, None) => Ok(None),
    }
}

/// The token a request carries: its bearer header, else its `token` query
/// parameter.
fn carried(req: &Request) -> Option<String> {
    if let Some(v) = req.headers().get(header::AUTHORIZATION) {
        // The scheme is case-insensitive (RFC 9110).
        let (scheme, token) = v.to_str().ok()?.trim().split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    let query = req.uri().query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

/// What the middleware checks: the token when there is one, else the host
/// names a request may use.
#[derive(Clone, Debug)]
pub struct Access {
    pub token: Option<Token>,
    /// `--http-allow-host` names, lower case, without a port.
    pub hosts: Arc<[String]>,
}

impl Access {
    /// `allowed` as the user wrote them: a port or a trailing dot is dropped,
    /// case does not matter.
    pub fn new(token: Option<Token>, allowed: &[String]) -> Access {
        let hosts = allowed
            .iter()
            .map(|h| normalise(h))
            .filter(|h| !h.is_empty())
            .collect();
        Access { token, hosts }
    }

    /// Whether a request may use `host` (a `Host` header) without a token.
    pub fn host_allowed(&self, host: &str) -> bool {
        let name = normalise(host);
        is_loopback_name(&name) || self.hosts.contains(&name)
    }
}

/// `host` without its port or trailing dot, in lower case.
fn normalise(host: &str) -> String {
    let host = host.trim();
    let name = if host.starts_with('[') {
        // `[::1]:9464`: the address is the bracketed part.
        host.find(']').map_or(host, |end| &host[..=end])
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    name.to_ascii_lowercase()
}

/// `localhost`, `*.localhost` (RFC 6761 keeps them on this machine),
/// `127.0.0.0/8` and `[::1]`.
fn is_loopback_name(name: &str) -> bool {
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    if let Some(v6) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return v6.parse::<Ipv6Addr>().is_ok_and(|a| a.is_loopback());
    }
    name.parse::<Ipv4Addr>().is_ok_and(|a| a.is_loopback())
}

/// The host a request names: its absolute URI's authority, else its `Host`
/// header. `None` when it names none (HTTP/1.0 without `Host`: no browser
/// sends that, so no rebinding page can).
fn named_host(req: &Request) -> Option<String> {
    if let Some(a) = req.uri().authority() {
        return Some(a.as_str().to_owned());
    }
    let v = req.headers().get(header::HOST)?;
    Some(String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// 421 for a host that is not this listener's name.
fn misdirected(host: &str) -> Response {
    // Shown only when it is plain: it came from the client.
    let shown: String = host
        .chars()
        .take(100)
        .filter(char::is_ascii_graphic)
        .collect();
    (
        StatusCode::MISDIRECTED_REQUEST,
        Body::from(format!(
            "421: without a token this crawld listener answers only to loopback names \
             (localhost, 127.0.0.1, [::1]), and `Host: {shown}` is not one: open it by one of \
             those, allow the name with --http-allow-host {shown}, or set a token \
             (--http-token-file)\n"
        )),
    )
        .into_response()
}

/// The middleware: without a token, a request naming a foreign host gets
/// 421; with one, a request without the right token gets 401.
pub async fn require(State(access): State<Access>, req: Request, next: Next) -> Response {
    let Some(token) = &access.token else {
        return match named_host(&req) {
            Some(host) if !access.host_allowed(&host) => misdirected(&host),
            _ => next.run(req).await,
        };
    };
    if carried(&req).is_some_and(|t| token.matches(&t)) {
        return next.run(req).await;
    }
    let mut resp = (
        StatusCode::UNAUTHORIZED,
        Body::from(
            "401: this crawld listener needs its token: send `Authorization: Bearer TOKEN` \
             or add `?token=TOKEN` to the address\n",
        ),
    )
        .into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"crawld\""),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_matches_only_itself() {
        let t = Token::new("0123456789abcdef\n", "test").unwrap();
        assert!(t.matches("0123456789abcdef"));
        assert!(!t.matches("0123456789abcdeF"));
        assert!(!t.matches("0123456789abcde"));
        assert!(!t.matches(""));
        assert_eq!(format!("{t:?}"), "Token(…)", "Debug never shows it");
    }

    #[test]
    fn the_token_comes_from_the_header_or_the_query() {
        let req = |uri: &str, auth: Option<&str>| {
            let mut b = Request::builder().uri(uri);
            if let Some(a) = auth {
                b = b.header(header::AUTHORIZATION, a);
            }
            b.body(Body::empty()).unwrap()
        };
        assert_eq!(
            carried(&req("/", Some("Bearer abc"))).as_deref(),
            Some("abc")
        );
        assert_eq!(
            carried(&req("/", Some("bearer  abc "))).as_deref(),
            Some("abc")
        );
        assert_eq!(carried(&req("/", Some("Basic abc"))), None);
        assert_eq!(
            carried(&req("/?a=1&token=x%2By", None)).as_deref(),
            Some("x+y")
        );
        assert_eq!(carried(&req("/metrics", None)), None);
    }

    #[test]
    fn without_a_token_only_loopback_and_allowed_names_are_answered() {
        let access = Access::new(None, &["Dash.Internal:8443".into(), "".into()]);
        for ok in [
            "localhost",
            "LOCALHOST:9464",
            "localhost.",
            "crawld.localhost:80",
            "127.0.0.1",
            "127.8.9.10:9464",
            "[::1]",
            "[::1]:9464",
            "dash.internal",
            "dash.internal:9464",
        ] {
            assert!(access.host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:9464",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "10.0.0.1",
            "[::2]:80",
            "[::1",
            "",
            "internal",
        ] {
            assert!(!access.host_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn short_or_odd_tokens_are_refused() {
        assert!(matches!(
            Token::new("short", "env"),
            Err(WebError::TokenTooShort { len: 5, .. })
        ));
        assert!(matches!(
            Token::new("0123456789 abcdef", "env"),
            Err(WebError::TokenCharacters { .. })
        ));
    }

    #[test]
    fn the_file_wins_over_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "from-the-file-0123456789\n").unwrap();
        let t = resolve(Some(&path), Some("from-the-env-0123456789".into())).unwrap();
        assert!(t.unwrap().matches("from-the-file-0123456789"));
        let t = resolve(None, Some("from-the-env-0123456789".into())).unwrap();
        assert!(t.unwrap().matches("from-the-env-0123456789"));
        assert!(resolve(None, None).unwrap().is_none());
        let missing = resolve(Some(&dir.path().join("nope")), None).unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
    }
}
