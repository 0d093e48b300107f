//! `jsonld` fields end to end: real-world shop pages (a Yoast/WooCommerce
//! `@graph`, a page with two Product blocks, a page with malformed JSON-LD)
//! served on loopback and crawled through the library.

mod common;

use std::collections::HashMap;

use common::{crawl_target, write_configs, Resource, Site, FAST_PROFILE};
use crawld::crawl::Engine;
use crawld::ids::TargetId;
use crawld::store::{ItemRecord, RunCounts, RunStatus};
use serde_json::json;

const KETTLE: &str = include_str!("fixtures/jsonld/kettle.html");
const SET: &str = include_str!("fixtures/jsonld/set.html");
const BROKEN: &str = include_str!("fixtures/jsonld/broken.html");

/// `product` takes every field from JSON-LD `Product`s: one item per
/// object. `page` mixes CSS and JSON-LD: one item per page, each `jsonld`
/// field read across the page's objects of its type.
const SHOP: &str = r#"
start_urls = ["{base}/"]
profile = "fast"
[follow]
allow = ['^/$', '^/product/']

[items.product]
pages = '^/product/'
key = "sku"
[items.product.fields]
sku = { jsonld = "Product.sku", required = true }
name = { jsonld = "Product.name", required = true }
price = { jsonld = "Product.offers.price", type = "number" }
prices = { jsonld = "Product.offers.price", type = "number", many = true }
currency = { jsonld = "Product.offers.priceCurrency" }
brand = { jsonld = "Product.brand" }
url = { jsonld = "Product.url", type = "url" }
# JSON-LD values go through the same processing as CSS ones.
availability = { jsonld = "Product.offers.availability", re = '/(\w+)$' }

[items.page]
pages = '^/product/'
[items.page.fields]
title = { css = "h1", required = true }
crumbs = { jsonld = "BreadcrumbList.itemListElement.name", many = true }
first_price = { jsonld = "Product.offers.price", type = "number" }
"#;

/// The same site without any `jsonld` field: its JSON-LD is never read.
const PLAIN: &str = r#"
start_urls = ["{base}/"]
profile = "fast"
[follow]
allow = ['^/$', '^/product/']
[items.page]
pages = '^/product/'
[items.page.fields]
title = "h1"
"#;

fn site() -> Site {
    let mut pages = HashMap::new();
    pages.insert(
        "/".to_owned(),
        Resource::html(
            r#"<html><body><a href="/product/stellar-glass-kettle/">kettle</a>
<a href="/product/kettle-and-toaster-set/">set</a> <a href="/product/retro-toaster/">toaster</a></body></html>"#,
        ),
    );
    pages.insert(
        "/product/stellar-glass-kettle/".to_owned(),
        Resource::html(KETTLE),
    );
    pages.insert(
        "/product/kettle-and-toaster-set/".to_owned(),
        Resource::html(SET),
    );
    pages.insert("/product/retro-toaster/".to_owned(), Resource::html(BROKEN));
    Site::start(pages)
}

fn find<'a>(items: &'a [ItemRecord], kind: &str, key: &str) -> &'a ItemRecord {
    items
        .iter()
        .find(|i| i.kind == kind && i.key == key)
        .unwrap_or_else(|| panic!("no {kind} {key} in {items:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_come_from_json_ld_and_malformed_blocks_are_a_warning() {
    let site = site();
    let tmp = tempfile::tempdir().unwrap();
    let configs = tmp.path().join("configs");
    write_configs(
        &configs,
        &site.url(""),
        &[
            ("shop.toml", SHOP),
            ("plain.toml", PLAIN),
            ("p.toml", FAST_PROFILE),
        ],
    );
    let state = tmp.path().join("state");
    let (run, store) = crawl_target(&Engine::default(), &configs, &state, "shop").await;
    let items: Vec<ItemRecord> = store
        .items(&TargetId::new("shop"))
        .collect::<Result<_, _>>()
        .unwrap();
    let c = &run.counts;
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(c.pages_fetched, 4, "{c:?}");
    // The page with malformed JSON-LD is kept, counted, not failed.
    assert_eq!(c.pages_failed, 0, "{c:?}");
    assert_eq!(c.jsonld_invalid, 1, "{c:?}");
    assert_eq!(c.items_invalid, 0, "{c:?}");
    let summary = crawld::report::summary(&run, &[]);
    assert!(
        summary.contains("jsonld  1 page(s) with malformed or oversized JSON-LD"),
        "{summary}"
    );

    // One item per Product object: one in the @graph, two blocks on the set
    // page (one typed with a full IRI), none from the malformed block.
    let products: Vec<&str> = items
        .iter()
        .filter(|i| i.kind == "product")
        .map(|i| i.key.as_str())
        .collect();
    assert_eq!(products.len(), 3, "{products:?}");
    let kettle = find(&items, "product", "SGK-1700");
    assert_eq!(
        serde_json::Value::Object(kettle.value.clone()),
        json!({
            "sku": "SGK-1700",
            "name": "Stellar Glass Kettle 1.7L",
            // The first offer's price is a string, the second a number.
            "price": 52.77,
            "prices": [52.77, 49.99],
            "currency": "GBP",
            "brand": "Stellar",
            "url": site.url("/product/stellar-glass-kettle/"),
            "availability": "InStock",
        })
    );
    let k = find(&items, "product", "RK-150-CR");
    assert_eq!(k.value["price"], json!(39.0));
    assert_eq!(k.value["brand"], json!("Hearth"));
    // An AggregateOffer has lowPrice, not price: a missing optional field.
    let t = find(&items, "product", "RT-2S-CR");
    assert_eq!(t.value["name"], json!("Retro 2-Slice Toaster (Cream)"));
    assert_eq!(t.value["price"], json!(null));
    assert_eq!(t.value["prices"], json!([]));

    // The mixed kind: one item per page.
    let page = find(&items, "page", &site.url("/product/stellar-glass-kettle/"));
    assert_eq!(page.value["title"], json!("Stellar Glass Kettle 1.7L"));
    assert_eq!(
        page.value["crumbs"],
        json!(["Home", "Kitchen", "Kettles", "Stellar Glass Kettle 1.7L"])
    );
    assert_eq!(page.value["first_price"], json!(52.77));
    let set = find(
        &items,
        "page",
        &site.url("/product/kettle-and-toaster-set/"),
    );
    assert_eq!(set.value["first_price"], json!(39.0));
    assert_eq!(set.value["crumbs"], json!([]));
    // The valid block inside an HTML comment is read; the malformed one not.
    let broken = find(&items, "page", &site.url("/product/retro-toaster/"));
    assert_eq!(broken.value["crumbs"], json!(["Home", "Toasters"]));
    assert_eq!(broken.value["first_price"], json!(null));
    assert_eq!(
        broken.value["title"],
        json!("Retro 4-Slice Toaster \"Deluxe\"")
    );
    drop(store);

    // Without a jsonld field the blocks are not looked at: nothing to warn of.
    let (run, _) = crawl_target(&Engine::default(), &configs, &state, "plain").await;
    assert_eq!(run.counts.pages_fetched, 4);
    assert_eq!(run.counts.jsonld_invalid, 0, "{:?}", run.counts);
    assert!(!crawld::report::summary(&run, &[]).contains("jsonld"));
}

#[test]
fn runs_written_before_the_counter_read_it_as_zero() {
    let old: RunCounts =
        serde_json::from_str(r#"{"pages_fetched": 3, "links_dropped": 1}"#).unwrap();
    assert_eq!(old.pages_fetched, 3);
    assert_eq!(old.jsonld_invalid, 0);
}
