//! Parsers for the value syntaxes of the config files: durations (`"500ms"`),
//! delay ranges (`"300ms..700ms"`) and sizes (`"10MiB"`).

use std::time::Duration;

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
}
