//! Value processing and selector groups on real-world pages (a Sphinx page
//! of the Python docs, two Books to Scrape product pages in
//! tests/fixtures/values), crawled from a loopback site: `re`, `replace`,
//! `strip`, `default`, the `integer`, `boolean` and `date` types, groups;
//! `crawld test` with the raw values beside; and the config errors.

mod common;

use std::collections::HashMap;
use std::path::Path;

use assert_cmd::assert::OutputAssertExt;
use common::{crawl_target, crawld, write_configs, Resource, Site, FAST_PROFILE};
use crawld::crawl::Engine;
use crawld::ids::TargetId;
use crawld::store::{ItemRecord, RunStatus};
use predicates::prelude::*;
use serde_json::{json, Value};

const TARGET: &str = r#"
start_urls = ["{base}/"]
profile = "fast"

[follow]
allow = ['^/$', '^/library/', '^/catalogue/']

[items.doc]
pages = '^/library/'
[items.doc.fields]
title = { css = "h1", strip = "¶" }
module = { css = "h1 code", re = '^\w+$' }
summary = { css = "h1::text", re = '— (?P<value>.+)$' }
anchor = { css = "h1", re = '(\w+) — JSON', replace = [['^(\w+)$', 'module-$1']] }
parts = { css = "h1 > a::text, h1::text", many = true }
headings = { css = "h1, h2", strip = "¶ ", many = true }
anchors = { css = "h1 > a.headerlink::attr(href), h2 > a.headerlink::attr(href)", many = true }
python = { css = "title", re = 'Python 3\.(\d+)', type = "integer" }
updated = { css = "div.footer", re = 'Last updated on (.+?) \(', type = "date" }
translations = { css = "p", re = '(\d+) types', type = "integer" }
deprecated = { css = "div.deprecated", type = "boolean", default = false }
toc = { css = "div.sphinxsidebar a.reference::text", join = " | ", replace = [['json — ', '']] }

[items.book]
pages = '^/catalogue/'
selector = "article.product_page"
key = "upc"
[items.book.fields]
upc = "tr:nth-child(1) td"
title = "h1"
price = { css = "p.price_color", type = "number" }
stock = { css = "p.availability", re = '\((\d+) available\)', type = "integer" }
in_stock = { css = "p.availability", replace = [['(?i)^in stock.*$', 'yes'], ['(?i)^out of stock.*$', 'no']], type = "boolean" }
rating = { css = "p.star-rating::attr(class)", re = 'star-rating (\w+)' }
reviews = { css = "tr:nth-child(6) td", type = "integer" }
published = { css = "tr:nth-child(7) td", type = "date", date_format = "%d.%m.%Y" }
discount = { css = "p.discount", type = "number", default = 0 }
shelf = { css = "p.shelf", default = "unshelved" }

[items.available]
pages = '^/catalogue/'
selector = "article.product_page"
key = "title"
[items.available.fields]
title = "h1"
stock = { css = "p.availability", re = '\((\d+) available\)', type = "integer", required = true }
"#;

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/values")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

fn site() -> Site {
    let mut pages = HashMap::new();
    pages.insert(
        "/".to_owned(),
        Resource::html(
            r#"<a href="/library/json.html">json</a>
               <a href="/catalogue/light.html">light</a>
               <a href="/catalogue/velvet.html">velvet</a>"#,
        ),
    );
    pages.insert(
        "/library/json.html".to_owned(),
        Resource::html(fixture("json.html")),
    );
    pages.insert(
        "/catalogue/light.html".to_owned(),
        Resource::html(fixture("product.html")),
    );
    pages.insert(
        "/catalogue/velvet.html".to_owned(),
        Resource::html(fixture("soldout.html")),
    );
    Site::start(pages)
}

fn find<'a>(items: &'a [ItemRecord], kind: &str, key_end: &str) -> &'a ItemRecord {
    items
        .iter()
        .find(|i| i.kind == kind && i.key.ends_with(key_end))
        .unwrap_or_else(|| panic!("no {kind} item {key_end}: {items:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crawl_keeps_clean_values() {
    let site = site();
    let tmp = tempfile::tempdir().unwrap();
    let configs = tmp.path().join("configs");
    write_configs(
        &configs,
        &site.url(""),
        &[("docs.toml", TARGET), ("p.toml", FAST_PROFILE)],
    );
    let (run, store) = crawl_target(
        &Engine::default(),
        &configs,
        &tmp.path().join("state"),
        "docs",
    )
    .await;
    assert_eq!(run.status, RunStatus::Completed);
    let items: Vec<ItemRecord> = store
        .items(&TargetId::new("docs"))
        .collect::<Result<_, _>>()
        .unwrap();

    let doc = &find(&items, "doc", "/library/json.html").value;
    assert_eq!(doc["title"], json!("json — JSON encoder and decoder"));
    assert_eq!(doc["module"], json!("json"));
    assert_eq!(doc["summary"], json!("JSON encoder and decoder"));
    assert_eq!(doc["anchor"], json!("module-json"));
    assert_eq!(doc["parts"], json!(["— JSON encoder and decoder", "¶"]));
    assert_eq!(
        doc["headings"],
        json!([
            "json — JSON encoder and decoder",
            "Basic Usage",
            "Encoders and Decoders",
            "Exceptions",
            "Standard Compliance and Interoperability"
        ])
    );
    assert_eq!(
        doc["anchors"],
        json!([
            "#module-json",
            "#basic-usage",
            "#encoders-and-decoders",
            "#exceptions",
            "#standard-compliance-and-interoperability"
        ])
    );
    assert_eq!(doc["python"], json!(14));
    assert_eq!(doc["updated"], json!("2026-12-07"));
    assert_eq!(doc["translations"], json!(7));
    assert_eq!(doc["deprecated"], json!(false), "the default");
    assert_eq!(
        doc["toc"],
        json!("JSON encoder and decoder | Basic Usage | Encoders and Decoders")
    );

    let light = &find(&items, "book", "a897fe39b1053632").value;
    assert_eq!(light["title"], json!("A Light in the Attic"));
    assert_eq!(light["price"], json!(51.77));
    assert_eq!(light["stock"], json!(22));
    assert_eq!(light["in_stock"], json!(true));
    assert_eq!(light["rating"], json!("Three"));
    assert_eq!(light["reviews"], json!(1204));
    assert_eq!(light["published"], json!("2026-12-07"));
    assert_eq!(light["discount"], json!(0));
    assert_eq!(light["shelf"], json!("unshelved"));

    let velvet = &find(&items, "book", "90fa61229261140a").value;
    assert_eq!(velvet["stock"], Value::Null, "re found no count");
    assert_eq!(velvet["in_stock"], json!(false));
    assert_eq!(
        velvet["published"],
        Value::Null,
        "\"1 Dec 2026\" is not %d.%m.%Y: with date_format, only it is read"
    );

    // `required` drops the sold-out book from `available`: its `re` did not match.
    assert!(items.iter().any(|i| i.kind == "available"));
    assert!(!items
        .iter()
        .any(|i| i.kind == "available" && i.key == "Tipping the Velvet"));
    assert_eq!(run.counts.items_invalid, 1, "{:?}", run.counts);
}

#[test]
fn crawld_test_shows_raw_values_beside() {
    let site = site();
    let tmp = tempfile::tempdir().unwrap();
    let configs = tmp.path().join("configs");
    write_configs(
        &configs,
        &site.url(""),
        &[("docs.toml", TARGET), ("p.toml", FAST_PROFILE)],
    );
    crawld()
        .args(["test", "docs"])
        .arg(site.url("/library/json.html"))
        .arg("--configs")
        .arg(&configs)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            r#"title        "json — JSON encoder and decoder"    (raw: "json — JSON encoder and decoder ¶")"#,
        ))
        .stdout(predicate::str::contains(
            r#"python       14    (raw: "json — JSON encoder and decoder — Python 3.14.2 documentation")"#,
        ))
        .stdout(predicate::str::contains(
            "deprecated   false    (default: the page gave nothing)",
        ))
        // Unprocessed values stand alone.
        .stdout(predicate::str::contains("(raw: \"#module-json\")").not());

    let out = crawld()
        .args(["test", "docs", "--json"])
        .arg(site.url("/catalogue/velvet.html"))
        .arg("--configs")
        .arg(&configs)
        .output()
        .unwrap();
    let out = out.assert().success().get_output().stdout.clone();
    let json: Value = serde_json::from_slice(&out).unwrap();
    let book = json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "book")
        .unwrap();
    assert_eq!(book["value"]["in_stock"], json!(false));
    assert_eq!(book["raw"]["in_stock"], json!("Out of stock"));
    assert_eq!(
        book["raw"].get("shelf"),
        Some(&Value::Null),
        "defaulted: a raw null"
    );
    assert!(book["raw"].get("title").is_none(), "unchanged: no raw");
    let invalid = &json["invalid"][0];
    assert_eq!(invalid["kind"], json!("available"));
    assert_eq!(invalid["missing"], json!(["stock"]));
    assert_eq!(invalid["raw"]["stock"], json!("Out of stock"));
}

#[test]
fn bad_processing_keys_are_config_errors_with_their_line() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = r#"start_urls = ["http://a.example/"]
[items.page.fields]
a = { css = "h1", re = '(' }
b = { css = "h1", replace = [['x', 'y'], ['[', '']] }
c = { css = "h1", required = true, default = "x" }
d = { css = "h1", type = "integer", default = "many" }
e = { css = "h1", type = "date", date_format = "%d.%m." }
f = { css = "h1", date_format = "%d.%m.%Y" }
g = { css = "h1", re = '\w{200}' }
h = { css = "h1::text, h2::before" }
i = { css = "h1", type = "when" }
[items.card]
selector = "li"
key = "name"
[items.card.fields]
name = { css = "b", default = "x" }
"#;
    std::fs::write(tmp.path().join("bad.toml"), bad).unwrap();
    let out = crawld()
        .args(["check", "--configs"])
        .arg(tmp.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for (line, key, words) in [
        (3, "a.re", "invalid regex \"(\""),
        (4, "b.replace[1]", "invalid regex \"[\""),
        (5, "c.default", "required and default do not go together"),
        (
            6,
            "d.default",
            "the default of a type = \"integer\" field is an integer, not string",
        ),
        (7, "e.date_format", "reads no year"),
        (8, "f.date_format", "goes with type = \"date\" only"),
        (9, "g.re", "size limit"),
        (10, "h", "alternative 2 of 2 (\"h2::before\")"),
        (
            11,
            "i.type",
            "known: text, url, number, integer, boolean, date",
        ),
    ] {
        let want = format!("bad.toml:{line}:");
        let found = stderr.lines().any(|l| {
            l.contains(&want) && l.contains(&format!("fields.{key}:")) && l.contains(words)
        });
        assert!(found, "no error {want} {key}: {words} in:\n{stderr}");
    }
    assert!(
        stderr.contains("bad.toml:14:7: items.card.key: key \"name\" names a field with a default"),
        "{stderr}"
    );
}
