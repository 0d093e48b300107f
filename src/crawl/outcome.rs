//! What happens to each fetched URL: the retry decision and the parse (what
//! it is then recorded as is `record.rs`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tracing::warn;
use url::Url;

use super::Progress;
use crate::config::Target;
use crate::extract::{self, Kinds, PageExtract, TooDeep};
use crate::failure::Failure;
use crate::fetcher::{FetchError, Response};
use crate::frontier::QueuedUrl;
use crate::retry::{self, HostWait, Verdict};
use crate::store::{now_ms, CommitStats, PageCommit, PageOutcome, PageRecord, RunCounts};
use crate::urlnorm::normalize_url;

/// The result of one fetch task.
pub(super) struct Outcome {
    pub(super) queued: QueuedUrl,
    /// The page's record from an earlier run (incremental runs only).
    pub(super) prev: Option<PageRecord>,
    pub(super) result: Result<Fetched, PageError>,
    /// What the host answered, hop by hop.
    pub(super) answers: super::hops::Answers,
}

/// What becomes of an outcome (see `retry`).
pub(super) enum Next {
    /// Record it.
    Keep,
    /// Try the URL again after its own backoff.
    RetryAfter(Duration),
    /// Back off the whole host, then requeue the URL.
    Requeue(Backoff),
}

/// A host-wide backoff after a 429/503.
pub(super) struct Backoff {
    pub(super) until: tokio::time::Instant,
    /// What the host's `Retry-After` asked for.
    pub(super) asked: Option<Duration>,
    /// Whether `retry_after_max` cut it.
    pub(super) cut: bool,
}

/// Applies the retry table to an outcome. `throttles` counts the 429/503
/// answers of the host in a row (for the exponential host backoff).
pub(super) fn next_step(
    profile: &crate::config::Profile,
    outcome: &Outcome,
    throttles: u32,
    counts: &mut RunCounts,
) -> Next {
    let q = &outcome.queued;
    let retry = |attempt: u32| {
        if attempt < profile.retries {
            Next::RetryAfter(retry::backoff(
                profile.backoff,
                profile.backoff_max,
                attempt,
            ))
        } else {
            Next::Keep
        }
    };
    match &outcome.result {
        Err(e) => match retry::for_failure(e.kind()) {
            Verdict::Retry => retry(q.attempt),
            _ => Next::Keep,
        },
        Ok(Fetched::New { response, .. }) => match retry::for_status(response.status).verdict {
            Verdict::Retry => retry(q.attempt),
            Verdict::Requeue => {
                counts.throttled += 1;
                if q.requeues >= profile.max_requeues {
                    return Next::Keep;
                }
                let asked = retry::retry_after(response.retry_after.as_deref(), chrono::Utc::now());
                let HostWait { wait, cut } = retry::host_backoff(profile, asked, throttles);
                if cut {
                    warn!(host = %q.host, asked = ?asked, max = ?profile.retry_after_max, "Retry-After cut to retry_after_max.");
                }
                Next::Requeue(Backoff {
                    until: outcome.answers.at + wait,
                    asked,
                    cut,
                })
            }
            _ => Next::Keep,
        },
        _ => Next::Keep,
    }
}

/// What a fetch brought back.
pub(super) enum Fetched {
    /// A body that was parsed (HTML) or not (anything else).
    New {
        response: Response,
        body_hash: Option<String>,
        extract: Option<PageExtract>,
    },
    /// 304 Not Modified, or the same body hash as last time: not parsed.
    Unchanged {
        response: Response,
        not_modified: bool,
    },
}

/// A page that produced nothing to store.
pub(super) enum PageError {
    Fetch(FetchError),
    /// The page nests too deep to parse in reasonable time: not parsed.
    TooDeep(TooDeep),
    /// The parser panicked on this page; the run goes on without it.
    Parse,
    /// The fetch task panicked.
    Panic,
    /// A redirect led where the follow rules do not go.
    Redirect(Url),
    /// A redirect led where robots.txt disallows.
    Robots(Url),
}

impl PageError {
    pub(super) fn kind(&self) -> Failure {
        match self {
            PageError::Fetch(e) => e.kind(),
            PageError::TooDeep(_) => Failure::TooDeep,
            PageError::Parse => Failure::Parse,
            PageError::Panic => Failure::Panic,
            PageError::Redirect(_) => Failure::RedirectRefused,
            PageError::Robots(_) => Failure::RobotsDisallowed,
        }
    }

    pub(super) fn detail(&self) -> String {
        match self {
            PageError::Fetch(e) => e.to_string(),
            PageError::TooDeep(e) => format!("not parsed: {e}"),
            PageError::Parse => "the HTML parser panicked on this page".into(),
            PageError::Panic => "the fetch task panicked".into(),
            PageError::Redirect(to) => {
                format!("redirected to {to}, which the follow rules exclude")
            }
            PageError::Robots(to) => format!("redirected to {to}, which robots.txt disallows"),
        }
    }
}

/// A URL waiting for its retry (ordered by the heap's instant and sequence only).
pub(super) struct RetryEntry(pub(super) QueuedUrl);

impl PartialEq for RetryEntry {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for RetryEntry {}
impl PartialOrd for RetryEntry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for RetryEntry {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

pub(super) async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Bodies up to this size are parsed on the async worker that received them;
/// bigger ones on a parse thread, so that no worker pauses for long. A real
/// 64 KB page parses in about 1 ms; a hostile one of this size, nested just
/// under the depth limit, in about 0.1 s (its tags × depth, see `extract`).
const INLINE_PARSE_BYTES: usize = 64 * 1024;

/// Hashes the body, and extracts when the page is new HTML.
#[allow(
    clippy::disallowed_methods,
    reason = "a large page is parsed on the blocking pool: CPU work, not store work"
)]
pub(super) async fn process(
    mut response: Response,
    prev: Option<&PageRecord>,
    target: Arc<Target>,
    slots: Arc<Semaphore>,
) -> Result<Fetched, PageError> {
    // After redirects the page is where it landed, in canonical form.
    response.url = normalize_url(response.url, &target.strip_params);
    if response.status == 304 && prev.is_some() {
        return Ok(Fetched::Unchanged {
            response,
            not_modified: true,
        });
    }
    let ok = (200..300).contains(&response.status);
    let body_hash = (!response.body.is_empty())
        .then(|| format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&response.body)));
    if ok
        && body_hash.is_some()
        && prev.is_some_and(|p| p.body_hash == body_hash && p.status == response.status)
    {
        return Ok(Fetched::Unchanged {
            response,
            not_modified: false,
        });
    }
    if !ok || !response.is_html() {
        return Ok(Fetched::New {
            response,
            body_hash,
            extract: None,
        });
    }
    let joined = if response.body.len() <= INLINE_PARSE_BYTES {
        // A page of ordinary size is parsed where it arrived: handing it to a
        // parse thread and back cost more (two thread wake-ups) than the
        // parse's pause of the worker (a few hundred µs).
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            extract::extract(&target, &response.text(), &response.url, Kinds::Matching)
        }))
        .map(|page| (response, page))
        .map_err(|_| ())
    } else {
        // The semaphore is never closed; a closed one would only mean no limit.
        let _slot = slots.acquire_owned().await.ok();
        tokio::task::spawn_blocking(move || {
            let page = extract::extract(&target, &response.text(), &response.url, Kinds::Matching);
            (response, page)
        })
        .await
        .map_err(|_| ())
    };
    match joined {
        Ok((response, Ok(page))) => Ok(Fetched::New {
            response,
            body_hash,
            extract: Some(page),
        }),
        Ok((_, Err(deep))) => Err(PageError::TooDeep(deep)),
        Err(_) => Err(PageError::Parse),
    }
}

/// A stand-in record for a page with none (an unchanged answer always has one).
pub(super) fn empty_page(url: &Url) -> PageRecord {
    PageRecord {
        v: crate::store::FORMAT,
        url: url.as_str().to_owned(),
        run: crate::ids::RunId(0),
        fetched_ms: 0,
        status: 0,
        etag: None,
        last_modified: None,
        body_hash: None,
        links: Vec::new(),
        items: Vec::new(),
        depth: 0,
        config: None,
    }
}

pub(super) fn note_commit(live: &mut Progress, stats: CommitStats) {
    live.committed += stats.pages;
}

/// The record of a URL that robots.txt or the address policy kept from
/// being fetched.
pub(super) fn not_fetched(
    decision: crate::robots::Decision,
    queued: &QueuedUrl,
    counts: &mut RunCounts,
    live: &mut Progress,
) -> PageCommit {
    use crate::robots::Decision;
    live.done += 1;
    let (kind, detail) = match decision {
        Decision::Disallowed => {
            counts.robots_disallowed += 1;
            (
                Failure::RobotsDisallowed,
                "disallowed by robots.txt: not fetched",
            )
        }
        Decision::Refused => (
            Failure::AddressRefused,
            "the host resolves to internal addresses only: not fetched",
        ),
        Decision::Unavailable | Decision::Allowed => (
            Failure::RobotsUnavailable,
            "robots.txt could not be fetched (5xx or unreachable): the host is not crawled",
        ),
    };
    if decision != Decision::Disallowed {
        counts.pages_failed += 1;
        live.failed += 1;
        *counts.errors.entry(kind).or_default() += 1;
    }
    PageCommit {
        url: queued.url.as_str().to_owned(),
        depth: queued.depth,
        admitted: Vec::new(),
        fetched_ms: now_ms(),
        outcome: PageOutcome::Failed {
            kind,
            detail: detail.into(),
            status: None,
        },
    }
}
