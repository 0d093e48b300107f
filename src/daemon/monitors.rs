//! The daemon's monitors. The run-end ones are judged on the store thread
//! when a run ends; the clock ones (`overdue`, `config_broken`) on a tick
//! between runs. Every judgement goes through `alert::observe`, which keeps
//! the states in the store and queues the alerts of those that changed; the
//! supervisor keeps the latest states for `status`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::warn;

use super::schedule::next_fire;
use super::unrecorded::Unrecorded;
use super::{Daemon, Event};
use crate::alert;
use crate::config::Target;
use crate::health::{MonitorKind, MonitorState};
use crate::ids::TargetId;
use crate::monitor;
use crate::store::{now_ms, RunRecord, RunStatus, Store, StoreError};

/// A firing clock monitor is observed again after this long, so that its
/// figure in the status stays fresh and a repeat is sent when due.
const CLOCK_REFRESH: Duration = Duration::from_secs(60);

/// The clock's tick: fine enough to notice a short schedule's grace, never
/// busier than once a second.
pub(super) fn tick_for(targets: &[Arc<Target>]) -> Duration {
    targets
        .iter()
        .filter_map(|t| interval(t).map(|i| i.mul_f64(t.monitor.overdue) / 10))
        .min()
        .unwrap_or(Duration::from_secs(30))
        .clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// The shortest interval between two firings of the target's schedules.
fn interval(t: &Target) -> Option<Duration> {
    let now = chrono::Utc::now();
    [&t.schedule, &t.full_schedule]
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let a = next_fire(s, t.timezone, now)?;
            let b = next_fire(s, t.timezone, a)?;
            (b - a).to_std().ok()
        })
        .min()
}

/// What the supervisor knows of the monitors.
#[derive(Default)]
pub(super) struct Monitors {
    /// Each target's monitors as last observed.
    pub states: HashMap<TargetId, Vec<MonitorState>>,
    /// Where each target's `overdue` counts from: the end of its last
    /// completed run, or before one [`Known::since_ms`].
    reference_ms: HashMap<TargetId, u64>,
    /// Targets whose stored monitors were read: the clock judges only them.
    known: HashSet<TargetId>,
    /// The clock monitors' firing flags as last observed, and when.
    clock_seen: HashMap<TargetId, (Vec<bool>, Instant)>,
    /// When this node last judged each target's monitors: in a cluster,
    /// what another node stored is newer only after that (see `cluster.rs`).
    judged_here: HashMap<TargetId, Instant>,
}

/// What the store thread reads for a target the daemon begins to watch.
#[derive(Default)]
pub(super) struct Known {
    pub states: Vec<MonitorState>,
    /// Where `overdue` counts from: the end of the last completed run, or
    /// since when a daemon first watched the target (kept in the store, so
    /// that a restart neither resets nor resolves the switch).
    pub since_ms: Option<u64>,
}

pub(super) fn known(store: &Store, id: &TargetId) -> Result<Known, StoreError> {
    let mut last_completed_ms = None;
    for r in store.runs(id) {
        let r = r?;
        if r.status == RunStatus::Completed {
            last_completed_ms = r.ended_ms.or(last_completed_ms);
        }
    }
    let since_ms = match last_completed_ms {
        Some(end) => end,
        None => store.watched_since(id, now_ms())?,
    };
    Ok(Known {
        states: store.monitor_states(id)?,
        since_ms: Some(since_ms),
    })
}

impl Daemon {
    /// In a cluster, what other nodes recorded of a target: its monitor
    /// states (judged where its run ran, or by the clock's node) and the
    /// end of its last completed run, from which `overdue` counts. States
    /// this node judged within `fresh` are kept: the read may predate them.
    pub(super) fn known_elsewhere(&mut self, id: TargetId, k: Known, fresh: std::time::Duration) {
        if !self.monitors.known.contains(&id) || !self.set.targets.contains_key(&id) {
            return;
        }
        if let Some(since) = k.since_ms {
            let r = self
                .monitors
                .reference_ms
                .entry(id.clone())
                .or_insert(since);
            *r = (*r).max(since);
        }
        let judged_lately = self
            .monitors
            .judged_here
            .get(&id)
            .is_some_and(|at| at.elapsed() < fresh);
        if !judged_lately && !self.running.contains_key(&id) && !k.states.is_empty() {
            self.monitors.states.insert(id, k.states);
        }
    }

    /// Reads the stored monitors of targets the daemon begins to watch. The
    /// clock judges a target only once they are read: judged before, a
    /// restart would resolve an `overdue` that still holds.
    pub(super) fn watch_monitors(&mut self, added: &[Arc<Target>]) {
        for t in added {
            let (id, events) = (t.id.clone(), self.events.clone());
            let read = self
                .store
                .call(move |s| known(s, &id).map_err(|e| e.to_string()));
            let id = t.id.clone();
            tokio::spawn(async move {
                let k = match read.await {
                    Ok(Ok(k)) => k,
                    Ok(Err(e)) => {
                        warn!(target = %id, error = %e, "Cannot read the target's monitors: overdue counts from now.");
                        Known::default()
                    }
                    Err(e) => {
                        warn!(target = %id, error = %e, "Cannot read the target's monitors: overdue counts from now.");
                        Known::default()
                    }
                };
                let _ = events.send(Event::Known(id, k));
            });
        }
    }

    pub(super) fn known(&mut self, id: TargetId, k: Known) {
        let reference = k.since_ms.unwrap_or_else(now_ms);
        // A run that completed meanwhile already set a later reference.
        let r = self
            .monitors
            .reference_ms
            .entry(id.clone())
            .or_insert(reference);
        *r = (*r).max(reference);
        self.monitors.known.insert(id.clone());
        if !k.states.is_empty() {
            self.monitors.states.entry(id).or_insert(k.states);
        }
    }

    /// Targets removed from the configs: nothing more to show or judge, and
    /// their open alerts are closed with a `resolved` that says the target
    /// went. What is queued still goes out. Call it while `self.set` still
    /// holds the target (its channels).
    pub(super) fn forget_monitors(&mut self, id: &TargetId) {
        let gone = id.clone();
        let channels = self
            .set
            .targets
            .get(id)
            .map(|t| self.set.channels_for(t))
            .unwrap_or_default();
        let kicker = self.delivery.kicker();
        self.store.send(move |s| {
            // In a cluster, a target another live node still has keeps its
            // alerts: that node watches it.
            let watched = s.members().is_ok_and(|members| {
                members
                    .iter()
                    .any(|m| m.alive && !m.this && m.configs.contains_key(gone.as_str()))
            });
            if watched {
                tracing::info!(target = %gone, "Target removed here; other nodes of the cluster still watch its monitors.");
                return;
            }
            match alert::forget(s, &gone, &channels, now_ms()) {
                Ok(()) => kicker.kick(),
                Err(e) => {
                    warn!(target = %gone, error = %e, "Cannot forget the removed target's monitors.")
                }
            }
        });
        self.monitors.states.remove(id);
        self.monitors.judged_here.remove(id);
        self.monitors.reference_ms.remove(id);
        self.monitors.known.remove(id);
        self.monitors.clock_seen.remove(id);
    }

    /// A run ended: judge its monitors on the store thread.
    pub(super) fn judge_run(&mut self, run: RunRecord, timed_out: bool) {
        let Some(target) = self.set.targets.get(&run.target).cloned() else {
            return;
        };
        if run.status == RunStatus::Completed {
            let end = run.ended_ms.unwrap_or_else(now_ms);
            let r = self
                .monitors
                .reference_ms
                .entry(run.target.clone())
                .or_insert(end);
            *r = (*r).max(end);
        }
        let channels = self.set.channels_for(&target);
        let events = self.events.clone();
        let judged = self.store.call(move |s| {
            let judged = monitor::judge_run(s, &target, &run, timed_out)
                .map_err(|e| (None, e.to_string()))?;
            // Judged but not recorded (a full disk): the status shows them all the same.
            let unrecorded = (judged.scope.clone(), judged.states.clone());
            alert::observe(
                s,
                &target.id,
                &channels,
                &target.monitor,
                &judged.scope,
                judged.states,
                now_ms(),
            )
            .map(|states| (target.id.clone(), states))
            .map_err(|e| (Some((target.id.clone(), unrecorded)), e.to_string()))
        });
        tokio::spawn(async move {
            match judged.await {
                Ok(Ok((id, states))) => {
                    let _ = events.send(Event::Judged(id, states));
                }
                Ok(Err((Some((id, (scope, states))), error))) => {
                    let _ = events.send(Event::Unrecorded(Unrecorded {
                        target: id,
                        scope,
                        states,
                        error,
                    }));
                }
                Ok(Err((None, e))) => warn!(error = %e, "The monitors of a run were not judged."),
                Err(e) => warn!(error = %e, "The monitors of a run were not judged."),
            }
        });
    }

    /// A clock judgement was not recorded: the next tick makes it again.
    pub(super) fn clock_failed(&mut self, unrecorded: Unrecorded) {
        self.monitors.clock_seen.remove(&unrecorded.target);
        self.clock_unrecorded(unrecorded);
    }

    /// New states from the store thread.
    pub(super) fn judged(&mut self, id: TargetId, states: Vec<MonitorState>) {
        self.recorded_again();
        if self.set.targets.contains_key(&id) {
            // observe answers the target's whole list, judged or not.
            self.monitors.judged_here.insert(id.clone(), Instant::now());
            self.monitors.states.insert(id, states);
            self.delivery.kick();
        }
    }

    /// The clock's tick: `overdue` and `config_broken` of every target,
    /// observed when a flag changed or a firing one is due for a refresh.
    pub(super) fn clock(&mut self) {
        // In a cluster one node judges them, or every node would notify.
        if !self.clock_role {
            return;
        }
        let now = now_ms();
        let errors = crate::config::errors_by_file(&self.errors);
        let targets: Vec<Arc<Target>> = self.set.targets.values().cloned().collect();
        for t in targets {
            // Judged before its stored monitors are read, a restarted
            // daemon would count `overdue` from now and resolve a switch
            // that still holds (a busy store thread makes that read late).
            if !self.monitors.known.contains(&t.id) {
                continue;
            }
            let reference = *self
                .monitors
                .reference_ms
                .entry(t.id.clone())
                .or_insert(now);
            let file_errors = if self.stale.contains(&t.id) {
                errors
                    .get(&t.file.display().to_string())
                    .cloned()
                    .unwrap_or_else(|| vec!["its file has errors".to_owned()])
            } else {
                Vec::new()
            };
            let states: Vec<MonitorState> = [
                monitor::overdue(&t, reference, now),
                monitor::config_broken(&t, &file_errors),
            ]
            .into_iter()
            .flatten()
            .collect();
            let flags: Vec<bool> = states.iter().map(MonitorState::firing).collect();
            let due = match self.monitors.clock_seen.get(&t.id) {
                None => true,
                Some((seen, at)) => {
                    *seen != flags || (flags.contains(&true) && at.elapsed() >= CLOCK_REFRESH)
                }
            };
            if !due {
                continue;
            }
            self.monitors
                .clock_seen
                .insert(t.id.clone(), (flags, Instant::now()));
            self.observe_clock(&t, states);
        }
    }

    fn observe_clock(&mut self, t: &Arc<Target>, states: Vec<MonitorState>) {
        let channels = self.set.channels_for(t);
        let (id, events) = (t.id.clone(), self.events.clone());
        let config = t.clone();
        let judged = states.clone();
        let observed = self.store.call(move |s| {
            alert::observe(
                s,
                &id,
                &channels,
                &config.monitor,
                &MonitorKind::CLOCK,
                states,
                now_ms(),
            )
            .map(|states| (id, states))
        });
        let target = t.id.clone();
        tokio::spawn(async move {
            let error = match observed.await {
                Ok(Ok((id, states))) => {
                    let _ = events.send(Event::Judged(id, states));
                    return;
                }
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            // Logged by the supervisor, once until states are recorded again.
            let _ = events.send(Event::ClockFailed(Unrecorded {
                target,
                scope: MonitorKind::CLOCK.to_vec(),
                states: judged,
                error,
            }));
        });
    }
}
