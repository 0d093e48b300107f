//! The JSON-LD reader (`jsonld::JsonLd`, `LdPath`): never panics on any
//! block or path, counts every block it was given (read, malformed or
//! skipped), and what it finds is what a well-formed block holds.

use proptest::prelude::*;

use crawld::jsonld::{values_in, JsonLd, LdPath, MAX_BLOCKS};

use super::{cases, soup};

/// JSON-LD-ish tokens: enough structure to reach `@graph`, arrays, nested
/// objects, wrappers and the lenient paths, with faults mixed in.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"@type\"",
    "\"@graph\"",
    "\"Product\"",
    "\"schema:Product\"",
    "\"http://schema.org/Product\"",
    "\"offers\"",
    "\"price\"",
    "\"name\"",
    "\"@value\"",
    "\"52.77\"",
    "49.5",
    "1e400",
    "-0",
    "true",
    "null",
    "\"\\u00e9\"",
    "\"\\ud800\"",
    "\n",
    "\t",
    ";",
    "<!--",
    "-->",
    "<![CDATA[",
    "]]>",
    "//",
    "\"",
    "\\",
    "é",
    " ",
];

fn path() -> impl Strategy<Value = String> {
    soup(
        &[
            "Product", "offers", "price", "name", "@graph", "@type", ".", "", "x",
        ],
        6,
    )
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn never_panics_on_token_soup(blocks in prop::collection::vec(soup(TOKENS, 60), 0..4), p in path()) {
        let ld = JsonLd::read(&blocks);
        if let Ok(p) = LdPath::parse(&p) {
            for v in ld.values(&p) {
                prop_assert!(!v.is_empty());
                prop_assert_eq!(v.trim(), v.as_str());
            }
            for obj in ld.objects(p.ty()) {
                let _ = values_in(obj, &p);
            }
        }
        prop_assert!(ld.invalid as usize + ld.skipped as usize <= blocks.len());
    }

    #[test]
    fn never_panics_on_arbitrary_text(blocks in prop::collection::vec(any::<String>(), 0..3), p in any::<String>()) {
        let ld = JsonLd::read(&blocks);
        if let Ok(p) = LdPath::parse(&p) {
            let _ = ld.values(&p);
        }
    }

    #[test]
    fn a_product_anywhere_is_found(price in "[1-9][0-9]{0,3}\\.[0-9]{2}", depth in 0usize..20, wrap in 0usize..3) {
        // A Product nested `depth` levels deep in arrays and objects, maybe in a wrapper.
        let mut json = format!(r#"{{"@type":"Product","offers":[{{"price":"{price}"}},{{"price":{price}}}]}}"#);
        for i in 0..depth {
            json = if i % 2 == 0 { format!("[{json}]") } else { format!(r#"{{"@graph":{json}}}"#) };
        }
        let block = match wrap { 0 => json, 1 => format!("<!--{json}-->"), _ => format!("<![CDATA[{json}]]>;") };
        let ld = JsonLd::read([block]);
        prop_assert_eq!(ld.invalid + ld.skipped, 0);
        let number = price.parse::<f64>().unwrap().to_string();
        let found = ld.values(&LdPath::parse("Product.offers.price").unwrap());
        prop_assert_eq!(found.len(), 2);
        prop_assert_eq!(&found[0], &price);
        prop_assert_eq!(found[1].parse::<f64>().unwrap().to_string(), number);
    }

    #[test]
    fn blocks_past_the_cap_are_skipped(n in 0usize..(MAX_BLOCKS * 2)) {
        let blocks = vec![r#"{"@type":"Product","name":"x"}"#; n];
        let ld = JsonLd::read(blocks);
        prop_assert_eq!(ld.skipped as usize, n.saturating_sub(MAX_BLOCKS));
        prop_assert_eq!(ld.values(&LdPath::parse("Product.name").unwrap()).len(), n.min(MAX_BLOCKS));
    }
}
