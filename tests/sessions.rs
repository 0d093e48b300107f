//! Per-host settings ([domains], sessions, proxies, credentials) and the
//! internal-address guard, against real loopback
//! servers: what the server (or the proxy) sees is what is asserted.

mod common;

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, Response};
use common::{crawl_target, serve_app, shop, write_configs, Resource, Site};
use crawld::address::{is_internal, AddressPolicy};
use crawld::crawl::Engine;
use crawld::failure::Failure;
use crawld::store::RunRecord;

const TARGET: &str = r#"
start_urls = ["{base}/"]
profile = "p"
[follow]
same_host = false
[items.page]
[items.page.fields]
h1 = "h1"
"#;

async fn crawl_with(engine: &Engine, base: &str, target: &str, profile: &str) -> RunRecord {
    let tmp = tempfile::tempdir().unwrap();
    let configs = tmp.path().join("configs");
    write_configs(&configs, base, &[("t.toml", target), ("p.toml", profile)]);
    crawl_target(engine, &configs, &tmp.path().join("state"), "t")
        .await
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_jar_and_identity_change_every_n_requests() {
    let site = Site::start(shop(1, 8));
    let profile = r#"
[profiles.p]
extends = "aggressive"
concurrency = 1
delay = "0ms"
rotate_session_every = 3
identities = [
  { user_agent = "crawld-test/A (+https://example.org/bot)", accept_language = "en" },
  { user_agent = "crawld-test/B (+https://example.org/bot)" },
]
"#;
    let run = crawl_with(&Engine::default(), &site.url(""), TARGET, profile).await;
    let seen = site.stats.clients.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        10,
        "robots.txt, home, 8 products: {:?}",
        run.counts
    );
    for (i, (path, ua, cookie)) in seen.iter().enumerate() {
        let session = i / 3;
        let ua = ua.as_deref().unwrap_or("");
        let want = if session % 2 == 0 { "/A" } else { "/B" };
        assert!(ua.contains(want), "request {i} ({path}): {ua}");
        // The server hands a cookieless request `sid=<its number>`; the
        // session's later requests send it back, the next session's first does not.
        let expect = (i % 3 != 0).then(|| format!("sid={}", session * 3 + 1));
        assert_eq!(cookie, &expect, "request {i} ({path})");
    }
}

/// (proxy, request URI, Proxy-Authorization) of every request a proxy passed on.
type ProxyLog = Arc<Mutex<Vec<(&'static str, String, Option<String>)>>>;

/// A forward HTTP proxy on loopback that records what passes through it.
fn proxy(name: &'static str, log: ProxyLog) -> String {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let app = axum::Router::new().fallback(move |req: Request<Body>| {
        let (client, log) = (client.clone(), log.clone());
        async move {
            let auth = req
                .headers()
                .get("proxy-authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let uri = req.uri().to_string();
            log.lock().unwrap().push((name, uri.clone(), auth));
            let upstream = client.get(&uri).send().await.unwrap();
            let mut b = Response::builder().status(upstream.status().as_u16());
            for (k, v) in upstream.headers() {
                b = b.header(k.as_str(), v.as_bytes());
            }
            b.body(Body::from(upstream.bytes().await.unwrap())).unwrap()
        }
    });
    serve_app(app).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_rotate_with_sessions_and_carry_their_credentials() {
    let site = Site::start(shop(1, 5));
    let log = Arc::new(Mutex::new(Vec::new()));
    let (one, two) = (proxy("one", log.clone()), proxy("two", log.clone()));
    let profile = format!(
        r#"
[profiles.p]
extends = "aggressive"
concurrency = 1
delay = "0ms"
rotate_session_every = 2
proxies = ["http://alice:s3cret@{one}", "http://{two}"]
"#
    );
    let run = crawl_with(&Engine::default(), &site.url(""), TARGET, &profile).await;
    let log = log.lock().unwrap().clone();
    assert_eq!(
        log.len(),
        site.stats.requests(),
        "every request went through a proxy"
    );
    assert_eq!(
        log.len(),
        7,
        "robots.txt, home, 5 products: {:?}",
        run.counts
    );
    for (i, (name, uri, auth)) in log.iter().enumerate() {
        let want = if (i / 2) % 2 == 0 { "one" } else { "two" };
        assert_eq!(*name, want, "request {i} ({uri})");
        if *name == "one" {
            // alice:s3cret
            assert_eq!(auth.as_deref(), Some("Basic YWxpY2U6czNjcmV0"));
        } else {
            assert_eq!(auth, &None, "the other proxy never sees them");
        }
    }
    assert_eq!(
        format!(
            "{}",
            crawld::config::ProxyUrl::parse(&format!("http://alice:s3cret@{one}")).unwrap()
        ),
        format!("http://alice:***@{one}"),
        "credentials never reach a log line"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_and_redirects_to_internal_addresses_are_refused() {
    let site = Site::start(Default::default());
    let port = site.addr.port();
    let internal = format!("http://127.0.0.1:{port}");
    site.set(
        "/",
        Resource::html(format!(
            r#"<h1>Home</h1><a href="/go">go</a><a href="{internal}/direct">raw IP</a><a href="/fine">fine</a>"#
        )),
    );
    site.set("/go", Resource::redirect(&format!("{internal}/secret")));
    for p in ["/secret", "/direct", "/fine"] {
        site.set(p, Resource::html(format!("<h1>{p}</h1>")));
    }
    // On loopback everything is internal: call the name `localhost` public,
    // so that the site stands for a public one and 127.0.0.1 for the inside.
    let public_localhost = || AddressPolicy::new(|host, ip| host != "localhost" && is_internal(ip));
    let base = format!("http://localhost:{port}");
    let profile = "[profiles.p]\nextends = \"aggressive\"\nconcurrency = 2\ndelay = \"0ms\"\n";
    let run = crawl_with(&Engine::new(public_localhost()), &base, TARGET, profile).await;
    assert_eq!(site.stats.count("/secret"), 0, "redirect not followed");
    assert_eq!(site.stats.count("/direct"), 0, "raw-IP link not followed");
    assert_eq!(site.stats.count("/fine"), 1);
    // The redirect is recorded as a failure; the raw-IP link is never queued.
    assert_eq!(
        run.counts.errors.get(&Failure::AddressRefused),
        Some(&1),
        "{:?}",
        run.counts
    );

    // allow_private_networks = true lets the target in.
    let open = format!("allow_private_networks = true\n{TARGET}");
    let run = crawl_with(&Engine::new(public_localhost()), &base, &open, profile).await;
    assert_eq!(site.stats.count("/secret"), 1, "{:?}", run.counts);
    assert_eq!(site.stats.count("/direct"), 1);

    // A host name is checked after resolution: `localhost` internal this time,
    // the start URL's raw IP public.
    site.stats.reset();
    site.set(
        "/",
        Resource::html(format!(
            r#"<h1>Home</h1><a href="http://localhost:{port}/hidden">by name</a><a href="/fine">fine</a>"#
        )),
    );
    site.set("/hidden", Resource::html("<h1>hidden</h1>"));
    let names_internal = AddressPolicy::new(|host, _| host == "localhost");
    let run = crawl_with(&Engine::new(names_internal), &internal, TARGET, profile).await;
    assert_eq!(site.stats.count("/hidden"), 0, "{:?}", run.counts);
    assert_eq!(site.stats.count("/fine"), 1);
    assert_eq!(run.counts.errors.get(&Failure::AddressRefused), Some(&1));

    // With the default policy a loopback start URL allows loopback links.
    site.stats.reset();
    let run = crawl_with(&Engine::default(), &internal, TARGET, profile).await;
    assert_eq!(site.stats.count("/hidden"), 1, "{:?}", run.counts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_obey_robots_txt_and_another_host_gets_its_own_robots_txt() {
    let site = Site::start(Default::default());
    let port = site.addr.port();
    site.set(
        "/robots.txt",
        Resource {
            content_type: Some("text/plain".into()),
            ..Resource::html("User-agent: *\nDisallow: /blocked/\n")
        },
    );
    site.set(
        "/",
        Resource::html(r#"<h1>Home</h1><a href="/a">a</a><a href="/b">b</a>"#),
    );
    site.set("/a", Resource::redirect("/blocked/x"));
    site.set("/blocked/x", Resource::html("<h1>blocked</h1>"));
    site.set(
        "/b",
        Resource::redirect(&format!("http://localhost:{port}/c")),
    );
    site.set("/c", Resource::html("<h1>moved here</h1>"));
    let profile = "[profiles.p]\nextends = \"aggressive\"\nconcurrency = 2\ndelay = \"0ms\"\n";
    let run = crawl_with(&Engine::default(), &site.url(""), TARGET, profile).await;
    assert_eq!(
        site.stats.count("/blocked/x"),
        0,
        "a redirect into a disallowed path is not followed"
    );
    assert_eq!(
        run.counts.errors.get(&Failure::RobotsDisallowed),
        Some(&1),
        "{:?}",
        run.counts
    );
    // The other host's robots.txt is asked before its page.
    let asked: Vec<(String, String)> = site
        .stats
        .auth
        .lock()
        .unwrap()
        .iter()
        .filter(|(host, ..)| host.starts_with("localhost"))
        .map(|(host, path, _)| (host.clone(), path.clone()))
        .collect();
    let paths: Vec<&str> = asked.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(paths, ["/robots.txt", "/c"], "{asked:?}");
    assert_eq!(
        run.counts.hosts[&format!("localhost:{port}")]
            .answers
            .status_2xx,
        1
    );
    assert_eq!(
        run.counts.hosts[&site.addr.to_string()].answers.status_3xx,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_and_their_cookies_stay_with_their_target_and_start_hosts() {
    let site = Site::start(shop(1, 3));
    let port = site.addr.port();
    // The start URL moves to another host name: crawled, but no credentials there.
    site.set(
        "/start",
        Resource::redirect(&format!("http://localhost:{port}/")),
    );
    let with_token = r#"
start_urls = ["{base}/start"]
profile = "p"
headers = { Authorization = "Bearer s3cret" }
[items.page]
[items.page.fields]
h1 = "h1"
"#;
    let profile = "[profiles.p]\nextends = \"aggressive\"\nconcurrency = 1\ndelay = \"0ms\"\n";
    let engine = Engine::default();
    let run = crawl_with(&engine, &site.url(""), with_token, profile).await;
    let auth = site.stats.auth.lock().unwrap().clone();
    let start = auth.iter().find(|(_, path, _)| path == "/start").unwrap();
    assert_eq!(
        start.2.as_deref(),
        Some("Bearer s3cret"),
        "the start host gets them"
    );
    let moved: Vec<_> = auth
        .iter()
        .filter(|(host, ..)| host.starts_with("localhost"))
        .collect();
    assert!(
        moved.len() >= 4,
        "the site is crawled on its new host: {:?}",
        run.counts
    );
    assert!(
        moved.iter().all(|(.., a)| a.is_none()),
        "a host a redirect adds never sees the credentials: {moved:?}"
    );

    // Another target without credentials on the same engine (one daemon)
    // does not get the first target's cookies.
    let before = site.stats.clients.lock().unwrap().len();
    let plain = with_token.replace("headers = { Authorization = \"Bearer s3cret\" }\n", "");
    crawl_with(&engine, &site.url(""), &plain, profile).await;
    let clients = site.stats.clients.lock().unwrap().clone();
    let first = &clients[before];
    assert_eq!(
        first.2, None,
        "no cookie from the other target's session: {first:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domains_table_gives_one_host_its_own_profile() {
    let site = Site::start(Default::default());
    let port = site.addr.port();
    let links: String = (0..6)
        .map(|i| {
            format!(r#"<a href="http://localhost:{port}/img/{i}">i</a><a href="/p/{i}">p</a>"#)
        })
        .collect();
    site.set("/", Resource::html(format!("<h1>Home</h1>{links}")));
    for i in 0..6 {
        let mut page = Resource::html(format!("<h1>{i}</h1>"));
        page.delay = std::time::Duration::from_millis(20);
        site.set(&format!("/img/{i}"), page.clone());
        site.set(&format!("/p/{i}"), page);
    }
    let target = format!("{TARGET}\n[domains.\"localhost:{port}\"]\nprofile = \"slow\"\n");
    let profiles = "[profiles.p]\nextends = \"aggressive\"\nconcurrency = 6\ndelay = \"0ms\"\n\n[profiles.slow]\nextends = \"conservative\"\nconcurrency = 1\ndelay = \"30ms\"\n";
    let run = crawl_with(&Engine::default(), &site.url(""), &target, profiles).await;
    let (main, img) = (
        &run.counts.hosts[&site.addr.to_string()],
        &run.counts.hosts[&format!("localhost:{port}")],
    );
    assert_eq!((main.concurrency, main.delay_ms), (6, (0, 0)), "{main:?}");
    assert_eq!((img.concurrency, img.delay_ms), (1, (30, 30)), "{img:?}");
    assert_eq!((main.answers.status_2xx, img.answers.status_2xx), (7, 6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_redirects_across_hosts_stop_after_ten_new_hosts() {
    // Twelve hosts (ports), each start page redirecting to the next one's.
    let sites: Vec<Site> = (0..12).map(|_| Site::start(Default::default())).collect();
    for (i, site) in sites.iter().enumerate() {
        match sites.get(i + 1) {
            Some(next) => site.set("/", Resource::redirect(&next.url("/"))),
            None => site.set("/", Resource::html("<h1>end</h1>")),
        }
    }
    let target = "start_urls = [\"{base}/\"]\nprofile = \"p\"\n[follow]\nmax_depth = 0\n";
    let profile = "[profiles.p]\nextends = \"aggressive\"\nconcurrency = 1\ndelay = \"0ms\"\n";
    let run = crawl_with(&Engine::default(), &sites[0].url(""), target, profile).await;
    let asked: Vec<usize> = sites.iter().map(|s| s.stats.count("/")).collect();
    // The start host, then ten new hosts at depth 0; the twelfth would be
    // depth 1, past max_depth.
    assert_eq!(
        asked,
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0],
        "{:?}",
        run.counts
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_moved_for_good_loses_its_items() {
    let site = Site::start(Default::default());
    let port = site.addr.port();
    site.set(
        "/",
        Resource::html(r#"<h1>Home</h1><a href="/old">old</a>"#),
    );
    site.set("/old", Resource::html("<h1>Old</h1>"));
    let tmp = tempfile::tempdir().unwrap();
    let configs = tmp.path().join("configs");
    let target = TARGET.replace("same_host = false", "same_host = false\nmax_depth = 2");
    let profile = "[profiles.p]\nextends = \"aggressive\"\ndelay = \"0ms\"\n";
    write_configs(
        &configs,
        &site.url(""),
        &[("t.toml", &target), ("p.toml", profile)],
    );
    let state = tmp.path().join("state");
    let engine = Engine::default();
    let (_, store) = crawl_target(&engine, &configs, &state, "t").await;
    drop(store);

    let moved = |code: u16| Resource {
        status: code,
        ..Resource::redirect(&format!("http://localhost:{port}/new"))
    };
    site.set("/old", moved(301));
    site.set("/new", Resource::html("<h1>New</h1>"));
    let (run, store) = crawl_target(&engine, &configs, &state, "t").await;
    let items: Vec<_> = store
        .items(&crawld::ids::TargetId::new("t"))
        .collect::<Result<_, _>>()
        .unwrap();
    let old = items.iter().find(|i| i.page.ends_with("/old")).unwrap();
    assert!(old.removed_ms.is_some(), "{:?} {:?}", old, run.counts);
    assert_eq!(run.counts.items_removed, 1, "{:?}", run.counts);
    assert!(items
        .iter()
        .any(|i| i.page.ends_with("/new") && i.removed_ms.is_none()));
}
