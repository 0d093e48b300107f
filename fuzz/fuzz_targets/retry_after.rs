//! `retry::retry_after` on fuzzed header values at a fuzzed "now".
//!
//! Input: 8 bytes of "now" (seconds since 1970, big endian, taken modulo
//! about 10,000 years), then the header value.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((now, value)) = data.split_first_chunk::<8>() else {
        return;
    };
    let secs = (u64::from_be_bytes(*now) % 320_000_000_000) as i64;
    let Some(now) = chrono::DateTime::from_timestamp(secs, 0) else {
        return;
    };
    let Ok(value) = std::str::from_utf8(value) else {
        return;
    };
    let asked = crawld::retry::retry_after(Some(value), now);
    match value.trim().parse::<u64>() {
        Ok(n) => assert_eq!(asked, Some(Duration::from_secs(n))),
        Err(_) => assert!(
            asked.is_none_or(|d| !d.is_zero()),
            "a date now or past gives None"
        ),
    }
});
