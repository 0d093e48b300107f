//! Starting runs (fresh, or resuming an interrupted crawl's frontier) and
//! reading runs and change events back.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::records::{
    now_ms, ChangeEvent, FrontierChunk, FrontierEntry, RunCounts, RunMode, RunRecord, RunStatus,
    FORMAT,
};
use super::{encode, event_prefix, frontier_key, frontier_prefix, run_key, Store, StoreError};
use crate::ids::{RunId, TargetId};

/// Meta record: the last run id handed out.
const NEXT_RUN: &[u8] = b"m\0next_run";

/// How runs resume and what the store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunPolicy {
    /// An interrupted run older than this is abandoned instead of resumed.
    pub resume_within: Duration,
    /// Past versions kept per item.
    pub keep_versions: usize,
    /// Run records (and their change events) kept per target.
    pub keep_runs: usize,
}

/// A run that was just recorded as running.
#[derive(Debug)]
pub struct RunStart {
    pub run: RunRecord,
    /// Ids of the runs of this crawl, the current one included.
    pub chain: Vec<RunId>,
    /// The frontier to continue, when the run resumes an interrupted one.
    pub resume: Option<Resume>,
    /// A run that was abandoned to start this one.
    pub abandoned: Option<RunId>,
}

/// An interrupted crawl to continue. Its frontier is read back with
/// [`Store::replay_frontier`].
#[derive(Debug)]
pub struct Resume {
    /// The first run of the crawl, which names its frontier journal.
    pub crawl: RunId,
    /// The next sequence number of the crawl's frontier journal.
    pub next_chunk: u64,
    /// Totals of the runs being continued.
    pub counts: RunCounts,
}

impl Store {
    /// Records a new run of `target`. It resumes the target's last run when
    /// that one was interrupted (or failed) less than `resume_within` ago,
    /// unless a full run is asked for and the interrupted one was incremental;
    /// such a run is marked abandoned and its frontier dropped.
    pub fn start_run(
        &self,
        target: &TargetId,
        mode: RunMode,
        start_urls: &[String],
        policy: &RunPolicy,
    ) -> Result<RunStart, StoreError> {
        // On a database, the run is this node's until it ends; nothing is
        // written (or read into a plan) before that is settled.
        self.claim_run(target)?;
        let started = self.start_claimed(target, mode, start_urls, policy);
        if started.is_err() {
            self.release_run(target);
        }
        started
    }

    fn start_claimed(
        &self,
        target: &TargetId,
        mode: RunMode,
        start_urls: &[String],
        policy: &RunPolicy,
    ) -> Result<RunStart, StoreError> {
        let mut runs: Vec<RunRecord> = self.runs(target).collect::<Result<_, _>>()?;
        let mut batch = super::keyspace::Batch::default();
        if self.is_database() {
            // This node holds the target's lease: a run still "running" was
            // left by a node that is gone (a sled store marks such runs
            // interrupted when it opens).
            for run in runs.iter_mut().filter(|r| r.status == RunStatus::Running) {
                run.status = RunStatus::Interrupted;
                run.ended_ms = Some(now_ms());
                batch.insert(run_key(target, run.id), encode(self, &*run)?);
            }
        }
        let by_id: HashMap<RunId, &RunRecord> = runs.iter().map(|r| (r.id, r)).collect();
        let id = self.next_run_id()?;
        let now = now_ms();
        let mut abandoned = None;
        let mut resume = None;
        let mut run = RunRecord {
            v: FORMAT,
            id,
            target: target.clone(),
            mode,
            status: RunStatus::Running,
            started_ms: now,
            ended_ms: None,
            resumed_from: None,
            crawl: id,
            counts: RunCounts::default(),
            error: None,
            breached: Vec::new(),
        };
        let mut chain = vec![id];

        if let Some(prev) = runs
            .last()
            .filter(|r| matches!(r.status, RunStatus::Interrupted | RunStatus::Failed))
        {
            let next_chunk = self.frontier_chunks(target, prev.crawl)?;
            let age =
                Duration::from_millis(now.saturating_sub(prev.ended_ms.unwrap_or(prev.started_ms)));
            let replaced = mode == RunMode::Full && prev.mode == RunMode::Incremental;
            if next_chunk == 0 {
                // Nothing to continue (its frontier was already dropped).
            } else if age > policy.resume_within || replaced {
                let mut old = prev.clone();
                old.status = RunStatus::Abandoned;
                batch.insert(run_key(target, old.id), encode(self, &old)?);
                for seq in 0..next_chunk {
                    batch.remove(frontier_key(target, prev.crawl, seq));
                }
                abandoned = Some(old.id);
            } else {
                run.mode = prev.mode;
                run.resumed_from = Some(prev.id);
                run.crawl = prev.crawl;
                let mut counts = RunCounts::default();
                let mut cursor = Some(prev);
                while let Some(r) = cursor {
                    chain.push(r.id);
                    counts.add(&r.counts);
                    cursor = r.resumed_from.and_then(|p| by_id.get(&p).copied());
                }
                resume = Some(Resume {
                    crawl: prev.crawl,
                    next_chunk,
                    counts,
                });
            }
        }
        // A target's first run has nothing to compare with: whatever was
        // asked, it fetches every page, so it is recorded (and judged) as
        // the full run it is.
        if resume.is_none() && !runs.iter().any(|r| r.status == RunStatus::Completed) {
            run.mode = RunMode::Full;
        }
        if resume.is_none() {
            let chunk = FrontierChunk {
                v: FORMAT,
                admitted: start_urls.iter().map(|u| (u.clone(), 0)).collect(),
                done: Vec::new(),
            };
            batch.insert(frontier_key(target, id, 0), encode(self, &chunk)?);
        }
        batch.insert(run_key(target, id), encode(self, &run)?);
        self.fence(&mut batch, target, super::cluster::FenceStep::Start(id));
        self.apply_marked(batch, super::Commit::Start)?;
        Ok(RunStart {
            run,
            chain,
            resume,
            abandoned,
        })
    }

    /// A new run id. The counter lives in the data tree, so that a restored
    /// backup goes on numbering after its own runs.
    fn next_run_id(&self) -> Result<RunId, StoreError> {
        let bump = |old: Option<&[u8]>| {
            let n = old
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_be_bytes);
            Some((n + 1).to_be_bytes().to_vec())
        };
        let new = self.data.update_and_fetch(NEXT_RUN, bump)?;
        let id = new
            .as_deref()
            .and_then(|b| b.try_into().ok())
            .map_or(1, u64::from_be_bytes);
        Ok(RunId(id))
    }

    /// The next sequence number of a crawl's frontier journal (0: it has
    /// none), from its keys alone.
    fn frontier_chunks(&self, target: &TargetId, crawl: RunId) -> Result<u64, StoreError> {
        let prefix = frontier_prefix(target, crawl);
        let mut next = 0;
        for kv in self.data.scan_prefix(&prefix) {
            let (k, _) = kv?;
            let seq = k
                .get(prefix.len()..)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_be_bytes);
            next = next.max(seq + 1);
        }
        Ok(next)
    }

    /// Reads a crawl's frontier back from its journal: `visit` is called
    /// once for each URL admitted, in the order they were admitted, with its
    /// depth and whether it is done. The journal is read twice, first for
    /// the URLs done (kept as fingerprints), so that a crawl of millions of
    /// URLs is never held in memory as strings.
    pub fn replay_frontier(
        &self,
        target: &TargetId,
        crawl: RunId,
        mut visit: impl FnMut(&str, FrontierEntry),
    ) -> Result<(), StoreError> {
        let prefix = frontier_prefix(target, crawl);
        let fingerprint = |url: &str| xxhash_rust::xxh3::xxh3_128(url.as_bytes());
        let mut done = HashSet::new();
        for kv in self.data.scan_prefix(&prefix) {
            let (k, v) = kv?;
            let chunk: FrontierChunk = self.decode(&k, &v)?;
            done.extend(chunk.done.iter().map(|u| fingerprint(u)));
        }
        for kv in self.data.scan_prefix(&prefix) {
            let (k, v) = kv?;
            let chunk: FrontierChunk = self.decode(&k, &v)?;
            for (url, depth) in &chunk.admitted {
                let done = done.contains(&fingerprint(url));
                visit(
                    url,
                    FrontierEntry {
                        depth: *depth,
                        done,
                    },
                );
            }
            // A URL done that no chunk admitted still counts as seen.
            for url in &chunk.done {
                visit(
                    url,
                    FrontierEntry {
                        depth: 0,
                        done: true,
                    },
                );
            }
        }
        Ok(())
    }

    /// The names of the targets that have runs in the store, in order.
    pub fn targets_with_runs(&self) -> Result<Vec<TargetId>, StoreError> {
        let mut names: Vec<TargetId> = Vec::new();
        for kv in self.data.scan_prefix([b'r', super::SEP]) {
            let (key, _) = kv?;
            let name = key
                .get(2..)
                .and_then(|rest| rest.split(|&b| b == super::SEP).next())
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            if names.last().is_none_or(|n| n.as_str() != name) {
                names.push(TargetId::new(name.into_owned()));
            }
        }
        Ok(names)
    }

    /// A target's last run.
    pub fn last_run(&self, target: &TargetId) -> Result<Option<RunRecord>, StoreError> {
        self.runs(target).last().transpose()
    }

    /// One run of a target.
    pub fn run(&self, target: &TargetId, id: RunId) -> Result<Option<RunRecord>, StoreError> {
        self.get(&run_key(target, id))
    }

    /// Records which monitors' conditions held when run `id` was judged
    /// (see [`RunRecord::breached`]); a run no longer kept is left alone.
    pub fn record_breaches(
        &self,
        target: &TargetId,
        id: RunId,
        breached: Vec<String>,
    ) -> Result<(), StoreError> {
        let Some(mut run) = self.run(target, id)? else {
            return Ok(());
        };
        if run.breached == breached {
            return Ok(());
        }
        run.breached = breached;
        let mut batch = super::keyspace::Batch::default();
        batch.insert(run_key(target, id), encode(self, &run)?);
        self.apply_marked(batch, super::Commit::End)
    }

    /// The change events of one run, in order.
    pub fn events(
        &self,
        target: &TargetId,
        run: RunId,
    ) -> impl Iterator<Item = Result<ChangeEvent, StoreError>> + '_ {
        self.scan(event_prefix(target, run))
    }
}
