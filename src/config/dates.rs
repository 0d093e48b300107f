//! Reading dates and yes/no words out of page text, for `type = "date"` and
//! `type = "boolean"` fields. Here, below extraction, because a field's
//! `default` is checked against its type when the config compiles.
//!
//! Dates come out in ISO 8601: `2026-12-07` for a date,
//! `2026-12-07T10:30:00` for a date and time without a zone, and RFC 3339
//! (`2026-12-07T10:30:00+01:00`, `…Z` for UTC) when the text gives an
//! offset. Read without `date_format`: ISO 8601 / RFC 3339 dates and
//! datetimes (`T` or a space between), RFC 2822 (`Mon, 07 Dec 2026 10:30:00
//! +0000`), `2026/12/07`, `2026.12.07`, and English month names in either
//! order (`7 December 2026`, `Dec 7, 2026`, `Monday, 7th Dec. 2026`).
//! All-numeric day/month orders (`07/12/2026`) are ambiguous and need
//! `date_format`. The whole value must be the date: cut it out with `re`.

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat};

/// The words `type = "boolean"` reads, compared case-insensitively.
pub const TRUE_WORDS: &[&str] = &["true", "yes", "on", "1"];
/// See [`TRUE_WORDS`].
pub const FALSE_WORDS: &[&str] = &["false", "no", "off", "0"];

/// `true`/`yes`/`on`/`1` and `false`/`no`/`off`/`0`, any case; else `None`.
pub fn parse_bool(text: &str) -> Option<bool> {
    let t = text.trim();
    if TRUE_WORDS.iter().any(|w| t.eq_ignore_ascii_case(w)) {
        Some(true)
    } else if FALSE_WORDS.iter().any(|w| t.eq_ignore_ascii_case(w)) {
        Some(false)
    } else {
        None
    }
}

/// Checks a `date_format` (chrono strftime syntax) when the config compiles.
pub fn check_format(format: &str) -> Result<(), String> {
    if StrftimeItems::new(format).any(|i| matches!(i, Item::Error)) {
        return Err(format!(
            "invalid date_format {format:?}: not a chrono strftime format (write e.g. \"%d.%m.%Y\")"
        ));
    }
    let has = |specs: &[&str]| specs.iter().any(|s| format.contains(s));
    if !has(&["%Y", "%y", "%G", "%C", "%s", "%+", "%F", "%D", "%x", "%c"]) {
        return Err(format!(
            "date_format {format:?} reads no year: a date needs a year, a month and a day"
        ));
    }
    Ok(())
}

/// The date in `text` as ISO 8601, read with `format` when given (a date,
/// a date and time, or one with `%z`), else with the rules of this module.
pub fn parse_date(text: &str, format: Option<&str>) -> Option<String> {
    let t = text.trim();
    match format {
        Some(f) => with_format(t, f),
        None => guess(t),
    }
}

fn with_format(t: &str, f: &str) -> Option<String> {
    if let Ok(d) = DateTime::parse_from_str(t, f) {
        return Some(d.to_rfc3339_opts(SecondsFormat::AutoSi, true));
    }
    if let Ok(d) = NaiveDateTime::parse_from_str(t, f) {
        return Some(naive_datetime(d));
    }
    NaiveDate::parse_from_str(t, f).ok().map(date)
}

fn date(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

fn naive_datetime(d: NaiveDateTime) -> String {
    d.format("%Y-%m-%dT%H:%M:%S%.f").to_string()
}

/// Datetimes with an offset that RFC 3339 itself does not take.
const OFFSET_FORMATS: &[&str] = &[
    "%Y-%m-%d %H:%M:%S%.f%:z",
    "%Y-%m-%d %H:%M:%S%.f%z",
    "%Y-%m-%dT%H:%M:%S%.f%z",
    "%Y-%m-%dT%H:%M%:z",
    "%Y-%m-%d %H:%M%:z",
];
const NAIVE_FORMATS: &[&str] = &[
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
];
const DATE_FORMATS: &[&str] = &["%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d"];

fn guess(t: &str) -> Option<String> {
    // Cheap refusal of text that holds no year-like digits, before chrono's parsers.
    if !t.bytes().any(|b| b.is_ascii_digit()) || t.len() > 64 {
        return None;
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Some(d.to_rfc3339_opts(SecondsFormat::AutoSi, true));
    }
    if let Ok(d) = DateTime::parse_from_rfc2822(t) {
        return Some(d.to_rfc3339_opts(SecondsFormat::AutoSi, true));
    }
    for f in OFFSET_FORMATS {
        if let Ok(d) = DateTime::parse_from_str(t, f) {
            return Some(d.to_rfc3339_opts(SecondsFormat::AutoSi, true));
        }
    }
    for f in NAIVE_FORMATS {
        if let Ok(d) = NaiveDateTime::parse_from_str(t, f) {
            return Some(naive_datetime(d));
        }
    }
    for f in DATE_FORMATS {
        if let Ok(d) = NaiveDate::parse_from_str(t, f) {
            return Some(date(d));
        }
    }
    named_month(t).map(date)
}

/// `7 December 2026`, `Dec 7, 2026`, `Monday, 7th Dec. 2026`: a month name,
/// a day (1–31, ordinal suffix allowed) and a four-digit year, in day-month
/// or month-day order, with an optional weekday in front.
fn named_month(t: &str) -> Option<NaiveDate> {
    let words: Vec<&str> = t
        .split(|c: char| c.is_whitespace() || c == ',' || c == '.' || c == '-' || c == '/')
        .filter(|w| !w.is_empty())
        .collect();
    let words = match words.as_slice() {
        [w, rest @ ..] if rest.len() == 3 && weekday(w) => rest,
        all => all,
    };
    let [a, b, c] = words else {
        return None;
    };
    let year: i32 = (c.len() == 4).then(|| c.parse().ok()).flatten()?;
    let (month, day) = match (month(a), month(b)) {
        (Some(m), None) => (m, day(b)?),
        (None, Some(m)) => (m, day(a)?),
        _ => return None,
    };
    NaiveDate::from_ymd_opt(year, month, day)
}

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// A month's English name or its first three letters ("Sept" too).
fn month(w: &str) -> Option<u32> {
    let w = w.to_ascii_lowercase();
    if w.len() < 3 {
        return None;
    }
    let i = MONTHS
        .iter()
        .position(|m| *m == w || (m.starts_with(&w) && (w.len() == 3 || w == "sept")))?;
    u32::try_from(i + 1).ok()
}

fn weekday(w: &str) -> bool {
    const DAYS: [&str; 7] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    let w = w.to_ascii_lowercase();
    w.len() >= 3 && DAYS.iter().any(|d| d.starts_with(&w))
}

/// `7`, `07`, `7th`, `1st`, `22nd`, `3rd`.
fn day(w: &str) -> Option<u32> {
    let digits = w.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &w[digits.len()..];
    if !(suffix.is_empty()
        || ["st", "nd", "rd", "th"].contains(&suffix.to_ascii_lowercase().as_str()))
        || digits.is_empty()
        || digits.len() > 2
    {
        return None;
    }
    digits.parse().ok().filter(|d| (1..=31).contains(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(t: &str) -> Option<String> {
        parse_date(t, None)
    }

    #[test]
    fn reads_common_date_formats() {
        assert_eq!(d("2026-12-07").as_deref(), Some("2026-12-07"));
        assert_eq!(d("2026/12/07").as_deref(), Some("2026-12-07"));
        assert_eq!(d("7 December 2026").as_deref(), Some("2026-12-07"));
        assert_eq!(d("Dec 7, 2026").as_deref(), Some("2026-12-07"));
        assert_eq!(d("Dec 07, 2026").as_deref(), Some("2026-12-07"));
        assert_eq!(d("Monday, 7th Dec. 2026").as_deref(), Some("2026-12-07"));
        assert_eq!(d("Sept 1 2026").as_deref(), Some("2026-09-01"));
        assert_eq!(
            d("2026-12-07T10:30:00Z").as_deref(),
            Some("2026-12-07T10:30:00Z")
        );
        assert_eq!(
            d("2026-12-07 10:30:00+01:00").as_deref(),
            Some("2026-12-07T10:30:00+01:00")
        );
        assert_eq!(
            d("2026-12-07T10:30").as_deref(),
            Some("2026-12-07T10:30:00")
        );
        assert_eq!(
            d("Mon, 07 Dec 2026 10:30:00 +0000").as_deref(),
            Some("2026-12-07T10:30:00Z")
        );
    }

    #[test]
    fn refuses_what_is_not_a_date() {
        for t in [
            "",
            "soon",
            "07/12/2026",
            "31 February 2026",
            "Dec 32, 2026",
            "2026-13-01",
            "Updated Dec 7, 2026",
            "7 Mayday 2026",
        ] {
            assert_eq!(d(t), None, "{t:?}");
        }
    }

    #[test]
    fn date_format_reads_other_orders() {
        assert_eq!(
            parse_date("07.12.2026", Some("%d.%m.%Y")).as_deref(),
            Some("2026-12-07")
        );
        assert_eq!(
            parse_date("07.12.2026 18:05", Some("%d.%m.%Y %H:%M")).as_deref(),
            Some("2026-12-07T18:05:00")
        );
        assert_eq!(parse_date("2026-12-07", Some("%d.%m.%Y")), None);
        assert!(check_format("%d.%m.%Y").is_ok());
        assert!(check_format("%d.%m.").is_err());
        assert!(check_format("%Q").is_err());
    }

    #[test]
    fn booleans_are_clear_words() {
        for (t, b) in [("Yes", true), ("TRUE", true), (" on ", true), ("1", true)] {
            assert_eq!(parse_bool(t), Some(b));
        }
        for (t, b) in [
            ("no", false),
            ("False", false),
            ("OFF", false),
            ("0", false),
        ] {
            assert_eq!(parse_bool(t), Some(b));
        }
        assert_eq!(parse_bool("in stock"), None);
        assert_eq!(parse_bool("y"), None);
    }
}
