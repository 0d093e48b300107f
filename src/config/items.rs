//! Compiles `[items.*]`: item kinds and their fields, each query parsed and
//! checked here so that a bad selector is a load error with its position.

use toml::Spanned;

use super::compile::Compiler;
use super::process;
use super::raw::{RawField, RawItem};
use super::values::{regex, selector};
use super::Query;
use super::{Field, FieldSource, ItemKey, ItemKind};
use crate::jsonld::LdPath;

pub(super) fn item_kind(c: &mut Compiler, name: &str, raw: &Spanned<RawItem>) -> Option<ItemKind> {
    let before = c.errors.len();
    let at = |k: &str| format!("items.{name}.{k}");
    let item = raw.get_ref();
    let pages = item
        .pages
        .as_ref()
        .and_then(|p| c.check(p, &at("pages"), |s| regex(s)));
    let sel = item
        .selector
        .as_ref()
        .and_then(|s| c.check(s, &at("selector"), |s| selector(s)));

    let mut fields = Vec::new();
    for (fname, f) in &item.fields {
        if fname.starts_with('_') {
            c.err(
                f.span(),
                at(&format!("fields.{fname}")),
                "field names starting with _ are reserved for crawld's metadata",
            );
            continue;
        }
        if let Some(field) = field(c, &at(&format!("fields.{fname}")), fname, f) {
            fields.push(field);
        }
    }
    let ld_type = ld_items(c, name, item, &fields);
    if item.fields.is_empty() {
        c.err(
            raw.span(),
            format!("items.{name}"),
            "an item kind needs at least one field under [items.NAME.fields]",
        );
    }
    let key = match &item.key {
        Some(k)
            if k.get_ref() == "url"
                && !item.fields.contains_key("url")
                && item.selector.is_none() =>
        {
            Some(ItemKey::PageUrl)
        }
        Some(k) => match item.fields.get_index_of(k.get_ref().as_str()) {
            Some(i) if item.fields[i].get_ref().many => {
                c.err(
                    k.span(),
                    at("key"),
                    format!(
                        "key {:?} names a field with many = true: a key is one value",
                        k.get_ref()
                    ),
                );
                None
            }
            Some(i) if item.fields[i].get_ref().process.default.is_some() => {
                c.err(
                    k.span(),
                    at("key"),
                    format!(
                        "key {:?} names a field with a default: every item missing it would have the same key",
                        k.get_ref()
                    ),
                );
                None
            }
            Some(i) => Some(ItemKey::Field(i)),
            None => {
                let names: Vec<&str> = item.fields.keys().map(String::as_str).collect();
                c.err(
                    k.span(),
                    at("key"),
                    format!(
                        "key {:?} is not one of the fields: {}",
                        k.get_ref(),
                        names.join(", ")
                    ),
                );
                None
            }
        },
        None if item.selector.is_some() => {
            c.err(
                raw.span(),
                format!("items.{name}"),
                "an item kind with a selector needs `key`: the field that identifies an item across runs",
            );
            None
        }
        None if ld_type.is_some() => {
            c.err(
                raw.span(),
                format!("items.{name}"),
                format!(
                    "an item kind whose fields all read JSON-LD {} objects makes one item per object, \
                     so it needs `key`: the field that identifies an item across runs \
                     (or key = \"url\" for the page's URL)",
                    ld_type.as_deref().unwrap_or_default()
                ),
            );
            None
        }
        None => Some(ItemKey::PageUrl),
    };
    if c.errors.len() > before {
        return None;
    }
    Some(ItemKind {
        name: name.to_owned(),
        pages,
        selector: sel,
        ld_type,
        key: key?,
        fields,
    })
}

fn field(c: &mut Compiler, key: &str, name: &str, raw: &Spanned<RawField>) -> Option<Field> {
    let f = raw.get_ref();
    let source = match (&f.css, &f.jsonld) {
        (Some(css), None) => {
            // The string shorthand has no span of its own: use the whole value's.
            let css_span = if css.span().is_empty() {
                raw.span()
            } else {
                css.span()
            };
            match Query::parse(css.get_ref()) {
                Ok(q) => Some(FieldSource::Css(q)),
                Err(e) => {
                    c.err(css_span, key, e);
                    None
                }
            }
        }
        (None, Some(path)) => c
            .check(path, &format!("{key}.jsonld"), |p| {
                LdPath::parse(p).map_err(|e| e.to_string())
            })
            .map(FieldSource::JsonLd),
        (Some(_), Some(path)) => {
            c.err(
                path.span(),
                format!("{key}.jsonld"),
                "a field takes `css` or `jsonld`, not both",
            );
            None
        }
        (None, None) => {
            c.err(
                raw.span(),
                key,
                r#"a field needs `css = "…"` (a query in the page) or `jsonld = "Type.key"` (a value of the page's JSON-LD)"#,
            );
            None
        }
    };
    if f.many {
        if let Some(j) = &f.join {
            c.err(
                j.span(),
                format!("{key}.join"),
                "many and join do not go together: many makes a list, join one string",
            );
        }
    }
    let kind = process::field_type(c, key, f);
    let proc = process::process(c, key, f);
    let default = process::default(c, key, f, kind.as_ref());
    Some(Field {
        name: name.to_owned(),
        source: source?,
        kind: kind?,
        required: f.required,
        many: f.many,
        join: f.join.as_ref().map(|j| j.get_ref().clone()),
        process: proc.ok()?,
        default: default.ok()?,
    })
}

/// The `@type` whose objects are the kind's items: no selector, and every
/// field `jsonld` of that type. `jsonld` fields in a kind with a selector
/// are an error: their values are not inside the selected elements.
fn ld_items(c: &mut Compiler, name: &str, item: &RawItem, fields: &[Field]) -> Option<String> {
    let paths: Vec<&LdPath> = fields.iter().filter_map(|f| f.source.jsonld()).collect();
    if let (Some(sel), false) = (&item.selector, paths.is_empty()) {
        c.err(
            sel.span(),
            format!("items.{name}.selector"),
            "a kind with `selector` reads its fields inside each match, and `jsonld` fields are \
             not inside elements: remove `selector` (one item per JSON-LD object when every \
             field is `jsonld` of one type) or use `css` fields",
        );
        return None;
    }
    let ty = paths.first()?.ty();
    (item.selector.is_none()
        && paths.len() == item.fields.len()
        && paths.iter().all(|p| p.ty() == ty))
    .then(|| ty.to_owned())
}
