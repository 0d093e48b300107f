//! Cron schedules, validated at load time with a message that names the
//! field at fault. Three forms are accepted: six fields with seconds first,
//! the standard five-field crontab form, and the `@hourly`-style macros;
//! [`normalise`] turns each into six fields, the one form the rest of
//! crawld (the daemon's scheduler, `crawld check`, the dashboard's next
//! run) ever sees.

use std::fmt;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

/// A parsed cron expression. `expr` is as written in the config;
/// `cron` holds its six-field form (`sec min hour day-of-month month day-of-week`).
#[derive(Clone)]
pub struct Schedule {
    pub expr: String,
    pub cron: Cron,
}

/// The macros and their six-field forms (as crontab(5) and croner define them).
const MACROS: [(&str, &str); 7] = [
    ("@yearly", "0 0 0 1 1 *"),
    ("@annually", "0 0 0 1 1 *"),
    ("@monthly", "0 0 0 1 * *"),
    ("@weekly", "0 0 0 * * SUN"),
    ("@daily", "0 0 0 * * *"),
    ("@midnight", "0 0 0 * * *"),
    ("@hourly", "0 0 * * * *"),
];

/// The six-field form of an expression, and how many fields the user wrote
/// fewer (1 for the five-field form: its first field is our second), so an
/// error can number the field as written.
pub fn normalise(expr: &str) -> Result<(String, usize), String> {
    let trimmed = expr.trim();
    if trimmed.starts_with('@') {
        return MACROS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(trimmed))
            .map(|(_, six)| ((*six).to_owned(), 0))
            .ok_or_else(|| {
                let names: Vec<&str> = MACROS.iter().map(|(n, _)| *n).collect();
                format!(
                    "cron expression {expr:?} is not a known macro; crawld knows {}",
                    names.join(", ")
                )
            });
    }
    let fields: Vec<&str> = trimmed.split_whitespace().collect();
    match fields.len() {
        6 => Ok((fields.join(" "), 0)),
        // crontab(5): minute hour day-of-month month day-of-week, at second 0.
        5 => Ok((format!("0 {}", fields.join(" ")), 1)),
        n => Err(format!(
            "cron expression {expr:?} has {n} field(s); crawld takes 5 (minute hour \
             day-of-month month day-of-week, e.g. \"*/30 * * * *\"), 6 with seconds first \
             (e.g. \"0 */30 * * * *\"), or @hourly, @daily, @weekly, @monthly, @yearly"
        )),
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?})", self.expr)
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr
    }
}

const FIELDS: [(&str, &str); 6] = [
    ("seconds", "0-59"),
    ("minutes", "0-59"),
    ("hours", "0-23"),
    ("day of month", "1-31, L"),
    ("month", "1-12 or JAN-DEC"),
    ("day of week", "0-7 or SUN-SAT"),
];

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Required)
        .year(Year::Disallowed)
        .build()
}

impl Schedule {
    /// The next time it fires strictly after `after`, read in `tz`.
    pub fn next_fire(&self, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Walk local wall-clock times: croner finds the next matching local time,
        // and we map it to an instant ourselves, so DST is handled in one place.
        // Cron has whole seconds: drop the fraction, or the same second could come back.
        let mut local =
            chrono::Timelike::with_nanosecond(&after.with_timezone(&tz).naive_local(), 0)?;
        for _ in 0..1000 {
            let next = self
                .cron
                .find_next_occurrence(&Utc.from_utc_datetime(&local), false)
                .ok()?;
            let naive = next.naive_utc();
            match instant(tz, naive) {
                Some(at) if at > after => return Some(at),
                // The first occurrence of a repeated time already passed: skip its echo.
                _ => local = naive,
            }
        }
        None
    }

    /// Parses a cron expression in any of the accepted forms (see
    /// [`normalise`]); the error names the bad field, numbered as written.
    pub fn parse(expr: &str) -> Result<Self, String> {
        let (six, fewer) = normalise(expr)?;
        match parser().parse(&six) {
            Ok(cron) => Ok(Schedule {
                expr: expr.to_owned(),
                cron,
            }),
            Err(whole) => {
                // Re-parse each field alone to tell the user which one is wrong.
                let fields: Vec<&str> = six.split_whitespace().collect();
                for (i, field) in fields.iter().enumerate() {
                    let mut probe = ["*"; 6];
                    probe[i] = field;
                    if let Err(e) = parser().parse(&probe.join(" ")) {
                        let (name, range) = FIELDS[i];
                        return Err(format!(
                            "cron expression {expr:?}: field {} ({name}) {field:?} is invalid: {e}; allowed: {range}",
                            i + 1 - fewer
                        ));
                    }
                }
                Err(format!("cron expression {expr:?} is invalid: {whole}"))
            }
        }
    }
}

/// The instant of a local wall-clock time: the first of two in a repeat, the
/// end of the gap for a time that does not exist.
fn instant(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
        LocalResult::None => {
            // In a gap: the first minute after it.
            (1..=180).find_map(|m| {
                match tz.from_local_datetime(&(local + chrono::Duration::minutes(m))) {
                    LocalResult::Single(t) => {
                        let t = t.with_timezone(&Utc);
                        Some(t - chrono::Duration::seconds(i64::from(chrono::Timelike::second(&t))))
                    }
                    LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
                    LocalResult::None => None,
                }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_six_fields_and_names_bad_ones() {
        assert!(Schedule::parse("0 */30 * * * *").is_ok());
        assert!(Schedule::parse("0 0 3 * * Sun").is_ok());
        let e = Schedule::parse("*/30 * * *").unwrap_err();
        assert!(e.contains("has 4 field(s)"), "{e}");
        let e = Schedule::parse("0 61 * * * *").unwrap_err();
        assert!(e.contains("field 2 (minutes)"), "{e}");
        let e = Schedule::parse("0 0 3 * * Funday").unwrap_err();
        assert!(e.contains("field 6 (day of week)"), "{e}");
    }

    /// The next fire time of `expr` after 2026-03-04 05:06:07 UTC (a Wednesday).
    fn next(expr: &str) -> String {
        let after = Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap();
        let s = Schedule::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        s.next_fire(chrono_tz::UTC, after).unwrap().to_rfc3339()
    }

    #[test]
    fn five_fields_and_macros_fire_as_their_six_field_forms() {
        assert_eq!(next("*/30 * * * *"), "2026-03-04T05:30:00+00:00");
        assert_eq!(next("*/30 * * * *"), next("0 */30 * * * *"));
        assert_eq!(next("15 3 * * Sun"), "2026-03-08T03:15:00+00:00");
        assert_eq!(next("@hourly"), "2026-03-04T06:00:00+00:00");
        assert_eq!(next("@daily"), "2026-03-05T00:00:00+00:00");
        assert_eq!(next("@midnight"), "2026-03-05T00:00:00+00:00");
        assert_eq!(next("@weekly"), "2026-03-08T00:00:00+00:00");
        assert_eq!(next("@monthly"), "2026-04-01T00:00:00+00:00");
        assert_eq!(next("@yearly"), "2027-01-01T00:00:00+00:00");
        assert_eq!(next("@ANNUALLY"), next("@yearly"));
        // The expression is kept as written, for status and the dashboard.
        assert_eq!(Schedule::parse("@daily").unwrap().expr, "@daily");
    }

    #[test]
    fn a_bad_five_field_expression_names_its_field_as_written() {
        let e = Schedule::parse("61 * * * *").unwrap_err();
        assert!(e.contains("field 1 (minutes) \"61\""), "{e}");
        let e = Schedule::parse("0 3 * * Funday").unwrap_err();
        assert!(e.contains("field 5 (day of week)"), "{e}");
        let e = Schedule::parse("@reboot").unwrap_err();
        assert!(
            e.contains("not a known macro") && e.contains("@hourly"),
            "{e}"
        );
    }
}
