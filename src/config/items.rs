//! Compiles `[items.*]`: item kinds and their fields, each query parsed and
//! checked here so that a bad selector is a load error with its position.

use toml::Spanned;

use super::compile::Compiler;
use super::process;
use super::raw::{RawField, RawItem};
use super::values::{regex, selector};
use super::Query;
use super::{Field, ItemKey, ItemKind};

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
        None => Some(ItemKey::PageUrl),
    };
    if c.errors.len() > before {
        return None;
    }
    Some(ItemKind {
        name: name.to_owned(),
        pages,
        selector: sel,
        key: key?,
        fields,
    })
}

fn field(c: &mut Compiler, key: &str, name: &str, raw: &Spanned<RawField>) -> Option<Field> {
    let f = raw.get_ref();
    // The string shorthand has no span of its own: use the whole value's.
    let css_span = if f.css.span().is_empty() {
        raw.span()
    } else {
        f.css.span()
    };
    let query = match Query::parse(f.css.get_ref()) {
        Ok(q) => Some(q),
        Err(e) => {
            c.err(css_span, key, e);
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
        query: query?,
        kind: kind?,
        required: f.required,
        many: f.many,
        join: f.join.as_ref().map(|j| j.get_ref().clone()),
        process: proc.ok()?,
        default: default.ok()?,
    })
}
