//! Property tests for the entry points that read untrusted input: the same
//! ones the fuzz targets in `fuzz/` drive (config loading, extraction and
//! field queries, value processing, the JSON-LD reader, URL normalisation,
//! robots.txt, sitemaps, Retry-After, backup restore). The fuzzers look for
//! crashes over minutes; these keep the properties in every `cargo test`,
//! with case counts small enough to run in a few seconds. One module per
//! entry point.

mod backup;
mod config;
mod extraction;
mod jsonld;
mod retry_after;
mod robots;
mod sitemap;
mod urls;
mod values;

use proptest::prelude::*;

/// Proptest settings with `n` cases.
pub fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        // Failures are reported with their minimal input; no regression files.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Strings of tokens from `tokens`: structured enough to reach the parsers'
/// deeper paths, which uniformly random text rarely does.
pub fn soup(tokens: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(tokens), 0..max).prop_map(|t| t.concat())
}
