//! Starting runs (fresh, or resuming an interrupted crawl's frontier) and
//! reading runs and change events back.

use std::collections::HashMap;
use std::time::Duration;

use super::records::{
    now_ms, ChangeEvent, FrontierEntry, RunCounts, RunMode, RunRecord, RunStatus, FORMAT,
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

/// The persisted frontier of an interrupted crawl.
#[derive(Debug)]
pub struct Resume {
    /// Every URL admitted so far, done or not.
    pub entries: Vec<(String, FrontierEntry)>,
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
        let runs: Vec<RunRecord> = self.runs(target).collect::<Result<_, _>>()?;
        let by_id: HashMap<RunId, &RunRecord> = runs.iter().map(|r| (r.id, r)).collect();
        let id = self.next_run_id()?;
        let now = now_ms();
        let mut batch = sled::Batch::default();
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
        };
        let mut chain = vec![id];

        if let Some(prev) = runs
            .last()
            .filter(|r| matches!(r.status, RunStatus::Interrupted | RunStatus::Failed))
        {
            let entries = self.frontier(target, prev.crawl)?;
            let age =
                Duration::from_millis(now.saturating_sub(prev.ended_ms.unwrap_or(prev.started_ms)));
            let replaced = mode == RunMode::Full && prev.mode == RunMode::Incremental;
            if entries.is_empty() {
                // Nothing to continue (its frontier was already dropped).
            } else if age > policy.resume_within || replaced {
                let mut old = prev.clone();
                old.status = RunStatus::Abandoned;
                batch.insert(run_key(target, old.id), encode(self, &old)?);
                for (url, _) in &entries {
                    batch.remove(frontier_key(target, prev.crawl, url));
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
                resume = Some(Resume { entries, counts });
            }
        }
        if resume.is_none() {
            let entry = FrontierEntry {
                v: FORMAT,
                depth: 0,
                done: false,
            };
            for url in start_urls {
                batch.insert(frontier_key(target, id, url), encode(self, &entry)?);
            }
        }
        batch.insert(run_key(target, id), encode(self, &run)?);
        self.apply(batch)?;
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
        let new = self
            .data
            .update_and_fetch(NEXT_RUN, bump)
            .map_err(|e| self.write_err(e))?;
        let id = new
            .as_deref()
            .and_then(|b| b.try_into().ok())
            .map_or(1, u64::from_be_bytes);
        Ok(RunId(id))
    }

    /// Every URL of a crawl's frontier.
    pub fn frontier(
        &self,
        target: &TargetId,
        crawl: RunId,
    ) -> Result<Vec<(String, FrontierEntry)>, StoreError> {
        let prefix = frontier_prefix(target, crawl);
        let skip = prefix.len();
        self.data
            .scan_prefix(&prefix)
            .map(|kv| {
                let (k, v) = kv.map_err(|e| self.write_err(e))?;
                let url = String::from_utf8_lossy(&k[skip..]).into_owned();
                Ok((url, self.decode(&k, &v)?))
            })
            .collect()
    }

    /// A target's last run.
    pub fn last_run(&self, target: &TargetId) -> Result<Option<RunRecord>, StoreError> {
        self.runs(target).last().transpose()
    }

    /// One run of a target.
    pub fn run(&self, target: &TargetId, id: RunId) -> Result<Option<RunRecord>, StoreError> {
        self.get(&run_key(target, id))
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
