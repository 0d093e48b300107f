//! A sitemap as a run reads it (`sitemap::parse`: gzip by magic bytes, the
//! streaming XML reader, the entry and byte limits), then the checks a run
//! relies on: never more entries than the limit, every `<loc>` trimmed and
//! not empty.
//!
//! Input: the body. Its first byte picks small limits (odd) or the
//! sitemaps.org ones (even), so that the limits' paths are reached too.

#![no_main]

use crawld::sitemap::{parse, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = match data.first() {
        Some(b) if b % 2 == 1 => Limits {
            entries: usize::from(b / 32),
            bytes: u64::from(*b) * 8,
        },
        _ => Limits::default(),
    };
    let read = parse(data, limits);
    assert!(read.entries.len() <= limits.entries);
    for e in &read.entries {
        assert!(!e.loc.is_empty() && e.loc.trim() == e.loc, "{:?}", e.loc);
    }
});
