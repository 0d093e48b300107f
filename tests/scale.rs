//! A target bigger than what a run holds in memory: more URLs queued at once
//! than the frontier keeps in memory (the rest wait in a file of the state
//! directory), and more pages than an incremental run reads ahead.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::{load_target, write_configs, Resource, Site, FAST_PROFILE};
use crawld::crawl::Engine;
use crawld::frontier::MEMORY_QUEUE;
use crawld::ids::TargetId;
use crawld::store::{RunMode, RunRecord, RunStatus, Store};

const TARGET: &str = r#"
start_urls = ["{base}/"]
profile = "fast"
max_pages = 100000
[follow]
allow = ['^/$', '^/p/']
# The root links every product: more than a page gives by default.
max_links = 100000
[items.product]
pages = '^/p/'
[items.product.fields]
name = { css = "h1::text", required = true }
"#;

/// One page linking every product, so that they are all queued at once.
fn wide_site(products: usize) -> HashMap<String, Resource> {
    let mut pages = HashMap::with_capacity(products + 1);
    // Links the follow rules refuse: not kept with the page.
    let mut root = String::from(
        r#"<html><body><a href="/about">about</a><a href="http://elsewhere.test/p/1">x</a>"#,
    );
    for i in 0..products {
        root.push_str(&format!(r#"<a href="/p/{i}">{i}</a>"#));
        pages.insert(
            format!("/p/{i}"),
            Resource::html(format!("<html><body><h1>P{i}</h1></body></html>")),
        );
    }
    root.push_str("</body></html>");
    pages.insert("/".into(), Resource::html(root));
    pages
}

async fn run(store: &Arc<Store>, configs: &std::path::Path, mode: RunMode) -> RunRecord {
    let target = load_target(configs, "wide");
    let engine = Engine::default();
    crawld::crawl::run(
        &engine,
        store.clone(),
        target,
        mode,
        Default::default(),
        &(),
    )
    .await
    .expect("run")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_bigger_than_memory_is_crawled_whole_once_then_fetched_conditionally() {
    let products = MEMORY_QUEUE + 1500;
    let site = Site::start(wide_site(products));
    let dir = tempfile::tempdir().expect("dir");
    let (configs, state) = (dir.path().join("configs"), dir.path().join("state"));
    write_configs(
        &configs,
        &site.url(""),
        &[("wide.toml", TARGET), ("profiles.toml", FAST_PROFILE)],
    );
    let store = Arc::new(Store::open(&state).expect("store"));

    let full = run(&store, &configs, RunMode::Full).await;
    assert_eq!(full.status, RunStatus::Completed);
    assert_eq!(full.counts.pages_fetched, products as u64 + 1);
    assert_eq!(full.counts.items_new, products as u64);
    assert_eq!(site.stats.page_requests(), products + 1, "each page once");
    let items = store.items(&TargetId::new("wide")).count();
    assert_eq!(items, products);
    let root = store
        .page(&TargetId::new("wide"), &site.url("/"))
        .expect("read")
        .expect("root page");
    // The other host's link is kept: which hosts a run follows may change
    // (a start URL that redirects), its path rules may not.
    assert_eq!(
        root.links.len(),
        products + 1,
        "only the paths the rules allow"
    );
    assert!(root.links.iter().all(|l| l.contains("/p/")));

    // Every page again, conditionally: each one's validators were read ahead.
    site.stats.reset();
    let quiet = run(&store, &configs, RunMode::Incremental).await;
    assert_eq!(quiet.status, RunStatus::Completed);
    assert_eq!(quiet.counts.pages_not_modified, products as u64 + 1);
    assert_eq!(quiet.counts.items_new + quiet.counts.items_changed, 0);
    assert_eq!(site.stats.status_count(304), products + 1);
}
