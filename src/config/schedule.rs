//! Cron schedules with seconds, validated at load time with a message that
//! names the field at fault.

use std::fmt;

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
