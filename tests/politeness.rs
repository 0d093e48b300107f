//! Retries, 429/503 backoff with Retry-After, against a real loopback server.
//! Backoffs are in milliseconds so the suite stays fast; the timing checks
//! have tolerances.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{crawl_target, load_target, shop, write_configs, Resource, Site};
use crawld::crawl::{self, Engine};
use crawld::failure::Failure;
use crawld::ids::TargetId;
use crawld::store::{RunMode, RunRecord, Store};

const TARGET: &str = r#"
start_urls = ["{base}/"]
profile = "p"
[follow]
allow = ['^/$', '^/p/']
[items.product]
pages = '^/p/'
[items.product.fields]
name = { css = "h1::text", required = true }
"#;

/// Timing tests run one at a time, so that they do not skew each other.
static TIMING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn crawl_with(site: &Site, profile: &str) -> (RunRecord, usize) {
    let tmp = tempfile::tempdir().unwrap();
    let configs = tmp.path().join("configs");
    write_configs(
        &configs,
        &site.url(""),
        &[("t.toml", TARGET), ("p.toml", profile)],
    );
    let (run, store) =
        crawl_target(&Engine::default(), &configs, &tmp.path().join("state"), "t").await;
    let items = store.items(&TargetId::new("t")).count();
    (run, items)
}

fn status(code: u16, retry_after: Option<String>) -> Resource {
    Resource {
        status: code,
        headers: retry_after
            .into_iter()
            .map(|v| ("retry-after".to_owned(), v))
            .collect(),
        ..Resource::html("busy")
    }
}

/// No request may start inside [answered, answered + wait) of the throttling
/// answer, but for those already on the wire when it was answered (sent by
/// the crawler before it could see the 429: within a few milliseconds).
fn assert_quiet_after(site: &Site, path: &str, wait: Duration) {
    let on_the_wire = Duration::from_millis(15);
    let timeline = site.stats.timeline.lock().unwrap().clone();
    let (_, _, answered, _) = timeline
        .iter()
        .find(|(p, _, _, s)| p == path && *s == 429)
        .cloned()
        .unwrap();
    let early: Vec<_> = timeline
        .iter()
        .filter(|(_, started, _, _)| {
            *started > answered + on_the_wire && *started < answered + wait
        })
        .map(|(p, started, _, _)| (p.clone(), started.duration_since(answered)))
        .collect();
    assert!(
        early.is_empty(),
        "requests started inside the Retry-After window: {early:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_in_seconds_pauses_the_whole_host() {
    let _serial = TIMING.lock().await;
    let site = Site::start(shop(1, 12));
    site.script("/p/3.html", vec![status(429, Some("2".into()))]);
    let profile = "[profiles.p]\nconcurrency = 4\ndelay = \"0ms\"\nbackoff_429 = \"10ms\"\n";
    let (run, items) = crawl_with(&site, profile).await;
    assert_eq!(items, 12, "every page fetched in the end");
    assert_eq!(run.counts.requeues, 1);
    assert_quiet_after(&site, "/p/3.html", Duration::from_millis(2000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_as_an_http_date_is_honoured() {
    let _serial = TIMING.lock().await;
    let site = Site::start(shop(1, 12));
    // The date has whole seconds: 3 s ahead, cut to the second, is at least
    // 2 s after the 429 is answered (a few milliseconds into the crawl).
    let at = chrono::Utc::now() + chrono::Duration::seconds(3);
    let date = at.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    site.script("/p/5.html", vec![status(429, Some(date))]);
    let profile = "[profiles.p]\nconcurrency = 4\ndelay = \"0ms\"\nbackoff_429 = \"10ms\"\n";
    let (_, items) = crawl_with(&site, profile).await;
    assert_eq!(items, 12);
    assert_quiet_after(&site, "/p/5.html", Duration::from_millis(1900));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_answering_half_503_ends_with_every_page() {
    let site = Site::start(shop(1, 20));
    for i in (0..20).step_by(2) {
        site.script(&format!("/p/{i}.html"), vec![status(503, None)]);
    }
    let profile = "[profiles.p]\nconcurrency = 4\ndelay = \"0ms\"\nbackoff = \"5ms\"\nbackoff_429 = \"5ms\"\nbackoff_max = \"50ms\"\n";
    let (run, items) = crawl_with(&site, profile).await;
    assert_eq!(items, 20, "{:?}", run.counts);
    assert_eq!(run.counts.throttled, 10);
    assert_eq!(run.counts.pages_failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_with_backoff_then_recorded() {
    let site = Site::start(shop(1, 4));
    // Fails twice, then works: fetched with retries = 2.
    site.script("/p/1.html", vec![status(500, None), status(502, None)]);
    // Fails three times: with retries = 2, recorded as failed after 3 requests.
    site.script(
        "/p/2.html",
        vec![status(500, None), status(500, None), status(500, None)],
    );
    // Not retried at all.
    site.script("/p/3.html", vec![status(403, None)]);
    let profile = "[profiles.p]\nconcurrency = 2\ndelay = \"0ms\"\nretries = 2\nbackoff = \"20ms\"\nbackoff_max = \"100ms\"\n";
    let (run, items) = crawl_with(&site, profile).await;
    assert_eq!(site.stats.count("/p/1.html"), 3);
    assert_eq!(site.stats.count("/p/2.html"), 3);
    assert_eq!(site.stats.count("/p/3.html"), 1, "a 403 is final");
    assert_eq!(items, 2, "p/0 and p/1");
    assert_eq!(
        run.counts.errors.get(&Failure::Status(500)),
        Some(&1),
        "{:?}",
        run.counts
    );
    assert_eq!(run.counts.errors.get(&Failure::Status(403)), Some(&1));
    assert_eq!(run.counts.retries, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robots_disallow_and_crawl_delay_hold() {
    let _serial = TIMING.lock().await;
    let site = Site::start(shop(1, 6));
    site.set(
        "/robots.txt",
        Resource {
            content_type: Some("text/plain".into()),
            ..Resource::html("User-agent: *\nDisallow: /p/1.html\nCrawl-delay: 0.2\n")
        },
    );
    let profile = "[profiles.p]\nconcurrency = 4\ndelay = \"0ms\"\n";
    let (run, items) = crawl_with(&site, profile).await;
    assert_eq!(site.stats.count("/p/1.html"), 0, "disallowed: not fetched");
    assert_eq!(run.counts.robots_disallowed, 1);
    assert_eq!(items, 5);
    assert_eq!(site.stats.count("/robots.txt"), 1, "fetched once per run");
    let starts = site.stats.page_starts();
    for pair in starts.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(190),
            "Crawl-delay 0.2 s between request starts, saw {gap:?}"
        );
    }

    // respect_robots = false fetches it anyway.
    let (run, items) = crawl_with(
        &site,
        "[profiles.p]\nconcurrency = 4\ndelay = \"0ms\"\nrespect_robots = false\n",
    )
    .await;
    assert_eq!(run.counts.robots_disallowed, 0);
    assert_eq!(items, 6);
}

/// How many requests were open at the server when each request (of those
/// `pick`ed) started, in start order.
fn in_flight_at_starts(site: &Site, pick: impl Fn(&str) -> bool) -> Vec<usize> {
    let mut timeline = site.stats.timeline.lock().unwrap().clone();
    timeline.sort_by_key(|(_, started, _, _)| *started);
    timeline
        .iter()
        .filter(|(p, ..)| pick(p))
        .map(|(_, s, _, _)| {
            timeline
                .iter()
                .filter(|(_, s2, a2, _)| s2 <= s && a2 > s)
                .count()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_concurrency_halves_under_429s_and_recovers() {
    let _serial = TIMING.lock().await;
    let mut pages = shop(1, 40);
    for (path, r) in pages.iter_mut() {
        if path.starts_with("/p/") {
            r.delay = Duration::from_millis(30);
        }
    }
    let site = Site::start(pages);
    site.script(
        "/",
        vec![status(429, None), status(429, None), status(429, None)],
    );
    let profile = "[profiles.p]\nconcurrency = 8\ndelay = \"0ms\"\nbackoff_429 = \"10ms\"\nadaptive = true\npause_after = 0\n";
    let (run, items) = crawl_with(&site, profile).await;
    assert_eq!(items, 40);
    let products = in_flight_at_starts(&site, |p| p.starts_with("/p/"));
    let early = products[..5].iter().max().copied().unwrap_or(0);
    let overall = products.iter().max().copied().unwrap_or(0);
    assert!(
        early <= 3,
        "three 429s took the host from 8 to 1, it climbs back one at a time: {products:?}"
    );
    assert!(overall >= 6, "and recovers towards 8: {products:?}");
    assert!(overall <= 8, "never above the profile's concurrency");
    let host = &run.counts.hosts[&format!("{}", site.addr)];
    assert_eq!(host.answers.status_429, 3);
    assert_eq!(host.requeues, 3);
    assert_eq!(
        (host.effective_concurrency, host.concurrency),
        (8, 8),
        "recovered by the end: {host:?}"
    );

    // Without adaptive, concurrency stays at 8 after the same 429s.
    site.stats.reset();
    site.stats.timeline.lock().unwrap().clear();
    site.script(
        "/",
        vec![status(429, None), status(429, None), status(429, None)],
    );
    let (_, items) = crawl_with(
        &site,
        &profile.replace("adaptive = true", "adaptive = false"),
    )
    .await;
    assert_eq!(items, 40);
    let products = in_flight_at_starts(&site, |p| p.starts_with("/p/"));
    assert!(
        products[..8].iter().max().copied().unwrap_or(0) >= 6,
        "not adaptive: full concurrency at once: {products:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_pauses_the_host_and_the_pause_survives_a_restart() {
    let _serial = TIMING.lock().await;
    let site = Site::start(shop(1, 6));
    site.script(
        "/",
        vec![status(429, None), status(429, None), status(429, None)],
    );
    let tmp = tempfile::tempdir().unwrap();
    let configs = tmp.path().join("configs");
    let profile = "[profiles.p]\nconcurrency = 2\ndelay = \"0ms\"\nbackoff_429 = \"10ms\"\nadaptive = false\npause_after = 3\npause_for = \"1500ms\"\n";
    write_configs(
        &configs,
        &site.url(""),
        &[("t.toml", TARGET), ("p.toml", profile)],
    );
    let target = load_target(&configs, "t");
    let state = tmp.path().join("state");

    // First process: three 429s in a row trip the breaker; stop while paused.
    let store = Arc::new(Store::open(&state).unwrap());
    let cancel = tokio_util::sync::CancellationToken::new();
    let engine = Engine::default();
    let running = crawl::run(
        &engine,
        store.clone(),
        target.clone(),
        RunMode::Full,
        cancel.clone(),
        &(),
    );
    let stopper = async {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while site.stats.status_count(429) < 3 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
    };
    let (first, ()) = tokio::join!(running, stopper);
    let first = first.unwrap();
    assert_eq!(site.stats.status_count(429), 3);
    assert_eq!(format!("{:?}", first.status), "Interrupted");
    let host = &first.counts.hosts[&format!("{}", site.addr)];
    assert!(host.paused_until_ms.is_some(), "{host:?}");
    let tripped_at = site
        .stats
        .timeline
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, _, _, s)| *s == 429)
        .map(|(_, _, answered, _)| *answered)
        .max()
        .unwrap();
    assert_eq!(
        site.stats.requests(),
        4,
        "robots.txt and three 429s, then quiet"
    );
    drop(store);

    // Second process: a fresh engine knows the pause from the store.
    let store = Arc::new(Store::open(&state).unwrap());
    let second = crawl::run(
        &Engine::default(),
        store.clone(),
        target,
        RunMode::Full,
        Default::default(),
        &(),
    )
    .await
    .unwrap();
    assert_eq!(
        store.items(&TargetId::new("t")).count(),
        6,
        "{:?}",
        second.counts
    );
    let resumed_at = site
        .stats
        .timeline
        .lock()
        .unwrap()
        .iter()
        .map(|(_, started, _, _)| *started)
        .filter(|s| *s > tripped_at)
        .min()
        .unwrap();
    let quiet = resumed_at.duration_since(tripped_at);
    assert!(
        quiet >= Duration::from_millis(1450),
        "no request before pause_for has passed, also after a restart: {quiet:?}"
    );
}
