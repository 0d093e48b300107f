//! Extraction (`extract::extract`, `Query`): never panics on arbitrary HTML,
//! and `::text` values hold no markup.

use std::path::PathBuf;
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::Value;
use url::Url;

use crawld::config::Query;
use crawld::config::{load_files, Target};
use crawld::extract::{extract, Kinds};

use super::{cases, soup};

const TARGET: &str = r##"
start_urls = ["https://shop.example/"]
strip_params = ["utm_*"]
[follow]
links = "a[href]"
[items.card]
selector = "article, li"
key = "name"
[items.card.fields]
name = { css = "::attr(id)", required = true }
own = "p::text"
below = { css = "div *::text", many = true }
inside = { css = " ::text", many = true }
link = { css = "a::attr(href)", type = "url" }
price = { css = "p::text", type = "number" }
[items.page]
[items.page.fields]
texts = { css = "p::text", many = true }
joined = { css = "b::text", join = "|" }
"##;

fn target() -> Arc<Target> {
    let files = vec![(PathBuf::from("prop.toml"), Ok(TARGET.to_owned()))];
    let report = load_files(files, &|_| None);
    assert!(report.errors.is_empty(), "{:?}", report.all_errors());
    report.set.targets.into_values().next().unwrap()
}

/// Well-formed HTML fragments: nested elements with attributes, whose text
/// holds no markup characters (so any `<` in a `::text` value is markup
/// that leaked).
fn html_tree() -> impl Strategy<Value = String> {
    let tag = prop::sample::select(vec!["div", "p", "b", "li", "article", "a", "span"]);
    let text = "[a-z0-9 ,.£]{0,8}";
    let leaf = text.prop_map(|t| t.to_string());
    leaf.prop_recursive(4, 40, 4, move |inner| {
        (
            tag.clone(),
            "[a-z]{0,3}",
            prop::collection::vec(inner, 0..4),
        )
            .prop_map(|(tag, id, children)| {
                format!(
                    "<{tag} id=\"{id}\" href=\"/{id}\">{}</{tag}>",
                    children.concat()
                )
            })
    })
}

/// Tag soup: unbalanced, misnested, with entities, comments and raw text.
const HTML_TOKENS: &[&str] = &[
    "<a",
    "<p",
    "<li",
    "<div",
    "<article",
    "<table",
    "<td",
    "<b",
    "<base",
    "<script>",
    "<svg",
    "<template>",
    "</a>",
    "</p>",
    "</li>",
    "</div>",
    "</article>",
    "</table>",
    "</b>",
    "</script>",
    ">",
    "/>",
    "<",
    "</",
    "<!--",
    "-->",
    "<!doctype html>",
    " id=a",
    " id=\"",
    " href=\"/x?utm_source=1#f\"",
    " href='../y'",
    " href=javascript:x",
    " href=http://b.example/",
    " title=t",
    " class=price",
    "=",
    "\"",
    "'",
    "x",
    "1,299.00",
    "£",
    " ",
    "\n",
    "&amp;",
    "&lt;",
    "&#0;",
    "&#x110000;",
    "&",
    "\u{0}",
    "é",
    "::",
    "\u{feff}",
];

fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
        _ => {}
    }
}

proptest! {
    #![proptest_config(cases(128))]

    #[test]
    fn extraction_never_panics_on_arbitrary_html(html in prop_oneof![any::<String>(), soup(HTML_TOKENS, 60)]) {
        let url = Url::parse("https://shop.example/p").unwrap();
        // Arbitrary HTML this short is never too deep to parse.
        let out = extract(&target(), &html, &url, Kinds::All).expect("shallow");
        for link in &out.links {
            prop_assert!(matches!(link.scheme(), "http" | "https"));
        }
    }

    #[test]
    fn text_values_hold_no_markup(tree in html_tree()) {
        let html = format!("<html><body>{tree}</body></html>");
        let url = Url::parse("https://shop.example/p").unwrap();
        let out = extract(&target(), &html, &url, Kinds::All).expect("shallow");
        let mut values = Vec::new();
        for item in &out.items {
            for (name, v) in &item.value {
                if name != "link" {
                    strings(v, &mut values);
                }
            }
        }
        let doc = scraper::Html::parse_document(&html);
        for q in ["p::text", "div ::text", "li *::text", "article"] {
            values.extend(Query::parse(q).unwrap().values(doc.root_element()));
        }
        for v in values {
            prop_assert!(!v.contains(['<', '>', '"']), "markup in {:?} from {}", v, html);
            prop_assert_eq!(v.trim(), v.as_str());
            prop_assert!(!v.is_empty());
        }
    }
}
