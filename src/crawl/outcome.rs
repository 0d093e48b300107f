//! What happens to each fetched URL: the retry decision, the parse, and
//! the commit it turns into.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tracing::{debug, warn};
use url::Url;

use super::Progress;
use crate::config::Target;
use crate::extract::{self, Kinds, PageExtract, TooDeep};
use crate::fetcher::{FetchError, Response};
use crate::frontier::{normalize_url, Frontier, QueuedUrl, Refusal};
use crate::retry::{self, Verdict};
use crate::store::{now_ms, CommitStats, PageCommit, PageOutcome, PageRecord, RunCounts};

/// The result of one fetch task.
pub(super) struct Outcome {
    pub(super) queued: QueuedUrl,
    /// The page's record from an earlier run (incremental runs only).
    pub(super) prev: Option<PageRecord>,
    pub(super) result: Result<Fetched, Failure>,
    /// What the host answered, hop by hop.
    pub(super) answers: super::hops::Answers,
}

/// What becomes of an outcome (see `retry`).
pub(super) enum Next {
    /// Record it.
    Keep,
    /// Try the URL again after its own backoff.
    RetryAfter(Duration),
    /// Back off the whole host until this instant, then requeue the URL.
    Requeue(tokio::time::Instant),
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
        Err(Failure::Fetch(e)) => match retry::for_error(e) {
            Verdict::Retry => retry(q.attempt),
            _ => Next::Keep,
        },
        Ok(Fetched::New { response, .. }) => match retry::for_status(response.status) {
            Verdict::Retry => retry(q.attempt),
            Verdict::Requeue => {
                counts.throttled += 1;
                if q.requeues >= profile.max_requeues {
                    return Next::Keep;
                }
                let asked = retry::retry_after(response.retry_after.as_deref(), chrono::Utc::now());
                if asked.is_some_and(|d| d > profile.retry_after_max) {
                    warn!(host = %q.host, asked = ?asked, max = ?profile.retry_after_max, "Retry-After cut to retry_after_max.");
                }
                let own =
                    retry::exponential(profile.backoff_429, profile.retry_after_max, throttles);
                let wait = asked.map_or(own, |a| a.min(profile.retry_after_max).max(own));
                Next::Requeue(outcome.answers.at + wait)
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
pub(super) enum Failure {
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

impl Failure {
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Failure::Fetch(e) => e.kind(),
            Failure::TooDeep(_) => "too_deep",
            Failure::Parse => "parse",
            Failure::Panic => "panic",
            Failure::Redirect(_) => "redirect_refused",
            Failure::Robots(_) => "robots_disallowed",
        }
    }

    pub(super) fn detail(&self) -> String {
        match self {
            Failure::Fetch(e) => e.to_string(),
            Failure::TooDeep(e) => format!("not parsed: {e}"),
            Failure::Parse => "the HTML parser panicked on this page".into(),
            Failure::Panic => "the fetch task panicked".into(),
            Failure::Redirect(to) => format!("redirected to {to}, which the follow rules exclude"),
            Failure::Robots(to) => format!("redirected to {to}, which robots.txt disallows"),
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

/// Hashes the body, and extracts on a parse thread when the page is new HTML.
pub(super) async fn process(
    mut response: Response,
    prev: Option<&PageRecord>,
    target: Arc<Target>,
    slots: Arc<Semaphore>,
) -> Result<Fetched, Failure> {
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
    // The semaphore is never closed; a closed one would only mean no limit.
    let _slot = slots.acquire_owned().await.ok();
    let joined = tokio::task::spawn_blocking(move || {
        let page = extract::extract(&target, &response.text(), &response.url, Kinds::Matching);
        (response, page)
    })
    .await;
    match joined {
        Ok((response, Ok(page))) => Ok(Fetched::New {
            response,
            body_hash,
            extract: Some(page),
        }),
        Ok((_, Err(deep))) => Err(Failure::TooDeep(deep)),
        Err(_) => Err(Failure::Parse),
    }
}

/// Counts an outcome, feeds its links to the frontier and returns what to commit.
pub(super) fn record_outcome(
    target: &Target,
    frontier: &mut Frontier,
    counts: &mut RunCounts,
    live: &mut Progress,
    outcome: Outcome,
) -> PageCommit {
    let Outcome {
        queued,
        prev,
        result,
        ..
    } = outcome;
    let mut commit = PageCommit {
        url: queued.url.as_str().to_owned(),
        depth: queued.depth,
        admitted: Vec::new(),
        fetched_ms: now_ms(),
        outcome: PageOutcome::Fetched {
            status: 0,
            etag: None,
            last_modified: None,
            body_hash: None,
            links: Vec::new(),
            items: Vec::new(),
        },
    };
    live.done += 1;
    let mut fail = |counts: &mut RunCounts, kind: String, detail: String, status: Option<u16>| {
        debug!(url = %queued.url, error = %detail, "Page failed.");
        counts.pages_failed += 1;
        *counts.errors.entry(kind.clone()).or_default() += 1;
        live.failed += 1;
        PageOutcome::Failed {
            kind,
            detail,
            status,
        }
    };
    let mut offer = |frontier: &mut Frontier, links: &mut dyn Iterator<Item = Url>| {
        for link in links {
            let text = link.as_str().to_owned();
            if frontier.offer(target, link, queued.depth + 1).is_ok() {
                commit.admitted.push((text, queued.depth + 1));
            }
        }
    };
    let fetched = match result {
        Ok(f) => f,
        Err(e) => {
            if matches!(e, Failure::Parse) {
                warn!(url = %queued.url, "The HTML parser panicked on this page; skipped.");
            }
            commit.outcome = fail(counts, e.kind().to_owned(), e.detail(), None);
            return commit;
        }
    };
    counts.pages_fetched += 1;
    live.fetched += 1;
    match fetched {
        Fetched::Unchanged {
            response,
            not_modified,
        } => {
            counts.bytes += response.body.len() as u64;
            if not_modified {
                counts.pages_not_modified += 1;
            } else {
                counts.pages_unchanged += 1;
            }
            // An unchanged page links where it linked last time. Most of those
            // links are known already: skip parsing them.
            let prev = prev.unwrap_or_else(|| empty_page(&queued.url));
            let fresh = prev.links.iter().filter(|l| !frontier.has_seen(l));
            offer(
                frontier,
                &mut fresh
                    .filter_map(|l| Url::parse(l).ok())
                    .collect::<Vec<_>>()
                    .into_iter(),
            );
            let same = (response.etag.is_none() || response.etag == prev.etag)
                && (response.last_modified.is_none()
                    || response.last_modified == prev.last_modified);
            commit.outcome = PageOutcome::Unchanged {
                validators: (!same).then_some((response.etag, response.last_modified)),
            };
        }
        Fetched::New {
            mut response,
            body_hash,
            extract,
        } => {
            counts.bytes += response.body.len() as u64;
            if let Some(to) = response.location.take() {
                let status = response.status;
                let to = normalize_url(to, &target.strip_params);
                let refused = match frontier.offer_redirect(target, to.clone(), queued.depth) {
                    Ok(depth) => {
                        commit.admitted.push((to.as_str().to_owned(), depth));
                        None
                    }
                    Err(Refusal::AlreadySeen | Refusal::OverBudget | Refusal::TooDeep) => None,
                    Err(Refusal::Internal) => Some(Failure::Fetch(FetchError::Refused {
                        url: to.clone(),
                        why: "a redirect to an internal address".into(),
                    })),
                    Err(_) => Some(Failure::Redirect(to.clone())),
                };
                commit.outcome = match refused {
                    Some(e) => fail(counts, e.kind().to_owned(), e.detail(), Some(status)),
                    None => PageOutcome::Fetched {
                        status,
                        etag: None,
                        last_modified: None,
                        body_hash: None,
                        links: vec![to.as_str().to_owned()],
                        items: Vec::new(),
                    },
                };
                return commit;
            }
            // Redirects on the same host passed the rules hop by hop (hops.rs).
            if response.url != queued.url {
                frontier.mark_seen(&response.url);
            }
            let status = response.status;
            if !(200..300).contains(&status) {
                let gone = matches!(status, 404 | 410);
                let detail = if gone {
                    format!("HTTP {status}: the page is gone")
                } else {
                    format!("HTTP {status}")
                };
                commit.outcome = match fail(counts, format!("http_{status}"), detail, Some(status))
                {
                    // A failure like any other, which also tells full runs the page is gone.
                    PageOutcome::Failed { kind, detail, .. } if gone => PageOutcome::Gone {
                        status,
                        kind,
                        detail,
                    },
                    // A server error says nothing about the page: keep what we knew.
                    failed => failed,
                };
                return commit;
            }
            let mut links = Vec::new();
            let mut items = Vec::new();
            if let Some(page) = extract {
                counts.items_invalid += page.invalid.len() as u64;
                live.items += page.items.len() as u64;
                links = page.links.iter().map(|l| l.as_str().to_owned()).collect();
                offer(frontier, &mut page.links.into_iter());
                items = page.items;
            } else {
                counts.pages_not_html += 1;
            }
            commit.outcome = PageOutcome::Fetched {
                status,
                etag: response.etag,
                last_modified: response.last_modified,
                body_hash,
                links,
                items,
            };
        }
    }
    commit
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
            ("robots_disallowed", "disallowed by robots.txt: not fetched")
        }
        Decision::Refused => (
            "address_refused",
            "the host resolves to internal addresses only: not fetched",
        ),
        Decision::Unavailable | Decision::Allowed => (
            "robots_unavailable",
            "robots.txt could not be fetched (5xx or unreachable): the host is not crawled",
        ),
    };
    if decision != Decision::Disallowed {
        counts.pages_failed += 1;
        live.failed += 1;
        *counts.errors.entry(kind.into()).or_default() += 1;
    }
    PageCommit {
        url: queued.url.as_str().to_owned(),
        depth: queued.depth,
        admitted: Vec::new(),
        fetched_ms: now_ms(),
        outcome: PageOutcome::Failed {
            kind: kind.into(),
            detail: detail.into(),
            status: None,
        },
    }
}
