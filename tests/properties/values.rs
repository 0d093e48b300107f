//! Value processing (`re`, `replace`, `strip`, the types): no pattern the
//! config accepts makes extraction panic, whatever the page, and a
//! catastrophic pattern stays fast (Rust's regex is linear in the input).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::Value;
use url::Url;

use crawld::config::{load_files, Target};
use crawld::extract::{extract, extract_explained, Kinds};

use super::{cases, soup};

/// Pieces of regex syntax, valid and not: their concatenations reach the
/// parser's errors, the size limit and every kind of capture group.
const PATTERN_TOKENS: &[&str] = &[
    "(",
    ")",
    "(?P<value>",
    "(?:",
    "(?i)",
    "[",
    "]",
    "[^",
    "a",
    "b",
    "é",
    ".",
    "*",
    "+",
    "?",
    "{2}",
    "{1,3}",
    "{1000}",
    "|",
    "^",
    "$",
    "\\d",
    "\\w",
    "\\s",
    "\\b",
    "\\",
    "\\p{L}",
    " ",
    "-",
    ",",
    "¶",
    "\\$",
];

/// Replacements with group references, named and numbered, well-formed and not.
const REPLACEMENT_TOKENS: &[&str] = &[
    "$1", "$2", "${value}", "$value", "$", "$$", "${", "x", " ", "¶",
];

/// A target whose one field uses `pattern` in `re` and in `replace`.
fn target(pattern: &str, replacement: &str, kind: &str) -> Option<Arc<Target>> {
    let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let text = format!(
        r#"start_urls = ["https://docs.example/"]
[items.page.fields]
re = {{ css = "h1", re = {p}, type = "{kind}" }}
replaced = {{ css = "h1::text, p::text", many = true, replace = [[{p}, {r}]], strip = "¶" }}
joined = {{ css = "p", join = "|", re = {p}, replace = [[{p}, {r}]] }}
"#,
        p = q(pattern),
        r = q(replacement),
    );
    let report = load_files(vec![(PathBuf::from("v.toml"), Ok(text))], &|_| None);
    report.set.targets.into_values().next()
}

proptest! {
    #![proptest_config(cases(128))]

    #[test]
    fn processing_never_panics_on_an_accepted_pattern(
        pattern in prop_oneof![soup(PATTERN_TOKENS, 12), any::<String>()],
        replacement in soup(REPLACEMENT_TOKENS, 6),
        kind in prop::sample::select(vec!["text", "url", "number", "integer", "boolean", "date"]),
        text in prop_oneof![any::<String>(), "[a-z0-9 ¶,.$-]{0,40}"],
    ) {
        let Some(target) = target(&pattern, &replacement, kind) else {
            // Refused at load: a config error, never a panic.
            return Ok(());
        };
        let html = format!("<h1>{text}</h1><p>{text}</p><p>¶ {text} ¶</p>");
        let url = Url::parse("https://docs.example/p").unwrap();
        for page in [
            extract(&target, &html, &url, Kinds::All).expect("shallow"),
            extract_explained(&target, &html, &url, Kinds::All).expect("shallow"),
        ] {
            for item in &page.items {
                if let Value::Array(list) = &item.value["replaced"] {
                    for v in list {
                        let s = v.as_str().unwrap_or_default();
                        prop_assert!(!s.is_empty());
                        prop_assert_eq!(s.trim_matches(|c: char| c.is_whitespace() || c == '¶'), s);
                    }
                }
            }
        }
    }
}

#[test]
fn a_catastrophic_pattern_stays_linear() {
    // `(a+)+$` backtracks exponentially in engines that backtrack; Rust's
    // regex does not. A 200,000-letter value with no match at its end, and
    // one that matches, each through `re` and `replace`.
    let target = target("(a+)+$", "<$1>", "text").expect("the pattern is accepted");
    let url = Url::parse("https://docs.example/p").unwrap();
    let long = "a".repeat(200_000);
    for text in [format!("{long}!"), long.clone(), format!("{long}b{long}!")] {
        let html = format!("<h1>{text}</h1><p>{text}</p>");
        let started = Instant::now();
        let page = extract(&target, &html, &url, Kinds::All).expect("shallow");
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(10),
            "{took:?} for {} bytes",
            text.len()
        );
        let item = &page.items[0].value;
        if text.ends_with('!') {
            assert_eq!(item["re"], Value::Null, "no match at the end");
        } else {
            assert_eq!(item["re"].as_str().map(str::len), Some(long.len()));
        }
    }
}
