//! Cron schedules with seconds, validated at load time with a message that
//! names the field at fault.

use std::fmt;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

/// A parsed cron expression (`sec min hour day-of-month month day-of-week`).
#[derive(Clone)]
pub struct Schedule {
    pub expr: String,
    pub cron: Cron,
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

    /// Parses a six-field cron expression; the error names the bad field.
    pub fn parse(expr: &str) -> Result<Self, String> {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        if fields.len() != 6 {
            return Err(format!(
                "cron expression {expr:?} has {} field(s); crawld needs 6: \
                 seconds minutes hours day-of-month month day-of-week (e.g. \"0 */30 * * * *\")",
                fields.len()
            ));
        }
        match parser().parse(expr) {
            Ok(cron) => Ok(Schedule {
                expr: expr.to_owned(),
                cron,
            }),
            Err(whole) => {
                // Re-parse each field alone to tell the user which one is wrong.
                for (i, field) in fields.iter().enumerate() {
                    let mut probe = ["*"; 6];
                    probe[i] = field;
                    if let Err(e) = parser().parse(&probe.join(" ")) {
                        let (name, range) = FIELDS[i];
                        return Err(format!(
                            "cron expression {expr:?}: field {} ({name}) {field:?} is invalid: {e}; allowed: {range}",
                            i + 1
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
        let e = Schedule::parse("*/30 * * * *").unwrap_err();
        assert!(e.contains("has 5 field(s)"), "{e}");
        let e = Schedule::parse("0 61 * * * *").unwrap_err();
        assert!(e.contains("field 2 (minutes)"), "{e}");
        let e = Schedule::parse("0 0 3 * * Funday").unwrap_err();
        assert!(e.contains("field 6 (day of week)"), "{e}");
    }
}
