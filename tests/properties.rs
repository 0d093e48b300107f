//! Property tests for the entry points that read untrusted input: the same
//! ones the fuzz targets in `fuzz/` drive (config loading, extraction and
//! field queries, URL normalisation, robots.txt, Retry-After, backup
//! restore). The fuzzers look for crashes over minutes; these keep the
//! properties in every `cargo test`, with case counts small enough to run
//! in a few seconds.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use serde_json::Value;
use url::Url;

use crawld::config::{load_files, ParamPattern, Target};
use crawld::extract::{extract, Kinds, Query};
use crawld::frontier::normalize_url;
use crawld::retry::retry_after;
use crawld::robots::{parse_body, MAX_ROBOTS};
use crawld::store::Store;

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        // Failures are reported with their minimal input; no regression files.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Strings of tokens from `tokens`: structured enough to reach the parsers'
/// deeper paths, which uniformly random text rarely does.
fn soup(tokens: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(tokens), 0..max).prop_map(|t| t.concat())
}

// ---------------------------------------------------------------- URLs

fn strip() -> Vec<ParamPattern> {
    ["utm_*", "sessionid", "ref"]
        .into_iter()
        .map(ParamPattern::parse)
        .collect()
}

/// URLs from parts that normalisation treats specially: case, default
/// ports, dot segments, escapes, IDN hosts, stripped and kept parameters,
/// empty queries and fragments.
fn url_text() -> impl Strategy<Value = String> {
    let scheme = prop::sample::select(vec!["http", "https", "HTTP", "hTTps"]);
    let host = prop::sample::select(vec![
        "shop.example",
        "SHOP.Example",
        "bücher.example",
        "127.0.0.1",
        "[::1]",
        "xn--bcher-kva.example",
    ]);
    let port = prop::sample::select(vec!["", ":80", ":443", ":8080"]);
    let segment = prop::sample::select(vec![
        "a", "B", ".", "..", "%41", "%2F", "é", "a b", "", "x;y", "~u",
    ]);
    let key = prop::sample::select(vec![
        "utm_source",
        "utm_",
        "UTM_x",
        "sessionid",
        "ref",
        "a",
        "a b",
        "ü",
        "utm%5Fx",
        "",
    ]);
    let value = "[a-z0-9 %&=+?/é]{0,4}";
    let query = prop::collection::vec((key, value), 0..4);
    (
        scheme,
        host,
        port,
        prop::collection::vec(segment, 0..5),
        prop::option::of(query),
        prop::option::of("[a-z#%]{0,4}"),
    )
        .prop_map(|(scheme, host, port, path, query, fragment)| {
            let mut s = format!("{scheme}://{host}{port}/{}", path.join("/"));
            if let Some(q) = query {
                let pairs: Vec<String> = q.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
                s.push('?');
                s.push_str(&pairs.join("&"));
            }
            if let Some(f) = fragment {
                s.push('#');
                s.push_str(&f);
            }
            s
        })
}

fn check_normalisation(url: Url) -> Result<(), TestCaseError> {
    let strip = strip();
    let once = normalize_url(url.clone(), &strip);
    prop_assert_eq!(once.scheme(), url.scheme());
    prop_assert_eq!(once.host(), url.host());
    prop_assert_eq!(once.port(), url.port());
    prop_assert_eq!(once.path(), url.path());
    prop_assert!(once.fragment().is_none());
    prop_assert_ne!(once.query(), Some(""));
    prop_assert!(once
        .query_pairs()
        .all(|(k, _)| !strip.iter().any(|p| p.matches(&k))));
    let twice = normalize_url(once.clone(), &strip);
    prop_assert_eq!(&twice, &once, "not idempotent");
    // The frontier and the store keep URLs as strings and parse them again.
    let again = Url::parse(once.as_str()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(normalize_url(again, &strip), once);
    Ok(())
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn normalisation_is_idempotent_and_keeps_scheme_and_host(text in url_text()) {
        if let Ok(url) = Url::parse(&text) {
            check_normalisation(url)?;
        }
    }

    #[test]
    fn normalisation_of_any_link_on_a_page(href in any::<String>()) {
        let base = Url::parse("https://shop.example/catalogue/page-1.html").unwrap();
        if let Ok(url) = base.join(&href) {
            if matches!(url.scheme(), "http" | "https") {
                check_normalisation(url)?;
            }
        }
    }
}

// ---------------------------------------------------------- Retry-After

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

const DATE_TOKENS: &[&str] = &[
    "Wed, ",
    "Sun,",
    "25 ",
    "31 ",
    "0 ",
    "Nov ",
    "Feb ",
    "2026 ",
    "1900 ",
    "99 ",
    "9999 ",
    "12:00:30 ",
    "23:59:60 ",
    "GMT",
    "UT",
    "+0100",
    "-2400",
    "z",
    " ",
    "\t",
    "1",
    "0",
    "-",
    "+",
    "18446744073709551616",
    "(comment)",
    ",",
];

fn retry_after_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        soup(DATE_TOKENS, 12),
        // A valid date with one token changed.
        (
            -3_000_000_000i64..3_000_000_000,
            soup(DATE_TOKENS, 2),
            any::<prop::sample::Index>()
        )
            .prop_map(|(secs, token, at)| {
                let date = (now() + chrono::TimeDelta::seconds(secs)).to_rfc2822();
                let mut i = at.index(date.len() + 1);
                while !date.is_char_boundary(i) {
                    i -= 1;
                }
                format!("{}{token}{}", &date[..i], &date[i..])
            }),
    ]
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn retry_after_never_panics(value in retry_after_value(), secs in -1_000_000_000i64..1_000_000_000) {
        let now = now() + chrono::TimeDelta::seconds(secs);
        if let Some(d) = retry_after(Some(&value), now) {
            prop_assert!(!d.is_zero() || value.trim().parse::<u64>() == Ok(0));
        }
    }

    #[test]
    fn retry_after_digits_are_seconds(n in any::<u64>(), pad in "[ \t]{0,2}") {
        let value = format!("{pad}{n}{pad}");
        prop_assert_eq!(retry_after(Some(&value), now()), Some(Duration::from_secs(n)));
    }

    #[test]
    fn retry_after_dates_in_the_past_are_none(ago in 0i64..3_000_000_000) {
        let at = now() - chrono::TimeDelta::seconds(ago);
        prop_assert_eq!(retry_after(Some(&at.to_rfc2822()), now()), None);
        let http_date = at.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        prop_assert_eq!(retry_after(Some(&http_date), now()), None);
    }

    #[test]
    fn retry_after_dates_in_the_future_are_the_wait(ahead in 1i64..3_000_000_000) {
        let at = now() + chrono::TimeDelta::seconds(ahead);
        let http_date = at.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        prop_assert_eq!(
            retry_after(Some(&http_date), now()),
            Some(Duration::from_secs(ahead as u64))
        );
    }
}

// --------------------------------------------------------------- Config

const SHOP: &str = include_str!("../configs/shop.toml");
const PROFILES: &str = include_str!("../configs/profiles.toml");

/// Real config files with a slice replaced by arbitrary text: mostly
/// near-valid TOML, which reaches the type checks and the compiler.
fn config_text() -> impl Strategy<Value = String> {
    let mutated = (
        prop::sample::select(vec![SHOP, PROFILES]),
        any::<prop::sample::Index>(),
        0usize..40,
        "(.|\n){0,40}",
    )
        .prop_map(|(base, at, len, insert)| {
            let mut start = at.index(base.len() + 1);
            while !base.is_char_boundary(start) {
                start -= 1;
            }
            let mut end = (start + len).min(base.len());
            while !base.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}{insert}{}", &base[..start], &base[end..])
        });
    prop_oneof![mutated, any::<String>()]
}

proptest! {
    #![proptest_config(cases(128))]

    #[test]
    fn config_errors_point_inside_the_text(text in config_text()) {
        let files = vec![(PathBuf::from("prop.toml"), Ok(text.clone()))];
        let report = load_files(files, &|_| Some("x".to_owned()));
        let lines: Vec<&str> = text.split('\n').collect();
        for e in report.all_errors() {
            prop_assert!(!e.message.is_empty());
            let rendered = e.to_string();
            prop_assert!(rendered.starts_with("prop.toml"), "{}", rendered);
            if let Some(p) = e.position {
                prop_assert!(p.line >= 1 && p.line <= lines.len(), "line {} of {}: {}", p.line, lines.len(), rendered);
                let width = lines[p.line - 1].chars().count();
                prop_assert!(p.column >= 1 && p.column <= width + 1, "column {} of {}: {}", p.column, width, rendered);
            }
        }
    }
}

// ----------------------------------------------------------- Extraction

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

// ----------------------------------------------------------- robots.txt

const AGENT: &str = "crawld/0.1 (+https://crawld.example)";

/// Lines that may follow a rule: anything but a new group or another
/// allow/disallow rule, which could legitimately change the verdict.
fn neutral_lines() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..30),
        "(Crawl-delay|Sitemap|Host|#|Noindex): [ -~]{0,20}".prop_map(String::into_bytes),
    ];
    prop::collection::vec(line, 0..10).prop_map(|lines| {
        let mut out = Vec::new();
        for l in lines {
            let lower = String::from_utf8_lossy(&l).to_ascii_lowercase();
            if !lower.contains("allow") && !lower.contains("agent") {
                out.extend_from_slice(&l);
                out.push(b'\n');
            }
        }
        out
    })
}

/// robots.txt lines: a directive (or junk) and a value of tokens.
fn robots_soup() -> impl Strategy<Value = Vec<u8>> {
    const DIRECTIVES: &[&str] = &[
        "User-agent:",
        "user-agent: crawld",
        "User-agent: *",
        "Disallow:",
        "Allow:",
        "Crawl-delay:",
        "Sitemap:",
        "",
        "#",
        "\u{feff}User-agent:",
    ];
    const VALUES: &[&str] = &[
        " ",
        "*",
        "$",
        "/",
        "/a",
        "%",
        "%2F",
        "%E2%82%AC",
        "#",
        "\u{0}",
        "5",
        "0.5",
        "1e9",
        "NaN",
        "inf",
        "-1",
        "3601",
        "é",
        "?",
        "[",
        "(",
        "\\",
        "crawld",
        "\r",
    ];
    let line = (prop::sample::select(DIRECTIVES), soup(VALUES, 4));
    let eol = prop::sample::select(vec!["\n", "\r\n", "\r", ""]);
    prop::collection::vec((line, eol), 0..12).prop_map(|lines| {
        let mut out = String::new();
        for ((directive, value), eol) in lines {
            out.push_str(directive);
            out.push_str(&value);
            out.push_str(eol);
        }
        out.into_bytes()
    })
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn robots_never_panics(body in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..400),
        robots_soup(),
    ]) {
        let parsed = parse_body(AGENT, &body);
        let _ = parsed.allowed("https://a.example/x");
        if let Some(gap) = parsed.crawl_delay() {
            prop_assert!(gap <= Duration::from_secs(3600));
        }
    }
}

proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn a_disallow_placed_first_is_honoured(
        agent_line in prop::sample::select(vec!["User-agent: *", "user-agent: crawld", "User-Agent: CRAWLD"]),
        tail in neutral_lines(),
        long in prop::bool::weighted(0.1),
    ) {
        let mut body = format!("{agent_line}\nDisallow: /private\n").into_bytes();
        body.extend_from_slice(&tail);
        if long {
            // Past the 512 KiB cut: the first rule must survive it.
            body.extend(std::iter::repeat_n(b"# filler\n".as_slice(), MAX_ROBOTS / 9 + 10).flatten());
        }
        let parsed = parse_body(AGENT, &body);
        prop_assert!(!parsed.allowed("https://a.example/private/page"));
        prop_assert!(!parsed.allowed("https://a.example/private"));
        prop_assert!(parsed.allowed("https://a.example/public"));
    }
}

// ----------------------------------------------------------- Backup file

const MAGIC: &[u8] = b"CRAWLD-BACKUP 1\n";

/// A well-formed backup of `records`, as `Store::backup` writes one.
fn backup_bytes(records: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    for (k, v) in records {
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v);
    }
    out.extend_from_slice(&u32::MAX.to_be_bytes());
    out.extend_from_slice(&(records.len() as u64).to_be_bytes());
    let digest = xxhash_rust::xxh3::xxh3_64(&out);
    out.extend_from_slice(&digest.to_be_bytes());
    out
}

fn records() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
    let bytes = prop::collection::vec(any::<u8>(), 1..12);
    prop::collection::vec((bytes.clone(), bytes), 0..6)
}

/// Damaged backups: a good one truncated, with bytes overwritten, or with a
/// length field set high; and plain arbitrary bytes.
fn damaged() -> impl Strategy<Value = Vec<u8>> {
    let edits = (
        records(),
        any::<prop::sample::Index>(),
        prop::collection::vec(any::<u8>(), 1..6),
        0u8..3,
    )
        .prop_map(|(records, at, bytes, how)| {
            let mut file = backup_bytes(&records);
            let i = at.index(file.len());
            match how {
                0 => file.truncate(i),
                1 => {
                    let end = (i + bytes.len()).min(file.len());
                    let n = end - i;
                    if file[i..end] == bytes[..n] {
                        file.truncate(i);
                    } else {
                        file[i..end].copy_from_slice(&bytes[..n]);
                    }
                }
                _ => {
                    let at = MAGIC.len().min(file.len());
                    file.truncate(at);
                    file.extend_from_slice(&u32::MAX.wrapping_sub(1 + i as u32).to_be_bytes());
                    file.extend_from_slice(&bytes);
                }
            }
            file
        });
    prop_oneof![edits, prop::collection::vec(any::<u8>(), 0..64)]
}

proptest! {
    #![proptest_config(cases(48))]

    #[test]
    fn a_damaged_backup_fails_and_leaves_no_store(file in damaged()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backup");
        std::fs::write(&path, &file).unwrap();
        let state = dir.path().join("state");
        prop_assert!(Store::verify_backup(file.as_slice(), &path).is_err());
        let restored = Store::restore(&state, &path);
        prop_assert!(restored.is_err(), "restored {:?} from a damaged file", restored.ok());
        prop_assert!(!state.join("db").exists(), "a failed restore left a store");
        prop_assert!(!state.join("db.restoring").exists(), "a failed restore left its scratch store");
    }

    #[test]
    fn a_good_backup_restores_every_record(records in records()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backup");
        let bytes = backup_bytes(&records);
        let verified = Store::verify_backup(bytes.as_slice(), &path);
        prop_assert_eq!(verified.ok(), Some(records.len() as u64));
        std::fs::write(&path, bytes).unwrap();
        let state = dir.path().join("state");
        let restored = Store::restore(&state, &path);
        prop_assert!(restored.is_ok(), "{}", restored.unwrap_err());
        prop_assert_eq!(restored.unwrap(), records.len() as u64);
        prop_assert!(state.join("db").exists());
    }
}
