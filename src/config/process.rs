//! A field's value processing: what its `re`, `replace` and `strip` keys do
//! to each raw string a query (or another value source) yields, compiled
//! once when the config loads, and the checks of `type`, `date_format` and
//! `default` that go with them.
//!
//! The order is fixed: `re` (the first match: its `value` group, else its
//! first group, else the whole match; no match, no value; a single field
//! takes the first of its query's matches that `re` matches, as parsel's
//! `re_first` does) → `replace`
//! (every match of each pattern, in order, `$1` references) → `strip`
//! (whitespace and the given characters off both ends) → type conversion
//! (in `extract`). A value that comes out empty is missing.
//!
//! A field without any of these keys has no [`Process`] at all, so that
//! extraction costs what it did before them.

use regex::{Regex, RegexBuilder};
use serde_json::Value;

use super::compile::Compiler;
use super::dates::{check_format, parse_date};
use super::raw::RawField;
use super::FieldType;

/// The largest compiled program a field's pattern may make (regex's
/// `size_limit`): a config cannot make crawld build a huge automaton, and a
/// pattern this large is most likely a mistake. Unicode classes are large:
/// `\w{100}` is refused, `(?-u:\w){100}` or `[A-Za-z0-9_]{100}` is not.
pub const MAX_PATTERN_SIZE: usize = 2 << 20;

/// The compiled `re`, `replace` and `strip` of one field.
#[derive(Debug)]
pub struct Process {
    re: Option<(Regex, usize)>,
    replace: Vec<(Regex, String)>,
    /// Characters taken off both ends besides whitespace (`strip`).
    strip: Vec<char>,
}

impl Process {
    /// Whether `re` can refuse a value (then a single field reads on to the
    /// next match of its query, as parsel's `re_first` does).
    pub fn filters(&self) -> bool {
        self.re.is_some()
    }

    /// `raw` after `re`, `replace` and `strip`; `None` when `re` does not
    /// match or nothing is left. Allocates only where a step changes it.
    pub fn apply(&self, raw: String) -> Option<String> {
        let mut s = raw;
        if let Some((re, group)) = &self.re {
            let found = if *group == 0 {
                re.find(&s).map(|m| m.range())
            } else {
                re.captures(&s)
                    .and_then(|c| c.get(*group))
                    .map(|m| m.range())
            };
            let range = found?;
            s = s[range].to_owned();
        }
        for (re, with) in &self.replace {
            if let std::borrow::Cow::Owned(o) = re.replace_all(&s, with.as_str()) {
                s = o;
            }
        }
        let trimmed = s.trim_matches(|c: char| c.is_whitespace() || self.strip.contains(&c));
        if trimmed.is_empty() {
            return None;
        }
        if trimmed.len() != s.len() {
            s = trimmed.to_owned();
        }
        Some(s)
    }
}

/// A pattern of `re` or `replace`, compiled with [`MAX_PATTERN_SIZE`]; its
/// error says, on one line, what is wrong.
pub fn pattern(s: &str) -> Result<Regex, String> {
    RegexBuilder::new(s)
        .size_limit(MAX_PATTERN_SIZE)
        .build()
        .map_err(|e| {
            // regex draws its own caret over several lines; its last line says what is wrong.
            let text = e.to_string();
            let why = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or(&text);
            format!(
                "invalid regex {s:?}: {}",
                why.trim().trim_start_matches("error: ")
            )
        })
}

/// The capture group `re` yields: `value` if named, else the first, else the whole match.
fn group_of(re: &Regex) -> usize {
    re.capture_names()
        .position(|n| n == Some("value"))
        .unwrap_or(if re.captures_len() > 1 { 1 } else { 0 })
}

/// The field's `type`, with its `date_format`.
pub(super) fn field_type(c: &mut Compiler, key: &str, f: &RawField) -> Option<FieldType> {
    let format = f.process.date_format.as_ref();
    let format_ok = format.is_none_or(|fm| {
        c.check(fm, &format!("{key}.date_format"), |s| check_format(s))
            .is_some()
    });
    let kind = match &f.kind {
        None => Some(FieldType::Text),
        Some(t) => c.check(t, &format!("{key}.type"), |t| match t.as_str() {
            "text" => Ok(FieldType::Text),
            "url" => Ok(FieldType::Url),
            "number" => Ok(FieldType::Number),
            "integer" => Ok(FieldType::Integer),
            "boolean" => Ok(FieldType::Boolean),
            "date" => Ok(FieldType::Date { format: None }),
            other => Err(format!(
                "unknown field type {other:?}; known: text, url, number, integer, boolean, date"
            )),
        }),
    }?;
    match (kind, format) {
        (FieldType::Date { .. }, fm) => format_ok.then(|| FieldType::Date {
            format: fm.map(|f| f.get_ref().clone()),
        }),
        (_, Some(fm)) => {
            c.err(
                fm.span(),
                format!("{key}.date_format"),
                "date_format goes with type = \"date\" only",
            );
            None
        }
        (kind, None) => Some(kind),
    }
}

/// The field's [`Process`] (`None` when it has no processing key), or
/// `Err` when one is wrong (the errors are in `c`).
pub(super) fn process(c: &mut Compiler, key: &str, f: &RawField) -> Result<Option<Process>, ()> {
    let p = &f.process;
    let before = c.errors.len();
    let re = p.re.as_ref().and_then(|r| {
        c.check(r, &format!("{key}.re"), |s| pattern(s)).map(|re| {
            let g = group_of(&re);
            (re, g)
        })
    });
    let mut replace = Vec::new();
    if let Some(list) = &p.replace {
        for (i, pair) in list.get_ref().iter().enumerate() {
            let (pat, with) = pair.get_ref();
            if let Some(re) = c.check(pair, &format!("{key}.replace[{i}]"), |_| pattern(pat)) {
                replace.push((re, with.clone()));
            }
        }
    }
    let strip: Vec<char> = p
        .strip
        .as_ref()
        .map(|s| s.get_ref().chars().collect())
        .unwrap_or_default();
    if let Some(s) = &p.strip {
        if s.get_ref().is_empty() {
            c.err(
                s.span(),
                format!("{key}.strip"),
                "strip is empty: give the characters to take off both ends, e.g. strip = \"¶ \"",
            );
        }
    }
    if c.errors.len() > before {
        return Err(());
    }
    if re.is_none() && replace.is_empty() && strip.is_empty() {
        return Ok(None);
    }
    Ok(Some(Process { re, replace, strip }))
}

/// The field's `default`, checked against its type, `required` and `many`.
pub(super) fn default(
    c: &mut Compiler,
    key: &str,
    f: &RawField,
    kind: Option<&FieldType>,
) -> Result<Option<Value>, ()> {
    let Some(d) = &f.process.default else {
        return Ok(None);
    };
    let at = format!("{key}.default");
    if f.required {
        c.err(
            d.span(),
            at,
            "required and default do not go together: required drops an item whose value is \
             missing, default fills the value in; keep one",
        );
        return Err(());
    }
    if f.many {
        c.err(
            d.span(),
            at,
            "many and default do not go together: a missing list is []",
        );
        return Err(());
    }
    let Some(kind) = kind else {
        // The type's own error is reported.
        return Err(());
    };
    c.check(d, &at, |v| default_value(v, kind))
        .map(Some)
        .ok_or(())
}

fn default_value(v: &toml::Value, kind: &FieldType) -> Result<Value, String> {
    use toml::Value as T;
    let wrong = |want: &str| {
        Err(format!(
            "the default of a type = {:?} field is {want}, not {} {v}",
            kind.name(),
            v.type_str()
        ))
    };
    match (kind, v) {
        (FieldType::Text, T::String(s)) => Ok(Value::String(s.clone())),
        (FieldType::Text, _) => wrong("a string"),
        (FieldType::Url, T::String(s)) => match url::Url::parse(s) {
            Ok(u) => Ok(Value::String(u.into())),
            Err(e) => Err(format!("default {s:?} is not an absolute URL: {e}")),
        },
        (FieldType::Url, _) => wrong("an absolute URL string"),
        (FieldType::Number, T::Integer(i)) => Ok(Value::from(*i)),
        (FieldType::Number, T::Float(x)) => serde_json::Number::from_f64(*x)
            .map(Value::Number)
            .ok_or_else(|| format!("default {x} is not a finite number")),
        (FieldType::Number, _) => wrong("a number"),
        (FieldType::Integer, T::Integer(i)) => Ok(Value::from(*i)),
        (FieldType::Integer, _) => wrong("an integer"),
        (FieldType::Boolean, T::Boolean(b)) => Ok(Value::Bool(*b)),
        (FieldType::Boolean, _) => wrong("true or false"),
        (FieldType::Date { .. }, T::Datetime(d)) => parse_date(&d.to_string(), None)
            .map(Value::String)
            .ok_or_else(|| format!("default {d} is not a whole date")),
        (FieldType::Date { format }, T::String(s)) => parse_date(s, format.as_deref())
            .or_else(|| parse_date(s, None))
            .map(Value::String)
            .ok_or_else(|| format!("default {s:?} is not a date crawld reads")),
        (FieldType::Date { .. }, _) => wrong("a date (2026-12-07 or \"2026-12-07\")"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(re: Option<&str>, replace: &[(&str, &str)], strip: &str) -> Process {
        let re = re.map(|r| {
            let re = pattern(r).unwrap();
            let g = group_of(&re);
            (re, g)
        });
        Process {
            re,
            replace: replace
                .iter()
                .map(|(a, b)| (pattern(a).unwrap(), (*b).to_owned()))
                .collect(),
            strip: strip.chars().collect(),
        }
    }

    fn run(proc: &Process, s: &str) -> Option<String> {
        proc.apply(s.to_owned())
    }

    #[test]
    fn re_takes_the_value_group_else_the_first_else_the_match() {
        assert_eq!(
            run(&p(Some(r"\d+"), &[], ""), "Order 66 of 99").as_deref(),
            Some("66")
        );
        assert_eq!(
            run(&p(Some(r"of (\d+)"), &[], ""), "Order 66 of 99").as_deref(),
            Some("99")
        );
        assert_eq!(
            run(&p(Some(r"(\w+) (?P<value>\d+)"), &[], ""), "Order 66").as_deref(),
            Some("66")
        );
        assert_eq!(run(&p(Some(r"\d+"), &[], ""), "none"), None);
        assert_eq!(run(&p(Some(r"x(\d)?"), &[], ""), "x"), None);
    }

    #[test]
    fn replace_runs_in_order_with_references() {
        let proc = p(None, &[(r"(\w+), (\w+)", "$2 $1"), (r"\s+", " ")], "");
        assert_eq!(
            run(&proc, "Lovelace,   Ada").as_deref(),
            Some("Lovelace, Ada")
        );
        assert_eq!(run(&proc, "Lovelace, Ada").as_deref(), Some("Ada Lovelace"));
    }

    #[test]
    fn strip_takes_characters_and_whitespace_off_both_ends() {
        let proc = p(None, &[], "¶");
        assert_eq!(
            run(&proc, "json — JSON encoder and decoder ¶").as_deref(),
            Some("json — JSON encoder and decoder")
        );
        assert_eq!(run(&proc, " ¶ "), None);
        assert_eq!(run(&p(None, &[], "*-"), "-*a-b*-").as_deref(), Some("a-b"));
    }

    #[test]
    fn a_huge_pattern_is_refused() {
        // regex's own default limit takes this one: ours is what refuses it.
        assert!(Regex::new(r"\w{200}").is_ok());
        let e = pattern(r"\w{200}").unwrap_err();
        assert!(e.contains("size limit"), "{e}");
        assert!(pattern(r"(?-u:\w){200}").is_ok());
        assert!(pattern("(")
            .unwrap_err()
            .starts_with("invalid regex \"(\":"));
    }
}
