//! The per-host limits measured from the server's side: the request rate a
//! profile allows (N/(L+D)), and one budget per host shared by two targets
//! crawling it at once in the daemon.
#![allow(clippy::disallowed_methods)] // the daemon test polls a child process with thread sleeps

mod common;

use std::time::Duration;

use common::daemon::{wait_for, Daemon};
use common::{crawl_target, shop, write_configs, Site};
use crawld::crawl::Engine;
use crawld::ids::TargetId;
use serde_json::Value;

/// The timing tests of this file run one at a time, so that a daemon
/// crawling in one does not skew the rate measured in the other.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn the_request_rate_stays_under_concurrency_over_latency_plus_delay() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(rate_test());
}

async fn rate_test() {
    const N: usize = 4;
    const PRODUCTS: usize = 80;
    let latency = Duration::from_millis(50);
    let delay = Duration::from_millis(50);
    let mut pages = shop(1, PRODUCTS);
    for r in pages.values_mut() {
        r.delay = latency;
    }
    let site = Site::start(pages);
    let tmp = tempfile::tempdir().unwrap();
    let configs = tmp.path().join("configs");
    let target = r#"
start_urls = ["{base}/"]
profile = "p"
[follow]
allow = ['^/$', '^/p/']
[items.product]
pages = '^/p/'
[items.product.fields]
name = { css = "h1::text", required = true }
"#;
    let profile = format!(
        "[profiles.p]\nconcurrency = {N}\ndelay = \"{}ms\"\ntimeout = \"5s\"\n",
        delay.as_millis()
    );
    write_configs(
        &configs,
        &site.url(""),
        &[("t.toml", target), ("p.toml", &profile)],
    );
    let (run, store) =
        crawl_target(&Engine::default(), &configs, &tmp.path().join("state"), "t").await;
    assert_eq!(
        store.items(&TargetId::new("t")).count(),
        PRODUCTS,
        "{:?}",
        run.counts
    );
    assert_eq!(site.stats.page_requests(), PRODUCTS + 1, "each page once");
    assert!(
        site.stats.max_in_flight() <= N,
        "concurrency {N}, saw {} in flight",
        site.stats.max_in_flight()
    );

    let starts = site.stats.page_starts();
    let limit = N as f64 / (latency + delay).as_secs_f64();
    // The steady part: from the first product (the start page is fetched
    // alone) to the last request start. Counting the starts in
    // [first, last) over its length gives exactly N/(L+D) for requests
    // started in waves of N, and at most that for any other pattern.
    let (first, last) = (starts[1], *starts.last().unwrap());
    let span = (last - first).as_secs_f64();
    let rate = (starts.len() - 2) as f64 / span;
    eprintln!(
        "rate {rate:.1}/s over {span:.2}s, N/(L+D) = {limit:.1}/s, max in flight {}",
        site.stats.max_in_flight()
    );
    assert!(
        rate <= 1.05 * limit,
        "{rate:.1} requests/s, more than N/(L+D) = {limit:.1}"
    );
    assert!(
        rate >= 0.7 * limit,
        "{rate:.1} requests/s, far below N/(L+D) = {limit:.1}: the limiter is too slow"
    );
    // Locally too: a request holds its slot from its start until D after
    // its answer, so N+1 starts never fit in less than L+D (20% left for
    // scheduling jitter on a loaded machine).
    let window = (latency + delay).mul_f64(0.8);
    for w in starts.windows(N + 1) {
        assert!(
            w[N] - w[0] >= window,
            "{} requests started within {:?}",
            N + 1,
            w[N] - w[0]
        );
    }
}

// ---------------------------------------------------------------------------
// Two targets on one host, in a real daemon.

const SHARED_PROFILE: &str = r#"
[profiles.three]
concurrency = 3
delay = "10ms"
timeout = "10s"
"#;

/// No schedule fires within the test and no full_schedule asks for a
/// catch-up run: runs start only when triggered.
const SHOP_TARGET: &str = r#"
start_urls = ["{base}/"]
profile = "three"
schedule = "0 0 0 1 1 *"
strip_params = ["utm_*"]
[follow]
allow = ['^/$', '^/list/', '^/p/']
[items.product]
pages = '^/p/'
[items.product.fields]
name = { css = "h1::text", required = true }
"#;

#[test]
fn two_targets_on_one_host_share_its_concurrency_in_the_daemon() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const LISTS: usize = 2;
    const PER_LIST: usize = 25;
    const PAGES: usize = LISTS + LISTS * PER_LIST;
    let mut pages = shop(LISTS, PER_LIST);
    // 30 to 50 ms per answer, so the two runs' requests overlap.
    for (i, r) in pages.values_mut().enumerate() {
        r.delay = Duration::from_millis(30 + (i as u64 * 7) % 21);
    }
    let site = Site::start(pages);
    let tmp = tempfile::tempdir().unwrap();
    let configs = tmp.path().join("configs");
    write_configs(
        &configs,
        &site.url(""),
        &[
            ("a.toml", SHOP_TARGET),
            ("b.toml", SHOP_TARGET),
            ("p.toml", SHARED_PROFILE),
        ],
    );
    let d = Daemon::start(&configs, &tmp.path().join("state"), &[]);
    d.cmd(&["trigger", "a", "--full"]).assert().success();
    d.cmd(&["trigger", "b", "--full"]).assert().success();
    let done = |t: &str| d.runs(t).first().is_some_and(|r| r["status"] != "running");
    wait_for(|| done("a") && done("b"), "both runs end");

    let (a, b) = (d.runs("a"), d.runs("b"));
    assert_eq!((a.len(), b.len()), (1, 1), "one run each: {a:?} {b:?}");
    let (a, b) = (&a[0], &b[0]);
    for run in [a, b] {
        assert_eq!(run["status"], "completed", "{run}");
        assert_eq!(run["counts"]["pages_fetched"], PAGES as u64, "{run}");
        assert_eq!(run["counts"]["pages_failed"], 0, "{run}");
        assert_eq!(
            run["counts"]["items_new"],
            (LISTS * PER_LIST) as u64,
            "{run}"
        );
    }
    // The runs overlapped, so the limit below is the shared one.
    let span = |r: &Value| {
        (
            r["started_ms"].as_u64().unwrap(),
            r["ended_ms"].as_u64().unwrap(),
        )
    };
    let ((a0, a1), (b0, b1)) = (span(a), span(b));
    assert!(
        a0 < b1 && b0 < a1,
        "the two runs overlap: a {a0}..{a1}, b {b0}..{b1}"
    );
    // Every page was asked for once by each target.
    let mut paths = vec!["/".to_owned()];
    paths.extend((2..=LISTS).map(|l| format!("/list/{l}")));
    paths.extend((0..LISTS * PER_LIST).map(|i| format!("/p/{i}.html")));
    for p in &paths {
        assert_eq!(site.stats.count(p), 2, "{p} fetched by each target");
    }
    eprintln!(
        "runs a {a0}..{a1}, b {b0}..{b1}; max in flight {}",
        site.stats.max_in_flight()
    );
    assert!(
        site.stats.max_in_flight() <= 3,
        "one budget of 3 per host across targets, saw {} in flight",
        site.stats.max_in_flight()
    );
    // `crawld status` shows the host as both targets used it.
    let status = d.status();
    let host = status["hosts"]
        .as_array()
        .and_then(|h| h.iter().find(|h| h["host"] == site.addr.to_string()))
        .cloned()
        .unwrap_or_else(|| panic!("the host in status: {status}"));
    assert_eq!(host["concurrency"], 3, "{host}");
    assert_eq!(host["counters"]["requests"], 2 * PAGES as u64, "{host}");
    assert_eq!(host["counters"]["status_2xx"], 2 * PAGES as u64, "{host}");
    assert_eq!(d.stop(), Some(0));
}
