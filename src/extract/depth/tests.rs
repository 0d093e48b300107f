//! The estimate against html5ever's own tree, on the markup real pages are
//! made of and on markup built to hide its depth.

use super::*;

/// How deep html5ever nests `html`'s elements below `<body>` (or `<head>`).
fn parsed(html: &str) -> u32 {
    let doc = scraper::Html::parse_document(html);
    let mut deepest = 0;
    for node in doc.tree.root().descendants() {
        if node.value().is_element() {
            let depth = node.ancestors().filter(|a| a.value().is_element()).count();
            // html and body (or head) are not counted.
            deepest = deepest.max(depth.saturating_sub(1) as u32);
        }
    }
    deepest
}

fn estimate(html: &str) -> u32 {
    nesting(html, LIMITS).depth
}

/// Real-world markup, repeated: the estimate stays close to the parser's
/// depth however many times the pattern repeats (nothing accumulates).
#[test]
fn common_markup_is_not_counted_deep() {
    let cases: &[(&str, &str)] = &[
        ("unclosed p", "<p>text"),
        ("unclosed li", "<ul><li>a<li>b<li>c</ul>"),
        (
            "one long list of unclosed li",
            "<li>item <a href=x>link</a>",
        ),
        (
            "unclosed li, nested lists",
            "<ul><li>a<ul><li>b<li>c</ul><li>d</ul>",
        ),
        ("unclosed dt dd", "<dl><dt>a<dd>b<dt>c<dd>d</dl>"),
        (
            "unclosed option",
            "<select><option>a<option>b<optgroup><option>c</select>",
        ),
        (
            "table without end tags",
            "<table><tr><td>a<td>b<tr><th>c<td>d</table>",
        ),
        (
            "table with sections",
            "<table><thead><tr><th>a<tbody><tr><td>b<tfoot><tr><td>c</table>",
        ),
        (
            "unclosed font in cells",
            "<table><tr><td><font size=2>a<td><font><b>b</table>",
        ),
        (
            "void elements",
            "<br><img src=x><input name=q><hr><meta charset=utf-8><wbr>",
        ),
        (
            "void elements written closed",
            "<br/><img src=x /><input name=q/>",
        ),
        (
            "comments with markup",
            "<!-- <div><div><span> --><!----><!--->",
        ),
        (
            "script with markup",
            "<script>var s = '<div>' + (a<b) + '<span>';</script>",
        ),
        (
            "script with a closing lookalike",
            "<script>x = '</scriptx><div>';</script>",
        ),
        (
            "style and textarea",
            "<style>div > p { }</style><textarea><div></textarea>",
        ),
        (
            "attributes with markup",
            r#"<a title="<div>" data-x='>'>x</a><img alt=">"/>"#,
        ),
        (
            "misnested inline",
            "<b><i>x</b></i><em><strong>y</em></strong>",
        ),
        ("block inside a link", "<a href=/p><div>card</a></div>"),
        ("unclosed links", "<a href=1>one<a href=2>two"),
        (
            "p closed by blocks",
            "<p>intro<div>box</div><p>more<ul><li>x</ul>",
        ),
        ("headings", "<h1>a<h2>b</h1><h3>c"),
        (
            "svg icons",
            r#"<svg viewBox="0 0 8 8"><path d="M0"/><g><circle r=1 /></g></svg>"#,
        ),
        ("stray end tags", "</span></div></td></li>text"),
        (
            "form across a table",
            "<form><table><tr><td><input></td></tr></table></form>",
        ),
        (
            "doctype and processing instruction",
            "<!DOCTYPE html><?xml version='1.0'?>",
        ),
        ("noscript", "<noscript><div><img src=x></div></noscript>"),
    ];
    for (what, pattern) in cases {
        let page = format!(
            "<html><body><div>{}</div></body></html>",
            pattern.repeat(3000)
        );
        let (estimated, parsed) = (estimate(&page), parsed(&page));
        assert!(
            estimated < 10,
            "{what}: estimated {estimated}, parsed {parsed}"
        );
        assert!(
            estimated + 1 >= parsed,
            "{what}: estimated {estimated} < parsed {parsed}"
        );
    }
}

/// Markup that nests deep, however it is written: never estimated shallower
/// than the parser builds it.
#[test]
fn deep_markup_is_counted_deep() {
    let cases: Vec<(&str, String)> = vec![
        ("nested divs", "<div>".repeat(2000)),
        ("divs written closed", "<div/>".repeat(2000)),
        ("unclosed spans", "<span>".repeat(2000)),
        ("stray end tags between", "<div></span>".repeat(2000)),
        (
            "inline end tag over a block",
            "<span><div></span>".repeat(1000),
        ),
        ("nested tables", "<table><tr><td>".repeat(500)),
        ("nested svg groups", format!("<svg>{}", "<g>".repeat(2000))),
        (
            "table parts in svg",
            format!("<table><td><svg>{}", "<tr>".repeat(2000)),
        ),
        ("nested lists", "<ul><li>".repeat(1000)),
        ("links around blocks", "<a href=x><div>".repeat(1000)),
        ("forms in divs", "<div><form>".repeat(1000)),
        ("paragraphs in objects", "<p><object>".repeat(1000)),
    ];
    for (what, markup) in cases {
        let page = format!("<html><body>{markup}</body></html>");
        let (estimated, parsed) = (estimate(&page), parsed(&page));
        assert!(parsed > 900, "{what}: the parser nests {parsed}");
        assert!(
            estimated >= parsed.min(MAX_DEPTH + 1),
            "{what}: estimated {estimated} < parsed {parsed}"
        );
    }
}

#[test]
fn the_scan_stops_above_the_limit() {
    let page = "<div>".repeat(100_000);
    assert_eq!(nesting(&page, LIMITS).depth, MAX_DEPTH + 1);
    let max = Nesting {
        depth: 10,
        work: u64::MAX,
    };
    assert_eq!(nesting(&page, max).depth, 11);
    assert_eq!(
        nesting("<div><div></div></div>", max),
        Nesting { depth: 2, work: 4 }
    );
}

#[test]
fn text_to_the_end_and_cut_markup_end_the_scan() {
    for page in [
        "<div><!-- no end <div><div>",
        "<div><script> no end <div><div>",
        "<div><plaintext><div><div>",
        "<div><div title=\"no end",
        "<div><img alt='",
        "<div></",
        "<div><",
    ] {
        assert!(estimate(page) <= 2, "{page}");
    }
    assert_eq!(estimate(""), 0);
}

#[test]
fn tags_opened_deep_down_count_as_work() {
    // Each `<li>` costs the parser two walks down 1,000 open elements.
    let page = format!("{}{}", "<div>".repeat(1000), "<li>".repeat(200_000));
    let found = nesting(&page, LIMITS);
    assert!(found.depth <= MAX_DEPTH, "{found:?}");
    assert!(found.work > MAX_WORK, "{found:?}");
    // The same tags near the top cost little.
    let page = format!("<ul>{}</ul>", "<li>x".repeat(200_000));
    let found = nesting(&page, LIMITS);
    assert!(found.work < 1_000_000, "{found:?}");
}

#[test]
fn attributes_count_as_work() {
    // The tokenizer compares each attribute's name with the tag's earlier ones.
    let many: Vec<String> = (0..20_000).map(|i| format!("a{i}")).collect();
    let page = format!("<div {}>x</div>", many.join(" "));
    assert!(nesting(&page, LIMITS).work > MAX_WORK);
    let page = r#"<a href="/x" class=c id=i title='t' data-a data-b=1 rel=next hidden>x</a>"#;
    assert_eq!(
        nesting(page, LIMITS).work,
        8 * 7 / 2 + 1,
        "8 attributes, 1 open at </a>"
    );
}

#[test]
fn the_common_names_have_their_own_slots() {
    for (i, name) in names::COMMON.iter().enumerate() {
        assert_eq!(names::common(name), Some(i as u32));
    }
    assert_eq!(names::common(b"article"), None);
}

/// The pages let through unscanned cannot nest past the limit: every
/// element needs a `<`, and there are at most [`MAX_DEPTH`] of them.
#[test]
fn only_small_pages_with_few_tags_skip_the_scan() {
    let nested = |n: usize| "<div>".repeat(n);
    assert!(!needs_scan(&nested(MAX_DEPTH as usize)));
    assert!(parsed(&nested(MAX_DEPTH as usize)) <= MAX_DEPTH + 1);
    assert!(needs_scan(&nested(MAX_DEPTH as usize + 1)));
    assert!(needs_scan(&"x".repeat(UNSCANNED_BYTES + 1)));
    assert!(!needs_scan(&"x".repeat(UNSCANNED_BYTES)));
}
