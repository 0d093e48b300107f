//! End-to-end crawls of a real loopback site through the library: follow
//! rules, dedup, budget, per-host concurrency, body cap, charset, errors.

mod common;

use std::time::Duration;

use common::{crawl_target, shop, write_configs, Resource, Site, FAST_PROFILE};
use crawld::crawl::Engine;
use crawld::failure::Failure;
use crawld::ids::TargetId;
use crawld::store::{ItemRecord, RunRecord, RunStatus, Store};
use serde_json::json;

const SHOP_TARGET: &str = r#"
start_urls = ["{base}/"]
profile = "fast"
strip_params = ["utm_*"]

[follow]
allow = ['^/$', '^/list/', '^/p/', '^/missing/', '^/extra/']

[items.card]
pages = '^/(list/\d+)?$'
selector = "article.pod"
key = "url"
[items.card.fields]
title = "h3 a::attr(title)"
url = { css = "h3 a::attr(href)", type = "url" }
price = { css = "p.price::text", type = "number", required = true }

[items.product]
pages = '^/p/'
[items.product.fields]
name = { css = "h1::text", required = true }
full = "h1"
price = { css = "p.price::text", type = "number" }
tags = { css = "ul.tags li::text", many = true }
desc_all = { css = "p.desc ::text", join = "|" }
desc_children = { css = "p.desc *::text", many = true }
"#;

async fn crawl_once(
    configs: &std::path::Path,
    state: &std::path::Path,
    name: &str,
) -> (RunRecord, Vec<ItemRecord>) {
    let (run, store) = crawl_target(&Engine::default(), configs, state, name).await;
    let items = store
        .items(&TargetId::new(name))
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    (run, items)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawls_a_shop_and_extracts_every_field() {
    let mut pages = shop(3, 10);
    pages.insert(
        "/extra/boom".into(),
        Resource {
            status: 500,
            ..Resource::html("boom")
        },
    );
    pages.insert(
        "/extra/file.pdf".into(),
        Resource {
            content_type: Some("application/pdf".into()),
            ..Resource::html("%PDF-1.4")
        },
    );
    let mut home = pages["/"].clone();
    let extra = r#"<a href="/extra/boom">x</a><a href="/extra/file.pdf">pdf</a><a href="/p/1.html?utm_source=x#top">dup</a><a href="http://localhost/p/1.html">other host</a><a href="mailto:x@example.org">mail</a>"#;
    home.body = String::from_utf8(home.body)
        .unwrap()
        .replace("</body>", &format!("{extra}</body>"))
        .into_bytes();
    pages.insert("/".into(), home);
    let site = Site::start(pages);
    let tmp = tempfile::tempdir().unwrap();
    let configs = tmp.path().join("configs");
    write_configs(
        &configs,
        &site.url(""),
        &[("shop.toml", SHOP_TARGET), ("p.toml", FAST_PROFILE)],
    );

    let (run, items) = crawl_once(&configs, &tmp.path().join("state"), "shop").await;
    assert_eq!(run.status, RunStatus::Completed);
    let c = &run.counts;
    // 3 lists + 30 products + 3 missing + boom + pdf; not the other host, not mailto:
    assert_eq!(c.pages_fetched, 3 + 30 + 3 + 1 + 1, "{c:?}");
    assert_eq!(c.errors.get(&Failure::Status(404)), Some(&3), "{c:?}");
    assert_eq!(c.errors.get(&Failure::Status(500)), Some(&1), "{c:?}");
    assert_eq!(c.pages_not_html, 1);
    assert_eq!(c.pages_committed, c.pages_fetched);
    assert_eq!(c.items_new, 60);
    assert_eq!(c.items_invalid, 0);
    // Each page fetched once: fragments and tracking parameters are normalised away.
    assert_eq!(site.stats.count("/p/1.html"), 1);
    assert_eq!(site.stats.count("/list/2"), 1);
    assert_eq!(site.stats.count("/list/2?utm_source=pager"), 0);

    let card = items
        .iter()
        .find(|i| i.kind == "card" && i.key.ends_with("/p/7.html"))
        .unwrap();
    assert_eq!(card.value["title"], json!("Product 7"));
    assert_eq!(card.value["price"], json!(7.99));
    assert_eq!(
        card.value["url"],
        json!(site.url("/p/7.html")),
        "urls are absolute, fragment dropped"
    );

    let product = items
        .iter()
        .find(|i| i.kind == "product" && i.key == site.url("/p/12.html"))
        .unwrap();
    assert_eq!(
        product.value["name"],
        json!("Product 12"),
        "::text is the element's own text"
    );
    assert_eq!(
        product.value["full"],
        json!("Product 12 new"),
        "no pseudo-element: all text"
    );
    assert_eq!(product.value["price"], json!(12.99));
    assert_eq!(product.value["tags"], json!(["t0", "t2"]));
    assert_eq!(product.value["desc_all"], json!("Lead|bold|tail"));
    assert_eq!(product.value["desc_children"], json!(["bold"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_rules_depth_and_budget_hold() {
    let site = Site::start(shop(5, 4));
    let tmp = tempfile::tempdir().unwrap();
    let configs = tmp.path().join("configs");
    let target = r#"
start_urls = ["{base}/"]
profile = "fast"
strip_params = ["utm_source"]
[follow]
allow = ['^/list/']
deny = ['^/list/4$']
[items.card]
selector = "article.pod"
key = "title"
[items.card.fields]
title = "h3 a::attr(title)"
"#;
    let depth = r#"
start_urls = ["{base}/"]
profile = "fast"
[follow]
max_depth = 1
[items.page]
[items.page.fields]
h1 = "h1"
"#;
    let budget = r#"
start_urls = ["{base}/"]
profile = "fast"
max_pages = 7
strip_params = ["utm_source"]
[items.page]
[items.page.fields]
h1 = "h1"
"#;
    write_configs(
        &configs,
        &site.url(""),
        &[
            ("rules.toml", target),
            ("depth.toml", depth),
            ("budget.toml", budget),
            ("p.toml", FAST_PROFILE),
        ],
    );

    let (run, items) = crawl_once(&configs, &tmp.path().join("s1"), "rules").await;
    // Start URL (always) + list 2 and 3; list 4 is denied, so list 5 is never found.
    assert_eq!(run.counts.pages_fetched, 3, "{:?}", run.counts);
    assert_eq!(site.stats.count("/list/4"), 0);
    assert_eq!(items.len(), 12);
    assert_eq!(
        site.stats.count("/p/0.html"),
        0,
        "product pages are not allowed"
    );

    let before = site.stats.page_requests();
    let (run, _) = crawl_once(&configs, &tmp.path().join("s2"), "depth").await;
    // Depth 0: "/", depth 1: its 4 products and /list/2; nothing deeper.
    assert_eq!(run.counts.pages_fetched, 6, "{:?}", run.counts);
    assert_eq!(
        run.counts.over_budget, 0,
        "depth, not the budget, stopped it"
    );
    assert!(!crawld::report::summary(&run, &[]).contains("max_pages"));
    assert_eq!(site.stats.page_requests() - before, 6);

    let before = site.stats.paths.lock().unwrap().len();
    let (run, items) = crawl_once(&configs, &tmp.path().join("s3"), "budget").await;
    assert_eq!(run.counts.pages_fetched, 7);
    let seen: Vec<String> = site.stats.paths.lock().unwrap()[before..]
        .iter()
        .filter(|p| *p != "/robots.txt")
        .cloned()
        .collect();
    assert_eq!(seen.len(), 7, "max_pages caps requests: {seen:?}");
    assert_eq!(items.len(), 7);
    // The run says it stopped short of the site.
    assert!(run.counts.over_budget > 0, "{:?}", run.counts);
    let summary = crawld::report::summary(&run, &[]);
    assert!(summary.contains("max_pages reached"), "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_host_concurrency_is_never_exceeded() {
    let mut pages = shop(1, 30);
    for r in pages.values_mut() {
        r.delay = Duration::from_millis(40);
    }
    let site = Site::start(pages);
    let tmp = tempfile::tempdir().unwrap();
    let configs = tmp.path().join("configs");
    let target = r#"
start_urls = ["{base}/"]
profile = "three"
[items.page]
[items.page.fields]
h1 = "h1"
"#;
    let profile = r#"
[profiles.three]
concurrency = 3
delay = "0ms..5ms"
"#;
    write_configs(
        &configs,
        &site.url(""),
        &[("c.toml", target), ("p.toml", profile)],
    );
    let (run, _) = crawl_once(&configs, &tmp.path().join("state"), "c").await;
    assert_eq!(
        run.counts.pages_fetched, 34,
        "1 list, 30 products, 3 missing"
    );
    let max = site.stats.max_in_flight();
    assert!(max <= 3, "server saw {max} requests in flight, limit is 3");
    assert!(
        max >= 2,
        "the limit is used, not serialised (max in flight {max})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_cap_timeout_charset_and_duplicates() {
    let mut pages = std::collections::HashMap::new();
    let links = r#"<a href="/big">big</a><a href="/slow">slow</a><a href="/latin">latin</a><a href="/dup">dup</a><a href="/ok">ok</a><a href="/loop">loop</a><a href="/moved">moved</a>"#;
    pages.insert("/loop".into(), Resource::redirect("/loop"));
    pages.insert("/moved".into(), Resource::redirect("/sub/dir/page"));
    pages.insert(
        "/sub/dir/page".into(),
        Resource::html(
            r#"<head><base href="/base/"></head><h1>Moved</h1><a class=rel href="rel.html">r</a>"#,
        ),
    );
    pages.insert(
        "/base/rel.html".into(),
        Resource::html("<h1>Relative to base</h1><a href=/bomb>b</a><a href=/noh1>n</a>"),
    );
    pages.insert("/noh1".into(), Resource::html("<p>no heading here</p>"));
    // 5 MB of HTML compressed to a few KB: the cap counts decompressed bytes.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(
        &mut gz,
        format!("<h1>Bomb</h1>{}", " ".repeat(5_000_000)).as_bytes(),
    )
    .unwrap();
    let gz = gz.finish().unwrap();
    assert!(gz.len() < 100_000);
    pages.insert(
        "/bomb".into(),
        Resource {
            body: gz,
            headers: vec![("content-encoding".into(), "gzip".into())],
            ..Resource::html("")
        },
    );
    pages.insert(
        "/".into(),
        Resource::html(format!("<h1>Home</h1>{links}<p class=v>1</p>")),
    );
    pages.insert(
        "/big".into(),
        Resource::html(format!("<h1>Big</h1>{}", "x".repeat(300_000))),
    );
    pages.insert(
        "/slow".into(),
        Resource {
            delay: Duration::from_millis(1500),
            ..Resource::html("<h1>Slow</h1>")
        },
    );
    pages.insert(
        "/latin".into(),
        Resource {
            content_type: Some("text/html; charset=ISO-8859-1".into()),
            body: b"<h1>Caf\xe9 cr\xe8me</h1>".to_vec(),
            ..Resource::html("")
        },
    );
    // Same item key as the home page: the first one seen is kept.
    pages.insert(
        "/dup".into(),
        Resource::html("<h1>Home</h1><p class=v>2</p>"),
    );
    pages.insert("/ok".into(), Resource::html("<h1>Ok</h1>"));
    let site = Site::start(pages);
    let tmp = tempfile::tempdir().unwrap();
    let configs = tmp.path().join("configs");
    let target = r#"
start_urls = ["{base}/", "http://127.0.0.1:9/unreachable"]
profile = "tight"
[items.page]
[items.page.fields]
h1 = { css = "h1", required = true }
[items.keyed]
selector = "body"
key = "h1"
[items.keyed.fields]
h1 = "h1"
v = "p.v"
"#;
    let profile = r#"
[profiles.tight]
delay = "0ms"
timeout = "700ms"
max_body = "100KiB"
retries = 0
backoff_429 = "10ms"
"#;
    write_configs(
        &configs,
        &site.url(""),
        &[("t.toml", target), ("p.toml", profile)],
    );
    let (run, items) = crawl_once(&configs, &tmp.path().join("state"), "t").await;
    let c = &run.counts;
    assert_eq!(
        run.status,
        RunStatus::Completed,
        "failed pages do not fail the run"
    );
    let seen = site.stats.paths.lock().unwrap().clone();
    assert_eq!(
        c.errors.get(&Failure::TooLarge),
        Some(&2),
        "a large body and a gzip bomb: {c:?} {seen:?}"
    );
    // Both kinds drop the page without h1: `page` requires it, `keyed` uses it as key.
    assert_eq!(c.items_invalid, 2, "{c:?}");
    assert_eq!(c.errors.get(&Failure::Timeout), Some(&1), "{c:?}");
    assert_eq!(
        c.errors.get(&Failure::RedirectLoop),
        Some(&1),
        "a redirect loop is an error: {c:?}"
    );
    assert_eq!(
        c.errors.get(&Failure::RobotsUnavailable),
        Some(&1),
        "an unreachable host is an error: {c:?}"
    );
    // home, latin, dup, ok, moved (→ /sub/dir/page), rel.html found through <base href>, noh1
    assert_eq!(c.pages_fetched, 7, "{c:?}");
    assert!(
        items
            .iter()
            .any(|i| i.value["h1"] == json!("Relative to base")),
        "<base href> is honoured"
    );
    let latin = items
        .iter()
        .find(|i| i.kind == "page" && i.key.ends_with("/latin"))
        .unwrap();
    assert_eq!(latin.value["h1"], json!("Café crème"));
    assert_eq!(c.items_duplicate, 1, "{c:?}");
    let home = items
        .iter()
        .find(|i| i.kind == "keyed" && i.key == "Home")
        .unwrap();
    assert_eq!(home.value["v"], json!("1"), "the first item of a key wins");
}

#[test]
fn a_second_process_on_one_state_dir_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let _held = Store::open(tmp.path()).unwrap();
    let err = Store::open(tmp.path())
        .err()
        .expect("second open must fail");
    let msg = err.to_string();
    assert!(msg.contains("is in use by crawld pid"), "{msg}");
    assert!(msg.contains(&std::process::id().to_string()), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_go_to_start_hosts_only_and_redirects_obey_the_rules() {
    let mut pages: std::collections::HashMap<String, Resource> = std::collections::HashMap::new();
    let site = Site::start(std::collections::HashMap::new());
    let other = format!("http://localhost:{}", site.addr.port());
    pages.insert(
        "/".into(),
        Resource::html(format!(
            r#"<h1>Home</h1><a href="{other}/elsewhere">other host</a><a href="/hop">hop</a><a href="/fine">fine</a>"#
        )),
    );
    pages.insert("/elsewhere".into(), Resource::html("<h1>Elsewhere</h1>"));
    pages.insert("/hop".into(), Resource::redirect("/private/x"));
    pages.insert("/private/x".into(), Resource::html("<h1>Private</h1>"));
    pages.insert("/fine".into(), Resource::html("<h1>Fine</h1>"));
    for (path, r) in pages {
        site.set(&path, r);
    }
    let tmp = tempfile::tempdir().unwrap();
    let configs = tmp.path().join("configs");
    let target = r#"
start_urls = ["{base}/"]
profile = "fast"
headers = { Authorization = "Bearer s3cret" }
[follow]
same_host = false
deny = ['^/private/']
[items.page]
[items.page.fields]
h1 = "h1"
"#;
    write_configs(
        &configs,
        &site.url(""),
        &[("t.toml", target), ("p.toml", FAST_PROFILE)],
    );
    let (run, items) = crawl_once(&configs, &tmp.path().join("state"), "t").await;
    let auth = site.stats.auth.lock().unwrap().clone();
    let home = auth.iter().find(|(_, path, _)| path == "/").unwrap();
    assert_eq!(
        home.2.as_deref(),
        Some("Bearer s3cret"),
        "the start host gets the target's headers"
    );
    let elsewhere = auth
        .iter()
        .find(|(_, path, _)| path == "/elsewhere")
        .unwrap();
    assert!(elsewhere.0.starts_with("localhost"), "{elsewhere:?}");
    assert_eq!(elsewhere.2, None, "another host never sees the credentials");
    assert_eq!(
        run.counts.errors.get(&Failure::RedirectRefused),
        Some(&1),
        "{:?}",
        run.counts
    );
    assert!(
        !items.iter().any(|i| i.value["h1"] == json!("Private")),
        "a denied page is not extracted via a redirect"
    );
    let store = Store::open(&tmp.path().join("state")).unwrap();
    let failures: Vec<_> = store
        .failures(&TargetId::new("t"), run.id)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(failures.len(), 1);
    assert!(
        failures[0].url.ends_with("/hop") && failures[0].kind == Failure::RedirectRefused,
        "{failures:?}"
    );
}
