//! The frontier of one run: which URLs are still to fetch, breadth-first,
//! deduplicated, within the follow rules, depth and page budget.
//!
//! URLs are queued per host and handed out round-robin across hosts, so a
//! host whose politeness slots are all taken never blocks another.
//!
//! Its memory is bounded whatever the size of the target: the URLs admitted
//! are kept as 16-byte fingerprints ([`seen`]), and beyond
//! [`MEMORY_QUEUE`] URLs in memory, a host's queue continues in a file of the
//! state directory ([`spill`]).

mod seen;
mod spill;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;

use tracing::warn;

use url::{Position, Url};

use crate::config::Target;
use crate::ids::HostKey;

/// A URL waiting to be fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedUrl {
    pub url: Url,
    pub host: HostKey,
    /// Links followed from a start URL to reach it.
    pub depth: u32,
    /// Attempts made so far after failures (see `retries`).
    pub attempt: u32,
    /// Times it was requeued after a 429/503 (see `max_requeues`).
    pub requeues: u32,
}

/// Why a discovered link was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    AlreadySeen,
    OffHost,
    NotAllowed,
    Denied,
    TooDeep,
    OverBudget,
    /// An internal (loopback, private…) raw-IP address the target may not reach.
    Internal,
    /// A host past `follow.max_hosts` distinct hosts in this run.
    TooManyHosts,
}

/// New hosts that redirects of start URLs may add as start hosts, per run.
pub const MAX_START_REDIRECT_HOSTS: usize = 10;

/// URLs queued in memory, in all, before hosts' queues go on in files (a
/// queued URL takes about 250 bytes: 20,000 take about 5 MB).
pub const MEMORY_QUEUE: usize = 20_000;
/// URLs a host keeps in memory however full the frontier is, so that a host
/// with a few URLs never waits for the disk.
const HOST_KEEP: usize = 64;
/// URLs read back from a host's file at a time.
const REFILL: usize = 1_000;
/// Hosts whose queues may go on in files at once (each holds a file open).
const MAX_SPILL_FILES: usize = 64;

/// One host's queue: its front in memory, its back in a file when the
/// frontier holds too many URLs in memory.
#[derive(Debug, Default)]
struct HostQueue {
    head: VecDeque<QueuedUrl>,
    tail: Option<spill::SpillFile>,
}

impl HostQueue {
    fn len(&self) -> usize {
        self.head.len() + self.tail.as_ref().map_or(0, spill::SpillFile::len)
    }

    fn spilled(&self) -> bool {
        self.tail.as_ref().is_some_and(|t| t.len() > 0)
    }
}

/// Where hosts' queues may go on, and how many do.
#[derive(Debug, Default)]
struct Spill {
    /// The directory for the files (the state directory); none: all in memory.
    dir: Option<PathBuf>,
    files: usize,
    /// A file could not be written: the frontier keeps everything in memory.
    failed: bool,
}

/// The frontier of one run.
#[derive(Debug)]
pub struct Frontier {
    seen: seen::Seen,
    queues: HashMap<HostKey, HostQueue>,
    /// Hosts with queued URLs, in round-robin order.
    ready: VecDeque<HostKey>,
    start_hosts: HashSet<HostKey>,
    admitted: u64,
    budget: u64,
    /// URLs refused because `max_pages` were admitted already.
    over_budget: u64,
    /// Hosts URLs were admitted for (start hosts included): at most
    /// `follow.max_hosts`, beyond the start hosts.
    hosts: HashSet<HostKey>,
    max_hosts: usize,
    /// Hosts refused because `max_hosts` hosts were taken already, by
    /// fingerprint (8 bytes a host, however many links name it).
    hosts_dropped: HashSet<u64>,
    queued: usize,
    /// Set when the target may not reach internal addresses.
    guard: Option<crate::address::AddressPolicy>,
    /// Start hosts added by redirects of start URLs.
    redirect_hosts: usize,
    /// URLs queued in memory (the others are in spill files).
    in_memory: usize,
    spill: Spill,
    /// The run's frontier is the database's (a shared run): URLs admitted
    /// here go there with the commit of the page that found them, and only
    /// URLs claimed from there are queued here. The database deduplicates
    /// what nodes admit and counts `max_pages`.
    shared: bool,
    /// On a shared run, the URLs admitted that no page's commit carries
    /// (the sitemaps'), while they are being collected.
    collected: Option<Vec<(String, u32)>>,
}

impl Frontier {
    /// A frontier seeded with the target's start URLs (always admitted, even
    /// when the follow rules would refuse them).
    pub fn new(target: &Target) -> Self {
        let mut f = Frontier::resuming(target);
        for url in &target.start_urls {
            if f.admitted < f.budget && f.seen.insert(url.as_str()) {
                f.push(url.clone(), 0);
            }
        }
        f
    }

    /// A frontier continuing an interrupted crawl, to be filled with
    /// [`Frontier::restore`]: only the start URLs are known yet.
    pub fn resuming(target: &Target) -> Self {
        Frontier {
            seen: seen::Seen::default(),
            queues: HashMap::new(),
            ready: VecDeque::new(),
            start_hosts: target.start_urls.iter().filter_map(HostKey::of).collect(),
            admitted: 0,
            budget: target.max_pages,
            over_budget: 0,
            hosts: target.start_urls.iter().filter_map(HostKey::of).collect(),
            max_hosts: target.follow.max_hosts,
            hosts_dropped: HashSet::new(),
            queued: 0,
            guard: None,
            redirect_hosts: 0,
            in_memory: 0,
            spill: Spill::default(),
            shared: false,
            collected: None,
        }
    }

    /// An empty frontier of a shared run (see [`Frontier::claimed`]): the
    /// database deduplicates what nodes admit and counts `max_pages`.
    pub fn shared(target: &Target) -> Self {
        Frontier {
            shared: true,
            budget: u64::MAX,
            ..Frontier::resuming(target)
        }
    }

    /// Queues a URL this node claimed from a shared run's frontier.
    pub fn claimed(&mut self, target: &Target, url: Url, depth: u32) {
        self.seen.insert(url.as_str());
        if let Some(host) = HostKey::of(&url) {
            // With same_host, a URL was admitted on a start host (one a
            // start URL redirected to included), as in `restore`.
            if target.follow.same_host {
                self.start_hosts.insert(host.clone());
            }
            self.hosts.insert(host);
        }
        self.enqueue(url, depth);
    }

    /// Takes back one URL of the interrupted crawl's frontier: it counts as
    /// seen and against the budget, and is queued again unless it is done.
    pub fn restore(&mut self, target: &Target, url: &str, entry: crate::store::FrontierEntry) {
        if !self.seen.insert(url) {
            return;
        }
        self.admitted += 1;
        let Ok(parsed) = Url::parse(url) else {
            return;
        };
        // Its host was taken when it was admitted (under the cap then).
        if let Some(host) = HostKey::of(&parsed) {
            self.hosts.insert(host);
        }
        // With same_host, every admitted URL was on a start host when it was
        // admitted, those a start URL redirected to included.
        if target.follow.same_host {
            if let Some(host) = HostKey::of(&parsed) {
                self.start_hosts.insert(host);
            }
        }
        if !entry.done {
            self.enqueue(parsed, entry.depth);
        }
    }

    /// Lets hosts' queues go on in unnamed files in `dir` (the state
    /// directory) once [`MEMORY_QUEUE`] URLs are queued in memory.
    pub fn spill_in(&mut self, dir: PathBuf) {
        self.spill.dir = Some(dir);
    }

    /// Whether the follow rules (hosts, allow, deny) exclude a URL.
    pub fn rules_refuse(&self, target: &Target, url: &Url) -> Option<Refusal> {
        let Some(host) = HostKey::of(url) else {
            return Some(Refusal::OffHost);
        };
        if target.follow.same_host && !self.start_hosts.contains(&host) {
            return Some(Refusal::OffHost);
        }
        path_refused(target, url)
    }

    /// Refuses links to internal raw-IP addresses from now on.
    pub fn guard(&mut self, policy: crate::address::AddressPolicy) {
        self.guard = Some(policy);
    }

    /// Offers a link found at depth `depth - 1`; queues it if the rules allow.
    pub fn offer(&mut self, target: &Target, url: Url, depth: u32) -> Result<(), Refusal> {
        if depth > target.follow.max_depth {
            return Err(Refusal::TooDeep);
        }
        if let Some(refusal) = self.rules_refuse(target, &url) {
            return Err(refusal);
        }
        self.admit(url, depth)
    }

    /// Queues where a page at `depth` redirects to another host, so that
    /// the new host's robots.txt and limits apply; returns the depth it was
    /// queued at. A start URL (or a page it redirected to) may redirect
    /// anywhere at depth 0, its host becoming a start host, up to
    /// [`MAX_START_REDIRECT_HOSTS`] new hosts; any other redirect is a link
    /// of the page.
    pub fn offer_redirect(
        &mut self,
        target: &Target,
        url: Url,
        depth: u32,
    ) -> Result<u32, Refusal> {
        let Some(host) = HostKey::of(&url) else {
            return Err(Refusal::OffHost);
        };
        if depth == 0 {
            let known = self.start_hosts.contains(&host);
            // A chain of start redirects across new hosts is cut after a few.
            if known || self.redirect_hosts < MAX_START_REDIRECT_HOSTS {
                if !known {
                    self.redirect_hosts += 1;
                    self.start_hosts.insert(host);
                }
                return self.admit(url, 0).map(|()| 0);
            }
        }
        // Any other redirect counts as a link, so that a chain of redirects
        // between hosts ends at max_depth.
        if depth + 1 > target.follow.max_depth {
            return Err(Refusal::TooDeep);
        }
        if let Some(refusal) = self.rules_refuse(target, &url) {
            return Err(refusal);
        }
        self.admit(url, depth + 1).map(|()| depth + 1)
    }

    /// Queues a URL the rules allow, unless it is internal, known or over budget.
    fn admit(&mut self, url: Url, depth: u32) -> Result<(), Refusal> {
        if self
            .guard
            .as_ref()
            .is_some_and(|g| g.refuses(&url).is_some())
        {
            return Err(Refusal::Internal);
        }
        if self.seen.contains(url.as_str()) {
            return Err(Refusal::AlreadySeen);
        }
        if self.admitted >= self.budget {
            self.over_budget += 1;
            return Err(Refusal::OverBudget);
        }
        self.take_host(&url)?;
        self.seen.insert(url.as_str());
        self.push(url, depth);
        Ok(())
    }

    /// Takes `url`'s host for this run, unless that would make more than
    /// `max_hosts` hosts: a site linking to millions of hosts would
    /// otherwise grow the run's per-host queues and figures without end.
    fn take_host(&mut self, url: &Url) -> Result<(), Refusal> {
        let Some(host) = HostKey::of(url) else {
            return Err(Refusal::OffHost);
        };
        if self.hosts.contains(&host) {
            return Ok(());
        }
        if self.hosts.len() >= self.max_hosts {
            self.hosts_dropped
                .insert(xxhash_rust::xxh3::xxh3_64(host.as_str().as_bytes()));
            return Err(Refusal::TooManyHosts);
        }
        self.hosts.insert(host);
        Ok(())
    }

    /// Whether a (normalised) URL was admitted or fetched already.
    pub fn has_seen(&self, url: &str) -> bool {
        self.seen.contains(url)
    }

    /// Marks a URL as fetched without queueing it (the target of a redirect).
    pub fn mark_seen(&mut self, url: &Url) {
        self.seen.insert(url.as_str());
    }

    fn push(&mut self, url: Url, depth: u32) {
        self.admitted += 1;
        if !self.shared {
            self.enqueue(url, depth);
        } else if let Some(collected) = &mut self.collected {
            collected.push((url.as_str().to_owned(), depth));
        }
    }

    /// On a shared run, starts collecting the URLs admitted (see
    /// [`Frontier::collected`]).
    pub fn collect(&mut self) {
        if self.shared {
            self.collected = Some(Vec::new());
        }
    }

    /// The URLs admitted since [`Frontier::collect`], for the database.
    pub fn collected(&mut self) -> Vec<(String, u32)> {
        self.collected.take().unwrap_or_default()
    }

    fn enqueue(&mut self, url: Url, depth: u32) {
        let Some(host) = HostKey::of(&url) else {
            return;
        };
        self.queue(QueuedUrl {
            url,
            host,
            depth,
            attempt: 0,
            requeues: 0,
        });
    }

    /// Puts `q` at the back of its host's queue: in memory, or in the host's
    /// file when its queue goes on there already, or when the frontier holds
    /// [`MEMORY_QUEUE`] URLs in memory and the host more than [`HOST_KEEP`].
    fn queue(&mut self, q: QueuedUrl) {
        self.queued += 1;
        let host = q.host.clone();
        let queue = self.queues.entry(host.clone()).or_default();
        if queue.len() == 0 {
            self.ready.push_back(host);
        }
        let full = self.in_memory >= MEMORY_QUEUE && queue.head.len() >= HOST_KEEP;
        if queue.spilled() || full {
            match spill::spill_to(&mut self.spill, queue, &q) {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => {
                    warn!(error = %e, "The frontier could not write its queue to the state \
                        directory; it keeps every queued URL in memory from now on.");
                    // What the files hold is still read back as the queues drain.
                    self.spill.failed = true;
                }
            }
        }
        queue.head.push_back(q);
        self.in_memory += 1;
    }

    /// The next URL of the first ready host for which `admit` grants a slot,
    /// with that slot. `admit` sees the host and the URL it would get. Hosts
    /// are tried round-robin, each at most once.
    pub fn pop_with<P>(
        &mut self,
        mut admit: impl FnMut(&HostKey, &QueuedUrl) -> Option<P>,
    ) -> Option<(QueuedUrl, P)> {
        for _ in 0..self.ready.len() {
            let host = self.ready.pop_front()?;
            let Some(queue) = self.queues.get_mut(&host) else {
                continue;
            };
            while queue.head.is_empty() && queue.spilled() {
                let (moved, dropped) = spill::refill(queue, &host, &mut self.spill);
                self.in_memory += moved;
                self.queued -= dropped;
            }
            let Some(next) = queue.head.front() else {
                // Its file could not be read: what it held is lost (logged).
                self.remove_host(&host);
                continue;
            };
            let Some(permit) = admit(&host, next) else {
                self.ready.push_back(host);
                continue;
            };
            let next = queue.head.pop_front()?;
            self.in_memory -= 1;
            self.queued -= 1;
            if queue.head.len() < HOST_KEEP / 2 && queue.spilled() {
                let (moved, dropped) = spill::refill(queue, &host, &mut self.spill);
                self.in_memory += moved;
                self.queued -= dropped;
            }
            if queue.len() == 0 {
                self.remove_host(&host);
            } else {
                self.ready.push_back(host);
            }
            return Some((next, permit));
        }
        None
    }

    /// Takes a host's queued URLs out of the frontier (a shared run's host
    /// that went to another node), unless part of its queue is in a file:
    /// then this node fetches them all.
    pub fn give_back(&mut self, host: &HostKey) -> Vec<QueuedUrl> {
        let Some(queue) = self.queues.get_mut(host).filter(|q| !q.spilled()) else {
            return Vec::new();
        };
        let urls: Vec<QueuedUrl> = queue.head.drain(..).collect();
        self.in_memory -= urls.len();
        self.queued -= urls.len();
        self.remove_host(host);
        self.ready.retain(|h| h != host);
        urls
    }

    /// Forgets an empty host queue, closing its file.
    fn remove_host(&mut self, host: &HostKey) {
        if let Some(queue) = self.queues.remove(host) {
            if queue.tail.is_some() {
                self.spill.files -= 1;
            }
        }
    }

    /// Up to `n` of the URLs to be handed out next, in about the order
    /// [`Frontier::pop_with`] hands them out (round-robin over the hosts'
    /// queues in memory), for reading ahead what their fetches need.
    pub fn upcoming(&self, n: usize) -> Vec<&QueuedUrl> {
        let mut out = Vec::with_capacity(n.min(self.in_memory));
        let mut rank = 0;
        while out.len() < n {
            let before = out.len();
            for host in &self.ready {
                if let Some(q) = self.queues.get(host).and_then(|q| q.head.get(rank)) {
                    out.push(q);
                    if out.len() == n {
                        break;
                    }
                }
            }
            if out.len() == before {
                break;
            }
            rank += 1;
        }
        out
    }

    /// Puts back a URL that is to be tried again (it stays admitted once).
    pub fn requeue(&mut self, q: QueuedUrl) {
        self.queue(q);
    }

    /// URLs queued in memory (the others wait in files).
    pub fn in_memory(&self) -> usize {
        self.in_memory
    }

    /// URLs waiting to be fetched.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// URLs admitted so far (counts against `max_pages`).
    pub fn admitted(&self) -> u64 {
        self.admitted
    }

    /// New URLs refused because `max_pages` were admitted already.
    pub fn over_budget(&self) -> u64 {
        self.over_budget
    }

    /// Distinct hosts refused because `follow.max_hosts` were taken already.
    pub fn hosts_dropped(&self) -> u64 {
        self.hosts_dropped.len() as u64
    }
}

/// Whether the allow and deny rules exclude a URL's path and query (the
/// host rules aside: a redirect on one host only needs these).
pub fn path_refused(target: &Target, url: &Url) -> Option<Refusal> {
    let follow = &target.follow;
    let path = &url[Position::BeforePath..];
    if !follow.allow.is_empty() && !follow.allow.iter().any(|re| re.is_match(path)) {
        return Some(Refusal::NotAllowed);
    }
    if follow.deny.iter().any(|re| re.is_match(path)) {
        return Some(Refusal::Denied);
    }
    None
}

#[cfg(test)]
mod tests;
