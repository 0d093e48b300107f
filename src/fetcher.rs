//! HTTP: one reqwest client per profile, built here and nowhere else, and a
//! fetch that streams the body under a size cap and decodes its charset.

use std::borrow::Cow;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use encoding_rs::Encoding;
use reqwest::header::{
    HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    LAST_MODIFIED, RETRY_AFTER, USER_AGENT,
};
use url::Url;

use crate::config::Profile;

/// Redirects followed before a fetch fails.
pub const MAX_REDIRECTS: usize = 10;

/// Why a fetch produced no response.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("{url}: timed out")]
    Timeout { url: Url },
    #[error("{url}: cannot connect: {source}")]
    Connect {
        url: Url,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: too many redirects or a redirect loop")]
    Redirect { url: Url },
    #[error("{url}: body larger than the {limit}-byte cap")]
    TooLarge { url: Url, limit: u64 },
    #[error("{url}: reading the body failed: {source}")]
    Body {
        url: Url,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: request failed: {source}")]
    Request {
        url: Url,
        #[source]
        source: reqwest::Error,
    },
}

impl FetchError {
    /// A short stable name for summaries (`timeout`, `connect`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            FetchError::Client(_) => "client",
            FetchError::Timeout { .. } => "timeout",
            FetchError::Connect { .. } => "connect",
            FetchError::Redirect { .. } => "redirect",
            FetchError::TooLarge { .. } => "too_large",
            FetchError::Body { .. } => "body",
            FetchError::Request { .. } => "request",
        }
    }

    fn from_reqwest(url: &Url, e: reqwest::Error, reading_body: bool) -> Self {
        let url = url.clone();
        if e.is_timeout() {
            FetchError::Timeout { url }
        } else if e.is_redirect() {
            FetchError::Redirect { url }
        } else if e.is_connect() {
            FetchError::Connect { url, source: e }
        } else if reading_body || e.is_body() || e.is_decode() {
            FetchError::Body { url, source: e }
        } else {
            FetchError::Request { url, source: e }
        }
    }
}

/// A response, its body read in full (empty for error statuses).
#[derive(Debug)]
pub struct Response {
    /// The URL after redirects.
    pub url: Url,
    pub status: u16,
    pub content_type: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub retry_after: Option<String>,
    pub body: Bytes,
}

impl Response {
    /// Whether the body is HTML worth parsing.
    pub fn is_html(&self) -> bool {
        match &self.content_type {
            Some(ct) => {
                let mime = ct
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                mime == "text/html" || mime == "application/xhtml+xml"
            }
            // No Content-Type: sniff like browsers do for the obvious case.
            None => self.body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<'),
        }
    }

    /// The body as text, decoded with its charset (see [`decode`]).
    pub fn text(&self) -> Cow<'_, str> {
        decode(&self.body, self.content_type.as_deref())
    }
}

/// Validators of the last fetch, for a conditional request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Validators<'a> {
    pub etag: Option<&'a str>,
    pub last_modified: Option<&'a str>,
}

/// A client with one profile's identity and timeouts.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    max_body: u64,
}

impl Fetcher {
    pub fn new(profile: &Profile) -> Result<Self, FetchError> {
        let mut headers = HeaderMap::new();
        if let Ok(ua) = HeaderValue::from_str(profile.user_agent()) {
            headers.insert(USER_AGENT, ua);
        }
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"),
        );
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(profile.timeout)
            .connect_timeout(profile.connect_timeout)
            .read_timeout(profile.timeout)
            .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
            .pool_max_idle_per_host(profile.concurrency as usize * 2)
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .gzip(true)
            .brotli(true)
            .deflate(true)
            .build()
            .map_err(FetchError::Client)?;
        Ok(Fetcher {
            client,
            max_body: profile.max_body,
        })
    }

    /// GETs `url` with extra `headers`, conditionally when `validators` are
    /// given. HTTP error statuses (and 304) are responses, not errors; their
    /// bodies are not read.
    pub async fn get(
        &self,
        url: &Url,
        headers: &HeaderMap,
        validators: Validators<'_>,
    ) -> Result<Response, FetchError> {
        let mut request = self.client.get(url.clone()).headers(headers.clone());
        if let Some(etag) = validators.etag.and_then(|v| HeaderValue::from_str(v).ok()) {
            request = request.header(IF_NONE_MATCH, etag);
        }
        if let Some(lm) = validators
            .last_modified
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            request = request.header(IF_MODIFIED_SINCE, lm);
        }
        let resp = request
            .send()
            .await
            .map_err(|e| FetchError::from_reqwest(url, e, false))?;
        let final_url = resp.url().clone();
        let status = resp.status().as_u16();
        let h = resp.headers();
        let text = |name| {
            h.get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let (content_type, etag, last_modified) =
            (text(CONTENT_TYPE), text(ETAG), text(LAST_MODIFIED));
        let retry_after = text(RETRY_AFTER);
        let declared_len = h
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let body = if resp.status().is_success() {
            let compressed = h.contains_key(reqwest::header::CONTENT_ENCODING);
            self.read_body(
                resp,
                &final_url,
                if compressed { None } else { declared_len },
            )
            .await?
        } else {
            Bytes::new()
        };
        Ok(Response {
            url: final_url,
            status,
            content_type,
            etag,
            last_modified,
            retry_after,
            body,
        })
    }

    /// Streams the body, failing as soon as it passes the cap (counted after
    /// decompression, so a small gzip bomb cannot blow memory up).
    async fn read_body(
        &self,
        mut resp: reqwest::Response,
        url: &Url,
        declared: Option<u64>,
    ) -> Result<Bytes, FetchError> {
        let limit = self.max_body;
        if declared.is_some_and(|n| n > limit) {
            return Err(FetchError::TooLarge {
                url: url.clone(),
                limit,
            });
        }
        let mut buf = BytesMut::with_capacity(declared.unwrap_or(16 * 1024).min(limit) as usize);
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| FetchError::from_reqwest(url, e, true))?
        {
            if (buf.len() + chunk.len()) as u64 > limit {
                return Err(FetchError::TooLarge {
                    url: url.clone(),
                    limit,
                });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }
}

/// Decodes an HTML body: a BOM wins, then the Content-Type charset, then a
/// `<meta>` charset in the first 1024 bytes, then UTF-8. Invalid sequences
/// become U+FFFD rather than failing the page.
pub fn decode<'a>(body: &'a [u8], content_type: Option<&str>) -> Cow<'a, str> {
    let encoding = Encoding::for_bom(body)
        .map(|(e, _)| e)
        .or_else(|| {
            content_type
                .and_then(charset_param)
                .and_then(|l| Encoding::for_label(l.as_bytes()))
        })
        .or_else(|| meta_charset(&body[..body.len().min(1024)]))
        .unwrap_or(encoding_rs::UTF_8);
    // `decode` strips a BOM of the encoding it uses and only allocates when it must.
    encoding.decode(body).0
}

fn charset_param(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"'))
    })
}

fn meta_charset(head: &[u8]) -> Option<&'static Encoding> {
    static META: std::sync::OnceLock<Option<regex::bytes::Regex>> = std::sync::OnceLock::new();
    let re = META
        .get_or_init(|| {
            regex::bytes::Regex::new(r#"(?i)<meta[^>]*charset\s*=\s*["']?\s*([a-z0-9_:.\-]+)"#).ok()
        })
        .as_ref()?;
    let label = re.captures(head)?.get(1)?;
    // A page that declares UTF-16 in ASCII is not UTF-16 (HTML spec): read it as UTF-8.
    Encoding::for_label(label.as_bytes()).map(|e| e.output_encoding())
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn charset_sources_in_order() {
        let latin1 = b"<p>caf\xe9</p>";
        assert_eq!(
            decode(latin1, Some("text/html; charset=ISO-8859-1")),
            "<p>café</p>"
        );
        let meta = b"<meta charset=\"windows-1252\"><p>caf\xe9</p>";
        assert!(decode(meta, Some("text/html")).contains("café"));
        let meta2 = b"<meta http-equiv=Content-Type content='text/html; charset=iso-8859-1'>\xe9";
        assert!(decode(meta2, None).ends_with('é'));
        let bom = b"\xef\xbb\xbf<p>\xc3\xa9</p>";
        assert_eq!(
            decode(bom, Some("text/html; charset=iso-8859-1")),
            "<p>é</p>"
        );
        assert_eq!(decode("é".as_bytes(), None), "é");
        assert_eq!(decode(b"\xff", None), "\u{fffd}");
    }
}
