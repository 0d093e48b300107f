//! A run shared by the nodes of a cluster, as one node's run loop sees it:
//! its frontier is the database's, from which the loop claims URLs a batch
//! at a time when its own queue runs low; the links it finds go to the
//! database with its commits. The run is over when no URL is left in the
//! database, queued or leased to any node (see `store::shared`).

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::debug;
use url::Url;

use crate::config::Target;
use crate::frontier::Frontier;
use crate::ids::{HostKey, RunId};
use crate::store::{Store, StoreError};

/// URLs claimed at a time.
const CLAIM: usize = 256;
/// The loop claims more when fewer than this many URLs are queued here.
const LOW: usize = 64;
/// How soon a node asks again after a claim that brought nothing (other
/// nodes' pages may still add links).
const IDLE_CLAIM: Duration = Duration::from_millis(200);
/// Links proposed with one claim, at most.
const MAX_PROPOSED: usize = 4096;
/// How often a node with work claims anyway, taking no URLs: the run's
/// hosts are shared again as nodes join or leave it.
const REBALANCE: Duration = Duration::from_secs(1);

/// A claim's answer (see [`crate::store::Claim`]).
pub(super) type Claimed = Result<crate::store::Claim, StoreError>;

type Claiming = Pin<Box<dyn Future<Output = Claimed> + Send + Sync>>;

/// Which shared run, and this node's place in it.
#[derive(Debug, Clone, Copy)]
pub struct Part {
    pub crawl: RunId,
    pub run: RunId,
    /// It works on another node's run (it does not end it).
    pub helper: bool,
}

/// The loop's claims on the shared frontier.
pub(super) struct Claims {
    pub(super) part: Part,
    claiming: Option<Claiming>,
    /// The last claim found no URL left in the run, anywhere.
    drained: bool,
    /// No claim before this (after one that brought nothing).
    next_at: Instant,
    /// The last claim (see [`REBALANCE`]).
    last: Instant,
    /// The run's hosts this node holds.
    hosts: HashSet<HostKey>,
    /// Links found here to those hosts, for the next claim to admit and
    /// lease to this node at once (see `Store::claim_urls`).
    proposed: Vec<(String, u32)>,
}

impl Claims {
    pub(super) fn new(part: Part) -> Self {
        Claims {
            part,
            claiming: None,
            drained: false,
            next_at: Instant::now(),
            last: Instant::now(),
            hosts: HashSet::new(),
            proposed: Vec::new(),
        }
    }

    /// Starts a claim when the frontier runs low and none is under way.
    /// With work enough here, a claim for no URL still comes every
    /// [`REBALANCE`], to share the run's hosts again. Links proposed make
    /// a node short of work claim at once.
    pub(super) fn claim_if_low(&mut self, frontier: &Frontier, store: &Arc<Store>) {
        let now = Instant::now();
        let low = frontier.queued() < LOW;
        let proposing = low && !self.proposed.is_empty();
        if self.claiming.is_some() || (now < self.next_at && !proposing) {
            return;
        }
        let limit = match low {
            true => CLAIM,
            false if now >= self.last + REBALANCE => 0,
            false => return,
        };
        self.last = now;
        let (crawl, run) = (self.part.crawl, self.part.run);
        let proposed = std::mem::take(&mut self.proposed);
        self.claiming =
            Some(Box::pin(store.call(move |store| {
                store.claim_urls(crawl, run, limit, &proposed)
            })));
    }

    /// Links a page of this node found: those to hosts it holds are
    /// proposed with the next claim, which leases them to it at once (a
    /// chain of pages then costs a claim per hop, not a commit and a claim).
    pub(super) fn propose(&mut self, admitted: &[(String, u32)]) {
        for (url, depth) in admitted {
            let held = url::Url::parse(url)
                .ok()
                .and_then(|u| HostKey::of(&u))
                .is_some_and(|h| self.hosts.contains(&h));
            // Past the cap, links wait in the database (the page's commit
            // admits them) for the next claim.
            if held && self.proposed.len() < MAX_PROPOSED {
                self.proposed.push((url.clone(), *depth));
            }
        }
    }

    /// The claim under way, when it answers (for the loop's `select!`).
    pub(super) async fn joined(&mut self) -> Option<Claimed> {
        let claimed = self.claiming.as_mut()?.await;
        self.claiming = None;
        Some(claimed)
    }

    /// When the next claim may start, if the loop must wake for it.
    pub(super) fn wake_at(&self) -> Option<Instant> {
        if self.claiming.is_some() {
            return None;
        }
        Some(self.next_at.max(self.last + REBALANCE))
    }

    /// A claim answered: its URLs join the frontier; the URLs queued here
    /// of hosts that went to another node go back to the database.
    pub(super) fn on_claimed(
        &mut self,
        target: &Target,
        frontier: &mut Frontier,
        claimed: Claimed,
        store: &Arc<Store>,
    ) -> Result<(), StoreError> {
        let claim = claimed?;
        self.drained = claim.drained && claim.urls.is_empty();
        if claim.urls.is_empty() {
            self.next_at = Instant::now() + IDLE_CLAIM;
        }
        debug!(urls = claim.urls.len(), drained = claim.drained, hosts = ?claim.hosts, "Claimed URLs of the shared run.");
        if !claim.drained {
            let hosts: HashSet<HostKey> = claim
                .hosts
                .iter()
                .map(|h| HostKey::new(h.clone()))
                .collect();
            let gone: Vec<HostKey> = self.hosts.difference(&hosts).cloned().collect();
            self.hosts = hosts;
            let back: Vec<String> = gone
                .iter()
                .flat_map(|h| frontier.give_back(h))
                .map(|q| q.url.to_string())
                .collect();
            if !back.is_empty() {
                debug!(urls = back.len(), hosts = ?gone, "URLs of hosts now another node's go back.");
                let crawl = self.part.crawl;
                let given = store.call(move |s| s.give_back(crawl, &back));
                tokio::spawn(async move {
                    if let Err(e) = given.await {
                        tracing::warn!(error = %e, "Could not give URLs of the run back: they go back when this node's lease expires.");
                    }
                });
            }
        }
        for (url, depth, _) in claim.urls {
            if let Ok(url) = Url::parse(&url) {
                frontier.claimed(target, url, depth);
            }
        }
        Ok(())
    }

    /// Whether the run is over for this node: the database has no URL left
    /// and none is being claimed.
    pub(super) fn drained(&self) -> bool {
        self.drained && self.claiming.is_none()
    }

    /// Something was committed: the run may have new links, so the next
    /// claim looks again.
    pub(super) fn committed(&mut self) {
        self.drained = false;
        self.next_at = Instant::now();
    }
}
