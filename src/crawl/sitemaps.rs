//! A run's sitemaps (the target's `sitemaps`), read before its first page:
//! the files are fetched one at a time through the same fetcher, per-host
//! limiter and robots.txt as pages; indexes are followed [`MAX_INDEX_DEPTH`]
//! levels down, at most [`MAX_FILES`] files a run; the pages they name are
//! normalised and offered to the frontier at depth 0, beside the start
//! URLs, under the follow rules. An incremental run skips, without a
//! request, a page whose `<lastmod>` is not later than its last fetch and
//! records it as a 304 would be (items kept, stored links followed).
//!
//! A sitemap that cannot be had is a `sitemap` failure record of its URL,
//! never a failed run; one cut at the sitemaps.org limits is a warning of
//! the run (`sitemap_warnings`) and a log line.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use reqwest::header::HeaderMap;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use url::Url;

use super::{blocking, Engine, Progress};
use crate::config::{SitemapSource, Target};
use crate::failure::Failure;
use crate::fetcher::{Fetcher, Request};
use crate::frontier::Frontier;
use crate::ids::HostKey;
use crate::robots::{self, Decision, Robots};
use crate::sitemap::{self, Kind, Limits, Stop};
use crate::store::{now_ms, PageCommit, PageOutcome, PageRecord, RunCounts, Store};
use crate::urlnorm::normalize_url;

/// Sitemap files read per run, at most (indexes included).
pub const MAX_FILES: usize = 1000;
/// Levels of indexes followed below a configured sitemap: sitemaps.org has
/// one (an index of sitemaps), real sites sometimes nest one more.
pub const MAX_INDEX_DEPTH: u32 = 2;
/// Warnings a run keeps; the rest are logged only.
const MAX_WARNINGS: usize = 20;

/// What reading a run's sitemaps needs of the run loop.
pub(super) struct Reading<'a> {
    pub engine: &'a Engine,
    pub target: &'a Arc<Target>,
    pub fetcher: &'a Fetcher,
    pub store: &'a Arc<Store>,
    pub internal_ok: bool,
    pub incremental: bool,
    pub robots: &'a mut Robots,
    pub robots_tasks: &'a mut JoinSet<(HostKey, robots::Answer)>,
    pub frontier: &'a mut Frontier,
    pub counts: &'a mut RunCounts,
    pub live: &'a mut Progress,
}

/// A page a sitemap named.
struct Named {
    url: Url,
    lastmod_ms: Option<i64>,
}

/// What reading the sitemaps leaves for the run loop.
#[derive(Default)]
pub(super) struct Found {
    /// To commit: the failures of sitemaps, and the pages skipped as unchanged.
    pub commits: Vec<PageCommit>,
    /// Queued pages unchanged by their sitemap, by URL, with their records:
    /// recorded, not fetched, when they come out of the frontier.
    pub queued: HashMap<String, PageRecord>,
}

/// Reads the target's sitemaps and feeds their pages to the frontier.
pub(super) async fn read(mut r: Reading<'_>, cancel: &CancellationToken) -> Found {
    let mut found = Found::default();
    let Some(source) = r.target.sitemaps.clone() else {
        return found;
    };
    let commits = &mut found.commits;
    let roots = match source {
        SitemapSource::Urls(urls) => urls,
        SitemapSource::Robots => r.robots_sitemaps().await,
    };
    let mut queue: VecDeque<(Url, u32)> = roots.into_iter().map(|u| (u, 0)).collect();
    let mut visited: HashSet<Url> = HashSet::new();
    let mut named = Vec::new();
    let mut files = 0;
    while let Some((url, level)) = queue.pop_front() {
        if cancel.is_cancelled() {
            break;
        }
        if !visited.insert(url.clone()) {
            continue;
        }
        if files == MAX_FILES {
            let left = queue.len() + 1;
            r.warn(format!(
                "more than {MAX_FILES} sitemap files: {left} more not read (first: {url})"
            ));
            break;
        }
        files += 1;
        let read = match r.fetch(&url).await {
            Ok(read) => read,
            Err(detail) => {
                warn!(%url, %detail, "Sitemap not read.");
                r.counts.sitemaps_failed += 1;
                *r.counts.errors.entry(Failure::Sitemap).or_default() += 1;
                commits.push(failure(&url, detail));
                continue;
            }
        };
        r.counts.sitemaps_read += 1;
        if let Some(stop) = &read.stop {
            r.warn(format!("sitemap {url}: {stop}"));
        }
        match read.kind {
            Kind::Index if level < MAX_INDEX_DEPTH => {
                let children = read.entries.iter().filter_map(|e| Url::parse(&e.loc).ok());
                queue.extend(children.map(|u| (u, level + 1)));
            }
            Kind::Index => r.warn(format!(
                "sitemap {url}: an index nested more than {MAX_INDEX_DEPTH} levels deep: not followed"
            )),
            Kind::UrlSet => {
                r.counts.sitemap_urls += read.entries.len() as u64;
                // Only what the follow rules take is kept, and no more than
                // `max_pages` of it: a run holds its sitemaps' URLs until
                // they are admitted, whatever the number of files.
                let (target, frontier) = (r.target, &*r.frontier);
                let taken = read.entries.into_iter().filter_map(|e| {
                    let url = normalize_url(Url::parse(&e.loc).ok()?, &target.strip_params);
                    frontier.rules_refuse(target, &url).is_none().then_some(Named {
                        url,
                        lastmod_ms: e.lastmod_ms,
                    })
                });
                let room = usize::try_from(target.max_pages)
                    .unwrap_or(usize::MAX)
                    .saturating_sub(named.len());
                let before = named.len();
                named.extend(taken.take(room.saturating_add(1)));
                if named.len() - before > room {
                    named.pop();
                    r.warn(format!(
                        "sitemap {url}: the sitemaps name more pages than max_pages ({}): the rest were not taken",
                        target.max_pages
                    ));
                    break;
                }
            }
            Kind::Unknown if read.stop.is_none() => {
                r.counts.sitemaps_failed += 1;
                *r.counts.errors.entry(Failure::Sitemap).or_default() += 1;
                commits.push(failure(
                    &url,
                    "not a sitemap: neither <urlset> nor <sitemapindex>".into(),
                ));
            }
            Kind::Unknown => {}
        }
    }
    match r.admit(named, &mut found).await {
        Ok(()) => {}
        Err(e) => warn!(error = %e, "Page records could not be read: sitemap pages are fetched."),
    }
    info!(
        files = r.counts.sitemaps_read,
        failed = r.counts.sitemaps_failed,
        urls = r.counts.sitemap_urls,
        unchanged = r.counts.unchanged_by_sitemap,
        "Sitemaps read."
    );
    found
}

/// What one sitemap file gave.
type Read = sitemap::Sitemap;

impl Reading<'_> {
    /// A warning of the run: logged, and kept in its figures (a few).
    fn warn(&mut self, text: String) {
        warn!(target = %self.target.id, "{text}");
        if self.counts.sitemap_warnings.len() < MAX_WARNINGS {
            self.counts.sitemap_warnings.push(text);
        }
    }

    /// The `Sitemap:` lines of the start hosts' robots.txt.
    async fn robots_sitemaps(&mut self) -> Vec<Url> {
        let hosts: Vec<HostKey> = {
            let mut seen = HashSet::new();
            let all = self.target.start_urls.iter().filter_map(HostKey::of);
            all.filter(|h| seen.insert(h.clone())).collect()
        };
        let mut urls = Vec::new();
        for host in hosts {
            self.robots_ready(&host).await;
            if let Some(robot) = self.robots.rules(&host) {
                urls.extend(robot.sitemaps.iter().filter_map(|s| Url::parse(s).ok()));
            }
        }
        urls
    }

    /// Fetches a host's robots.txt unless it is known, and waits for it. A
    /// robots.txt to be asked again later leaves the host not ready.
    async fn robots_ready(&mut self, host: &HostKey) {
        while !self.robots.ready(host) {
            self.robots.start(
                host,
                self.target,
                self.fetcher,
                self.internal_ok,
                self.robots_tasks,
            );
            let Some(joined) = self.robots_tasks.join_next_with_id().await else {
                return;
            };
            if let Some((h, answer)) = self.robots.joined(joined) {
                let profile = self.target.profile_for(&h);
                self.robots.finish(&h, answer, profile, &self.engine.hosts);
            }
        }
    }

    /// Fetches and reads one sitemap file, within its host's limits and
    /// robots.txt; `Err` says why it could not be had.
    async fn fetch(&mut self, url: &Url) -> Result<Read, String> {
        let host = HostKey::of(url).ok_or("a URL without a host")?;
        let profile = self.target.profile_for(&host).clone();
        if profile.respect_robots {
            self.robots_ready(&host).await;
            // A robots.txt to be asked again later (5xx, unreachable) is not
            // known yet: the sitemap is not fetched in this run.
            if !self.robots.ready(&host) {
                return Err("its host's robots.txt could not be fetched yet: not fetched".into());
            }
            match self.robots.decide(&host, url) {
                Decision::Allowed => {}
                Decision::Disallowed => {
                    self.counts.robots_disallowed += 1;
                    return Err("disallowed by robots.txt: not fetched".into());
                }
                Decision::Refused => return Err("an internal address: not fetched".into()),
                Decision::Unavailable => {
                    return Err("its host's robots.txt could not be fetched: not fetched".into())
                }
            }
        }
        // The target's credentials go to its start hosts only, as for pages.
        let no_headers = HeaderMap::new();
        let start_host = self
            .target
            .start_urls
            .iter()
            .any(|u| HostKey::of(u).as_ref() == Some(&host));
        let headers = if start_host {
            &self.target.headers
        } else {
            &no_headers
        };
        let private = (!self.target.headers.is_empty()).then_some(&self.target.id);
        let permit = self.engine.hosts.acquire(&host, &profile).await;
        let request = Request {
            url,
            profile: &profile,
            headers,
            validators: Default::default(),
            internal_ok: self.internal_ok,
            private_session: private,
        };
        // What is past the byte limit is not read (one byte more tells the
        // limit was passed); a gzip file is cut after its uncompressed limit.
        let result = self
            .fetcher
            .get_prefix_following(request, sitemap::MAX_BYTES + 1)
            .await;
        let status = result.as_ref().ok().map(|r| r.status);
        self.engine.hosts.answered(&host, status);
        permit.release_after_delay();
        let answers = &mut self
            .counts
            .hosts
            .entry(host.to_string())
            .or_default()
            .answers;
        answers.answer(status);
        let response = result.map_err(|e| e.to_string())?;
        if !(200..300).contains(&response.status) {
            return Err(format!("HTTP {}", response.status));
        }
        self.counts.bytes += response.body.len() as u64;
        let body = response.body;
        let read = tokio::task::spawn_blocking(move || sitemap::parse(&body, Limits::default()))
            .await
            .map_err(|_| "the sitemap reader panicked".to_owned())?;
        debug!(%url, entries = read.entries.len(), gzip = read.gzip, "Sitemap read.");
        if let Some(Stop::Malformed(e)) = &read.stop {
            if read.entries.is_empty() {
                return Err(format!("not a readable sitemap: {e}"));
            }
        }
        Ok(read)
    }

    /// Offers the named pages to the frontier at depth 0; in an incremental
    /// run, those unchanged since their last fetch are recorded instead.
    /// A page already queued (a start URL, or one a resumed run restored)
    /// cannot leave its queue: it goes into `found.queued`, for the run loop
    /// to record when it comes out.
    async fn admit(
        &mut self,
        named: Vec<Named>,
        found: &mut Found,
    ) -> Result<(), crate::store::StoreError> {
        // Each page once (the follow rules were applied as they were read).
        let mut fresh = HashSet::new();
        let named: Vec<Named> = named
            .into_iter()
            .filter(|n| fresh.insert(n.url.as_str().to_owned()))
            .collect();
        if !self.incremental {
            for n in named {
                let _ = self.frontier.offer(self.target, n.url, 0);
            }
            return Ok(());
        }
        // Records are read a chunk at a time, so that a run holds few of them
        // whatever the size of its sitemaps. Every skipped page is marked seen
        // before the links of any is offered: a skipped page that another one
        // links to is not queued.
        let mut skipped = Vec::new();
        for chunk in chunks(named) {
            let urls: Vec<String> = chunk
                .iter()
                .filter(|n| n.lastmod_ms.is_some())
                .map(|n| n.url.as_str().to_owned())
                .collect();
            let mut records = self.records(urls).await?;
            for n in chunk {
                let queued = self.frontier.has_seen(n.url.as_str());
                match records.remove(n.url.as_str()) {
                    Some(prev) if unchanged(self.target, &prev, n.lastmod_ms) => {
                        if queued {
                            found.queued.insert(n.url.as_str().to_owned(), prev);
                        } else {
                            self.frontier.mark_seen(&n.url);
                            skipped.push(n.url);
                        }
                    }
                    _ if queued => {}
                    _ => {
                        let _ = self.frontier.offer(self.target, n.url, 0);
                    }
                }
            }
        }
        for chunk in chunks(skipped) {
            let urls = chunk.iter().map(|u| u.as_str().to_owned()).collect();
            let mut records = self.records(urls).await?;
            for url in chunk {
                let Some(prev) = records.remove(url.as_str()) else {
                    continue;
                };
                let (frontier, target) = (&mut *self.frontier, self.target);
                let page = keep(frontier, target, self.counts, self.live, &url, 0, prev);
                found.commits.push(page);
            }
        }
        Ok(())
    }

    /// The stored records of `urls` (those that have one), read off the
    /// async threads.
    async fn records(
        &self,
        urls: Vec<String>,
    ) -> Result<HashMap<String, PageRecord>, crate::store::StoreError> {
        let (store, target) = (self.store.clone(), self.target.id.clone());
        blocking(self.store, move |_| {
            let mut found = HashMap::new();
            for url in urls {
                if let Some(record) = store.page(&target, &url)? {
                    found.insert(url, record);
                }
            }
            Ok::<_, crate::store::StoreError>(found)
        })
        .await?
    }
}

/// Records read from the store at a time.
const CHUNK: usize = 1024;

/// `items` in chunks of [`CHUNK`].
fn chunks<T>(items: Vec<T>) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        out.push(items.by_ref().take(CHUNK).collect());
    }
    out
}

/// Whether a page is unchanged by its sitemap: its `<lastmod>` is not
/// later than its last successful fetch, under the same configuration
/// (a page extracted under another one must be parsed again).
fn unchanged(target: &Target, prev: &PageRecord, lastmod_ms: Option<i64>) -> bool {
    let Some(lastmod) = lastmod_ms else {
        return false;
    };
    (200..300).contains(&prev.status)
        && prev.config.as_deref() == Some(target.fingerprint.as_str())
        && lastmod <= i64::try_from(prev.fetched_ms).unwrap_or(i64::MAX)
}

/// A page skipped as unchanged by its sitemap, recorded as a 304 is (see
/// `record::Recorder::unchanged`): its stored page and items stay, and the
/// links it had are offered again, one level deeper.
pub(super) fn keep(
    frontier: &mut Frontier,
    target: &Target,
    counts: &mut RunCounts,
    live: &mut Progress,
    url: &Url,
    depth: u32,
    prev: PageRecord,
) -> PageCommit {
    counts.unchanged_by_sitemap += 1;
    // Its items stay, as a 304's do: the summary counts them as kept.
    counts.items_kept += prev.items.len() as u64;
    live.done += 1;
    let mut admitted = Vec::new();
    for link in &prev.links {
        if frontier.has_seen(link) {
            continue;
        }
        if let Ok(to) = Url::parse(link) {
            if frontier.offer(target, to, depth + 1).is_ok() {
                admitted.push((link.clone(), depth + 1));
            }
        }
    }
    PageCommit {
        url: url.as_str().to_owned(),
        depth,
        admitted,
        fetched_ms: now_ms(),
        outcome: PageOutcome::Unchanged { validators: None },
    }
}

/// The failure record of a sitemap that could not be had.
fn failure(url: &Url, detail: String) -> PageCommit {
    PageCommit {
        url: url.as_str().to_owned(),
        depth: 0,
        admitted: Vec::new(),
        fetched_ms: now_ms(),
        outcome: PageOutcome::Failed {
            kind: Failure::Sitemap,
            detail: format!("sitemap: {detail}"),
            status: None,
        },
    }
}
