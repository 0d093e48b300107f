//! What a fetched URL becomes: its counts, the links it admits to the
//! frontier, and the record to commit, one method per kind of answer.

use std::collections::BTreeMap;

use tracing::{debug, warn};
use url::Url;

use super::outcome::{empty_page, Fetched, Outcome, PageError};
use super::Progress;
use crate::config::Target;
use crate::extract::PageExtract;
use crate::failure::Failure;
use crate::fetcher::{FetchError, Response};
use crate::frontier::{path_refused, Frontier, QueuedUrl, Refusal};
use crate::store::{now_ms, KindCoverage, PageCommit, PageOutcome, PageRecord, RunCounts};
use crate::urlnorm::normalize_url;

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
        self.counts.items_kept += prev.items.len() as u64;
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
            self.counts.links_dropped += page.links_dropped;
            if page.jsonld_faults > 0 {
                self.counts.jsonld_invalid += 1;
                warn!(
                    url = %response.url,
                    blocks = page.jsonld_faults,
                    "Malformed or oversized JSON-LD on this page: those blocks were not read; the page was kept."
                );
            }
            count_coverage(&mut self.counts.coverage, &page);
            self.live.items += page.items.len() as u64;
            // Only links the follow rules' paths allow are kept, for
            // re-offering when the page comes back unchanged: the others would
            // be refused again (the rules cannot change without the config's
            // fingerprint, which makes the page parsed again). Most links of
            // a real page (menus, footers, reviews) go no further.
            let followed: Vec<Url> = page
                .links
                .into_iter()
                .filter(|l| path_refused(self.target, l).is_none())
                .collect();
            links = followed.iter().map(|l| l.as_str().to_owned()).collect();
            self.offer(followed);
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
            Err(
                Refusal::AlreadySeen
                | Refusal::OverBudget
                | Refusal::TooDeep
                | Refusal::TooManyHosts,
            ) => None,
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

/// Adds the items of a page to the run's field coverage: every item counts,
/// invalid ones too, since a field that stopped matching makes items invalid.
fn count_coverage(coverage: &mut BTreeMap<String, KindCoverage>, page: &PageExtract) {
    fn kind<'a>(
        c: &'a mut BTreeMap<String, KindCoverage>,
        name: &str,
    ) -> Option<&'a mut KindCoverage> {
        // Allocates a key once per kind and run, not once per item.
        if !c.contains_key(name) {
            c.insert(name.to_owned(), KindCoverage::default());
        }
        c.get_mut(name)
    }
    fn found(c: &mut KindCoverage, field: &str) {
        match c.fields.get_mut(field) {
            Some(n) => *n += 1,
            None => {
                c.fields.insert(field.to_owned(), 1);
            }
        }
    }
    for item in &page.items {
        let Some(c) = kind(coverage, &item.kind) else {
            continue;
        };
        c.items += 1;
        for (field, v) in &item.value {
            if crate::extract::is_present(v) {
                found(c, field);
            } else if !c.fields.contains_key(field) {
                // A field never found still shows, at 0 %.
                c.fields.insert(field.clone(), 0);
            }
        }
    }
    for item in &page.invalid {
        let Some(c) = kind(coverage, &item.kind) else {
            continue;
        };
        c.items += 1;
        for field in &item.present {
            found(c, field);
        }
        for field in &item.missing {
            c.fields.entry(field.clone()).or_insert(0);
        }
    }
}
