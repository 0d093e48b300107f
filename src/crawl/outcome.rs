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
use crate::failure::Failure;
use crate::fetcher::{FetchError, Response};
use crate::frontier::{normalize_url, Frontier, QueuedUrl, Refusal};
use crate::retry::{self, Verdict};
use crate::store::{now_ms, CommitStats, PageCommit, PageOutcome, PageRecord, RunCounts};

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
                let cut = asked.is_some_and(|d| d > profile.retry_after_max);
                if cut {
                    warn!(host = %q.host, asked = ?asked, max = ?profile.retry_after_max, "Retry-After cut to retry_after_max.");
                }
                let own =
                    retry::exponential(profile.backoff_429, profile.retry_after_max, throttles);
                let wait = asked.map_or(own, |a| a.min(profile.retry_after_max).max(own));
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

/// Hashes the body, and extracts on a parse thread when the page is new HTML.
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
        Ok((_, Err(deep))) => Err(PageError::TooDeep(deep)),
        Err(_) => Err(PageError::Parse),
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
    live.done += 1;
    let mut page = Recorder {
        target,
        frontier,
        counts,
        live,
        queued: &queued,
        admitted: Vec::new(),
    };
    let outcome = match result {
        Err(e) => {
            if matches!(e, PageError::Parse) {
                warn!(url = %queued.url, "The HTML parser panicked on this page; skipped.");
            }
            page.fail(e.kind(), e.detail(), None)
        }
        Ok(fetched) => {
            page.counts.pages_fetched += 1;
            page.live.fetched += 1;
            match fetched {
                Fetched::Unchanged {
                    response,
                    not_modified,
                } => page.unchanged(response, not_modified, prev),
                Fetched::New {
                    response,
                    body_hash,
                    extract,
                } => page.new_body(response, body_hash, extract),
            }
        }
    };
    PageCommit {
        url: queued.url.as_str().to_owned(),
        depth: queued.depth,
        admitted: page.admitted,
        fetched_ms: now_ms(),
        outcome,
    }
}

/// One fetched URL being recorded: its counts, and the links it admitted
/// to the frontier.
struct Recorder<'a> {
    target: &'a Target,
    frontier: &'a mut Frontier,
    counts: &'a mut RunCounts,
    live: &'a mut Progress,
    queued: &'a QueuedUrl,
    admitted: Vec<(String, u32)>,
}

impl Recorder<'_> {
    /// Counts a failure of the page.
    fn fail(&mut self, kind: Failure, detail: String, status: Option<u16>) -> PageOutcome {
        debug!(url = %self.queued.url, error = %detail, "Page failed.");
        self.counts.pages_failed += 1;
        *self.counts.errors.entry(kind).or_default() += 1;
        self.live.failed += 1;
        PageOutcome::Failed {
            kind,
            detail,
            status,
        }
    }

    /// Offers links found on the page to the frontier, one level deeper.
    fn offer(&mut self, links: impl IntoIterator<Item = Url>) {
        let depth = self.queued.depth + 1;
        for link in links {
            let text = link.as_str().to_owned();
            if self.frontier.offer(self.target, link, depth).is_ok() {
                self.admitted.push((text, depth));
            }
        }
    }

    /// A 304, or the same body as last time: not parsed again.
    fn unchanged(
        &mut self,
        response: Response,
        not_modified: bool,
        prev: Option<PageRecord>,
    ) -> PageOutcome {
        self.counts.bytes += response.body.len() as u64;
        if not_modified {
            self.counts.pages_not_modified += 1;
        } else {
            self.counts.pages_unchanged += 1;
        }
        // An unchanged page links where it linked last time. Most of those
        // links are known already: skip parsing them.
        let prev = prev.unwrap_or_else(|| empty_page(&self.queued.url));
        let fresh: Vec<Url> = prev
            .links
            .iter()
            .filter(|l| !self.frontier.has_seen(l))
            .filter_map(|l| Url::parse(l).ok())
            .collect();
        self.offer(fresh);
        let same = (response.etag.is_none() || response.etag == prev.etag)
            && (response.last_modified.is_none() || response.last_modified == prev.last_modified);
        PageOutcome::Unchanged {
            validators: (!same).then_some((response.etag, response.last_modified)),
        }
    }

    /// A new body: a redirect to another host, an error status, or a page.
    fn new_body(
        &mut self,
        mut response: Response,
        body_hash: Option<String>,
        extract: Option<PageExtract>,
    ) -> PageOutcome {
        self.counts.bytes += response.body.len() as u64;
        if let Some(to) = response.location.take() {
            return self.redirect(response.status, to);
        }
        // Redirects on the same host passed the rules hop by hop (hops.rs).
        if response.url != self.queued.url {
            self.frontier.mark_seen(&response.url);
        }
        let status = response.status;
        if !(200..300).contains(&status) {
            return self.error_status(status);
        }
        let mut links = Vec::new();
        let mut items = Vec::new();
        if let Some(page) = extract {
            self.counts.items_invalid += page.invalid.len() as u64;
            self.live.items += page.items.len() as u64;
            links = page.links.iter().map(|l| l.as_str().to_owned()).collect();
            self.offer(page.links);
            items = page.items;
        } else {
            self.counts.pages_not_html += 1;
        }
        PageOutcome::Fetched {
            status,
            etag: response.etag,
            last_modified: response.last_modified,
            body_hash,
            links,
            items,
        }
    }

    /// A redirect to another host: its target is queued like a link (its
    /// host's robots.txt and limits then apply), unless the rules refuse it.
    fn redirect(&mut self, status: u16, to: Url) -> PageOutcome {
        let to = normalize_url(to, &self.target.strip_params);
        let offered = self
            .frontier
            .offer_redirect(self.target, to.clone(), self.queued.depth);
        let refused = match offered {
            Ok(depth) => {
                self.admitted.push((to.as_str().to_owned(), depth));
                None
            }
            Err(Refusal::AlreadySeen | Refusal::OverBudget | Refusal::TooDeep) => None,
            Err(Refusal::Internal) => Some(PageError::Fetch(FetchError::Refused {
                url: to.clone(),
                why: "a redirect to an internal address".into(),
            })),
            Err(_) => Some(PageError::Redirect(to.clone())),
        };
        match refused {
            Some(e) => self.fail(e.kind(), e.detail(), Some(status)),
            None => PageOutcome::Fetched {
                status,
                etag: None,
                last_modified: None,
                body_hash: None,
                links: vec![to.as_str().to_owned()],
                items: Vec::new(),
            },
        }
    }

    /// An HTTP error status: a failure; a 404/410 also says the page is gone.
    fn error_status(&mut self, status: u16) -> PageOutcome {
        let gone = matches!(status, 404 | 410);
        let detail = if gone {
            format!("HTTP {status}: the page is gone")
        } else {
            format!("HTTP {status}")
        };
        match self.fail(Failure::Status(status), detail, Some(status)) {
            // A failure like any other, which also tells full runs the page is gone.
            PageOutcome::Failed { kind, detail, .. } if gone => PageOutcome::Gone {
                status,
                kind,
                detail,
            },
            // A server error says nothing about the page: keep what we knew.
            failed => failed,
        }
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
