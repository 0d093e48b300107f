//! `retry::retry_after`: never panics; digits are seconds; a date now or
//! past is `None`, a future one the wait until it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use proptest::prelude::*;

use crawld::retry::retry_after;

use super::{cases, soup};

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

const DATE_TOKENS: &[&str] = &[
    "Wed, ",
    "Sun,",
    "25 ",
    "31 ",
    "0 ",
    "Nov ",
    "Feb ",
    "2026 ",
    "1900 ",
    "99 ",
    "9999 ",
    "12:00:30 ",
    "23:59:60 ",
    "GMT",
    "UT",
    "+0100",
    "-2400",
    "z",
    " ",
    "\t",
    "1",
    "0",
    "-",
    "+",
    "18446744073709551616",
    "(comment)",
    ",",
];

fn retry_after_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        soup(DATE_TOKENS, 12),
        // A valid date with one token changed.
        (
            -3_000_000_000i64..3_000_000_000,
            soup(DATE_TOKENS, 2),
            any::<prop::sample::Index>()
        )
            .prop_map(|(secs, token, at)| {
                let date = (now() + chrono::TimeDelta::seconds(secs)).to_rfc2822();
                let mut i = at.index(date.len() + 1);
                while !date.is_char_boundary(i) {
                    i -= 1;
                }
                format!("{}{token}{}", &date[..i], &date[i..])
            }),
    ]
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn retry_after_never_panics(value in retry_after_value(), secs in -1_000_000_000i64..1_000_000_000) {
        let now = now() + chrono::TimeDelta::seconds(secs);
        if let Some(d) = retry_after(Some(&value), now) {
            prop_assert!(!d.is_zero() || value.trim().parse::<u64>() == Ok(0));
        }
    }

    #[test]
    fn retry_after_digits_are_seconds(n in any::<u64>(), pad in "[ \t]{0,2}") {
        let value = format!("{pad}{n}{pad}");
        prop_assert_eq!(retry_after(Some(&value), now()), Some(Duration::from_secs(n)));
    }

    #[test]
    fn retry_after_dates_in_the_past_are_none(ago in 0i64..3_000_000_000) {
        let at = now() - chrono::TimeDelta::seconds(ago);
        prop_assert_eq!(retry_after(Some(&at.to_rfc2822()), now()), None);
        let http_date = at.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        prop_assert_eq!(retry_after(Some(&http_date), now()), None);
    }

    #[test]
    fn retry_after_dates_in_the_future_are_the_wait(ahead in 1i64..3_000_000_000) {
        let at = now() + chrono::TimeDelta::seconds(ahead);
        let http_date = at.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        prop_assert_eq!(
            retry_after(Some(&http_date), now()),
            Some(Duration::from_secs(ahead as u64))
        );
    }
}
