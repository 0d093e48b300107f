//! Who may read the listener: nobody needs a token on loopback; a
//! non-loopback address needs one, and then every request carries it, as
//! `Authorization: Bearer TOKEN` or as `?token=TOKEN` (for a browser's
//! address bar). The token is compared in constant time and never logged.

use std::fmt;
use std::path::{Path, PathBuf};

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

/// The middleware: a request without the right token gets 401.
pub async fn require(State(token): State<Option<Token>>, req: Request, next: Next) -> Response {
    let Some(token) = token else {
        return next.run(req).await;
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
