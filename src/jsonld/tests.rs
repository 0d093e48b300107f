use super::*;

fn path(s: &str) -> LdPath {
    LdPath::parse(s).unwrap()
}

fn read(blocks: &[&str]) -> JsonLd {
    JsonLd::read(blocks.iter().copied())
}

const GRAPH: &str = r#"{
  "@context": "https://schema.org",
  "@graph": [
    {"@type": "Organization", "name": "Shop"},
    {"@type": ["Product", "Thing"], "name": " Kettle ", "sku": 1234,
     "brand": {"@type": "Brand", "name": "Acme"},
     "offers": [
       {"@type": "Offer", "price": "52.77", "priceCurrency": "GBP", "available": true},
       {"@type": "Offer", "price": 49.5, "priceCurrency": "GBP", "available": false}
     ],
     "isSimilarTo": {"@type": "Product", "name": "Teapot"}},
    {"@type": "BreadcrumbList", "itemListElement": [
       {"@type": "ListItem", "position": 1, "name": "Home"},
       {"@type": "ListItem", "position": 2, "name": "Kitchen"}]}
  ]
}"#;

#[test]
fn a_path_finds_the_type_in_a_graph_and_flattens_arrays() {
    let ld = read(&[GRAPH]);
    assert_eq!(ld.values(&path("Product.offers.price")), ["52.77", "49.5"]);
    assert_eq!(ld.values(&path("Product.name")), ["Kettle"]);
    assert_eq!(
        ld.values(&path("BreadcrumbList.itemListElement.name")),
        ["Home", "Kitchen"]
    );
    assert!(!ld.has_faults());
}

#[test]
fn leaves_are_json_text_and_objects_give_their_name() {
    let ld = read(&[GRAPH]);
    assert_eq!(ld.values(&path("Product.sku")), ["1234"]);
    assert_eq!(
        ld.values(&path("Product.offers.available")),
        ["true", "false"]
    );
    assert_eq!(ld.values(&path("Product.brand")), ["Acme"]);
    assert_eq!(ld.values(&path("Product")), ["Kettle"]);
    // An object with neither @value nor name gives nothing.
    assert!(ld.values(&path("Product.offers")).is_empty());
    assert_eq!(
        read(&[r#"{"@type":"Event","startDate":{"@value":"2026-01-02","@type":"Date"}}"#])
            .values(&path("Event.startDate")),
        ["2026-01-02"]
    );
}

#[test]
fn a_match_is_not_searched_for_more_of_its_type() {
    let ld = read(&[GRAPH]);
    assert_eq!(ld.objects("Product").len(), 1);
    assert_eq!(ld.values(&path("Product.isSimilarTo.name")), ["Teapot"]);
}

#[test]
fn types_match_as_strings_arrays_and_schema_org_iris() {
    for ty in [
        r#""Product""#,
        r#"["Thing", "Product"]"#,
        r#""http://schema.org/Product""#,
        r#""https://schema.org/Product""#,
        r#""schema:Product""#,
    ] {
        let block = format!(r#"{{"@type": {ty}, "name": "x"}}"#);
        assert_eq!(read(&[&block]).values(&path("Product.name")), ["x"], "{ty}");
    }
    // Case-sensitive, no subtypes, other vocabularies as they are.
    for ty in [
        r#""product""#,
        r#""ProductModel""#,
        r#""http://example.org/Product""#,
    ] {
        let block = format!(r#"{{"@type": {ty}, "name": "x"}}"#);
        assert!(
            read(&[&block]).values(&path("Product.name")).is_empty(),
            "{ty}"
        );
    }
}

#[test]
fn objects_come_in_document_order_across_blocks_arrays_and_nesting() {
    let ld = read(&[
        r#"[{"@type":"Product","name":"a"},{"@type":"WebPage","mainEntity":{"@type":"Product","name":"b"}}]"#,
        r#"{"@type":"Product","name":"c"}"#,
    ]);
    assert_eq!(ld.values(&path("Product.name")), ["a", "b", "c"]);
    let objs = ld.objects("Product");
    assert_eq!(values_in(objs[1], &path("Product.name")), ["b"]);
}

#[test]
fn lenient_where_real_sites_are() {
    for block in [
        "<!-- {\"@type\":\"Product\",\"name\":\"x\"} -->",
        "<![CDATA[{\"@type\":\"Product\",\"name\":\"x\"}]]>",
        "//<![CDATA[\n{\"@type\":\"Product\",\"name\":\"x\"}\n//]]>",
        "/*<![CDATA[*/{\"@type\":\"Product\",\"name\":\"x\"}/*]]>*/",
        "{\"@type\":\"Product\",\"name\":\"x\"};",
        "{\"@type\":\"Product\",\"name\":\"x\"}\n{\"@type\":\"Thing\"}",
        // A raw newline and tab inside a string: invalid JSON, common.
        "{\"@type\":\"Product\",\"name\":\"x\",\"description\":\"two\n\tlines\"}",
        // Trailing commas, hand-written; a comma inside a string stays.
        "{\"@type\":\"Product\",\"name\":\"x\",\"offers\":{\"price\":\"9,}\",},}",
        "[{\"@type\":\"Product\",\"name\":\"x\"} , ]",
        "",
        "   ",
    ] {
        let ld = read(&[block]);
        assert!(!ld.has_faults(), "{block:?}");
        if !block.trim().is_empty() {
            assert_eq!(ld.values(&path("Product.name")), ["x"], "{block:?}");
        }
        if block.contains("9,}") {
            assert_eq!(ld.values(&path("Product.offers.price")), ["9,}"]);
        }
    }
}

#[test]
fn malformed_blocks_are_counted_and_others_still_read() {
    let ld = read(&[
        "{\"@type\":\"Product\",",
        "{'@type': 'Product'}",
        "{\"@type\":\"Product\",\"name\":\"kept\"} trailing garbage",
        "{\"@type\":\"Product\",\"name\":\"good\"}",
    ]);
    assert_eq!(ld.invalid, 3);
    assert_eq!(ld.skipped, 0);
    assert!(ld.has_faults());
    // What came before a fault is kept.
    assert_eq!(ld.values(&path("Product.name")), ["kept", "good"]);
}

#[test]
fn the_caps_skip_blocks_past_the_count_and_the_size() {
    let small = r#"{"@type":"Product","name":"x"}"#;
    let many: Vec<&str> = std::iter::repeat_n(small, MAX_BLOCKS + 3).collect();
    let ld = JsonLd::read(many);
    assert_eq!(ld.skipped, 3);
    assert_eq!(ld.values(&path("Product.name")).len(), MAX_BLOCKS);

    let big = format!(
        r#"{{"@type":"Product","name":"big","pad":"{}"}}"#,
        "x".repeat(MAX_BLOCK_BYTES)
    );
    let ld = read(&[&big, small]);
    assert_eq!((ld.skipped, ld.invalid), (1, 0));
    assert_eq!(ld.values(&path("Product.name")), ["x"]);
}

#[test]
fn nesting_past_serde_json_limit_is_malformed_not_a_crash() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let ld = read(&[&deep]);
    assert_eq!(ld.invalid, 1);
    let ok = format!(
        "{}{{\"@type\":\"Product\",\"name\":\"x\"}}{}",
        "[".repeat(100),
        "]".repeat(100)
    );
    assert_eq!(read(&[&ok]).values(&path("Product.name")), ["x"]);
}

#[test]
fn paths_are_checked() {
    assert_eq!(
        path("Product.offers.price").to_string(),
        "Product.offers.price"
    );
    assert_eq!(path("Product").ty(), "Product");
    assert_eq!(LdPath::parse(""), Err(LdPathError::Empty));
    for bad in ["Product..price", ".price", "Product.", "."] {
        assert!(
            matches!(LdPath::parse(bad), Err(LdPathError::EmptySegment(_))),
            "{bad}"
        );
    }
    assert!(matches!(
        LdPath::parse("schema:Product.name"),
        Err(LdPathError::TypeIri(_))
    ));
    assert!(matches!(
        LdPath::parse("Product. name"),
        Err(LdPathError::Whitespace(_))
    ));
}

#[test]
fn a_page_field_reads_the_first_object_of_its_type_only() {
    // The issue's contract: the first object whose @type matches, then the
    // path. The main product has no price: it must not take the related
    // product's, or one item would mix two products.
    let ld = read(&[
        r#"{"@type": "Product", "name": "Kettle"}"#,
        r#"{"@type": "Product", "name": "Teapot", "offers": {"price": "9.99"}}"#,
    ]);
    assert_eq!(
        ld.first_object_values(&path("Product.offers.price")),
        Vec::<String>::new()
    );
    assert_eq!(ld.first_object_values(&path("Product.name")), ["Kettle"]);
    // Every object's, for a kind with one item per object.
    assert_eq!(ld.values(&path("Product.offers.price")), ["9.99"]);
}
