//! From the raw strings a field's source yields to the field's value: its
//! [`Process`](crate::config::Process) (`re`, `replace`, `strip`), then its
//! type, then its `default` when nothing is left. [`value`] is the entry
//! point for any value source (a CSS query here, JSON-LD alike): it takes
//! one raw string.

use serde_json::Value;
use url::Url;

use super::number::parse_number;
use super::Source;
use crate::config::{parse_bool, parse_date, Field, FieldType};
use crate::urlnorm::{normalize_url, ParamPattern};

/// What type conversion needs from the page.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The page URL, or its `<base href>`: `url` fields resolve against it.
    pub base: &'a Url,
    /// The target's `strip_params`, applied to `url` fields.
    pub strip_params: &'a [ParamPattern],
}

/// One raw string processed and converted to `field`'s type; `None` when
/// `re` does not match, nothing is left, or the text is not of the type.
/// A field without processing keys goes straight to its type.
pub fn value(field: &Field, raw: String, cx: &Context<'_>) -> Option<Value> {
    let text = match &field.process {
        Some(p) => p.apply(raw)?,
        None => raw,
    };
    convert(&field.kind, text, cx)
}

/// Text as a value of type `kind`.
pub fn convert(kind: &FieldType, text: String, cx: &Context<'_>) -> Option<Value> {
    match kind {
        FieldType::Text => Some(Value::String(text)),
        FieldType::Url => cx
            .base
            .join(&text)
            .ok()
            .map(|u| Value::String(normalize_url(u, cx.strip_params).into())),
        FieldType::Number => parse_number(&text)
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number),
        FieldType::Integer => parse_number(&text).and_then(whole).map(Value::from),
        FieldType::Boolean => parse_bool(&text).map(Value::Bool),
        FieldType::Date { format } => parse_date(&text, format.as_deref()).map(Value::String),
    }
}

/// `x` as an i64 when it is a whole number that f64 holds exactly.
fn whole(x: f64) -> Option<i64> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
                                                // The range check makes the cast exact.
    #[allow(clippy::cast_possible_truncation)]
    (x.fract() == 0.0 && x.abs() <= EXACT).then_some(x as i64)
}

/// The value of `field` from `src` (`many`: each match processed; `join`:
/// the joined matches; else the first match), its `default` when missing,
/// and, when `explain`, the raw value beside it if it differs.
pub(super) fn from_query(
    field: &Field,
    src: &Source<'_>,
    cx: &Context<'_>,
    explain: bool,
) -> (Option<Value>, Option<Value>) {
    let (v, raw) = if field.many {
        let raws = src.values(field);
        let shown = explain.then(|| Value::from(raws.clone()));
        let list: Vec<Value> = raws
            .into_iter()
            .filter_map(|r| value(field, r, cx))
            .collect();
        ((!list.is_empty()).then_some(Value::Array(list)), shown)
    } else {
        let raw = match (&field.join, &field.process) {
            (Some(sep), _) => {
                let parts = src.values(field);
                (!parts.is_empty()).then(|| parts.join(sep))
            }
            (None, Some(p)) if p.filters() => {
                return first_kept(field, src, cx, p, explain);
            }
            (None, _) => src.first(field),
        };
        let shown = explain.then(|| raw.clone().map_or(Value::Null, Value::String));
        (raw.and_then(|r| value(field, r, cx)), shown)
    };
    let v = v.or_else(|| field.default.clone());
    let raw = raw.filter(|r| match &v {
        Some(v) => r != v,
        None => !r.is_null() && r.as_array().is_none_or(|a| !a.is_empty()),
    });
    (v, raw)
}

/// A single field with `re`: the first match of its query that `re`
/// keeps, converted; with `explain`, the raw match it came from (or the
/// first match, when `re` kept none).
fn first_kept(
    field: &Field,
    src: &Source<'_>,
    cx: &Context<'_>,
    p: &crate::config::Process,
    explain: bool,
) -> (Option<Value>, Option<Value>) {
    let raws = src.values(field);
    let mut shown = explain.then(|| raws.first().cloned().map_or(Value::Null, Value::String));
    let mut kept = None;
    for raw in raws {
        let copy = explain.then(|| raw.clone());
        if let Some(text) = p.apply(raw) {
            if let Some(c) = copy {
                shown = Some(Value::String(c));
            }
            kept = Some(text);
            break;
        }
    }
    let v = kept
        .and_then(|t| convert(&field.kind, t, cx))
        .or_else(|| field.default.clone());
    (
        v.clone(),
        shown.filter(|r| Some(r) != v.as_ref() && !r.is_null()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_whole_numbers() {
        assert_eq!(whole(1299.0), Some(1299));
        assert_eq!(whole(-3.0), Some(-3));
        assert_eq!(whole(4.5), None);
        assert_eq!(whole(1e300), None);
    }

    #[test]
    fn converts_each_type() {
        let base = Url::parse("https://docs.example/a/b.html").unwrap();
        let cx = Context {
            base: &base,
            strip_params: &[],
        };
        let c = |k: FieldType, t: &str| convert(&k, t.to_owned(), &cx);
        assert_eq!(
            c(FieldType::Integer, "1,299 items"),
            Some(Value::from(1299))
        );
        assert_eq!(c(FieldType::Integer, "4.5 stars"), None);
        assert_eq!(c(FieldType::Boolean, "Yes"), Some(Value::Bool(true)));
        assert_eq!(c(FieldType::Boolean, "maybe"), None);
        assert_eq!(
            c(FieldType::Date { format: None }, "Dec 7, 2026"),
            Some(Value::from("2026-12-07"))
        );
        assert_eq!(
            c(
                FieldType::Date {
                    format: Some("%d.%m.%Y".into())
                },
                "07.12.2026"
            ),
            Some(Value::from("2026-12-07"))
        );
        assert_eq!(
            c(FieldType::Url, "../c.html#x"),
            Some(Value::from("https://docs.example/c.html"))
        );
    }
}
