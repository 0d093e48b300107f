//! Parsers for the value syntaxes of the config files: durations (`"500ms"`),
//! delay ranges (`"300ms..700ms"`), sizes (`"10MiB"`), `${VAR}` references,
//! regexes and selectors.

use std::time::Duration;

use regex::Regex;
use scraper::Selector;

use super::profile::DelayRange;

/// `"15s"`, `"500ms"`, `"1h 30m"` (humantime syntax).
pub fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?}: {e} (write e.g. \"500ms\", \"15s\", \"2m\")"))
}

/// A fixed delay (`"500ms"`) or a uniform random range (`"300ms..700ms"`).
pub fn delay(s: &str) -> Result<DelayRange, String> {
    match s.split_once("..") {
        None => {
            let d = duration(s)?;
            Ok(DelayRange { min: d, max: d })
        }
        Some((lo, hi)) => {
            let (min, max) = (duration(lo)?, duration(hi)?);
            if min > max {
                return Err(format!(
                    "invalid delay range {s:?}: the lower bound is above the upper one"
                ));
            }
            Ok(DelayRange { min, max })
        }
    }
}

/// `"10MiB"`, `"512KB"`, `"2000000"` bytes.
pub fn size(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("invalid size {s:?}: {e} (write e.g. \"10MiB\", \"512KB\")"))
}

/// Replaces `${VAR}` with the variable's value; an undefined variable is an error.
pub(super) fn expand_env(
    value: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "unterminated ${…} reference".to_owned())?;
        let var = &after[..end];
        if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("invalid variable name {var:?} in ${{…}}"));
        }
        match env(var) {
            Some(v) => out.push_str(&v),
            None => return Err(format!("environment variable {var} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A regex (`pages`, `follow.allow`/`deny`), capped in size like a field's
/// `re`; its error says, on one line, what is wrong.
pub(super) fn regex(s: &str) -> Result<Regex, String> {
    super::process::pattern(s)
}

/// A CSS selector, parsed as extraction parses it.
pub(super) fn selector(s: &str) -> Result<Selector, String> {
    super::parse_selector(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values() {
        assert_eq!(duration("15s").unwrap(), Duration::from_secs(15));
        let d = delay("300ms..700ms").unwrap();
        assert_eq!(
            (d.min, d.max),
            (Duration::from_millis(300), Duration::from_millis(700))
        );
        assert_eq!(delay("0ms").unwrap().max, Duration::ZERO);
        assert!(delay("700ms..300ms").is_err());
        assert!(duration("fast").is_err());
        assert_eq!(size("10MiB").unwrap(), 10 * 1024 * 1024);
        assert_eq!(size("512KB").unwrap(), 512_000);
        assert!(size("lots").is_err());
    }

    #[test]
    fn expands_defined_variables_only() {
        let env = |v: &str| (v == "TOKEN").then(|| "s3cret".to_owned());
        assert_eq!(
            expand_env("Bearer ${TOKEN}", &env).unwrap(),
            "Bearer s3cret"
        );
        assert_eq!(expand_env("plain", &env).unwrap(), "plain");
        assert!(expand_env("${MISSING}", &env)
            .unwrap_err()
            .contains("MISSING is not set"));
        assert!(expand_env("${TOKEN", &env).is_err());
    }
}
