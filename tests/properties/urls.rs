//! URL normalisation (`urlnorm::normalize_url`): idempotent, keeps scheme,
//! host, port and path, drops fragments, empty queries and stripped
//! parameters, and survives the string round trip of the frontier and store.

use proptest::prelude::*;
use url::Url;

use crawld::urlnorm::{normalize_url, ParamPattern};

use super::cases;

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
