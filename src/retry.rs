//! What each answer means: one table, in one place. For an HTTP status it
//! gives both the verdict on the URL and the signal for the host limiter
//! (AIMD and the breaker); for every other failure, the verdict.
//!
//! | answer | verdict | limiter signal |
//! |---|---|---|
//! | 2xx, 3xx, 304 | done | success |
//! | 404, 410 (recorded failed: the page is gone) | done | success |
//! | 429 | requeue after a host-wide backoff (Retry-After honoured) | throttle, counts towards the breaker |
//! | 503 | requeue after a host-wide backoff (Retry-After honoured) | throttle |
//! | 403 | final | counts towards the breaker |
//! | 408, 425 | retry with backoff | success (the host answers) |
//! | other 4xx | final | success |
//! | 500, 502, 504 | retry with backoff | neutral |
//! | other 5xx | final | neutral |
//! | timeouts, connection errors, broken bodies, other transport errors | retry with backoff | none (says nothing of the host's mood) |
//! | TLS errors, redirect loops, bodies over the cap, too deep to parse, parse failures, panics, refused redirects and addresses, robots.txt | final | none |

use std::time::Duration;

use rand::Rng;

use crate::config::Profile;
use crate::failure::Failure;

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

/// What an answer tells the host limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The host served a request: AIMD may grow its concurrency again.
    Success,
    /// The host is overloaded: AIMD halves its concurrency.
    Throttle,
    /// The host refuses us: counts towards the breaker's pause, and also
    /// throttles when `throttle` (429).
    Refusal { throttle: bool },
    /// A server error: neither success nor refusal; ends a refusal streak.
    Neutral,
}

/// What one HTTP status means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Judgement {
    pub verdict: Verdict,
    pub signal: Signal,
}

/// The verdict and the limiter signal for an HTTP status.
pub fn for_status(status: u16) -> Judgement {
    let (verdict, signal) = match status {
        200..=399 | 404 | 410 => (Verdict::Done, Signal::Success),
        429 => (Verdict::Requeue, Signal::Refusal { throttle: true }),
        503 => (Verdict::Requeue, Signal::Throttle),
        403 => (Verdict::Final, Signal::Refusal { throttle: false }),
        408 | 425 => (Verdict::Retry, Signal::Success),
        500 | 502 | 504 => (Verdict::Retry, Signal::Neutral),
        400..=499 => (Verdict::Final, Signal::Success),
        _ => (Verdict::Final, Signal::Neutral),
    };
    Judgement { verdict, signal }
}

/// The verdict for a failure (an HTTP status one follows [`for_status`]).
pub fn for_failure(failure: Failure) -> Verdict {
    match failure {
        Failure::Status(status) => for_status(status).verdict,
        // Connection resets and the like surface as request errors.
        Failure::Timeout | Failure::Connect | Failure::Body | Failure::Request => Verdict::Retry,
        // TLS errors are told from connect errors by their cause (fetcher.rs).
        Failure::Tls
        | Failure::Client
        | Failure::TooLarge
        | Failure::TooDeep
        | Failure::Parse
        | Failure::Panic
        | Failure::RedirectLoop
        | Failure::RedirectRefused
        | Failure::RobotsDisallowed
        | Failure::RobotsUnavailable
        | Failure::AddressRefused
        | Failure::Sitemap => Verdict::Final,
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

/// `min(max, base · 2^attempt)`, without jitter (see [`host_backoff`]).
fn exponential(base: Duration, max: Duration, attempt: u32) -> Duration {
    base.checked_mul(1u32.checked_shl(attempt.min(30)).unwrap_or(u32::MAX))
        .unwrap_or(max)
        .min(max)
}

/// How long a whole host waits before it is asked again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostWait {
    pub wait: Duration,
    /// The host asked for longer (`Retry-After`) and `retry_after_max` cut it.
    pub cut: bool,
}

/// A host's back-off wait, the one rule for every host-wide wait (a 429 or
/// 503, a robots.txt that cannot be read): crawld's own wait doubles from
/// `backoff_429` with each such answer in a row (`streak` answers before
/// this one), the host's `Retry-After` (`asked`) is honoured when it asks
/// for more, and the longer of the two is cut to `retry_after_max`:
///
/// `wait = min(retry_after_max, max(asked, backoff_429 · 2^streak))`
pub fn host_backoff(profile: &Profile, asked: Option<Duration>, streak: u32) -> HostWait {
    let cap = profile.retry_after_max;
    let own = exponential(profile.backoff_429, cap, streak);
    let wait = asked.map_or(own, |a| a.max(own)).min(cap);
    HostWait {
        wait,
        cut: asked.is_some_and(|a| a > cap),
    }
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
        let verdict = |s| for_status(s).verdict;
        assert_eq!(verdict(200), Verdict::Done);
        assert_eq!(verdict(404), Verdict::Done);
        assert_eq!(verdict(429), Verdict::Requeue);
        assert_eq!(verdict(503), Verdict::Requeue);
        for s in [408, 425, 500, 502, 504] {
            assert_eq!(verdict(s), Verdict::Retry, "{s}");
        }
        for s in [400, 401, 403, 405, 501, 505] {
            assert_eq!(verdict(s), Verdict::Final, "{s}");
        }
        assert_eq!(for_failure(Failure::Status(503)), Verdict::Requeue);
        assert_eq!(for_failure(Failure::Timeout), Verdict::Retry);
        assert_eq!(for_failure(Failure::Connect), Verdict::Retry);
        for f in [
            Failure::Tls,
            Failure::TooLarge,
            Failure::TooDeep,
            Failure::RedirectLoop,
        ] {
            assert_eq!(for_failure(f), Verdict::Final, "{f}");
        }
    }

    #[test]
    fn the_limiter_signals() {
        let signal = |s| for_status(s).signal;
        for s in [200, 204, 301, 304, 404, 410, 408] {
            assert_eq!(signal(s), Signal::Success, "{s}");
        }
        assert_eq!(signal(429), Signal::Refusal { throttle: true });
        assert_eq!(signal(403), Signal::Refusal { throttle: false });
        assert_eq!(signal(503), Signal::Throttle);
        for s in [500, 502, 504, 501] {
            assert_eq!(signal(s), Signal::Neutral, "{s}");
        }
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
    fn a_host_waits_the_longer_of_its_own_doubling_and_retry_after_cut_to_the_max() {
        let mut profile = crate::config::Profile::clone(
            &crate::config::builtins()
                .into_values()
                .next()
                .expect("built-in profiles"),
        );
        profile.backoff_429 = Duration::from_secs(2);
        profile.retry_after_max = Duration::from_secs(60);
        let secs = Duration::from_secs;
        let wait = |asked, streak| host_backoff(&profile, asked, streak);
        // Its own wait doubles with the streak, up to the cap.
        assert_eq!(wait(None, 0).wait, secs(2));
        assert_eq!(wait(None, 1).wait, secs(4));
        assert_eq!(wait(None, 4).wait, secs(32));
        assert_eq!(wait(None, 5).wait, secs(60));
        assert_eq!(wait(None, 100).wait, secs(60));
        // Retry-After wins when it asks for more, never for less.
        assert_eq!(wait(Some(secs(10)), 0).wait, secs(10));
        assert_eq!(wait(Some(secs(1)), 2).wait, secs(8));
        // A longer Retry-After is cut to the cap, and says so.
        assert_eq!(
            wait(Some(secs(3600)), 0),
            HostWait {
                wait: secs(60),
                cut: true
            }
        );
        assert!(!wait(Some(secs(60)), 0).cut);
        assert!(!wait(None, 100).cut, "crawld's own cap is no cut");
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
