//! A real HTTP test site on 127.0.0.1 with an ephemeral port, serving a
//! generated shop, and counting what it is asked.
#![allow(dead_code)]

pub mod daemon;
pub mod postgres;
pub mod sinks;
pub mod state;
pub mod tcp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};

/// One resource of the site.
#[derive(Clone)]
pub struct Resource {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    pub delay: Duration,
    pub headers: Vec<(String, String)>,
}

impl Resource {
    pub fn html(body: impl Into<String>) -> Self {
        Resource {
            status: 200,
            content_type: Some("text/html; charset=utf-8".into()),
            body: body.into().into_bytes(),
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }

    /// A redirect to `location`.
    pub fn redirect(location: &str) -> Self {
        Resource {
            status: 302,
            headers: vec![("location".into(), location.into())],
            ..Resource::html("")
        }
    }
}

/// (path, User-Agent, Cookie) of one request.
pub type ClientSeen = (String, Option<String>, Option<String>);

/// What the server saw.
#[derive(Default)]
pub struct Stats {
    in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    pub requests: AtomicUsize,
    pub paths: Mutex<Vec<String>>,
    /// (path, status) of every response.
    pub responses: Mutex<Vec<(String, u16)>>,
    /// (Host header, path, Authorization header) of every request.
    pub auth: Mutex<Vec<(String, String, Option<String>)>>,
    /// (path, started, answered, status) of every request.
    pub timeline: Mutex<Vec<(String, std::time::Instant, std::time::Instant, u16)>>,
    /// (path, User-Agent, Cookie) of every request, in order.
    pub clients: Mutex<Vec<ClientSeen>>,
    /// Answers given before a path's normal one, in order.
    pub scripts: Mutex<HashMap<String, std::collections::VecDeque<Resource>>>,
}

impl Stats {
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }
    pub fn count(&self, path: &str) -> usize {
        self.paths
            .lock()
            .unwrap()
            .iter()
            .filter(|p| *p == path)
            .count()
    }
    /// Requests so far, robots.txt aside.
    pub fn page_requests(&self) -> usize {
        self.paths
            .lock()
            .unwrap()
            .iter()
            .filter(|p| *p != "/robots.txt")
            .count()
    }
    /// Responses with this status so far.
    pub fn status_count(&self, status: u16) -> usize {
        self.responses
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| *s == status)
            .count()
    }
    /// Start instants of every page request (robots.txt aside), sorted.
    pub fn page_starts(&self) -> Vec<std::time::Instant> {
        let mut starts: Vec<_> = self
            .timeline
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, ..)| p != "/robots.txt")
            .map(|(_, started, ..)| *started)
            .collect();
        starts.sort();
        starts
    }

    /// Forgets what was counted so far.
    pub fn reset(&self) {
        self.requests.store(0, Ordering::SeqCst);
        self.max_in_flight.store(0, Ordering::SeqCst);
        self.paths.lock().unwrap().clear();
        self.responses.lock().unwrap().clear();
    }
}

/// A running site; stops when dropped with the test process. Pages can be
/// changed while it runs. Every 200 carries an ETag, and a matching
/// If-None-Match gets a 304.
pub struct Site {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    pages: Arc<RwLock<HashMap<String, Resource>>>,
}

impl Site {
    /// Serves `pages` (keyed by path and query) on its own thread and runtime,
    /// so that sync and async tests can both use it.
    pub fn start(pages: HashMap<String, Resource>) -> Site {
        let pages = Arc::new(RwLock::new(pages));
        let served = pages.clone();
        let stats = Arc::new(Stats::default());
        let st = stats.clone();
        let addr = serve_app(axum::Router::new().fallback(move |req: Request<Body>| {
            let (pages, stats) = (served.clone(), st.clone());
            async move { serve(req, &pages, &stats).await }
        }));
        Site { addr, stats, pages }
    }

    /// Replaces (or adds) a page.
    pub fn set(&self, path: &str, r: Resource) {
        self.pages.write().unwrap().insert(path.to_owned(), r);
    }

    /// Removes a page: it answers 404 from now on.
    pub fn remove(&self, path: &str) {
        self.pages.write().unwrap().remove(path);
    }

    /// Answers `path` with these, in order, before its normal resource.
    pub fn script(&self, path: &str, answers: Vec<Resource>) {
        self.stats
            .scripts
            .lock()
            .unwrap()
            .insert(path.to_owned(), answers.into());
    }

    /// A page as it is served now.
    pub fn get(&self, path: &str) -> Option<Resource> {
        self.pages.read().unwrap().get(path).cloned()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// Serves `app` on 127.0.0.1 (an ephemeral port) from its own thread and
/// runtime, so that sync and async tests can both use it.
pub fn serve_app(app: axum::Router) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

async fn serve(
    req: Request<Body>,
    pages: &RwLock<HashMap<String, Resource>>,
    stats: &Stats,
) -> Response<Body> {
    let key = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    stats.requests.fetch_add(1, Ordering::SeqCst);
    stats.paths.lock().unwrap().push(key.clone());
    let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let (host, auth) = {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        stats
            .clients
            .lock()
            .unwrap()
            .push((key.clone(), header("user-agent"), header("cookie")));
        (header("host").unwrap_or_default(), header("authorization"))
    };
    stats.auth.lock().unwrap().push((host, key.clone(), auth));
    // A client without cookies gets one: `sid=N`, N this request's number.
    let set_cookie = (!req.headers().contains_key("cookie"))
        .then(|| format!("sid={}; Path=/", stats.requests()));
    let started = std::time::Instant::now();
    let scripted = stats
        .scripts
        .lock()
        .unwrap()
        .get_mut(&key)
        .and_then(|q| q.pop_front());
    let found = scripted.or_else(|| pages.read().unwrap().get(&key).cloned());
    let if_none_match = req
        .headers()
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut resp = match found {
        Some(r) => {
            if !r.delay.is_zero() {
                tokio::time::sleep(r.delay).await;
            }
            let etag = format!("\"{:x}\"", xxhash_rust::xxh3::xxh3_64(&r.body));
            if r.status == 200 && if_none_match.as_deref() == Some(etag.as_str()) {
                stats.responses.lock().unwrap().push((key, 304));
                stats.in_flight.fetch_sub(1, Ordering::SeqCst);
                return Response::builder()
                    .status(304)
                    .header("etag", etag)
                    .body(Body::empty())
                    .unwrap();
            }
            let mut b = Response::builder().status(r.status);
            if r.status == 200 {
                b = b.header("etag", etag);
            }

            if let Some(ct) = &r.content_type {
                b = b.header("content-type", ct);
            }
            for (k, v) in &r.headers {
                b = b.header(k, v);
            }
            b.body(Body::from(r.body.clone())).unwrap()
        }
        None => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::from("not found"))
            .unwrap(),
    };
    if let Some(c) = set_cookie.and_then(|c| c.parse().ok()) {
        resp.headers_mut().insert("set-cookie", c);
    }
    stats
        .responses
        .lock()
        .unwrap()
        .push((key.clone(), resp.status().as_u16()));
    stats.timeline.lock().unwrap().push((
        key,
        started,
        std::time::Instant::now(),
        resp.status().as_u16(),
    ));
    stats.in_flight.fetch_sub(1, Ordering::SeqCst);
    resp
}

/// A shop: `lists` listing pages of `per_list` products each, linked by
/// pagination; every product page links to the next product, and every
/// tenth one to a missing page. Prices are `i + 0.99` in pounds.
pub fn shop(lists: usize, per_list: usize) -> HashMap<String, Resource> {
    let mut pages = HashMap::new();
    let total = lists * per_list;
    for l in 1..=lists {
        let mut body = format!("<html><head><title>List {l}</title></head><body><h1>List {l}</h1>");
        for i in (l - 1) * per_list..l * per_list {
            body.push_str(&format!(
                r#"<article class="pod"><h3><a href="/p/{i}.html#reviews" title="Product {i}">P{i}</a></h3><p class="price">£{i}.99</p></article>"#
            ));
        }
        if l < lists {
            body.push_str(&format!(
                r#"<a class="next" href="/list/{}?utm_source=pager">next</a>"#,
                l + 1
            ));
        }
        body.push_str("</body></html>");
        let path = if l == 1 {
            "/".to_owned()
        } else {
            format!("/list/{l}")
        };
        pages.insert(path, Resource::html(body));
    }
    for i in 0..total {
        let mut body = format!(
            r#"<html><body><div class="product"><h1>Product {i} <small>new</small></h1>
<p class="price">Price: £{i}.99</p><ul class="tags"><li>t{}</li><li>t{}</li></ul>
<p class="desc">Lead <b>bold</b> tail</p>
<a href="/p/{}.html">next product</a> <a href="/">home</a>"#,
            i % 3,
            i % 5,
            (i + 1) % total
        );
        if i % 10 == 9 {
            body.push_str(&format!(r#" <a href="/missing/{i}.html">gone</a>"#));
        }
        body.push_str("</div></body></html>");
        pages.insert(format!("/p/{i}.html"), Resource::html(body));
    }
    pages
}

/// The `crawld` binary with no configuration from the environment, and a
/// minute to finish.
pub fn crawld() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("crawld").unwrap();
    cmd.env_remove("CRAWLD_CONFIGS")
        .env_remove("CRAWLD_STATE")
        .env_remove("CONFIGURATION_DIRECTORY")
        .env_remove("STATE_DIRECTORY")
        .env_remove("RUST_LOG")
        .timeout(Duration::from_secs(60));
    cmd
}

/// Writes `files` (name, TOML text with `{base}` replaced by the site URL) to `dir`.
pub fn write_configs(dir: &Path, base: &str, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text.replace("{base}", base)).unwrap();
    }
}

/// A fast profile for tests: no delay.
pub const FAST_PROFILE: &str = r#"
[profiles.fast]
extends = "aggressive"
concurrency = 8
delay = "0ms"
timeout = "5s"
backoff = "10ms"
backoff_max = "40ms"
backoff_429 = "10ms"
"#;

/// The target `name` of a configs dir, which must load without errors.
pub fn load_target(configs: &Path, name: &str) -> Arc<crawld::config::Target> {
    let report = crawld::config::load_dir(configs).unwrap();
    assert!(report.all_errors().is_empty(), "{:?}", report.all_errors());
    report.set.targets[&crawld::ids::TargetId::new(name)].clone()
}

/// One full run of target `name` in-process, with a store in `state`.
pub async fn crawl_target(
    engine: &crawld::crawl::Engine,
    configs: &Path,
    state: &Path,
    name: &str,
) -> (crawld::store::RunRecord, Arc<crawld::store::Store>) {
    let target = load_target(configs, name);
    let store = Arc::new(crawld::store::Store::open(state).unwrap());
    let run = crawld::crawl::run(
        engine,
        store.clone(),
        target,
        crawld::store::RunMode::Full,
        Default::default(),
        &(),
    )
    .await
    .unwrap();
    (run, store)
}
