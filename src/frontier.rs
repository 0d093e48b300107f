//! The frontier of one run: which URLs are still to fetch, breadth-first,
//! deduplicated, within the follow rules, depth and page budget.
//!
//! URLs are queued per host and handed out round-robin across hosts, so a
//! host whose politeness slots are all taken never blocks another.

use std::collections::{HashMap, HashSet, VecDeque};

use url::{Position, Url};

use crate::config::Target;
use crate::ids::HostKey;
// Re-exported: the crawl loop and extraction normalise through the frontier's name.
pub use crate::urlnorm::normalize_url;

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
}

/// New hosts that redirects of start URLs may add as start hosts, per run.
pub const MAX_START_REDIRECT_HOSTS: usize = 10;

/// The frontier of one run.
#[derive(Debug)]
pub struct Frontier {
    seen: HashSet<String>,
    queues: HashMap<HostKey, VecDeque<QueuedUrl>>,
    /// Hosts with queued URLs, in round-robin order.
    ready: VecDeque<HostKey>,
    start_hosts: HashSet<HostKey>,
    admitted: u64,
    budget: u64,
    /// URLs refused because `max_pages` were admitted already.
    over_budget: u64,
    queued: usize,
    /// Set when the target may not reach internal addresses.
    guard: Option<crate::address::AddressPolicy>,
    /// Start hosts added by redirects of start URLs.
    redirect_hosts: usize,
}

impl Frontier {
    /// A frontier seeded with the target's start URLs (always admitted, even
    /// when the follow rules would refuse them).
    pub fn new(target: &Target) -> Self {
        let mut f = Frontier {
            seen: HashSet::new(),
            queues: HashMap::new(),
            ready: VecDeque::new(),
            start_hosts: target.start_urls.iter().filter_map(HostKey::of).collect(),
            admitted: 0,
            budget: target.max_pages,
            over_budget: 0,
            queued: 0,
            guard: None,
            redirect_hosts: 0,
        };
        for url in &target.start_urls {
            if f.admitted < f.budget && f.seen.insert(url.as_str().to_owned()) {
                f.push(url.clone(), 0);
            }
        }
        f
    }

    /// A frontier continuing an interrupted crawl: every URL it had admitted
    /// counts as seen and against the budget; those not done are queued again,
    /// shallowest first.
    pub fn resume(target: &Target, entries: &[(String, crate::store::FrontierEntry)]) -> Self {
        let mut f = Frontier {
            seen: HashSet::with_capacity(entries.len()),
            queues: HashMap::new(),
            ready: VecDeque::new(),
            start_hosts: target.start_urls.iter().filter_map(HostKey::of).collect(),
            admitted: entries.len() as u64,
            budget: target.max_pages,
            over_budget: 0,
            queued: 0,
            guard: None,
            redirect_hosts: 0,
        };
        let mut todo: Vec<(u32, Url)> = Vec::new();
        // With same_host, every admitted URL was on a start host when it was
        // admitted, those a start URL redirected to included.
        for (url, entry) in entries {
            if target.follow.same_host {
                if let Some(host) = Url::parse(url).ok().as_ref().and_then(HostKey::of) {
                    f.start_hosts.insert(host);
                }
            }
            f.seen.insert(url.clone());
            if !entry.done {
                if let Ok(u) = Url::parse(url) {
                    todo.push((entry.depth, u));
                }
            }
        }
        todo.sort_by_key(|(depth, _)| *depth);
        for (depth, url) in todo {
            f.enqueue(url, depth);
        }
        f
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
        self.seen.insert(url.as_str().to_owned());
        self.push(url, depth);
        Ok(())
    }

    /// Whether a (normalised) URL was admitted or fetched already.
    pub fn has_seen(&self, url: &str) -> bool {
        self.seen.contains(url)
    }

    /// Marks a URL as fetched without queueing it (the target of a redirect).
    pub fn mark_seen(&mut self, url: &Url) {
        if !self.seen.contains(url.as_str()) {
            self.seen.insert(url.as_str().to_owned());
        }
    }

    fn push(&mut self, url: Url, depth: u32) {
        self.admitted += 1;
        self.enqueue(url, depth);
    }

    fn enqueue(&mut self, url: Url, depth: u32) {
        let Some(host) = HostKey::of(&url) else {
            return;
        };
        self.queued += 1;
        let queue = self.queues.entry(host.clone()).or_default();
        if queue.is_empty() {
            self.ready.push_back(host.clone());
        }
        queue.push_back(QueuedUrl {
            url,
            host,
            depth,
            attempt: 0,
            requeues: 0,
        });
    }

    /// The next URL of the first ready host for which `admit` grants a slot,
    /// with that slot. Hosts are tried round-robin, each at most once.
    pub fn pop_with<P>(
        &mut self,
        mut admit: impl FnMut(&HostKey) -> Option<P>,
    ) -> Option<(QueuedUrl, P)> {
        for _ in 0..self.ready.len() {
            let host = self.ready.pop_front()?;
            let Some(permit) = admit(&host) else {
                self.ready.push_back(host);
                continue;
            };
            let queue = self.queues.get_mut(&host)?;
            let next = queue.pop_front()?;
            if queue.is_empty() {
                self.queues.remove(&host);
            } else {
                self.ready.push_back(host);
            }
            self.queued -= 1;
            return Some((next, permit));
        }
        None
    }

    /// Puts back a URL that is to be tried again (it stays admitted once).
    pub fn requeue(&mut self, q: QueuedUrl) {
        self.queued += 1;
        let host = q.host.clone();
        let queue = self.queues.entry(host.clone()).or_default();
        if queue.is_empty() {
            self.ready.push_back(host);
        }
        queue.push_back(q);
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
