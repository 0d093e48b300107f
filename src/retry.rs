//! What to do after each answer: one table, in one place.
//!
//! | answer                                              | verdict   |
//! |-----------------------------------------------------|-----------|
//! | 2xx, 304, 404, 410 (404/410: recorded failed, the page gone) | done |
//! | 429, 503                                            | requeue after a host-wide backoff (Retry-After honoured) |
//! | 408, 425, 500, 502, 504, timeouts, connection errors, truncated bodies | retry with backoff |
//! | other 4xx and 5xx, redirect loops, bodies over the cap, TLS errors | final     |
//! | pages nested too deep to parse (`too_deep`, see `extract`)  | final     |

use std::time::Duration;

use rand::Rng;

use crate::fetcher::FetchError;

/// The decision for one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep the answer (success, not modified, or gone).
    Done,
    /// Try again after this URL's own backoff (counted against `retries`).
    Retry,
    /// The host asks for time: back off the whole host, then requeue the URL
    /// (counted against `max_requeues`).
    Requeue,
    /// Record the failure; no further attempt would help.
    Final,
}

/// The verdict for an HTTP status.
pub fn for_status(status: u16) -> Verdict {
    match status {
        200..=299 | 304 | 404 | 410 => Verdict::Done,
        429 | 503 => Verdict::Requeue,
        408 | 425 | 500 | 502 | 504 => Verdict::Retry,
        _ => Verdict::Final,
    }
}

/// The verdict for a transport error.
pub fn for_error(e: &FetchError) -> Verdict {
    match e {
        // Connection resets and the like surface as request errors.
        FetchError::Timeout { .. }
        | FetchError::Connect { .. }
        | FetchError::Body { .. }
        | FetchError::Request { .. } => Verdict::Retry,
        // Told from connect errors by their source chain (fetcher.rs).
        FetchError::Tls { .. }
        | FetchError::Redirect { .. }
        | FetchError::TooLarge { .. }
        | FetchError::Client(_)
        | FetchError::Refused { .. } => Verdict::Final,
    }
}

/// Exponential backoff with full jitter: a uniform draw in
/// `[0, min(max, base · 2^attempt)]` (attempt 0 is the first retry).
pub fn backoff(base: Duration, max: Duration, attempt: u32) -> Duration {
    let ceiling = exponential(base, max, attempt);
    if ceiling.is_zero() {
        return ceiling;
    }
    rand::rng().random_range(Duration::ZERO..=ceiling)
}

/// `min(max, base · 2^attempt)`, without jitter: the host-wide 429 backoff.
pub fn exponential(base: Duration, max: Duration, attempt: u32) -> Duration {
    base.checked_mul(1u32.checked_shl(attempt.min(30)).unwrap_or(u32::MAX))
        .unwrap_or(max)
        .min(max)
}

/// How long a `Retry-After` value asks to wait: delay-seconds or an
/// HTTP-date. A past, malformed or missing value gives `None`.
pub fn retry_after(value: Option<&str>, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = value?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    (at.with_timezone(&chrono::Utc) - now)
        .to_std()
        .ok()
        .filter(|d| !d.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        assert_eq!(for_status(200), Verdict::Done);
        assert_eq!(for_status(404), Verdict::Done);
        assert_eq!(for_status(429), Verdict::Requeue);
        assert_eq!(for_status(503), Verdict::Requeue);
        for s in [408, 425, 500, 502, 504] {
            assert_eq!(for_status(s), Verdict::Retry, "{s}");
        }
        for s in [400, 401, 403, 405, 501, 505] {
            assert_eq!(for_status(s), Verdict::Final, "{s}");
        }
    }

    #[test]
    fn tls_errors_are_final() {
        let e = FetchError::Tls {
            url: url::Url::parse("https://a.example/").unwrap(),
            source: Box::new(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Expired,
            )),
        };
        assert_eq!(e.kind(), "tls");
        assert_eq!(for_error(&e), Verdict::Final);
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_below() {
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(exponential(base, max, 0), Duration::from_millis(100));
        assert_eq!(exponential(base, max, 3), Duration::from_millis(800));
        assert_eq!(exponential(base, max, 4), Duration::from_secs(1));
        assert_eq!(exponential(base, max, 40), Duration::from_secs(1));
        for attempt in 0..6 {
            let d = backoff(base, max, attempt);
            assert!(d <= exponential(base, max, attempt));
        }
    }

    #[test]
    fn retry_after_in_both_forms() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(retry_after(Some("2"), now), Some(Duration::from_secs(2)));
        assert_eq!(
            retry_after(Some("Wed, 25 Nov 2026 12:00:30 GMT"), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after(Some("Wed, 25 Nov 2026 11:00:00 GMT"), now),
            None,
            "past"
        );
        assert_eq!(retry_after(Some("soon"), now), None);
        assert_eq!(retry_after(None, now), None);
    }
}
