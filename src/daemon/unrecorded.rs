//! Monitor states the store could not record, mostly for lack of disk
//! space. The status shows them all the same (a frozen `overdue`, or no
//! `run_failed` for a run the full disk failed, would hide the trouble), the
//! failure is logged once until states are recorded again, and a run that
//! ended in an error fires `run_failed` even when its record could not say so.

use tracing::{info, warn};

use super::{Daemon, Event};
use crate::alert;
use crate::health::{Health, MonitorKind, MonitorState};
use crate::ids::TargetId;
use crate::store::now_ms;

/// States judged for `target` over `scope` that were not recorded.
#[derive(Debug)]
pub(super) struct Unrecorded {
    pub target: TargetId,
    pub scope: Vec<MonitorKind>,
    pub states: Vec<MonitorState>,
    /// Why the store refused them.
    pub error: String,
}

/// What the supervisor keeps of states it could not record.
#[derive(Debug, Default)]
pub(super) struct Pending {
    /// The failure was logged: not again until states are recorded.
    warned: bool,
    /// Run-end states to record once the store takes them again (the clock
    /// judges its own again at every tick).
    runs: Vec<Unrecorded>,
}

impl Daemon {
    /// A clock judgement that was not recorded: shown, and said once.
    pub(super) fn clock_unrecorded(&mut self, u: Unrecorded) {
        self.show_unrecorded(&u);
    }

    /// Run-end states that were not recorded: shown, said once, and kept
    /// to be recorded (and their alerts queued) once the store takes them.
    pub(super) fn unrecorded(&mut self, u: Unrecorded) {
        self.show_unrecorded(&u);
        let runs = &mut self.unrecorded.runs;
        runs.retain(|p| p.target != u.target || p.scope != u.scope);
        runs.push(u);
    }

    /// Shows unrecorded states in the status in place of those of their
    /// scope; says once that states cannot be recorded.
    fn show_unrecorded(&mut self, u: &Unrecorded) {
        if !self.unrecorded.warned {
            self.unrecorded.warned = true;
            warn!(target = %u.target, error = %u.error, "Monitor states cannot be recorded: the status \
                shows them, their alerts wait. Said once, until they are recorded again.");
        }
        if !self.set.targets.contains_key(&u.target) {
            return;
        }
        let now = now_ms();
        let shown = self.monitors.states.entry(u.target.clone()).or_default();
        let mut states = u.states.clone();
        for s in &mut states {
            // A state that did not change keeps when it began.
            s.since_ms = shown
                .iter()
                .find(|o| o.monitor == s.monitor && o.subject == s.subject && o.state == s.state)
                .map_or(now, |o| o.since_ms);
        }
        shown.retain(|o| !u.scope.contains(&o.monitor));
        shown.extend(states);
    }

    /// States were recorded: said once after they could not be, and the
    /// run-end states kept meanwhile are recorded now.
    pub(super) fn recorded_again(&mut self) {
        if !std::mem::take(&mut self.unrecorded.warned) {
            return;
        }
        info!("Monitor states are recorded again.");
        for u in std::mem::take(&mut self.unrecorded.runs) {
            self.observe(u.target, u.scope, u.states);
        }
    }

    /// A run ended in an error rather than with a record to judge (the
    /// store failed: a full disk): `run_failed` fires with the error.
    pub(super) fn run_errored(&mut self, id: &TargetId, error: &super::runs::RunFailed) {
        let enabled = self
            .set
            .targets
            .get(id)
            .is_some_and(|t| t.monitor.enabled(MonitorKind::RunFailed));
        if !enabled {
            return;
        }
        let state = MonitorState {
            target: id.clone(),
            monitor: MonitorKind::RunFailed,
            subject: String::new(),
            state: Health::Firing,
            value: 1.0,
            threshold: 0.0,
            message: format!("the run failed: {error}"),
            run: None,
            since_ms: 0,
        };
        self.observe(id.clone(), vec![MonitorKind::RunFailed], vec![state]);
    }

    /// Records run-end `states` of `scope` on the store thread; the answer
    /// comes back as [`Event::Judged`], or [`Event::Unrecorded`].
    fn observe(&mut self, id: TargetId, scope: Vec<MonitorKind>, states: Vec<MonitorState>) {
        let Some(target) = self.set.targets.get(&id).cloned() else {
            return;
        };
        let channels = self.set.channels_for(&target);
        let events = self.events.clone();
        let (tid, kinds, judged) = (id.clone(), scope.clone(), states.clone());
        let observed = self.store.call(move |s| {
            let config = &target.monitor;
            alert::observe(s, &tid, &channels, config, &kinds, judged, now_ms())
        });
        tokio::spawn(async move {
            let error = match observed.await {
                Ok(Ok(all)) => {
                    let _ = events.send(Event::Judged(id, all));
                    return;
                }
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            let _ = events.send(Event::Unrecorded(Unrecorded {
                target: id,
                scope,
                states,
                error,
            }));
        });
    }
}
