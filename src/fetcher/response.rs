//! Reading an answer: its cookies and headers, and its body streamed under
//! a size cap.

use bytes::{Bytes, BytesMut};
use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::{
    HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, ETAG, LAST_MODIFIED, LOCATION, RETRY_AFTER,
    SET_COOKIE,
};
use url::Url;

use super::{FetchError, Response};

/// Keeps a response's cookies and reads its headers, and its body when the
/// status is a success.
pub(super) async fn read_response(
    resp: reqwest::Response,
    url: &Url,
    jar: &Jar,
    cap: BodyCap,
) -> Result<Response, FetchError> {
    let h = resp.headers();
    jar.set_cookies(&mut h.get_all(SET_COOKIE).iter(), url);
    let status = resp.status().as_u16();
    let text = |name| {
        h.get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let (content_type, etag, last_modified) = (text(CONTENT_TYPE), text(ETAG), text(LAST_MODIFIED));
    let retry_after = text(RETRY_AFTER);
    let location = resp
        .status()
        .is_redirection()
        .then(|| text(LOCATION))
        .flatten()
        .and_then(|l| url.join(&l).ok());
    let declared_len = h
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body = if resp.status().is_success() {
        let compressed = h.contains_key(reqwest::header::CONTENT_ENCODING);
        read_body(resp, url, if compressed { None } else { declared_len }, cap).await?
    } else {
        Bytes::new()
    };
    Ok(Response {
        url: url.clone(),
        status,
        content_type,
        etag,
        last_modified,
        retry_after,
        location,
        body,
    })
}

/// What a body longer than its limit does.
#[derive(Debug, Clone, Copy)]
pub(super) enum BodyCap {
    /// Fails the fetch ([`FetchError::TooLarge`]): a page.
    Fail(u64),
    /// Keeps the first bytes and stops reading: robots.txt.
    Prefix(u64),
}

/// Streams the body up to the cap (counted after decompression, so a small
/// gzip bomb cannot blow memory up), then fails or stops as the cap says.
async fn read_body(
    mut resp: reqwest::Response,
    url: &Url,
    declared: Option<u64>,
    cap: BodyCap,
) -> Result<Bytes, FetchError> {
    let too_large = |limit| FetchError::TooLarge {
        url: url.clone(),
        limit,
    };
    let limit = match cap {
        BodyCap::Fail(limit) if declared.is_some_and(|n| n > limit) => {
            return Err(too_large(limit))
        }
        BodyCap::Fail(limit) | BodyCap::Prefix(limit) => limit,
    };
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(16 * 1024).min(limit) as usize);
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| FetchError::from_reqwest(url, e, true))?
    {
        let room = limit.saturating_sub(buf.len() as u64);
        if chunk.len() as u64 > room {
            if let BodyCap::Fail(limit) = cap {
                return Err(too_large(limit));
            }
            // The rest is never read: dropping the response closes its connection.
            buf.extend_from_slice(&chunk[..room as usize]);
            break;
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}
