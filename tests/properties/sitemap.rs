//! Sitemaps as a run reads them (`sitemap::parse`): never panics on any
//! body, plain or gzip, and what it gives stays within the limits: at most
//! the entry limit, every `<loc>` trimmed and not empty.

use std::io::Write;

use proptest::prelude::*;

use crawld::sitemap::{parse, Limits, Stop};

use super::{cases, soup};

/// Sitemap-shaped XML: the elements a reader looks for, mixed with entities,
/// CDATA, comments, other namespaces and broken tags.
fn sitemap_soup() -> impl Strategy<Value = String> {
    const TOKENS: &[&str] = &[
        "<?xml version=\"1.0\"?>",
        "<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">",
        "</urlset>",
        "<sitemapindex>",
        "</sitemapindex>",
        "<url>",
        "</url>",
        "<sitemap>",
        "</sitemap>",
        "<loc>",
        "</loc>",
        "<lastmod>",
        "</lastmod>",
        "<image:loc>",
        "</image:loc>",
        "http://a.test/p",
        "2026-12-07",
        "2026-12-07T10:00:00+01:00",
        "2026-02-30",
        "&amp;",
        "&#x41;",
        "&#0;",
        "&bogus;",
        "<![CDATA[x]]>",
        "<!-- c -->",
        " ",
        "<",
        ">",
        "\u{feff}",
        "é",
    ];
    soup(TOKENS, 60)
}

/// A well-formed urlset or index whose texts are soup: reaches the code
/// that keeps entries, which random tokens seldom put in order.
fn structured() -> impl Strategy<Value = String> {
    const TEXT: &[&str] = &[
        " ",
        "\n",
        "http://a.test/",
        "x",
        "&amp;",
        "&#x20;",
        "<![CDATA[ y ]]>",
        "2026-12-07",
        "T10:00Z",
        "é",
    ];
    let entry = (soup(TEXT, 6), soup(TEXT, 4), any::<bool>());
    (prop::collection::vec(entry, 0..8), any::<bool>()).prop_map(|(entries, index)| {
        let (root, item) = if index {
            ("sitemapindex", "sitemap")
        } else {
            ("urlset", "url")
        };
        let mut s = format!("<{root}>");
        for (loc, lastmod, with_lastmod) in entries {
            s.push_str(&format!("<{item}><loc>{loc}</loc>"));
            if with_lastmod {
                s.push_str(&format!("<lastmod>{lastmod}</lastmod>"));
            }
            s.push_str(&format!("</{item}>"));
        }
        s.push_str(&format!("</{root}>"));
        s
    })
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

fn check(body: &[u8], limits: Limits) {
    let read = parse(body, limits);
    assert!(read.entries.len() <= limits.entries);
    for e in &read.entries {
        assert!(!e.loc.is_empty() && e.loc.trim() == e.loc, "{:?}", e.loc);
    }
    if let Some(Stop::TooManyEntries(n)) = read.stop {
        assert_eq!(n, limits.entries);
    }
}

proptest! {
    #![proptest_config(cases(300))]

    #[test]
    fn never_panics_on_sitemap_soup(text in sitemap_soup(), entries in 0usize..5, bytes in 0u64..400) {
        check(text.as_bytes(), Limits::default());
        check(text.as_bytes(), Limits { entries, bytes });
        check(&gz(text.as_bytes()), Limits { entries, bytes });
    }

    #[test]
    fn keeps_trimmed_entries_within_the_limits(text in structured(), entries in 0usize..5) {
        check(text.as_bytes(), Limits::default());
        check(&gz(text.as_bytes()), Limits { entries, bytes: 10_000 });
    }

    #[test]
    fn never_panics_on_any_bytes(body in prop::collection::vec(any::<u8>(), 0..300)) {
        check(&body, Limits::default());
        // Bytes after gzip's magic: a broken gzip stream.
        let mut broken = vec![0x1f, 0x8b];
        broken.extend_from_slice(&body);
        check(&broken, Limits::default());
    }
}

#[test]
fn lastmod_never_panics_on_odd_dates() {
    for text in [
        "9999-12-31",
        "0000-01-01",
        "-2026-01-01",
        "2026-12-31T23:59:60Z",
        "+99999-01-01",
    ] {
        let _ = crawld::sitemap::parse_lastmod(text);
    }
}
