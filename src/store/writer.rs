//! Committing a run's pages: each batch of pages, with their items, change
//! events, frontier transitions and the run's counters, is one atomic sled
//! batch followed by a blocking flush. Called from a dedicated thread, never
//! from the async workers.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::commit::Building;
use super::keyspace::Batch;
use super::records::{
    now_ms, value_hash, ChangeEvent, ChangeKind, FrontierChunk, ItemRecord, ItemVersion, RunCounts,
    RunMode, RunRecord, RunStatus, FORMAT,
};
use super::runs::{RunPolicy, RunStart};
use super::{
    encode, event_key, event_prefix, failure_prefix, frontier_key, item_key, run_key, Store,
    StoreError,
};
use crate::extract::Item;
use crate::failure::Failure;
use crate::ids::RunId;

/// What the sweep of removed items reads of every item: most were seen by
/// the run and are passed by without decoding their values and history.
#[derive(serde::Deserialize)]
struct ItemHead {
    kind: String,
    key: String,
    page: String,
    run: RunId,
    removed_ms: Option<u64>,
}

/// Pages whose fate the sweep of removed items remembers, at most.
const SWEEP_PAGES: usize = 4096;

/// One URL's result, ready to be stored.
#[derive(Debug)]
pub struct PageCommit {
    pub url: String,
    pub depth: u32,
    /// Links this page admitted to the frontier, with their depth.
    pub admitted: Vec<(String, u32)>,
    pub fetched_ms: u64,
    pub outcome: PageOutcome,
}

/// What the fetch of a page brought.
#[derive(Debug)]
pub enum PageOutcome {
    /// A body: the page's record and items are replaced.
    Fetched {
        status: u16,
        etag: Option<String>,
        last_modified: Option<String>,
        body_hash: Option<String>,
        links: Vec<String>,
        items: Vec<Item>,
    },
    /// 304 Not Modified, or the same body as last time: the stored page and
    /// its items stay as they are; only new validators (ETag, Last-Modified)
    /// are written, when the server sent different ones.
    Unchanged {
        validators: Option<(Option<String>, Option<String>)>,
    },
    /// A transport error or an HTTP error status: the stored page stays as
    /// it was; the failure is recorded for this run and the URL marked done.
    Failed {
        kind: Failure,
        detail: String,
        status: Option<u16>,
    },
    /// 404 or 410: a failure, recorded like the others, that also says the
    /// page is gone: its record is replaced by one with this status and no
    /// items, so that a completed full run marks its items removed.
    Gone {
        status: u16,
        kind: Failure,
        detail: String,
    },
}

/// What one commit changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CommitStats {
    pub pages: u64,
    /// Pages of the commit that the server answered (the others failed
    /// before an answer, or were not fetched at all).
    pub fetched: u64,
    pub items_new: u64,
    pub items_changed: u64,
    pub items_unchanged: u64,
    pub items_duplicate: u64,
}

/// Writes one run's pages.
pub struct RunWriter {
    pub(super) store: Arc<Store>,
    pub(super) run: RunRecord,
    /// Ids of the runs of this crawl: an item one of them wrote was seen already.
    pub(super) chain: Vec<RunId>,
    policy: RunPolicy,
    next_event: u64,
    next_chunk: u64,
    /// The target configuration's fingerprint, stamped on every page written.
    pub(super) fingerprint: String,
    /// On a shared run, this node's side of it (see `store::shared`).
    share: Option<Share>,
}

/// A writer's side of a shared run.
#[derive(Debug)]
struct Share {
    /// It works on another node's run: it writes its part, not the run's record.
    helper: bool,
    /// The figures of this node's commits (a helper's part).
    part: RunCounts,
}

impl RunWriter {
    pub fn new(
        store: Arc<Store>,
        start: &RunStart,
        policy: RunPolicy,
        fingerprint: String,
    ) -> Self {
        RunWriter {
            store,
            run: start.run.clone(),
            chain: start.chain.clone(),
            policy,
            next_event: 0,
            next_chunk: start.resume.as_ref().map_or(1, |r| r.next_chunk),
            fingerprint,
            share: None,
        }
    }

    /// Makes this the writer of a shared run: its frontier is the
    /// database's. A `helper` works on another node's run: its change
    /// events are numbered in a range of their own, and it keeps its
    /// figures in its part of the run.
    pub fn shared(mut self, helper: bool) -> Self {
        if helper {
            self.next_event = (u64::from(rand::random::<u16>()) | 1) << 40;
        }
        self.share = Some(Share {
            helper,
            part: RunCounts::default(),
        });
        self
    }

    /// The figures this node committed to a run it helps.
    pub fn part(&self) -> RunCounts {
        self.share
            .as_ref()
            .map(|s| s.part.clone())
            .unwrap_or_default()
    }

    /// The run record with the counters committed so far.
    pub fn run(&self) -> &RunRecord {
        &self.run
    }

    /// Writes `pages` atomically and flushes. On error nothing of the batch
    /// is in the store and the counters are unchanged.
    pub fn commit(&mut self, pages: Vec<PageCommit>) -> Result<CommitStats, StoreError> {
        let mut chunk = FrontierChunk {
            v: FORMAT,
            ..Default::default()
        };
        let mut pages = pages;
        let stored = super::commit::stored_items(&self.store, &self.run.target, &mut pages)?;
        let mut building = Building {
            writer: self,
            batch: Batch::default(),
            stats: CommitStats::default(),
            next_event: self.next_event,
            pending: HashMap::new(),
            stored,
        };
        let mut done = Vec::new();
        for mut page in pages {
            if self.share.is_some() {
                done.push(super::shared::fingerprint(&page.url));
            } else {
                chunk.done.push(page.url.clone());
            }
            chunk.admitted.append(&mut page.admitted);
            building.page(page)?;
        }
        let Building {
            mut batch,
            stats,
            next_event,
            pending,
            ..
        } = building;
        let store = &*self.store;
        let target = &self.run.target;
        for (key, record) in &pending {
            batch.insert(key.as_slice(), encode(store, record)?);
        }
        let mut run = self.run.clone();
        add_stats(&mut run.counts, &stats);
        let mut part = None;
        match &self.share {
            None => batch.insert(
                frontier_key(target, self.run.crawl, self.next_chunk),
                encode(store, &chunk)?,
            ),
            Some(share) => {
                let mut counts = share.part.clone();
                add_stats(&mut counts, &stats);
                let mine = share.helper.then_some((run.id, target, &counts));
                batch.shared = Some(super::shared::step(run.crawl, done, &chunk.admitted, mine)?);
                part = Some(counts);
            }
        }
        if !self.share.as_ref().is_some_and(|s| s.helper) {
            batch.insert(run_key(target, run.id), encode(store, &run)?);
            store.fence(&mut batch, target, super::cluster::FenceStep::Commit);
        }
        store.apply(batch)?;
        if let (Some(share), Some(part)) = (&mut self.share, part) {
            share.part = part;
        }
        self.run = run;
        self.next_event = next_event;
        self.next_chunk += 1;
        Ok(stats)
    }

    /// The new record of an item and, when it is new or changed, its event.
    pub(super) fn update_item(
        &self,
        previous: Option<ItemRecord>,
        item: Item,
        page: &str,
        now: u64,
        stats: &mut CommitStats,
    ) -> (ItemRecord, Option<ChangeEvent>) {
        let hash = value_hash(&item.value);
        let Some(mut old) = previous else {
            stats.items_new += 1;
            let event = event(
                ChangeKind::Added,
                &item.kind,
                &item.key,
                Vec::new(),
                &item.value,
                page,
                now,
            );
            let record = ItemRecord {
                v: FORMAT,
                kind: item.kind,
                key: item.key,
                page: page.to_owned(),
                value: item.value,
                hash,
                first_seen_ms: now,
                last_seen_ms: now,
                last_changed_ms: now,
                run: self.run.id,
                changed_run: Some(self.run.id),
                removed_ms: None,
                history: Default::default(),
            };
            return (record, Some(event));
        };
        let mut change = None;
        if old.hash == hash && old.removed_ms.is_none() {
            stats.items_unchanged += 1;
        } else {
            stats.items_changed += 1;
            let (kind, fields) = if old.removed_ms.is_some() {
                (ChangeKind::Added, Vec::new())
            } else {
                (ChangeKind::Changed, changed_fields(&old.value, &item.value))
            };
            // The notices (`[notify]`) say old → new without reading history.
            let before: Map<String, Value> = if kind == ChangeKind::Changed {
                fields
                    .iter()
                    .map(|f| (f.clone(), old.value.get(f).cloned().unwrap_or(Value::Null)))
                    .collect()
            } else {
                Map::new()
            };
            let mut ev = event(kind, &old.kind, &old.key, fields, &item.value, page, now);
            ev.old = before;
            change = Some(ev);
            let value = std::mem::replace(&mut old.value, item.value);
            old.history.push_back(ItemVersion {
                value,
                hash: std::mem::replace(&mut old.hash, hash),
                run: old.made_by(),
                at_ms: old.last_changed_ms,
            });
            old.changed_run = Some(self.run.id);
            while old.history.len() > self.policy.keep_versions {
                old.history.pop_front();
            }
            old.last_changed_ms = now;
            old.removed_ms = None;
        }
        old.page = page.to_owned();
        old.last_seen_ms = now;
        old.run = self.run.id;
        (old, change)
    }

    /// Records the run's end. A completed full run marks removed the items
    /// whose page it fetched and which that page no longer yields; a
    /// completed run drops its crawl's frontier; old runs are pruned.
    pub fn finish(
        mut self,
        status: RunStatus,
        error: Option<String>,
        fetch: impl FnOnce(&mut RunRecord),
    ) -> Result<RunRecord, StoreError> {
        let store = self.store.clone();
        let target = self.run.target.clone();
        let mut batch = Batch::default();
        fetch(&mut self.run);
        self.run.status = status;
        self.run.error = error;
        self.run.ended_ms = Some(now_ms());
        if status == RunStatus::Completed {
            if self.run.mode == RunMode::Full {
                self.sweep_removed(&mut batch)?;
            }
            // The journal's keys are known: deleting them reads nothing (a
            // scan would pull every chunk, 150 MB for a million URLs, through
            // sled's cache).
            for seq in 0..self.next_chunk {
                batch.remove(frontier_key(&target, self.run.crawl, seq));
            }
            if self.share.is_some() {
                let mut end = super::shared::step(self.run.crawl, Vec::new(), &[], None)?;
                end.end = Some(self.chain.iter().map(|r| r.0 as i64).collect());
                batch.shared = Some(end);
            }
            let runs: Vec<RunRecord> = store.runs(&target).collect::<Result<_, _>>()?;
            // `runs` holds this run too.
            let excess = runs.len().saturating_sub(self.policy.keep_runs.max(1));
            for old in runs.iter().filter(|r| r.id != self.run.id).take(excess) {
                batch.remove(run_key(&target, old.id));
                for prefix in [
                    event_prefix(&target, old.id),
                    failure_prefix(&target, old.id),
                ] {
                    for kv in store.data.scan_prefix(prefix) {
                        let (k, _) = kv?;
                        batch.remove(k);
                    }
                }
            }
        }
        batch.insert(run_key(&target, self.run.id), encode(&store, &self.run)?);
        let interrupted = status == RunStatus::Interrupted;
        store.fence(
            &mut batch,
            &target,
            super::cluster::FenceStep::End { interrupted },
        );
        store.apply_marked(batch, super::Commit::End)?;
        Ok(self.run)
    }

    fn sweep_removed(&mut self, batch: &mut Batch) -> Result<(), StoreError> {
        let store = self.store.clone();
        let target = self.run.target.clone();
        let now = now_ms();
        let mut pages: HashMap<String, bool> = HashMap::new();
        let prefix = super::prefixed(b'i', &[target.as_str().as_bytes()]);
        for head in store.scan::<ItemHead>(prefix) {
            let head = head?;
            if head.removed_ms.is_some() || self.chain.contains(&head.run) {
                continue;
            }
            // Items of one page mostly come together: a bounded cache of
            // pages keeps a target's every URL out of memory.
            if pages.len() >= SWEEP_PAGES {
                pages.clear();
            }
            let fetched_here = match pages.get(&head.page) {
                Some(&f) => f,
                None => {
                    let f = store.page(&target, &head.page)?.is_some_and(|p| {
                        self.chain.contains(&p.run)
                            // A permanent redirect says the page has moved too.
                            && ((200..300).contains(&p.status)
                                || matches!(p.status, 301 | 308 | 404 | 410))
                    });
                    pages.insert(head.page, f);
                    f
                }
            };
            if !fetched_here {
                continue;
            }
            let Some(mut item) = store.item(&target, &head.kind, &head.key)? else {
                continue;
            };
            item.removed_ms = Some(now);
            let mut ev = event(
                ChangeKind::Removed,
                &item.kind,
                &item.key,
                Vec::new(),
                &item.value,
                &item.page,
                now,
            );
            ev.run = self.run.id;
            batch.insert(
                event_key(&target, self.run.id, self.next_event),
                encode(&store, &ev)?,
            );
            self.next_event += 1;
            batch.insert(
                item_key(&target, &item.kind, &item.key),
                encode(&store, &item)?,
            );
            self.run.counts.items_removed += 1;
        }
        Ok(())
    }
}

/// Adds what one commit changed to a run's figures. The run's own count of
/// pages is written when it ends; until then (and for a run killed before
/// its end) the committed pages stand for it.
fn add_stats(counts: &mut RunCounts, stats: &CommitStats) {
    counts.pages_committed += stats.pages;
    counts.pages_fetched += stats.fetched;
    counts.items_new += stats.items_new;
    counts.items_changed += stats.items_changed;
    counts.items_unchanged += stats.items_unchanged;
    counts.items_duplicate += stats.items_duplicate;
}

fn event(
    change: ChangeKind,
    kind: &str,
    key: &str,
    fields: Vec<String>,
    value: &Map<String, Value>,
    page: &str,
    at_ms: u64,
) -> ChangeEvent {
    ChangeEvent {
        v: FORMAT,
        run: RunId(0),
        change,
        kind: kind.to_owned(),
        key: key.to_owned(),
        fields,
        value: value.clone(),
        old: Map::new(),
        page: page.to_owned(),
        at_ms,
    }
}

/// Names of the fields whose values differ, in the new value's order.
fn changed_fields(old: &Map<String, Value>, new: &Map<String, Value>) -> Vec<String> {
    let mut fields: Vec<String> = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect();
    fields.extend(old.keys().filter(|k| !new.contains_key(*k)).cloned());
    fields
}
