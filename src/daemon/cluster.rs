//! The daemon as a node of a cluster (`--cluster`): firings claimed once,
//! and a tick that stops the runs other nodes asked to stop and resumes
//! the runs whose node is gone. On sled a firing is always this daemon's
//! and the tick never runs.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::schedule::Firing;
use super::{mode_name, Daemon, Event};
use crate::crawl;
use crate::ids::TargetId;
use crate::store::{RunMode, SharedRun};

/// What the cluster tick found in the database.
pub(super) struct News {
    /// Runs of this node that another node asked to stop.
    stops: Vec<TargetId>,
    /// Runs whose node is gone (or handed them over) that this node took.
    orphans: Vec<TargetId>,
    /// Whether this node judges the clock monitors (`overdue`,
    /// `config_broken`) for the cluster.
    clock: bool,
    /// Per target, what the store holds of its monitors and its last
    /// completed run (other nodes' runs included).
    known: Vec<(TargetId, super::monitors::Known)>,
    /// Shared runs other nodes own, which this node may work on.
    shared: Vec<SharedRun>,
}

/// How often a node looks for stop requests and runs to resume: three
/// times per lease, so a run whose node is gone waits at most a third of
/// a lease more.
pub(super) fn tick_every(lease: Duration) -> Duration {
    (lease / 3).max(Duration::from_millis(200))
}

impl Daemon {
    /// A schedule fired: the firing is claimed in the store (once,
    /// cluster-wide), and the answer comes back as [`Event::Claimed`].
    pub(super) fn claim_firing(&self, firing: Firing) {
        let (id, mode, at) = (firing.target.clone(), firing.mode, firing.at);
        let call = self.store.call(move |s| s.claim_firing(&id, mode, at));
        let events = self.events.clone();
        tokio::spawn(async move {
            let claimed = match call.await {
                Ok(Ok(taken)) => Ok(taken),
                Ok(Err(e)) | Err(e) => Err(e.to_string()),
            };
            let _ = events.send(Event::Claimed(firing, claimed));
        });
    }

    /// The store answered a firing's claim: the run starts on the node
    /// that took it. A firing that could not be recorded still runs here
    /// (as a daemon on its own would), and says so.
    pub(super) fn claimed(&mut self, firing: Firing, claimed: Result<bool, String>) {
        match claimed {
            Ok(true) => {}
            Ok(false) => {
                info!(target = %firing.target, mode = mode_name(firing.mode), "Firing taken by another node of the cluster.");
                return;
            }
            Err(e) => {
                warn!(target = %firing.target, error = %e, "Cannot record the fire time; running it here.");
            }
        }
        if self.set.targets.contains_key(&firing.target) {
            let _ = self.request(&firing.target, firing.mode, false);
        }
    }

    /// Reads, on the store thread, the stop requests for this node's runs
    /// and the runs waiting for a node; the answer comes as [`Event::Cluster`].
    pub(super) fn cluster_tick(&self) {
        // Runs whose node is gone are taken here, on the store thread, only
        // as many as can start at once: a taken run is this node's to run.
        let candidates: Vec<TargetId> = self
            .set
            .targets
            .keys()
            .filter(|id| {
                !self.running.contains_key(*id) && !self.queue.iter().any(|(q, _)| q == *id)
            })
            .cloned()
            .collect();
        let room = self
            .opts
            .max_runs
            .max(1)
            .saturating_sub(self.running.len() + self.queue.len() + self.helping.len());
        let targets: Vec<TargetId> = self.set.targets.keys().cloned().collect();
        let call = self.store.call(move |s| {
            let known = targets
                .iter()
                .filter_map(|id| super::monitors::known(s, id).ok().map(|k| (id.clone(), k)))
                .collect();
            Ok::<_, crate::store::StoreError>(News {
                stops: s.take_stop_requests()?,
                orphans: s.claim_orphans(&candidates, room)?,
                clock: s.holds_role("clock")?,
                known,
                shared: s.shared_runs()?,
            })
        });
        let events = self.events.clone();
        tokio::spawn(async move {
            match call.await {
                Ok(Ok(news)) => {
                    let _ = events.send(Event::Cluster(news));
                }
                Ok(Err(e)) | Err(e) => {
                    warn!(error = %e, "Cannot read the cluster's requests; trying again.");
                }
            }
        });
    }

    pub(super) fn cluster_news(&mut self, news: News) {
        let fresh = tick_every(self.opts.lease) * 2;
        for (id, k) in news.known {
            self.known_elsewhere(id, k, fresh);
        }
        if news.clock != self.clock_role {
            info!(
                clock = news.clock,
                "This node {} the cluster's clock monitors.",
                if news.clock {
                    "now judges"
                } else {
                    "no longer judges"
                }
            );
            self.clock_role = news.clock;
        }
        for id in news.stops {
            if let Some(run) = self.running.get(&id) {
                info!(target = %id, "Stopping the run: another node of the cluster asked.");
                run.cancel.cancel();
                self.full_after.remove(&id);
            }
        }
        for id in news.orphans {
            if self.running.contains_key(&id) || !self.set.targets.contains_key(&id) {
                // Taken, but it cannot run here now: let it expire again.
                let gone = id.clone();
                self.store.send(move |s| s.forget_lease(&gone));
                continue;
            }
            // Incremental: a resumed run keeps the mode of the one it
            // resumes (a full request would abandon an incremental one).
            info!(target = %id, "Resuming a run whose node is gone.");
            let _ = self.request(&id, RunMode::Incremental, false);
        }
        self.help_runs(news.shared);
    }

    /// Works on the shared runs other nodes own, of targets configured here
    /// the same way (the same items, follow and strip_params, so that every
    /// node extracts the same items from a page), as many as `--max-runs`
    /// leaves room for. Work on a target no longer configured stops.
    fn help_runs(&mut self, shared: Vec<SharedRun>) {
        for (id, cancel) in &self.helping {
            if !self.set.targets.contains_key(id) {
                cancel.cancel();
            }
        }
        for run in shared {
            if self.helping.contains_key(&run.target)
                || self.running.contains_key(&run.target)
                || self.helped.contains(&run.run)
            {
                continue;
            }
            let Some(target) = self.set.targets.get(&run.target).cloned() else {
                continue;
            };
            if target.fingerprint != run.config {
                if self.differs.insert(run.run) {
                    warn!(target = %run.target, run = %run.run, "Not working on this run of another node: its configuration of the target (items, follow, strip_params) differs from this node's.");
                }
                continue;
            }
            if self.running.len() + self.helping.len() >= self.opts.max_runs.max(1) {
                break;
            }
            let cancel = CancellationToken::new();
            let (engine, store, events) = (
                self.engine.clone(),
                self.store.shared(),
                self.events.clone(),
            );
            let (id, token, run_target, run_id) = (
                run.target.clone(),
                cancel.clone(),
                run.target.clone(),
                run.run,
            );
            self.helpers.spawn(async move {
                let result = crawl::help(&engine, store, target, run, token).await;
                let result = result.map(|_| ()).map_err(|e| e.to_string());
                let _ = events.send(Event::Helped(id, run_id, result));
            });
            self.helping.insert(run_target, cancel);
        }
    }

    /// Work on another node's run ended: it was done, stopped, or the run
    /// was ended or taken over by another node.
    pub(super) fn helped(
        &mut self,
        id: TargetId,
        run: crate::ids::RunId,
        result: Result<(), String>,
    ) {
        self.helping.remove(&id);
        if let Some(mode) = self.after_help.remove(&id) {
            if self.set.targets.contains_key(&id) {
                let _ = self.request(&id, mode, false);
            }
        }
        match result {
            // Done: its owner ends it (a run is helped once per node).
            Ok(()) => {
                // Ended runs are never listed again: old ones can go.
                if self.helped.len() >= 4096 {
                    self.helped.clear();
                }
                self.helped.insert(run);
            }
            Err(e) => info!(target = %id, reason = %e, "Stopped working on another node's run."),
        }
    }

    /// Publishes this node's configuration of each target, for `status`.
    pub(super) fn publish_configs(&self) {
        if !self.store.shared().is_database() {
            return;
        }
        let configs: BTreeMap<String, String> = self
            .set
            .targets
            .values()
            .map(|t| (t.id.to_string(), t.fingerprint.clone()))
            .collect();
        self.store.send(move |s| {
            if let Err(e) = s.publish_configs(&configs) {
                warn!(error = %e, "Cannot publish this node's configs to the cluster.");
            }
        });
    }
}
