//! From a parsed TOML document to a [`RawFile`], with every type and
//! unknown-key error of the file rather than serde's first.
//!
//! serde stops at the first error. So the document is deserialized, the entry
//! that failed is removed from a working copy, and the rest is deserialized
//! again, until it passes. Each error keeps `toml`'s own message and span,
//! and is named by its dotted key in the original document.

use std::ops::Range;

use serde::Deserialize;
use toml::de::{DeArray, DeTable, DeValue};
use toml::Spanned;

use super::error::{ConfigError, Source};
use super::hint;
use super::raw::RawFile;

/// Type and key errors reported per file, at most: each costs a pass over
/// the file, and a file with more is best fixed from the top.
const MAX_ERRORS: usize = 50;

/// What was removed from the working copy after an error.
struct Removed {
    /// The key, when an entry of a table was removed (not an array item).
    key: Option<String>,
    /// The span of the table or array it was removed from.
    parent: Range<usize>,
}

/// Deserializes `doc` (parsed from `source`), or returns every type and
/// unknown-key error of it.
pub(super) fn raw_file(
    source: &Source,
    doc: &Spanned<DeTable<'_>>,
) -> Result<RawFile, Vec<ConfigError>> {
    let mut work = doc.clone();
    let mut errors = Vec::new();
    let mut removed: Vec<Removed> = Vec::new();
    // Every pass removes an entry from `work` or ends the loop, so it ends.
    loop {
        let e = match RawFile::deserialize(toml::de::Deserializer::from(work.clone())) {
            Ok(raw) if errors.is_empty() => return Ok(raw),
            Ok(_) => return Err(errors),
            Err(e) => e,
        };
        let message = e.message().trim_end();
        let Some(span) = e.span() else {
            errors.push(ConfigError::file(&source.path, message));
            return Err(errors);
        };
        if !is_echo(message, span.start, &removed) {
            if errors.len() == MAX_ERRORS {
                let more =
                    format!("more type or key errors after these {MAX_ERRORS}: fix these first");
                errors.push(ConfigError::file(&source.path, more));
                return Err(errors);
            }
            let key = key_path(doc.get_ref(), span.start);
            let message = match hint::unknown_key(message) {
                Some(hint) => format!("{message}; {hint}"),
                None => message.to_owned(),
            };
            errors.push(source.error(span.clone(), key, message));
        }
        match prune_table(work.get_mut(), 0..0, span.start) {
            Some(r) => removed.push(r),
            None => return Err(errors),
        }
    }
}

/// Whether an error only follows from an earlier removal: a required key
/// whose bad value was removed is now "missing". toml's errors carry no kind,
/// so this is read from serde's fixed wording.
fn is_echo(message: &str, pos: usize, removed: &[Removed]) -> bool {
    let Some(rest) = message.strip_prefix("missing field `") else {
        return false;
    };
    let field = rest.split('`').next().unwrap_or_default();
    removed
        .iter()
        .any(|r| r.key.as_deref() == Some(field) && r.parent.contains(&pos))
}

/// Removes the deepest entry of `table` (whose own span is `span`) that
/// covers byte `pos`.
fn prune_table(table: &mut DeTable<'_>, span: Range<usize>, pos: usize) -> Option<Removed> {
    let mut hit = None;
    for (k, v) in table.iter_mut() {
        if let Some(r) = prune_value(v, pos) {
            return Some(r);
        }
        if hit.is_none() && (k.span().contains(&pos) || v.span().contains(&pos)) {
            hit = Some(k.get_ref().to_string());
        }
    }
    let key = hit?;
    table.remove(key.as_str());
    Some(Removed {
        key: Some(key),
        parent: span,
    })
}

fn prune_value(value: &mut Spanned<DeValue<'_>>, pos: usize) -> Option<Removed> {
    let span = value.span();
    match value.get_mut() {
        DeValue::Table(t) => prune_table(t, span, pos),
        DeValue::Array(a) => {
            for item in a.iter_mut() {
                if let Some(r) = prune_value(item, pos) {
                    return Some(r);
                }
            }
            let i = a.iter().position(|item| item.span().contains(&pos))?;
            let items = std::mem::replace(a, DeArray::new());
            *a = items
                .into_iter()
                .enumerate()
                .filter_map(|(j, item)| (j != i).then_some(item))
                .collect();
            Some(Removed {
                key: None,
                parent: span,
            })
        }
        _ => None,
    }
}

/// The dotted key whose key or value covers byte `pos` (`items.book.fields.price`).
/// Tables made by `[a.b]` headers have no span of their own, so every
/// branch is searched.
fn key_path(table: &DeTable<'_>, pos: usize) -> Option<String> {
    fn walk(value: &DeValue<'_>, pos: usize) -> Option<Vec<String>> {
        match value {
            DeValue::Table(t) => t.iter().find_map(|(k, v)| {
                let here = k.span().contains(&pos) || v.span().contains(&pos);
                match walk(v.get_ref(), pos) {
                    Some(mut below) => {
                        below.insert(0, k.get_ref().to_string());
                        Some(below)
                    }
                    None => here.then(|| vec![k.get_ref().to_string()]),
                }
            }),
            DeValue::Array(a) => a.iter().enumerate().find_map(|(i, v)| {
                let mut below = walk(v.get_ref(), pos)?;
                below.insert(0, format!("[{i}]"));
                Some(below)
            }),
            _ => None,
        }
    }
    let path = walk(&DeValue::Table(table.clone()), pos)?;
    let mut out = String::new();
    for part in path {
        if !out.is_empty() && !part.starts_with('[') {
            out.push('.');
        }
        out.push_str(&part);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        let source = Source {
            path: "t.toml".into(),
            text: text.into(),
        };
        let (doc, syntax) = DeTable::parse_recoverable(text);
        assert!(syntax.is_empty());
        let errors = raw_file(&source, &doc).err().unwrap_or_default();
        errors
            .iter()
            .map(|e| e.to_string().lines().next().unwrap_or_default().to_owned())
            .collect()
    }

    #[test]
    fn every_type_and_key_error_is_reported_once() {
        // `user_agent` is required (and a field needs `css` or `jsonld`):
        // removing their bad values must not add a "missing" error for each.
        let text = r#"start_urls = ["http://a.example/", 7]
max_pages = "many"
[follow]
same_host = "yes"
[items.book.fields]
price = { css = 3, typ = "number" }
[profiles.p]
identities = [{ user_agent = 1 }]
"#;
        assert_eq!(
            errors(text),
            [
                "t.toml:1:36: start_urls: invalid type: integer `7`, expected a string",
                "t.toml:2:13: max_pages: invalid type: string \"many\", expected i64",
                "t.toml:4:13: follow.same_host: invalid type: string \"yes\", expected a boolean",
                "t.toml:6:17: items.book.fields.price.css: invalid type: integer `3`, expected a string",
                "t.toml:6:20: items.book.fields.price.typ: unknown field `typ`, expected one of `css`, `jsonld`, `type`, `required`, `many`, `join`, `re`, `replace`, `strip`, `default`, `date_format`",
                "t.toml:8:30: profiles.p.identities[0].user_agent: invalid type: integer `1`, expected a string",
            ]
        );
    }

    #[test]
    fn a_missing_required_key_is_reported() {
        let text = "start_urls = [\"http://a.example/\"]\n[domains.\"a.example\"]\n";
        assert_eq!(
            errors(text),
            ["t.toml:2:1: domains.a.example: missing field `profile`"]
        );
    }

    #[test]
    fn a_file_of_errors_is_cut_short() {
        let text: String = (0..200).map(|i| format!("k{i} = 1\n")).collect();
        let errors = errors(&text);
        assert_eq!(errors.len(), MAX_ERRORS + 1);
        assert!(errors[MAX_ERRORS].contains("fix these first"));
    }
}
