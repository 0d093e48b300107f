//! Reading numbers out of human-formatted text for `type = "number"` fields.
//!
//! The rule, documented in README: the first run of digits, `.`, `,`, `'`,
//! thin/non-breaking spaces and a leading minus is taken; currency signs and
//! words around it are ignored. When both `.` and `,` occur, the last one is
//! the decimal separator ("1,299.00" and "1.299,00" are both 1299). When only
//! one kind occurs: several of them are thousands separators ("1,000,000");
//! a single one followed by exactly three digits is a thousands separator
//! ("1,299" = 1299, "1.299" = 1299) unless the integer part is 0 ("0.125");
//! otherwise it is the decimal separator ("51.77", "3,5").

/// Parses a number from text such as "£51.77", "1,299.00" or "1.299,00 €".
pub fn parse_number(text: &str) -> Option<f64> {
    let mut start = text.find(|c: char| c.is_ascii_digit())?;
    // ".99" and "£.99": a separator right before the first digit starts a fraction.
    if start > 0 && text[..start].ends_with('.') {
        start -= 1;
    }
    // A minus sign counts when it touches the number or its currency sign:
    // "-12.5", "-£5.00", "£-5", but not "Price - 42".
    let before = &text[..start];
    let sign_part = before
        .trim_end_matches(|c: char| !c.is_ascii_alphanumeric() && !c.is_whitespace() && c != '-');
    let negative = before.ends_with('-')
        || (sign_part.ends_with('-') && !before.ends_with(char::is_whitespace));
    let run: String = text[start..]
        .strip_prefix('.')
        .map_or_else(|| text[start..].to_owned(), |rest| format!("0.{rest}"))
        .chars()
        .take_while(|&c| {
            c.is_ascii_digit() || matches!(c, '.' | ',' | '\'' | '\u{a0}' | '\u{202f}')
        })
        .filter(|&c| !matches!(c, '\'' | '\u{a0}' | '\u{202f}'))
        .collect();
    let run = run.trim_end_matches(['.', ',']);
    let last_dot = run.rfind('.');
    let last_comma = run.rfind(',');
    let decimal = match (last_dot, last_comma) {
        (Some(d), Some(c)) => Some(d.max(c)),
        (Some(i), None) | (None, Some(i)) => {
            let sep = run.as_bytes()[i];
            let count = run.bytes().filter(|&b| b == sep).count();
            let int_part = &run[..i];
            let frac_len = run.len() - i - 1;
            if count > 1 || (frac_len == 3 && !int_part.trim_start_matches('0').is_empty()) {
                None
            } else {
                Some(i)
            }
        }
        (None, None) => None,
    };
    let mut normalized = String::with_capacity(run.len() + 1);
    if negative {
        normalized.push('-');
    }
    for (i, c) in run.char_indices() {
        if c.is_ascii_digit() {
            normalized.push(c);
        } else if Some(i) == decimal {
            normalized.push('.');
        }
    }
    normalized.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::parse_number as n;

    #[test]
    fn reads_common_price_formats() {
        assert_eq!(n("£51.77"), Some(51.77));
        assert_eq!(n("1,299.00"), Some(1299.0));
        assert_eq!(n("1.299,00"), Some(1299.0));
        assert_eq!(n("1.299,00 €"), Some(1299.0));
        assert_eq!(n("1,299"), Some(1299.0));
        assert_eq!(n("0.125"), Some(0.125));
        assert_eq!(n("3,5"), Some(3.5));
        assert_eq!(n("1,000,000"), Some(1_000_000.0));
        assert_eq!(n("CHF 1'234.50"), Some(1234.5));
        assert_eq!(n("-12.5 %"), Some(-12.5));
        assert_eq!(n("Price: 42."), Some(42.0));
        assert_eq!(n("1\u{a0}299,99"), Some(1299.99));
        assert_eq!(n("free"), None);
        assert_eq!(n("-£5.00"), Some(-5.0));
        assert_eq!(n("£-5"), Some(-5.0));
        assert_eq!(n("Price - 42"), Some(42.0));
        assert_eq!(n("£.99"), Some(0.99));
        assert_eq!(n(".5"), Some(0.5));
    }
}
