//! The store's side of the cluster: firings claimed once (a compare-and-set
//! on the target's last firing, on both backends), and on a database the
//! node's membership, its run leases and the fence every commit of a run
//! carries. On sled, one process owns the store: claims always succeed and
//! there are no other members.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::keyspace::{Batch, Keyspace};
use super::postgres::{Fence, LeaseStep, Tables};
use super::{fired_key, RunMode, Store, StoreError};
use crate::ids::{HostKey, RunId, TargetId};

pub use super::postgres::DEFAULT_LEASE;

/// A role's lease lasts at least this long (seconds).
const ROLE_MIN_SECS: f64 = 60.0;

/// A node of the cluster, as `crawld status` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub node: String,
    pub hostname: String,
    pub pid: u32,
    pub version: String,
    pub started_ms: u64,
    pub heartbeat_ms: u64,
    /// Its heartbeat is recent: its leases hold.
    pub alive: bool,
    /// Whether it is this process.
    pub this: bool,
    /// Per target, the fingerprint of its configuration of the target.
    pub configs: BTreeMap<String, String>,
    /// The runs it holds, with the run's id once recorded.
    pub runs: Vec<(TargetId, Option<RunId>)>,
    /// The hosts it leases: only it fetches from them.
    pub hosts: Vec<HostKey>,
    /// The shared runs of other nodes it works on.
    pub helps: Vec<(TargetId, RunId)>,
}

/// What a round of host leases found (see [`Store::sync_hosts`]).
#[derive(Debug, Default)]
pub struct HostSync {
    /// Held now; for a host just taken, the backoff end its last holder left.
    pub held: Vec<(HostKey, Option<u64>)>,
    /// Held, and another node has waited a turn for them: to give up.
    pub yield_now: Vec<HostKey>,
    /// Held, and another node waits for them: given up as soon as idle.
    pub contested: Vec<HostKey>,
}

/// Which firings a claim takes.
#[derive(Debug, Clone, Copy)]
enum Claim {
    /// A schedule's firing at its time: taken when the last firing recorded
    /// is earlier.
    Firing(DateTime<Utc>),
    /// A catch-up decided on the last firing read (none: never fired):
    /// taken when that is still the last firing.
    CatchUp(Option<DateTime<Utc>>),
}

impl Store {
    pub(super) fn tables(&self) -> Option<&Tables> {
        match &self.data {
            Keyspace::Postgres(t) => Some(t),
            Keyspace::Sled(_) => None,
        }
    }

    /// This process's id as a node of the cluster (a writer on a database).
    pub fn node_id(&self) -> Option<String> {
        self.tables()?.node().map(|n| n.id.clone())
    }

    /// Records the firing of `target`'s schedule of `mode` at `at`, unless
    /// another node recorded it (or a later one) first: whether this
    /// process took it, and starts its run.
    pub fn claim_firing(
        &self,
        target: &TargetId,
        mode: RunMode,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.claim(target, mode, Claim::Firing(at), at)
    }

    /// Records a catch-up of `target`'s full schedule decided on `seen`
    /// (the last full firing read then), unless another node recorded a
    /// firing since: whether this process takes the catch-up run.
    pub fn claim_catch_up(
        &self,
        target: &TargetId,
        seen: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        self.claim(target, RunMode::Full, Claim::CatchUp(seen), Utc::now())
    }

    fn claim(
        &self,
        target: &TargetId,
        mode: RunMode,
        claim: Claim,
        new: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        if self.reading {
            return Err(StoreError::ReadOnly {
                path: self.path.clone(),
            });
        }
        if matches!(claim, Claim::Firing(_)) && self.run_holder(target)?.is_some() {
            // Another node runs the target: the firing is its to take (it
            // skips it, or runs a full one after its incremental run).
            return Ok(false);
        }
        // The firing's time, then (on a database) a token of this claim: a
        // try repeated after a lost answer finds its own record.
        let mut mine = new.timestamp_millis().to_be_bytes().to_vec();
        if self.is_database() {
            mine.extend_from_slice(&rand::random::<u64>().to_be_bytes());
        }
        let taken = Arc::new(AtomicBool::new(false));
        let t = taken.clone();
        // Called again on a database's retry: the last call decides.
        let update = move |old: Option<&[u8]>| {
            if old == Some(mine.as_slice()) && mine.len() > 8 {
                t.store(true, Ordering::Relaxed);
                return Some(mine.clone());
            }
            let last = fired_at(old);
            let take = match claim {
                Claim::Firing(at) => last.is_none_or(|l| l < at),
                Claim::CatchUp(seen) => last == seen,
            };
            t.store(take, Ordering::Relaxed);
            match (take, old) {
                (true, _) => Some(mine.clone()),
                (false, old) => old.map(<[u8]>::to_vec),
            }
        };
        self.data
            .update_and_fetch(&fired_key(target, mode), update)?;
        self.data.flush()?;
        Ok(taken.load(Ordering::Relaxed))
    }

    /// Takes the lease on `target`'s run for this node (a database only).
    pub(super) fn claim_run(&self, target: &TargetId) -> Result<(), StoreError> {
        match self.tables() {
            Some(t) => t.claim_run(target.as_str()).map(|_| ()),
            None => Ok(()),
        }
    }

    /// Gives up the lease of a run that could not start.
    pub(super) fn release_run(&self, target: &TargetId) {
        if let Some(t) = self.tables() {
            if let Err(e) = t.release_run(target.as_str()) {
                tracing::warn!(target = %target, error = %e, "Could not give up the run's lease: another node takes it when it expires.");
            }
        }
    }

    /// Makes `batch` a write of `target`'s run: on a database its
    /// transaction checks that this node still holds the run's lease, and
    /// takes `step`. The run's end releases the lease, or hands the run
    /// over when this process stops.
    pub(super) fn fence(&self, batch: &mut Batch, target: &TargetId, step: FenceStep) {
        let Some(node) = self.tables().and_then(|t| t.node()) else {
            return;
        };
        let Some(generation) = node.generation(target.as_str()) else {
            return;
        };
        let step = match step {
            FenceStep::Commit => LeaseStep::Commit,
            FenceStep::Start(run) => LeaseStep::Start(run.0 as i64),
            FenceStep::End { interrupted } => {
                node.forget(target.as_str());
                if interrupted && node.hands_over() {
                    LeaseStep::HandOver
                } else {
                    LeaseStep::Release
                }
            }
        };
        batch.fence = Some(Fence {
            target: target.as_str().to_owned(),
            node: node.id.clone(),
            generation,
            step,
        });
    }

    /// From now on, runs this process interrupts (because it stops) are
    /// handed over to the other nodes, which resume them at once.
    pub fn hand_over_at_exit(&self) {
        if let Some(node) = self.tables().and_then(|t| t.node()) {
            node.set_hand_over();
        }
    }

    /// The live node other than this one that runs `target`, if any.
    pub fn run_holder(&self, target: &TargetId) -> Result<Option<String>, StoreError> {
        match self.tables() {
            Some(t) => t.run_holder(target.as_str()),
            None => Ok(None),
        }
    }

    /// Targets whose run waits for a node to resume it (its node is gone).
    pub fn orphaned_runs(&self) -> Result<Vec<TargetId>, StoreError> {
        match self.tables() {
            Some(t) => Ok(t.orphaned_runs()?.into_iter().map(TargetId::new).collect()),
            None => Ok(Vec::new()),
        }
    }

    /// Takes, among the runs waiting for a node, those of `candidates`
    /// (in their order), at most `room`: the runs this node now holds and
    /// must resume.
    pub fn claim_orphans(
        &self,
        candidates: &[TargetId],
        room: usize,
    ) -> Result<Vec<TargetId>, StoreError> {
        let Some(t) = self.tables() else {
            return Ok(Vec::new());
        };
        if room == 0 {
            return Ok(Vec::new());
        }
        let waiting = t.orphaned_runs()?;
        let mut taken = Vec::new();
        for id in candidates
            .iter()
            .filter(|c| waiting.iter().any(|w| w == c.as_str()))
        {
            if taken.len() >= room {
                break;
            }
            if t.claim_orphan(id.as_str())? {
                taken.push(id.clone());
            }
        }
        Ok(taken)
    }

    /// Stops renewing this node's lease on `target`'s run (a run that
    /// ended without recording its end): it expires, and the run waits
    /// for a node to resume it.
    pub fn forget_lease(&self, target: &TargetId) {
        if let Some(node) = self.tables().and_then(|t| t.node()) {
            node.forget(target.as_str());
        }
    }

    /// Asks the node that runs `target` to stop the run: that node, or
    /// `None` when no live node runs it.
    pub fn request_stop(&self, target: &TargetId) -> Result<Option<String>, StoreError> {
        match self.tables() {
            Some(t) => t.request_stop(target.as_str()),
            None => Ok(None),
        }
    }

    /// Stop requests other nodes left for runs this node holds.
    pub fn take_stop_requests(&self) -> Result<Vec<TargetId>, StoreError> {
        match self.tables() {
            Some(t) => Ok(t
                .take_stop_requests()?
                .into_iter()
                .map(TargetId::new)
                .collect()),
            None => Ok(Vec::new()),
        }
    }

    /// Publishes this node's configuration fingerprint of each target.
    pub fn publish_configs(&self, configs: &BTreeMap<String, String>) -> Result<(), StoreError> {
        match self.tables() {
            Some(t) => t.publish_configs(configs),
            None => Ok(()),
        }
    }

    /// Whether this process does `role`'s work for the cluster now: on a
    /// database, the node holding the role's lease (taken or renewed by
    /// this call, for the node's lease but at least a minute, so that a
    /// delivery in flight outlasts it); on sled, always.
    pub fn holds_role(&self, role: &str) -> Result<bool, StoreError> {
        let Some(t) = self.tables() else {
            return Ok(true);
        };
        let secs = t
            .node()
            .map_or(0.0, |n| n.lease.as_secs_f64())
            .max(ROLE_MIN_SECS);
        t.hold_role(role, secs)
    }

    /// One round of this node's host leases (see the database's
    /// `sync_hosts`): the hosts held after it, with the backoff end (ms
    /// since the epoch) the last holder left for those just taken, and the
    /// held hosts another node has waited `turn` for. On sled every host
    /// asked for is held.
    pub fn sync_hosts(
        &self,
        want: &[HostKey],
        keep: &[HostKey],
        release: &[(HostKey, Option<u64>)],
        turn: std::time::Duration,
    ) -> Result<HostSync, StoreError> {
        let name = |h: &HostKey| h.as_str().to_owned();
        // Rows are locked in one order by every node: no deadlock between two.
        let sorted = |hosts: &[HostKey]| {
            let mut v: Vec<String> = hosts.iter().map(name).collect();
            v.sort();
            v
        };
        let round = match self.tables() {
            Some(t) => {
                let mut r: Vec<(String, Option<i64>)> = release
                    .iter()
                    .map(|(h, u)| (name(h), u.map(|u| u.min(i64::MAX as u64) as i64)))
                    .collect();
                r.sort();
                t.sync_hosts(sorted(want), sorted(keep), r, turn)?
            }
            None => super::postgres::HostRound {
                held: want.iter().chain(keep).map(|h| (name(h), None)).collect(),
                ..Default::default()
            },
        };
        Ok(HostSync {
            held: round
                .held
                .into_iter()
                .map(|(h, u)| (HostKey::new(&h), u.map(|u| u.max(0) as u64)))
                .collect(),
            yield_now: round.yield_now.iter().map(HostKey::new).collect(),
            contested: round.contested.iter().map(HostKey::new).collect(),
        })
    }

    /// Whether this process shares hosts with other nodes (a writer on a
    /// database): its runs fetch from a host only while it leases it.
    pub fn leases_hosts(&self) -> bool {
        self.tables().is_some_and(|t| t.node().is_some())
    }

    /// How long this node's leases last without renewal.
    pub fn lease(&self) -> Option<std::time::Duration> {
        self.tables().and_then(|t| t.node()).map(|n| n.lease)
    }

    /// The cluster's nodes (none on sled).
    pub fn members(&self) -> Result<Vec<Member>, StoreError> {
        let Some(t) = self.tables() else {
            return Ok(Vec::new());
        };
        let me = self.node_id();
        Ok(t.members()?
            .into_iter()
            .map(|m| Member {
                this: me.as_deref() == Some(m.node.as_str()),
                node: m.node,
                hostname: m.hostname,
                pid: m.pid.max(0) as u32,
                version: m.version,
                started_ms: m.started_ms.max(0) as u64,
                heartbeat_ms: m.heartbeat_ms.max(0) as u64,
                alive: m.alive,
                configs: m.configs,
                runs: m
                    .runs
                    .into_iter()
                    .map(|(t, r)| (TargetId::new(&t), r.map(|r| RunId(r.max(0) as u64))))
                    .collect(),
                hosts: m.hosts.iter().map(HostKey::new).collect(),
                helps: m
                    .helps
                    .into_iter()
                    .map(|(t, r)| (TargetId::new(t), RunId(r.max(0) as u64)))
                    .collect(),
            })
            .collect())
    }
}

/// The time of a firing record: its first 8 bytes (big-endian ms); on a
/// database the claim's token follows.
pub(super) fn fired_at(value: Option<&[u8]>) -> Option<DateTime<Utc>> {
    let ms = value?.get(..8)?.try_into().ok().map(i64::from_be_bytes)?;
    DateTime::from_timestamp_millis(ms)
}

/// What a run's write does to its lease (see [`Store::fence`]).
#[derive(Debug, Clone, Copy)]
pub(super) enum FenceStep {
    Commit,
    Start(RunId),
    End { interrupted: bool },
}
