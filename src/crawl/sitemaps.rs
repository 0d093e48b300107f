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

use super::{Engine, Progress};
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
    // Files read and queued are never more than MAX_FILES together: the
    // queue holds no more than that, whatever the indexes name.
    let mut queue: VecDeque<(Url, u32)> = VecDeque::new();
    let mut known: HashSet<Url> = HashSet::new();
    let mut named = Vec::new();
    let mut files = 0;
    let mut over = Left::default();
    for url in roots {
        if known.contains(&url) {
            continue;
        }
        if queue.len() == MAX_FILES {
            over.add(url);
            continue;
        }
        known.insert(url.clone());
        queue.push_back((url, 0));
    }
    if let Some(first) = over.first.take() {
        r.warn(format!(
            "more than {MAX_FILES} sitemap files: {} more not read (first: {first})",
            over.count
        ));
    }
    while let Some((url, level)) = queue.pop_front() {
        if cancel.is_cancelled() {
            break;
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
                let room = MAX_FILES.saturating_sub(files);
                let (other_host, over) =
                    queue_children(&mut queue, &mut known, &url, children, level + 1, room);
                if let Some(first) = other_host.first {
                    r.warn(format!(
                        "sitemap {url}: {} sitemaps on another host than the index's: not read (first: {first})",
                        other_host.count
                    ));
                }
                if let Some(first) = over.first {
                    r.warn(format!(
                        "more than {MAX_FILES} sitemap files: {} more not read (first: {first})",
                        over.count
                    ));
                }
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

/// Sitemaps left out, counted, and the first of them (for the warning).
#[derive(Debug, Default)]
struct Left {
    count: usize,
    first: Option<Url>,
}

impl Left {
    fn add(&mut self, url: Url) {
        self.count += 1;
        self.first.get_or_insert(url);
    }
}

/// Queues the children of the index `parent` at `level`, each once, while
/// the queue holds fewer than `room`: a run never holds more sitemaps to read
/// than it may read. A child on another host than its index is not queued
/// (sitemaps.org: an index names sitemaps of its own host; a sitemap of
/// another host is read when the configuration or robots.txt names it).
/// Gives the children left out: on another host, and past `room`.
fn queue_children(
    queue: &mut VecDeque<(Url, u32)>,
    known: &mut HashSet<Url>,
    parent: &Url,
    children: impl Iterator<Item = Url>,
    level: u32,
    room: usize,
) -> (Left, Left) {
    let (mut other_host, mut over) = (Left::default(), Left::default());
    for child in children {
        if known.contains(&child) {
            continue;
        }
        if child.host_str() != parent.host_str() {
            other_host.add(child);
        } else if queue.len() >= room {
            over.add(child);
        } else {
            known.insert(child.clone());
            queue.push_back((child, level));
        }
    }
    (other_host, over)
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
        #[allow(
            clippy::disallowed_methods,
            reason = "parsing a sitemap is CPU work, not store work"
        )]
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
                        if queued || !self.robots_allow(&n.url) {
                            // Recorded when it comes out of the frontier,
                            // after robots.txt had its say.
                            if !queued {
                                let _ = self.frontier.offer(self.target, n.url.clone(), 0);
                            }
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

    /// Whether robots.txt, known already, lets the page be fetched (or is
    /// not respected for its host).
    fn robots_allow(&self, url: &Url) -> bool {
        let Some(host) = HostKey::of(url) else {
            return false;
        };
        !self.target.profile_for(&host).respect_robots
            || (self.robots.ready(&host) && self.robots.decide(&host, url) == Decision::Allowed)
    }

    /// The stored records of `urls` (those that have one), read off the
    /// async threads.
    async fn records(
        &self,
        urls: Vec<String>,
    ) -> Result<HashMap<String, PageRecord>, crate::store::StoreError> {
        let target = self.target.id.clone();
        self.store
            .call(move |store| {
                let mut found = HashMap::new();
                for url in urls {
                    if let Some(record) = store.page(&target, &url)? {
                        found.insert(url, record);
                    }
                }
                Ok(found)
            })
            .await
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

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("url")
    }

    #[test]
    fn an_index_naming_more_sitemaps_than_may_be_read_queues_no_more() {
        let parent = url("http://a.test/index.xml");
        let mut queue = VecDeque::from([(url("http://a.test/root2.xml"), 0)]);
        let mut known: HashSet<Url> = queue.iter().map(|(u, _)| u.clone()).collect();
        known.insert(parent.clone());
        let children = (0..50_000).map(|i| url(&format!("http://a.test/s{i}.xml")));
        // 3 files read of 10: room for 7, one of them already queued.
        let (other, over) = queue_children(&mut queue, &mut known, &parent, children, 1, 7);
        assert_eq!(queue.len(), 7);
        assert_eq!(queue[6], (url("http://a.test/s5.xml"), 1));
        assert_eq!((other.count, over.count), (0, 50_000 - 6));
        assert_eq!(over.first, Some(url("http://a.test/s6.xml")));
        // A full queue takes nothing more; what is known is not counted again.
        let again = [url("http://a.test/s0.xml"), url("http://a.test/new.xml")];
        let (_, over) = queue_children(&mut queue, &mut known, &parent, again.into_iter(), 1, 7);
        assert_eq!((queue.len(), over.count), (7, 1));
    }

    #[test]
    fn an_index_names_sitemaps_of_its_own_host_only() {
        let parent = url("https://a.test/index.xml");
        let mut queue = VecDeque::new();
        let mut known = HashSet::from([url("https://b.test/listed.xml")]);
        let children = [
            url("https://a.test/s1.xml"),
            url("https://evil.test/s2.xml"),
            url("https://www.a.test/s3.xml"),
            // Configured (known): read as configured, not counted here.
            url("https://b.test/listed.xml"),
        ];
        let (other, over) =
            queue_children(&mut queue, &mut known, &parent, children.into_iter(), 1, 10);
        assert_eq!(Vec::from(queue), vec![(url("https://a.test/s1.xml"), 1)]);
        assert_eq!(other.count, 2);
        assert_eq!(other.first, Some(url("https://evil.test/s2.xml")));
        assert_eq!(over.count, 0);
    }
}
