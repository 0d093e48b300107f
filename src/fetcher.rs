//! HTTP: the reqwest clients, built here and nowhere else; sessions (cookie
//! jars, identities, proxies) per host; a fetch that streams the body under
//! a size cap and decodes its charset.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::{HeaderMap, HeaderValue, IF_MODIFIED_SINCE, IF_NONE_MATCH};
use url::Url;

use crate::failure::Failure;

use crate::address::{AddressPolicy, GuardResolver, InternalAddress};
use crate::config::{Identity, Profile, ProxyUrl};
use crate::ids::{HostKey, TargetId};

mod cause;
mod decode;
mod response;
mod session;
pub use decode::decode;
use response::{read_response, BodyCap};
use session::{pick, Sessions};

/// Redirects followed before a fetch fails.
pub const MAX_REDIRECTS: usize = 10;

/// Why a fetch produced no response.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("{url}: timed out")]
    Timeout { url: Url },
    #[error("{url}: cannot connect: {}", cause(.source))]
    Connect {
        url: Url,
        #[source]
        source: reqwest::Error,
    },
    /// The TLS handshake failed: an untrusted, expired or mismatched
    /// certificate, or no protocol in common. Another attempt would fail the same way.
    #[error("{url}: TLS handshake failed: {source} (not retried: the site's certificate or TLS setup is at fault)")]
    Tls {
        url: Url,
        // Boxed: rustls' error is large, and every fetch returns this type.
        #[source]
        source: Box<rustls::Error>,
    },
    #[error("{url}: too many redirects or a redirect loop")]
    Redirect { url: Url },
    #[error("{url}: body larger than the {limit}-byte cap")]
    TooLarge { url: Url, limit: u64 },
    #[error("{url}: reading the body failed: {}", cause(.source))]
    Body {
        url: Url,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: not fetched: {why}")]
    Refused { url: Url, why: String },
    /// The answer's head is over hyper's limits: more than 100 header
    /// fields, or a head over ~400 KB. crawld cannot read such an answer.
    #[error("{url}: the answer's header section is too large to read (more than 100 header fields, or over 400 KB of them)")]
    HeadTooLarge { url: Url },
    #[error("{url}: request failed: {}", cause(.source))]
    Request {
        url: Url,
        #[source]
        source: reqwest::Error,
    },
}

impl FetchError {
    /// What kind of failure this is.
    pub fn kind(&self) -> Failure {
        match self {
            FetchError::Client(_) => Failure::Client,
            FetchError::Timeout { .. } => Failure::Timeout,
            FetchError::Connect { .. } => Failure::Connect,
            FetchError::Tls { .. } => Failure::Tls,
            FetchError::Redirect { .. } => Failure::RedirectLoop,
            FetchError::TooLarge { .. } => Failure::TooLarge,
            FetchError::Body { .. } => Failure::Body,
            FetchError::Request { .. } | FetchError::HeadTooLarge { .. } => Failure::Request,
            FetchError::Refused { .. } => Failure::AddressRefused,
        }
    }

    /// Classifies a reqwest error by its source chain: reqwest reports a
    /// refused address and a failed TLS handshake alike as connect errors.
    fn from_reqwest(url: &Url, e: reqwest::Error, reading_body: bool) -> Self {
        let url = url.clone();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(c) = cause {
            if let Some(internal) = c.downcast_ref::<InternalAddress>() {
                return FetchError::Refused {
                    why: internal.to_string(),
                    url,
                };
            }
            if c.downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_parse_too_large)
            {
                return FetchError::HeadTooLarge { url };
            }
            if let Some(tls) = tls_error(c) {
                return FetchError::Tls {
                    url,
                    source: Box::new(tls.clone()),
                };
            }
            cause = c.source();
        }
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

/// What happened ([`cause::happened`]), then the causes of a reqwest error,
/// each once: reqwest's own words ("error sending request for url (…)") do
/// not say (a refused connection, a name that does not resolve, a reset).
fn cause(e: &reqwest::Error) -> String {
    let chain = std::error::Error::source(e).map_or_else(|| e.to_string(), crate::error::chain);
    match cause::happened(e) {
        Some(what) => format!("{what} ({chain})"),
        None => chain,
    }
}

/// The rustls error in one link of a source chain. tokio-rustls wraps it in
/// an `io::Error`, which hyper-rustls wraps in another, and an `io::Error`'s
/// `source()` skips the error it wraps: look inside, layer by layer.
fn tls_error<'a>(mut e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    loop {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        e = e.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
}

/// A response, its body read in full (empty for error statuses).
#[derive(Debug)]
pub struct Response {
    /// The URL asked for (redirects are not followed).
    pub url: Url,
    pub status: u16,
    pub content_type: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub retry_after: Option<String>,
    /// Where a 3xx points, resolved.
    pub location: Option<Url>,
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

/// One request: what to get, under which profile and network policy.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    pub url: &'a Url,
    pub profile: &'a Arc<Profile>,
    /// Extra headers (a target's credentials go to its start hosts only).
    pub headers: &'a HeaderMap,
    pub validators: Validators<'a>,
    /// Internal (loopback, private, link-local) addresses may be reached.
    pub internal_ok: bool,
    /// A target that sends credentials keeps its cookies to itself: its id.
    pub private_session: Option<&'a TargetId>,
}

/// Clients differ in what reqwest fixes per client: proxy, resolver, timeouts.
#[derive(Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    proxy: Option<ProxyUrl>,
    internal_ok: bool,
    connect_timeout: Duration,
    read_timeout: Duration,
}

#[derive(Default)]
struct Net {
    policy: AddressPolicy,
    clients: Mutex<HashMap<ClientKey, reqwest::Client>>,
    sessions: Sessions,
}

/// The HTTP side of an engine, shared by its runs: a small pool of clients
/// keyed by proxy and network policy, and a session per host (cookie jar,
/// identity, proxy) that rotates every `rotate_session_every` requests.
/// Redirects are not followed here: each hop is a request of its own, so
/// that it passes the host limits and the follow rules.
#[derive(Clone, Default)]
pub struct Fetcher {
    net: Arc<Net>,
}

impl Fetcher {
    /// A fetcher that refuses internal addresses as `policy` classifies them.
    pub fn new(policy: AddressPolicy) -> Self {
        Fetcher {
            net: Arc::new(Net {
                policy,
                ..Net::default()
            }),
        }
    }

    /// The address policy in force.
    pub fn policy(&self) -> &AddressPolicy {
        &self.net.policy
    }

    fn client(&self, key: ClientKey) -> Result<reqwest::Client, FetchError> {
        let mut clients = self
            .net
            .clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let mut b = reqwest::Client::builder()
            .connect_timeout(key.connect_timeout)
            .read_timeout(key.read_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(64)
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .gzip(true)
            .brotli(true)
            .deflate(true);
        match &key.proxy {
            Some(p) => {
                b = b.proxy(
                    reqwest::Proxy::all(p.secret_url().clone()).map_err(FetchError::Client)?,
                );
            }
            None => {
                b = b.no_proxy();
                if !key.internal_ok {
                    b = b.dns_resolver(Arc::new(GuardResolver {
                        policy: self.net.policy.clone(),
                    }));
                }
            }
        }
        let client = b.build().map_err(FetchError::Client)?;
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// Failed requests per proxy since start (credentials hidden).
    pub fn proxy_failures(&self) -> Vec<(String, u64)> {
        self.net.sessions.proxy_failures()
    }

    /// GETs one URL, conditionally when validators are given. HTTP error
    /// statuses, redirects and 304 are responses, not errors; their bodies
    /// are not read. A body over the profile's `max_body` fails the fetch.
    pub async fn get(&self, req: Request<'_>) -> Result<Response, FetchError> {
        self.fetch(req, BodyCap::Fail(req.profile.max_body)).await
    }

    /// One request, redirects not followed: through the host's session
    /// (cookies, identity, proxy), a proxy that failed to connect counted.
    async fn fetch(&self, req: Request<'_>, cap: BodyCap) -> Result<Response, FetchError> {
        let url = req.url;
        let host = self.admit(&req)?;
        let profile = req.profile;
        let (jar, owner, number) = self.net.sessions.next(&host, req.private_session, profile);
        let identity = pick(&owner.identities, number);
        let proxy = pick(&owner.proxies, number);
        let client = self.client(ClientKey {
            proxy: proxy.cloned(),
            internal_ok: req.internal_ok,
            connect_timeout: profile.connect_timeout,
            read_timeout: profile.timeout,
        })?;
        let request = build_request(&client, &req, identity, &jar);
        let resp = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                let e = FetchError::from_reqwest(url, e, false);
                if let (Some(p), FetchError::Connect { .. } | FetchError::Timeout { .. }) =
                    (proxy, &e)
                {
                    self.net
                        .sessions
                        .proxy_failed(&host, req.private_session, number, p);
                }
                return Err(e);
            }
        };
        read_response(resp, url, &jar, cap).await
    }

    /// The host a request goes to; refuses an internal address (unless the
    /// request allows it) and a URL without a host.
    fn admit(&self, req: &Request<'_>) -> Result<HostKey, FetchError> {
        let url = req.url;
        if !req.internal_ok {
            if let Some(why) = self.net.policy.refuses(url) {
                return Err(FetchError::Refused {
                    url: url.clone(),
                    why: why.into(),
                });
            }
        }
        HostKey::of(url).ok_or_else(|| FetchError::Refused {
            url: url.clone(),
            why: "no host".into(),
        })
    }

    /// GETs a URL and follows its redirects (up to [`MAX_REDIRECTS`]), with
    /// no host limits: for `crawld test`.
    pub async fn get_following(&self, req: Request<'_>) -> Result<Response, FetchError> {
        self.follow(req, BodyCap::Fail(req.profile.max_body)).await
    }

    /// Like [`Fetcher::get_following`], but reads at most `limit` bytes of
    /// the body and leaves the rest unread instead of failing: for
    /// robots.txt, of which a crawler honours a prefix (RFC 9309 §2.5).
    pub async fn get_prefix_following(
        &self,
        req: Request<'_>,
        limit: u64,
    ) -> Result<Response, FetchError> {
        self.follow(req, BodyCap::Prefix(limit)).await
    }

    async fn follow(&self, mut req: Request<'_>, cap: BodyCap) -> Result<Response, FetchError> {
        let first = req.url.clone();
        let mut url;
        let mut resp = self.fetch(req, cap).await?;
        for _ in 0..MAX_REDIRECTS {
            let Some(next) = resp.location.take() else {
                return Ok(resp);
            };
            url = next;
            if HostKey::of(&url) != HostKey::of(&first) {
                req.headers = empty_headers();
            }
            let hop = Request {
                url: &url,
                validators: Validators::default(),
                ..req
            };
            resp = self.fetch(hop, cap).await?;
        }
        Err(FetchError::Redirect { url: first })
    }
}

fn empty_headers() -> &'static HeaderMap {
    static EMPTY: std::sync::OnceLock<HeaderMap> = std::sync::OnceLock::new();
    EMPTY.get_or_init(HeaderMap::new)
}

/// The GET of one request: the session's identity headers, then the
/// request's own headers, its cookies and its validators.
fn build_request(
    client: &reqwest::Client,
    req: &Request<'_>,
    identity: Option<&Identity>,
    jar: &Jar,
) -> reqwest::RequestBuilder {
    let url = req.url;
    let mut request = client.get(url.clone()).timeout(req.profile.timeout).header(
        reqwest::header::ACCEPT,
        HeaderValue::from_static("text/html,application/xhtml+xml;q=0.9,*/*;q=0.8"),
    );
    if let Some(id) = identity {
        for (k, v) in &id.headers {
            request = request.header(k, v.clone());
        }
    }
    request = request.headers(req.headers.clone());
    if let Some(cookies) = jar.cookies(url) {
        request = request.header(reqwest::header::COOKIE, cookies);
    }
    if let Some(etag) = req
        .validators
        .etag
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        request = request.header(IF_NONE_MATCH, etag);
    }
    if let Some(lm) = req
        .validators
        .last_modified
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        request = request.header(IF_MODIFIED_SINCE, lm);
    }
    request
}
