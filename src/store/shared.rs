//! Runs shared by the nodes of a cluster. On a database written by a node,
//! a run's frontier is a table: every node with the target claims its URLs
//! in batches, fetches them from the hosts it was given, and commits each
//! batch (items, pages, links found, URLs done) in one transaction. The
//! node that started the run (its owner) writes its record and ends it
//! once no URL is left; the others keep their figures as parts of it.
//! On sled, and for readers, there is no sharing.

use super::postgres::{Claim, SharedStep};
use super::runs::RunStart;
use super::{RunCounts, RunRecord, Store, StoreError};
use crate::ids::{HostKey, RunId, TargetId};

pub use super::postgres::fingerprint;

/// A shared run another node owns, which this node may work on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedRun {
    pub target: TargetId,
    pub crawl: RunId,
    pub run: RunId,
    /// The fingerprint of the configuration the run extracts with.
    pub config: String,
}

impl Store {
    /// Whether this store's runs may be shared: a writer on a database.
    pub fn shares_runs(&self) -> bool {
        self.tables().is_some_and(|t| t.node().is_some())
    }

    /// Whether the run `run` (just started) is shared: its crawl is shared
    /// already (it resumes a shared run), or another live node of the
    /// cluster has the target with the same configuration `config`. A node
    /// on its own runs as on sled, with its frontier in memory.
    pub fn should_share(&self, run: &RunRecord, config: &str) -> Result<bool, StoreError> {
        match self.tables().filter(|t| t.node().is_some()) {
            Some(t) => t.should_share(run.target.as_str(), run.crawl.0 as i64, config),
            None => Ok(false),
        }
    }

    /// Makes the run `start` began a shared run, with the configuration
    /// `config`, and joins it. A crawl the database does not share yet
    /// (a new run, or one interrupted before runs were shared) gets its
    /// frontier from the crawl's journal.
    pub fn share_run(
        &self,
        run: &RunRecord,
        max_pages: u64,
        config: &str,
    ) -> Result<(), StoreError> {
        let Some(tables) = self.tables() else {
            return Ok(());
        };
        let mut seed = Vec::new();
        self.replay_frontier(&run.target, run.crawl, |url, entry| {
            let host = url::Url::parse(url)
                .ok()
                .and_then(|u| HostKey::of(&u))
                .map(|h| h.to_string())
                .unwrap_or_default();
            seed.push((url.to_owned(), host, entry.depth as i32, entry.done));
        })?;
        tables.share_run(
            run.crawl.0 as i64,
            run.target.as_str(),
            run.id.0 as i64,
            match run.mode {
                super::RunMode::Full => "full",
                super::RunMode::Incremental => "incremental",
            },
            max_pages.min(i64::MAX as u64) as i64,
            config,
            seed,
        )
    }

    /// The shared runs other live nodes own.
    pub fn shared_runs(&self) -> Result<Vec<SharedRun>, StoreError> {
        let Some(tables) = self.tables().filter(|t| t.node().is_some()) else {
            return Ok(Vec::new());
        };
        Ok(tables
            .shared_runs()?
            .into_iter()
            .map(|r| SharedRun {
                target: TargetId::new(r.target),
                crawl: RunId(r.crawl as u64),
                run: RunId(r.run as u64),
                config: r.config,
            })
            .collect())
    }

    /// Joins another node's shared run: what this node's writer needs (the
    /// run's record and the ids of its crawl's runs).
    pub fn join_run(&self, shared: &SharedRun) -> Result<RunStart, StoreError> {
        let tables = self.tables().ok_or_else(|| StoreError::ReadOnly {
            path: self.describe().into(),
        })?;
        let runs: Vec<RunRecord> = self.runs(&shared.target).collect::<Result<_, _>>()?;
        let run = runs
            .iter()
            .find(|r| r.id == shared.run)
            .cloned()
            .ok_or_else(|| StoreError::LeaseLost {
                place: self.describe(),
                target: shared.target.to_string(),
                holder: None,
            })?;
        let chain = runs
            .iter()
            .filter(|r| r.crawl == shared.crawl)
            .map(|r| r.id)
            .collect();
        tables.join_run(shared.crawl.0 as i64, shared.run.0 as i64)?;
        Ok(RunStart {
            run,
            chain,
            resume: None,
            abandoned: None,
        })
    }

    /// Claims up to `limit` URLs of a shared run for this node, and the
    /// links it `proposed` (found on its pages, to hosts it holds: see
    /// `Tables::claim_urls`).
    pub fn claim_urls(
        &self,
        crawl: RunId,
        run: RunId,
        limit: usize,
        proposed: &[(String, u32)],
    ) -> Result<Claim, StoreError> {
        match self.tables() {
            Some(t) => t.claim_urls(
                crawl.0 as i64,
                run.0 as i64,
                limit as i64,
                step(crawl, Vec::new(), proposed, None)?.found,
            ),
            None => Ok(Claim {
                drained: true,
                ..Claim::default()
            }),
        }
    }

    /// Admits URLs found outside a page's commit (the run's sitemaps) to a
    /// shared run's frontier: once, within its `max_pages`.
    pub fn admit_shared(&self, crawl: RunId, urls: &[(String, u32)]) -> Result<(), StoreError> {
        if urls.is_empty() || self.tables().is_none() {
            return Ok(());
        }
        let mut batch = super::keyspace::Batch::default();
        batch.shared = Some(step(crawl, Vec::new(), urls, None)?);
        self.apply(batch)
    }

    /// Gives URLs this node holds back to the run (their host went to
    /// another node).
    pub fn give_back(&self, crawl: RunId, urls: &[String]) -> Result<(), StoreError> {
        let Some(tables) = self.tables() else {
            return Ok(());
        };
        tables.give_back(
            crawl.0 as i64,
            urls.iter().map(|u| fingerprint(u)).collect(),
        )
    }

    /// Leaves a shared run: what this node holds goes back to the others,
    /// and its part keeps `counts` (a node that works on another's run).
    pub fn leave_run(
        &self,
        crawl: RunId,
        run: RunId,
        counts: Option<&RunCounts>,
    ) -> Result<(), StoreError> {
        let Some(tables) = self.tables() else {
            return Ok(());
        };
        let counts = counts.map(serde_json::to_string).transpose().ok().flatten();
        tables.leave_run(crawl.0 as i64, run.0 as i64, counts)
    }

    /// The other nodes' parts of the runs of `chain`, and whether every one
    /// of those nodes has left (or is gone).
    pub fn run_parts(&self, chain: &[RunId]) -> Result<(Vec<RunCounts>, bool), StoreError> {
        let Some(tables) = self.tables() else {
            return Ok((Vec::new(), true));
        };
        let (parts, all_left) = tables.run_parts(chain.iter().map(|r| r.0 as i64).collect())?;
        Ok((
            parts
                .iter()
                .filter_map(|p| serde_json::from_str(p).ok())
                .collect(),
            all_left,
        ))
    }
}

/// What a commit of a shared run adds to its transaction: the URLs done,
/// the links found (admitted by the database: once, within the budget)
/// and, for a node working on another's run, its part's figures.
pub(super) fn step(
    crawl: RunId,
    done: Vec<Vec<u8>>,
    found: &[(String, u32)],
    part: Option<(RunId, &TargetId, &RunCounts)>,
) -> Result<SharedStep, StoreError> {
    let found = found
        .iter()
        .filter_map(|(url, depth)| {
            let host = HostKey::of(&url::Url::parse(url).ok()?)?;
            Some((
                fingerprint(url),
                url.clone(),
                host.to_string(),
                *depth as i32,
            ))
        })
        .collect();
    let part = match part {
        Some((run, target, counts)) => Some((
            run.0 as i64,
            target.to_string(),
            serde_json::to_string(counts).map_err(|e| StoreError::Panicked {
                place: "encoding a run's part".into(),
                detail: e.to_string(),
            })?,
        )),
        None => None,
    };
    Ok(SharedStep {
        crawl: crawl.0 as i64,
        done,
        found,
        part,
        end: None,
    })
}
