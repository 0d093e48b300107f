//! Small pieces the dashboard and its charts share: escaping (every string
//! that comes from a config, a site or an error goes through [`esc`]) and
//! the ways figures and times are written.

use std::fmt::Write;

/// `s` as HTML text or attribute value: `<`, `>`, `&`, `"` and `'` escaped.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A count with thin thousands separators: `12 345`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    out
}

/// A duration in milliseconds, the way a person says it: `850 ms`, `12.3 s`,
/// `4 min 05 s`, `2 h 10 min`, `3 d 4 h`.
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match ms {
        0..=999 => format!("{ms} ms"),
        1000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..=3_599_999 => format!("{} min {:02} s", s / 60, s % 60),
        3_600_000..=86_399_999 => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// How far `at` is from `now`, both in ms since the epoch: `3 min ago`,
/// `in 2 h 10 min`, `just now`.
pub fn relative(at_ms: u64, now_ms: u64) -> String {
    if at_ms.abs_diff(now_ms) < 1000 {
        return "just now".into();
    }
    // Rounded to what a glance needs.
    let coarse = |d: u64| {
        duration(if d >= 60_000 {
            d / 60_000 * 60_000
        } else {
            d / 1000 * 1000
        })
    };
    let span = coarse(at_ms.abs_diff(now_ms))
        .replace(" 00 s", "")
        .replace(" 00 min", "");
    if at_ms <= now_ms {
        format!("{span} ago")
    } else {
        format!("in {span}")
    }
}

/// An instant in ms since the epoch, in UTC: `2026-05-14 09:30:05 UTC`.
pub fn utc(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// An RFC 3339 instant (a next fire time) in ms since the epoch.
pub fn rfc3339_ms(s: &str) -> Option<u64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .and_then(|d| u64::try_from(d.timestamp_millis()).ok())
}

/// `<time>`: the relative form, with the absolute one as its tooltip.
pub fn when(out: &mut String, at_ms: u64, now_ms: u64) {
    let _ = write!(
        out,
        r#"<time title="{}">{}</time>"#,
        utc(at_ms),
        esc(&relative(at_ms, now_ms))
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            esc(r#"<script>alert("x&y")</script>'"#),
            "&lt;script&gt;alert(&quot;x&amp;y&quot;)&lt;/script&gt;&#39;"
        );
    }

    #[test]
    fn figures_read_as_people_write_them() {
        assert_eq!(count(1234567), "1\u{202f}234\u{202f}567");
        assert_eq!(count(999), "999");
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(12_340), "12.3 s");
        assert_eq!(duration(245_000), "4 min 05 s");
        assert_eq!(duration(7_800_000), "2 h 10 min");
        assert_eq!(relative(0, 180_500), "3 min ago");
        assert_eq!(relative(10_000, 5_000), "in 5.0 s");
        assert_eq!(relative(0, 3 * 3_600_000 + 5_000), "3 h ago");
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
    }
}
