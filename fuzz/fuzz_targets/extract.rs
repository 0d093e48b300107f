//! Extracts items and links from fuzzed HTML with a fixed target that uses
//! every kind of query and field (`extract::extract`, as a run calls it).

#![no_main]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use crawld::config::Target;
use crawld::extract::{extract, Kinds};
use libfuzzer_sys::fuzz_target;

/// Item kinds with text, own-text, all-text, attribute, url, number, many
/// and join fields, selector groups, value processing (re, replace, strip,
/// default) and the integer, boolean and date types, one keyed by a field
/// and one by the page URL.
const CONFIG: &str = r##"
start_urls = ["https://shop.example/"]
strip_params = ["utm_*", "sessionid"]
[follow]
links = "a[href], link[href]"
[items.card]
selector = "article, li, tr"
key = "name"
[items.card.fields]
name = { css = "h3 a::attr(title)", required = true }
link = { css = "a::attr(href)", type = "url" }
price = { css = ".price::text", type = "number" }
all = { css = " ::text", many = true }
[items.page]
[items.page.fields]
title = "title"
heading = "h1::text"
words = { css = "p *::text", join = " " }
numbers = { css = "td", type = "number", many = true }
links = { css = "a::attr(href)", type = "url", many = true }
group = { css = "h1 > a::text, h1::text, a::attr(title)", many = true }
cleaned = { css = "h1", strip = "¶ ", replace = [['\s+', ' '], ['^(\w+)', '<$1>']] }
count = { css = "p", re = '(?P<value>\d+) (items|left)', type = "integer" }
stocked = { css = ".stock", replace = [['(?i)^in stock.*', 'yes']], type = "boolean", default = false }
when = { css = "time::attr(datetime), time::text", type = "date", many = true }
dated = { css = "td:last-child", type = "date", date_format = "%d.%m.%Y" }
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
    let html = String::from_utf8_lossy(data);
    let url = url::Url::parse("https://shop.example/catalogue/page-1.html?utm_source=x").unwrap();
    // A page nested too deep is refused before parsing: nothing to check.
    let Ok(out) = extract(target(), &html, &url, Kinds::All) else {
        return;
    };
    for link in &out.links {
        assert!(matches!(link.scheme(), "http" | "https"), "{link}");
        assert!(link.fragment().is_none(), "{link}");
    }
});
