//! The URLs a run admitted, as 128-bit fingerprints: 16 bytes a URL however
//! long it is, so that a million URLs take about 35 MB rather than the
//! hundreds a set of strings would. Two different URLs share a fingerprint
//! with a probability of about n² / 2¹²⁹ (10⁻²⁷ for a million URLs).

use std::collections::HashSet;

/// A set of URLs, by fingerprint.
#[derive(Debug, Default)]
pub struct Seen(HashSet<u128>);

/// The fingerprint of a (normalised) URL.
pub fn fingerprint(url: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(url.as_bytes())
}

impl Seen {
    /// Adds `url`; false when it was in the set already.
    pub fn insert(&mut self, url: &str) -> bool {
        self.0.insert(fingerprint(url))
    }

    pub fn contains(&self, url: &str) -> bool {
        self.0.contains(&fingerprint(url))
    }
}
