//! The page's `<script type="application/ld+json">` blocks, handed to the
//! JSON-LD reader (`crate::jsonld`) without copying their text.

use std::borrow::Cow;
use std::sync::OnceLock;

use scraper::{Html, Node, Selector};

use crate::jsonld::JsonLd;

/// Parses the page's JSON-LD blocks, in page order, within the reader's caps.
pub(super) fn read(doc: &Html) -> JsonLd {
    static SCRIPT: OnceLock<Option<Selector>> = OnceLock::new();
    let Some(sel) = SCRIPT
        .get_or_init(|| Selector::parse("script[type]").ok())
        .as_ref()
    else {
        return JsonLd::default();
    };
    let blocks = doc
        .select(sel)
        .filter(|el| el.value().attr("type").is_some_and(is_ld_json))
        .map(|el| {
            // A script holds one text node: borrowed, so a block past the
            // size cap is never copied.
            let mut texts = el.children().filter_map(|n| match n.value() {
                Node::Text(t) => Some(&**t),
                _ => None,
            });
            match (texts.next(), texts.next()) {
                (None, _) => Cow::Borrowed(""),
                (Some(one), None) => Cow::Borrowed(one),
                (Some(a), Some(b)) => {
                    let mut s = String::from(a);
                    s.push_str(b);
                    texts.for_each(|t| s.push_str(t));
                    Cow::Owned(s)
                }
            }
        });
    JsonLd::read(blocks)
}

/// `application/ld+json`, in any case, with parameters (`; charset=utf-8`).
fn is_ld_json(ty: &str) -> bool {
    ty.split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/ld+json"))
}
