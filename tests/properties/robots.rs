//! robots.txt as a run reads it (`robots::parse_body`): never panics, a
//! Crawl-delay is at most an hour, and a Disallow placed first is honoured,
//! also past the 512 KiB cut.

use std::time::Duration;

use proptest::prelude::*;

use crawld::robots::{parse_body, MAX_ROBOTS};

use super::{cases, soup};

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
