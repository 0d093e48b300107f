//! Compiles a fuzzed field query (`Query::parse`: CSS, then `::text` or
//! `::attr(name)`) as config loading does, and runs it on a fixed page.

#![no_main]

use crawld::config::Query;
use libfuzzer_sys::fuzz_target;

/// A page with nesting, attributes, text at several levels, a table and a form.
const PAGE: &str = r#"<!doctype html><html lang=en><head><title>T</title><base href="/b/"></head>
<body><div id=main class="a b">lead <p class=price data-x='1'>£1,299.00 <b>bold</b> tail</p>
<ul><li>one</li><li class=x>two<li>three</ul><a href="/x?utm_source=1#f" title="t">link</a>
<table><tr><td>1</td><td>2</td></tr></table><form><input name=q value=v></form>
<article class=product_pod><h3><a href="p1.html" title="P1">P1</a></h3></article></div></body></html>"#;

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(q) = Query::parse(query) else {
        return;
    };
    let doc = scraper::Html::parse_document(PAGE);
    let all = q.values(doc.root_element());
    let first = q.first(doc.root_element());
    assert_eq!(
        first.as_ref(),
        all.first(),
        "first() is the first of values()"
    );
});
