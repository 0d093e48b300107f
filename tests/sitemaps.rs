//! Sitemaps on a loopback site: an index (found through robots.txt's
//! `Sitemap:` lines) of two gzip sitemaps with lastmods seeds the crawl; an
//! incremental run of the unchanged site asks for no page at all; a page
//! whose lastmod moves forward is fetched again; the follow rules, robots.txt
//! and the sitemaps.org limits apply.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use common::{load_target, write_configs, Resource, Site, FAST_PROFILE};
use crawld::crawl::Engine;
use crawld::failure::Failure;
use crawld::ids::TargetId;
use crawld::store::{RunMode, RunRecord, RunStatus, Store};

const PRODUCTS: usize = 10;

fn gz(text: &str) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(text.as_bytes()).expect("gzip");
    e.finish().expect("gzip")
}

fn binary(body: Vec<u8>, content_type: &str) -> Resource {
    Resource {
        content_type: Some(content_type.into()),
        body,
        ..Resource::html("")
    }
}

/// A urlset; as Yoast (WordPress) and Shopify write them, each page also
/// names its images (`image:image`), whose `image:loc` is not a page.
fn urlset(entries: &[(String, String)]) -> String {
    let mut s = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">"#,
    );
    for (loc, lastmod) in entries {
        let image = format!("{}/img/1.jpg", loc.trim_end_matches('/'));
        s.push_str(&format!(
            "<url><loc>{loc}</loc><lastmod>{lastmod}</lastmod><image:image><image:loc>{image}</image:loc></image:image></url>"
        ));
    }
    s.push_str("</urlset>");
    s
}

fn product(i: usize, price: usize) -> Resource {
    Resource::html(format!(
        r#"<html><body><div class="product"><h1>Product {i}</h1><p class="price">{price}</p></div></body></html>"#
    ))
}

/// The child sitemap `n` (1 or 2) with `lastmod` for each of its products.
fn child(site: &Site, n: usize, lastmod: &dyn Fn(usize) -> String) -> Resource {
    let half = PRODUCTS / 2;
    let mut entries: Vec<(String, String)> = ((n - 1) * half..n * half)
        .map(|i| (site.url(&format!("/p/{i}.html")), lastmod(i)))
        .collect();
    if n == 1 {
        // The start URL, and a page the follow rules deny.
        entries.push((site.url("/"), "2020-01-01".into()));
        entries.push((site.url("/denied/1.html"), "2020-01-01".into()));
    }
    binary(gz(&urlset(&entries)), "application/x-gzip")
}

fn sitemap_site() -> Site {
    let mut pages = HashMap::new();
    pages.insert(
        "/".to_owned(),
        Resource::html("<html><body>home</body></html>"),
    );
    for i in 0..PRODUCTS {
        pages.insert(format!("/p/{i}.html"), product(i, 100 + i));
    }
    pages.insert("/denied/1.html".to_owned(), product(99, 1));
    let site = Site::start(pages);
    site.set(
        "/robots.txt",
        Resource {
            content_type: Some("text/plain".into()),
            ..Resource::html(format!(
                "User-agent: *\nDisallow: /private/\n\nSitemap: {}\nSitemap: {}\n",
                site.url("/sitemap_index.xml"),
                site.url("/private/sitemap.xml")
            ))
        },
    );
    let index = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><sitemap><loc>{}</loc><lastmod>2020-01-01</lastmod></sitemap><sitemap><loc>{}</loc></sitemap></sitemapindex>"#,
        site.url("/s1.xml.gz"),
        site.url("/s2.xml.gz")
    );
    site.set(
        "/sitemap_index.xml",
        binary(index.into_bytes(), "application/xml"),
    );
    let old = |_: usize| "2020-01-01".to_owned();
    site.set("/s1.xml.gz", child(&site, 1, &old));
    site.set("/s2.xml.gz", child(&site, 2, &old));
    site.set(
        "/private/sitemap.xml",
        binary(urlset(&[]).into_bytes(), "application/xml"),
    );
    site
}

const TARGET: &str = r#"
start_urls = ["{base}/"]
profile = "fast"
sitemaps = "robots"

[follow]
deny = ["^/denied/"]

[items.product]
selector = ".product"
key = "name"
fields = { name = "h1", price = "p.price" }
"#;

async fn run(configs: &Path, store: &Arc<Store>, mode: RunMode) -> RunRecord {
    let target = load_target(configs, "shop");
    crawld::crawl::run(
        &Engine::default(),
        store.clone(),
        target,
        mode,
        Default::default(),
        &(),
    )
    .await
    .expect("run")
}

/// Requests for pages (not robots.txt, not sitemaps).
fn page_requests(site: &Site) -> Vec<String> {
    let paths = site.stats.paths.lock().unwrap();
    paths
        .iter()
        .filter(|p| *p == "/" || p.starts_with("/p/") || p.starts_with("/denied/"))
        .cloned()
        .collect()
}

fn live_items(store: &Store) -> usize {
    store
        .items(&TargetId::new("shop"))
        .map(|i| i.expect("item"))
        .filter(|i| i.removed_ms.is_none())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sitemaps_seed_the_crawl_and_an_unchanged_site_is_not_asked_again() {
    let site = sitemap_site();
    let dir = tempfile::tempdir().expect("dir");
    let (configs, state) = (dir.path().join("configs"), dir.path().join("state"));
    let base = format!("http://{}", site.addr);
    write_configs(
        &configs,
        &base,
        &[("profiles.toml", FAST_PROFILE), ("shop.toml", TARGET)],
    );
    let store = Arc::new(Store::open(&state).expect("store"));

    // A full run: every page the sitemaps name, once; nothing the rules
    // deny; no sitemap robots.txt disallows.
    let full = run(&configs, &store, RunMode::Full).await;
    assert_eq!(full.status, RunStatus::Completed);
    let mut asked = page_requests(&site);
    asked.sort();
    let mut expected: Vec<String> = (0..PRODUCTS).map(|i| format!("/p/{i}.html")).collect();
    expected.push("/".into());
    expected.sort();
    assert_eq!(asked, expected, "the pages, not their images");
    assert!(!asked.iter().any(|p| p.starts_with("/denied/")));
    assert_eq!(site.stats.count("/private/sitemap.xml"), 0);
    assert_eq!(site.stats.count("/s1.xml.gz"), 1);
    assert_eq!(
        full.counts.sitemaps_read, 3,
        "the index and its two children"
    );
    assert_eq!(
        full.counts.sitemaps_failed, 1,
        "the one robots.txt disallows"
    );
    assert_eq!(full.counts.sitemap_urls, PRODUCTS as u64 + 2);
    assert_eq!(full.counts.unchanged_by_sitemap, 0);
    assert_eq!(full.counts.items_new, PRODUCTS as u64);
    let failures: Vec<_> = store
        .failures(&TargetId::new("shop"), full.id)
        .map(|f| f.expect("failure"))
        .collect();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].kind, Failure::Sitemap);
    assert!(failures[0].url.ends_with("/private/sitemap.xml"));
    assert!(
        failures[0].detail.contains("robots.txt"),
        "{}",
        failures[0].detail
    );

    // Incremental, nothing changed: not one page request.
    site.stats.reset();
    let quiet = run(&configs, &store, RunMode::Incremental).await;
    assert_eq!(quiet.status, RunStatus::Completed);
    assert_eq!(page_requests(&site), Vec::<String>::new());
    assert_eq!(quiet.counts.unchanged_by_sitemap, PRODUCTS as u64 + 1);
    assert_eq!(quiet.counts.pages_fetched, 0);
    assert_eq!(live_items(&store), PRODUCTS);
    let summary = crawld::report::summary(&quiet, &[]);
    assert!(summary.contains("11 unchanged by lastmod"), "{summary}");
    // The summary says what the target holds, as after an all-304 run.
    assert_eq!(quiet.counts.items_kept, PRODUCTS as u64);
    assert!(summary.contains("items   10 kept"), "{summary}");

    // A full run fetches everything, whatever the lastmods say.
    site.stats.reset();
    let again = run(&configs, &store, RunMode::Full).await;
    assert_eq!(page_requests(&site).len(), PRODUCTS + 1);
    assert_eq!(again.counts.unchanged_by_sitemap, 0);
    assert_eq!(live_items(&store), PRODUCTS, "no item removed");

    // Product 3 changes, and its lastmod moves past the last fetch.
    let later = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    site.set("/p/3.html", product(3, 999));
    let lastmod = move |i: usize| {
        if i == 3 {
            later.clone()
        } else {
            "2020-01-01".to_owned()
        }
    };
    site.set("/s1.xml.gz", child(&site, 1, &lastmod));
    site.stats.reset();
    let changed = run(&configs, &store, RunMode::Incremental).await;
    assert_eq!(page_requests(&site), vec!["/p/3.html".to_owned()]);
    assert_eq!(changed.counts.items_changed, 1);
    assert_eq!(changed.counts.unchanged_by_sitemap, PRODUCTS as u64);
    assert_eq!(live_items(&store), PRODUCTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sitemap_past_the_limits_warns_and_a_missing_one_fails_alone() {
    let mut pages = HashMap::new();
    pages.insert(
        "/".to_owned(),
        Resource::html("<html><body>home</body></html>"),
    );
    let site = Site::start(pages);
    // One URL more than sitemaps.org allows, all denied by the follow rules
    // but the first (so that the crawl stays small).
    let mut entries = vec![(site.url("/kept.html"), "2020-01-01".to_owned())];
    entries.extend(
        (0..crawld::sitemap::MAX_ENTRIES)
            .map(|i| (site.url(&format!("/denied/{i}")), String::new())),
    );
    site.set(
        "/big.xml.gz",
        binary(gz(&urlset(&entries)), "application/octet-stream"),
    );
    site.set(
        "/kept.html",
        Resource::html("<html><body>kept</body></html>"),
    );
    let dir = tempfile::tempdir().expect("dir");
    let (configs, state) = (dir.path().join("configs"), dir.path().join("state"));
    let target = r#"
start_urls = ["{base}/"]
profile = "fast"
sitemaps = ["{base}/big.xml.gz", "{base}/missing.xml"]

[follow]
deny = ["^/denied/"]
"#;
    write_configs(
        &configs,
        &format!("http://{}", site.addr),
        &[("profiles.toml", FAST_PROFILE), ("shop.toml", target)],
    );
    let store = Arc::new(Store::open(&state).expect("store"));
    let full = run(&configs, &store, RunMode::Full).await;
    assert_eq!(
        full.status,
        RunStatus::Completed,
        "a failed sitemap is no failed run"
    );
    assert_eq!(site.stats.count("/kept.html"), 1);
    assert_eq!(
        full.counts.sitemap_urls,
        crawld::sitemap::MAX_ENTRIES as u64
    );
    assert_eq!(
        full.counts.sitemap_warnings.len(),
        1,
        "{:?}",
        full.counts.sitemap_warnings
    );
    let warning = &full.counts.sitemap_warnings[0];
    assert!(
        warning.contains("big.xml.gz") && warning.contains("50000"),
        "{warning}"
    );
    assert_eq!(full.counts.sitemaps_failed, 1);
    let failures: Vec<_> = store
        .failures(&TargetId::new("shop"), full.id)
        .map(|f| f.expect("failure"))
        .collect();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].kind, Failure::Sitemap);
    assert!(
        failures[0].detail.contains("HTTP 404"),
        "{}",
        failures[0].detail
    );
    let summary = crawld::report::summary(&full, &failures);
    assert!(summary.contains("warning sitemap"), "{summary}");
}

#[test]
fn the_sitemaps_key_takes_robots_or_http_urls_and_names_its_line_otherwise() {
    let load = |value: &str| {
        let text = format!("start_urls = [\"http://a.test/\"]\nsitemaps = {value}\n");
        let files = vec![(std::path::PathBuf::from("t.toml"), Ok(text))];
        let report = crawld::config::load_files(files, &|_| None);
        let errors: Vec<String> = report.all_errors().iter().map(|e| e.to_string()).collect();
        (report, errors)
    };
    let (report, errors) = load(r#""robots""#);
    assert!(errors.is_empty(), "{errors:?}");
    let target = &report.set.targets[&TargetId::new("t")];
    assert_eq!(target.sitemaps, Some(crawld::config::SitemapSource::Robots));
    let (report, errors) = load(r#"["http://a.test/sitemap.xml"]"#);
    assert!(errors.is_empty(), "{errors:?}");
    let target = &report.set.targets[&TargetId::new("t")];
    assert!(
        matches!(&target.sitemaps, Some(crawld::config::SitemapSource::Urls(u)) if u.len() == 1)
    );
    for bad in [r#""robot""#, "[]", r#"["ftp://a.test/s.xml"]"#, "3"] {
        let (_, errors) = load(bad);
        assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
        assert!(
            errors[0].contains("sitemaps") && errors[0].contains(":2:"),
            "{bad}: {}",
            errors[0]
        );
    }
}

#[test]
fn runs_of_older_versions_read_with_the_sitemap_counters_at_zero() {
    let old: crawld::store::RunCounts =
        serde_json::from_str(r#"{"pages_fetched":3,"pages_not_modified":2}"#).expect("old counts");
    assert_eq!(old.pages_fetched, 3);
    assert_eq!(
        (
            old.sitemaps_read,
            old.sitemaps_failed,
            old.sitemap_urls,
            old.unchanged_by_sitemap
        ),
        (0, 0, 0, 0)
    );
    assert!(old.sitemap_warnings.is_empty());
    let written = serde_json::to_value(&old).expect("json");
    assert!(
        written.get("sitemap_warnings").is_none(),
        "no empty list written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sitemaps_naming_more_pages_than_max_pages_are_cut_with_a_warning() {
    let site = sitemap_site();
    let dir = tempfile::tempdir().expect("dir");
    let (configs, state) = (dir.path().join("configs"), dir.path().join("state"));
    let target = TARGET.replace("sitemaps = ", "max_pages = 4\nsitemaps = ");
    write_configs(
        &configs,
        &format!("http://{}", site.addr),
        &[("profiles.toml", FAST_PROFILE), ("shop.toml", &target)],
    );
    let store = Arc::new(Store::open(&state).expect("store"));
    let full = run(&configs, &store, RunMode::Full).await;
    assert_eq!(full.status, RunStatus::Completed);
    assert!(
        page_requests(&site).len() <= 4,
        "{:?}",
        page_requests(&site)
    );
    let warnings = &full.counts.sitemap_warnings;
    assert!(
        warnings.iter().any(|w| w.contains("max_pages (4)")),
        "{warnings:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_robots_txt_now_disallows_is_not_kept_as_unchanged_by_its_sitemap() {
    let site = sitemap_site();
    let dir = tempfile::tempdir().expect("dir");
    let (configs, state) = (dir.path().join("configs"), dir.path().join("state"));
    // /p/0.html is a start URL too (queued before the sitemaps are read).
    let target = TARGET.replace(r#"["{base}/"]"#, r#"["{base}/", "{base}/p/0.html"]"#);
    write_configs(
        &configs,
        &format!("http://{}", site.addr),
        &[("profiles.toml", FAST_PROFILE), ("shop.toml", &target)],
    );
    let store = Arc::new(Store::open(&state).expect("store"));
    let full = run(&configs, &store, RunMode::Full).await;
    assert_eq!(full.status, RunStatus::Completed);
    assert_eq!(full.counts.robots_disallowed, 1, "the private sitemap");

    // robots.txt now disallows a queued page and one only the sitemap names.
    site.set(
        "/robots.txt",
        Resource {
            content_type: Some("text/plain".into()),
            ..Resource::html(format!(
                "User-agent: *\nDisallow: /private/\nDisallow: /p/0.html\nDisallow: /p/1.html\n\nSitemap: {}\n",
                site.url("/sitemap_index.xml"),
            ))
        },
    );
    site.stats.reset();
    let quiet = run(&configs, &store, RunMode::Incremental).await;
    assert_eq!(quiet.status, RunStatus::Completed);
    assert_eq!(page_requests(&site), Vec::<String>::new());
    assert_eq!(quiet.counts.robots_disallowed, 2);
    assert_eq!(quiet.counts.unchanged_by_sitemap, PRODUCTS as u64 + 1 - 2);
}

/// Cancels its run at the first progress it is told of (after the sitemaps
/// were read, before any page is done).
struct CancelAtFirst(tokio_util::sync::CancellationToken);

impl crawld::crawl::ProgressSink for CancelAtFirst {
    fn update(&self, _: &crawld::crawl::Progress) {
        self.0.cancel();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_run_does_not_count_its_sitemaps_again() {
    let site = sitemap_site();
    let dir = tempfile::tempdir().expect("dir");
    let (configs, state) = (dir.path().join("configs"), dir.path().join("state"));
    write_configs(
        &configs,
        &format!("http://{}", site.addr),
        &[("profiles.toml", FAST_PROFILE), ("shop.toml", TARGET)],
    );
    let store = Arc::new(Store::open(&state).expect("store"));
    let cancel = tokio_util::sync::CancellationToken::new();
    let first = crawld::crawl::run(
        &Engine::default(),
        store.clone(),
        load_target(&configs, "shop"),
        RunMode::Full,
        cancel.clone(),
        &CancelAtFirst(cancel.clone()),
    )
    .await
    .expect("run");
    assert_eq!(first.status, RunStatus::Interrupted);
    assert_eq!(first.counts.sitemaps_read, 3);
    assert_eq!(first.counts.sitemap_urls, PRODUCTS as u64 + 2);

    let second = run(&configs, &store, RunMode::Full).await;
    assert_eq!(second.status, RunStatus::Completed);
    assert_eq!(second.resumed_from, Some(first.id));
    assert_eq!(site.stats.count("/s1.xml.gz"), 2, "read again");
    let runs: Vec<RunRecord> = store
        .runs(&TargetId::new("shop"))
        .map(|r| r.expect("run"))
        .filter(|r| r.crawl == first.crawl)
        .collect();
    let mut total = crawld::store::RunCounts::default();
    for r in &runs {
        total.add(&r.counts);
    }
    assert_eq!(runs.len(), 2);
    assert_eq!(total.sitemaps_read, 3, "the chain's total");
    assert_eq!(total.sitemap_urls, PRODUCTS as u64 + 2);
}
