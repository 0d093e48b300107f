//! URL normalisation (`urlnorm::normalize_url`) on fuzzed URLs, absolute
//! or relative to a page: it must be idempotent, keep scheme and host, and
//! survive the string round trip the store and the frontier make.

#![no_main]

use crawld::urlnorm::{normalize_url, ParamPattern};
use libfuzzer_sys::fuzz_target;
use url::Url;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let strip = [
        ParamPattern::parse("utm_*"),
        ParamPattern::parse("sessionid"),
        ParamPattern::parse("ref"),
    ];
    let base = Url::parse("https://shop.example/catalogue/page-1.html?a=1").unwrap();
    let Ok(url) = base.join(text) else {
        return;
    };
    let once = normalize_url(url.clone(), &strip);
    assert_eq!(once.scheme(), url.scheme());
    assert_eq!(once.host(), url.host());
    assert_eq!(once.port(), url.port());
    assert!(once.fragment().is_none());
    let twice = normalize_url(once.clone(), &strip);
    assert_eq!(twice, once, "normalisation is idempotent");
    // The frontier and the store keep URLs as strings and parse them again.
    if matches!(once.scheme(), "http" | "https") {
        let again = Url::parse(once.as_str()).expect("a normalised URL parses");
        assert_eq!(normalize_url(again, &strip), once, "round trip of {once}");
    }
});
