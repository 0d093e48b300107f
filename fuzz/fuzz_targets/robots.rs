//! robots.txt as a run reads it (`robots::parse_body`: the 512 KiB cut to a
//! whole line, the parse, dropped unparsable lines), then the questions a
//! run asks of it: may this URL be fetched, what Crawl-delay applies.
//!
//! Input: the body. When it starts with `#!`, a comment line pads it so that
//! the cut at `MAX_ROBOTS` falls inside the fuzzed bytes.

#![no_main]

use crawld::robots::{parse_body, MAX_ROBOTS};
use libfuzzer_sys::fuzz_target;

const URLS: [&str; 5] = [
    "https://a.example/",
    "https://a.example/private/x",
    "https://a.example/a%2Fb?q=1",
    "https://a.example/%E2%82%AC/*$",
    "https://a.example/index.html#frag",
];

fuzz_target!(|data: &[u8]| {
    let padded;
    let body = if data.starts_with(b"#!") {
        let mut b = vec![b'#'; MAX_ROBOTS - data.len() / 2];
        b.push(b'\n');
        b.extend_from_slice(data);
        padded = b;
        &padded[..]
    } else {
        data
    };
    let parsed = parse_body("crawld/0.1 (+https://crawld.example)", body);
    for url in URLS {
        let _ = parsed.allowed(url);
    }
    if let Some(gap) = parsed.crawl_delay() {
        assert!(gap.as_secs() <= 3600, "{gap:?}");
    }
});
