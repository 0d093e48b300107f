//! The JSON-LD reader on fuzzed blocks (`jsonld::JsonLd::read`, paths,
//! objects), and the same blocks in a page through `extract::extract` with
//! a target whose kinds read JSON-LD (the per-object kind and a mixed one).
//!
//! Input: a path on the first line, then blocks separated by NUL bytes.

#![no_main]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use crawld::config::Target;
use crawld::extract::{extract, Kinds};
use crawld::jsonld::{values_in, JsonLd, LdPath};
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r##"
start_urls = ["https://shop.example/"]
[items.product]
key = "sku"
[items.product.fields]
sku = { jsonld = "Product.sku", required = true }
price = { jsonld = "Product.offers.price", type = "number" }
prices = { jsonld = "Product.offers.price", type = "number", many = true }
url = { jsonld = "Product.url", type = "url" }
[items.page]
[items.page.fields]
title = "h1"
crumbs = { jsonld = "BreadcrumbList.itemListElement.name", join = " / " }
"##;

fn target() -> &'static Arc<Target> {
    static TARGET: OnceLock<Arc<Target>> = OnceLock::new();
    TARGET.get_or_init(|| {
        let files = vec![(PathBuf::from("fuzz.toml"), Ok(CONFIG.to_owned()))];
        let report = crawld::config::load_files(files, &|_| None);
        // INVARIANT: the fixed config above compiles (checked on the first run).
        assert!(report.errors.is_empty(), "{:?}", report.all_errors());
        report.set.targets.into_values().next().expect("one target")
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (path, rest) = text.split_once('\n').unwrap_or(("Product.offers.price", &text));
    let blocks: Vec<&str> = rest.split('\0').collect();

    let ld = JsonLd::read(&blocks);
    assert!(ld.invalid as usize + ld.skipped as usize <= blocks.len());
    if let Ok(p) = LdPath::parse(path) {
        let all = ld.values(&p);
        for v in &all {
            assert!(!v.is_empty() && v.trim() == v, "{v:?}");
        }
        // The page's values are its objects' values, in order.
        let per_object: Vec<String> = ld
            .objects(p.ty())
            .into_iter()
            .flat_map(|o| values_in(o, &p))
            .collect();
        assert_eq!(all, per_object);
    }

    let mut html = String::from("<html><head>");
    for b in &blocks {
        html.push_str("<script type=\"application/ld+json\">");
        html.push_str(b);
        html.push_str("</script>");
    }
    html.push_str("</head><body><h1>t</h1></body></html>");
    let url = url::Url::parse("https://shop.example/p/1").unwrap();
    let Ok(out) = extract(target(), &html, &url, Kinds::All) else {
        return;
    };
    // Every item kind of the page is accounted for: one page item, and
    // product items only from JSON-LD.
    assert_eq!(out.items.iter().filter(|i| i.kind == "page").count(), 1);
});
