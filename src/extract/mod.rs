//! Extraction: from one parsed page, the items of every kind that applies to
//! it and the links to follow. Pure and synchronous: callers run it off the
//! async worker threads. A page nested too deep to parse in reasonable time
//! ([`MAX_DEPTH`], [`MAX_WORK`]) is refused before it is parsed (see `depth`).
//! Its JSON-LD blocks are read (`ld_scripts`, then `crate::jsonld`) once, and
//! only when a kind that applies to it has a `jsonld` field.

mod depth;
mod ld_scripts;
mod number;
pub mod process;

use std::cell::OnceCell;

use scraper::{ElementRef, Html, Selector};
use serde_json::{Map, Value};
use url::{Position, Url};

pub use depth::{MAX_DEPTH, MAX_WORK};
pub use number::parse_number;

use crate::config::{Field, FieldSource, ItemKey, ItemKind, Target};
use crate::jsonld::{JsonLd, LdObject};
use crate::urlnorm::{normalize_url, ParamPattern};

/// One extracted item.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The item kind's name (`[items.NAME]`).
    pub kind: String,
    /// The value that identifies the item across runs.
    pub key: String,
    /// Field values in config order; `null` (or `[]` with `many`) when absent.
    pub value: Map<String, Value>,
}

/// An item dropped because required fields (or its key) were missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidItem {
    pub kind: String,
    pub missing: Vec<String>,
    /// The fields it had, for the run's field coverage.
    pub present: Vec<String>,
}

/// Whether a field value counts as found: absent fields are `null`, or
/// `[]` with `many`.
pub fn is_present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Array(a) => !a.is_empty(),
        _ => true,
    }
}

/// Everything extracted from one page.
#[derive(Debug, Default)]
pub struct PageExtract {
    pub items: Vec<Item>,
    pub invalid: Vec<InvalidItem>,
    /// Absolute, normalised http(s) links found by `follow.links`, deduplicated, in page order:
    /// the first `follow.max_links` of them.
    pub links: Vec<Url>,
    /// Links past `follow.max_links`, not taken (each occurrence counts).
    pub links_dropped: u64,
    /// JSON-LD blocks malformed or past the caps (read only when a kind
    /// applied to the page has a `jsonld` field): the page's warning.
    pub jsonld_faults: u32,
    /// With [`extract_explained`], for each of `items` (same order): the raw
    /// value of every field whose value differs from it (processed, typed or
    /// defaulted). Empty otherwise.
    pub raw: Vec<Map<String, Value>>,
    /// The same for `invalid`.
    pub invalid_raw: Vec<Map<String, Value>>,
    /// Whether to fill `raw` and `invalid_raw`.
    explain: bool,
}

/// Which item kinds to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kinds {
    /// Kinds whose `pages` pattern matches the page URL.
    Matching,
    /// Every kind, whatever the URL (for `crawld test --file`).
    All,
}

/// A page nested too deep to parse in reasonable time (the parser's work
/// grows with tags × depth): it is not parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TooDeep {
    /// Its elements nest deeper than [`MAX_DEPTH`].
    #[error("its elements nest more than {limit} levels deep")]
    Depth { limit: u32 },
    /// It would cost the parser more than [`MAX_WORK`].
    #[error(
        "it has so many elements nested so deep that parsing it would take too long \
         (more than {limit} steps)"
    )]
    Work { limit: u64 },
}

/// Parses `html` (the page at `url`) and extracts items and links for `target`.
pub fn extract(
    target: &Target,
    html: &str,
    url: &Url,
    kinds: Kinds,
) -> Result<PageExtract, TooDeep> {
    run(target, html, url, kinds, false)
}

/// [`extract`], keeping each field's raw value beside its value (see
/// [`PageExtract::raw`]), for `crawld test`.
pub fn extract_explained(
    target: &Target,
    html: &str,
    url: &Url,
    kinds: Kinds,
) -> Result<PageExtract, TooDeep> {
    run(target, html, url, kinds, true)
}

fn run(
    target: &Target,
    html: &str,
    url: &Url,
    kinds: Kinds,
    explain: bool,
) -> Result<PageExtract, TooDeep> {
    if depth::needs_scan(html) {
        let found = depth::nesting(html, depth::LIMITS);
        if found.depth > MAX_DEPTH {
            return Err(TooDeep::Depth { limit: MAX_DEPTH });
        }
        if found.work > MAX_WORK {
            return Err(TooDeep::Work { limit: MAX_WORK });
        }
    }
    let doc = Html::parse_document(html);
    let base = base_url(&doc, url);
    let (links, links_dropped) = links(&doc, &base, target);
    let mut out = PageExtract {
        links,
        links_dropped,
        explain,
        ..Default::default()
    };
    let path = &url[Position::BeforePath..];
    // Read on first use: a page no `jsonld` field asks about costs nothing.
    let ld = OnceCell::new();
    let ctx = Ctx {
        page: url,
        base: &base,
        strip: &target.strip_params,
        doc: &doc,
        ld: &ld,
    };
    for kind in &target.items {
        if kinds == Kinds::Matching && kind.pages.as_ref().is_some_and(|re| !re.is_match(path)) {
            continue;
        }
        match (&kind.selector, &kind.ld_type) {
            (Some(sel), _) => {
                for root in doc.select(sel) {
                    item(kind, root, None, &ctx, &mut out);
                }
            }
            (None, Some(ty)) => {
                for obj in ctx.jsonld().objects(ty) {
                    item(kind, doc.root_element(), Some(obj), &ctx, &mut out);
                }
            }
            (None, None) => item(kind, doc.root_element(), None, &ctx, &mut out),
        }
    }
    if let Some(ld) = ld.get() {
        out.jsonld_faults = ld.invalid.saturating_add(ld.skipped);
    }
    Ok(out)
}

/// What every item of a page shares.
struct Ctx<'a> {
    page: &'a Url,
    base: &'a Url,
    strip: &'a [ParamPattern],
    doc: &'a Html,
    ld: &'a OnceCell<JsonLd>,
}

impl Ctx<'_> {
    /// The page's JSON-LD, parsed on first use.
    fn jsonld(&self) -> &JsonLd {
        self.ld.get_or_init(|| ld_scripts::read(self.doc))
    }
}

/// Where a field's raw strings come from for one item: its CSS query
/// inside the item's element, or its JSON-LD path (inside the item's own
/// object, for a kind with one item per object, else across the page).
pub(super) struct Source<'a> {
    ctx: &'a Ctx<'a>,
    root: ElementRef<'a>,
    obj: Option<&'a LdObject>,
}

impl Source<'_> {
    /// Every raw string of `field`, in document order.
    pub(super) fn values(&self, field: &Field) -> Vec<String> {
        match (&field.source, self.obj) {
            (FieldSource::Css(q), _) => q.values(self.root),
            (FieldSource::JsonLd(p), Some(obj)) => crate::jsonld::values_in(obj, p),
            (FieldSource::JsonLd(p), None) => self.ctx.jsonld().first_object_values(p),
        }
    }

    /// The first raw string of `field` (a CSS query stops at it).
    pub(super) fn first(&self, field: &Field) -> Option<String> {
        match &field.source {
            FieldSource::Css(q) => q.first(self.root),
            FieldSource::JsonLd(_) => self.values(field).into_iter().next(),
        }
    }
}

/// `<base href>` resolved against the page URL, or the page URL.
fn base_url(doc: &Html, url: &Url) -> Url {
    static BASE: std::sync::OnceLock<Option<Selector>> = std::sync::OnceLock::new();
    BASE.get_or_init(|| Selector::parse("base[href]").ok())
        .as_ref()
        .and_then(|sel| doc.select(sel).next())
        .and_then(|b| b.value().attr("href"))
        .and_then(|href| url.join(href.trim()).ok())
        .unwrap_or_else(|| url.clone())
}

/// The page's links, the first `follow.max_links` distinct ones in document
/// order, and how many further link elements were left: a page of 400,000
/// links must not make the run hold 400,000 URLs. Those left are counted, not
/// resolved (an element linking a URL already taken counts too).
fn links(doc: &Html, base: &Url, target: &Target) -> (Vec<Url>, u64) {
    let cap = target.follow.max_links;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    let mut dropped = 0u64;
    for el in doc.select(&target.follow.links) {
        let Some(href) = el.value().attr("href") else {
            continue;
        };
        if out.len() >= cap {
            dropped += 1;
            continue;
        }
        let Ok(link) = base.join(href.trim()) else {
            continue;
        };
        if !matches!(link.scheme(), "http" | "https") {
            continue;
        }
        let link = normalize_url(link, &target.strip_params);
        if seen.insert(link.as_str().to_owned()) {
            out.push(link);
        }
    }
    (out, dropped)
}

fn item(
    kind: &ItemKind,
    root: ElementRef<'_>,
    obj: Option<&LdObject>,
    ctx: &Ctx<'_>,
    out: &mut PageExtract,
) {
    let (page, base, strip) = (ctx.page, ctx.base, ctx.strip);
    let mut value = Map::with_capacity(kind.fields.len());
    let mut missing = Vec::new();
    let cx = process::Context {
        base,
        strip_params: strip,
    };
    // Raw values only for `crawld test`: a crawl builds no map for them.
    let mut raw = out.explain.then(Map::new);
    for field in &kind.fields {
        let src = Source { ctx, root, obj };
        let (v, shown) = process::from_query(field, &src, &cx, out.explain);
        if let (Some(raw), Some(r)) = (raw.as_mut(), shown) {
            raw.insert(field.name.clone(), r);
        }
        match v {
            Some(v) => {
                value.insert(field.name.clone(), v);
            }
            None => {
                if field.required {
                    missing.push(field.name.clone());
                }
                let empty = if field.many {
                    Value::Array(Vec::new())
                } else {
                    Value::Null
                };
                value.insert(field.name.clone(), empty);
            }
        }
    }
    let key = match kind.key {
        ItemKey::PageUrl => Some(page.as_str().to_owned()),
        ItemKey::Field(i) => match value.get(&kind.fields[i].name) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        },
    };
    match key {
        Some(key) if missing.is_empty() => {
            out.items.push(Item {
                kind: kind.name.clone(),
                key,
                value,
            });
            out.raw.extend(raw);
        }
        key => {
            if key.is_none() {
                if let ItemKey::Field(i) = kind.key {
                    let name = &kind.fields[i].name;
                    if !missing.contains(name) {
                        missing.push(name.clone());
                    }
                }
            }
            let present = value
                .iter()
                .filter(|(_, v)| is_present(v))
                .map(|(k, _)| k.clone())
                .collect();
            out.invalid.push(InvalidItem {
                kind: kind.name.clone(),
                missing,
                present,
            });
            out.invalid_raw.extend(raw);
        }
    }
}
