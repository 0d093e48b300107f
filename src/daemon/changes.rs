//! The daemon's change notices (`[notify]`): queued on the store thread when
//! a run completes, and, for a target the daemon begins to watch, for its
//! last run if that completed after the last one queued (the daemon stopped
//! in between). The store's marker makes both idempotent.

use std::sync::Arc;

use tracing::{info, warn};

use super::Daemon;
use crate::alert;
use crate::config::Target;
use crate::store::{now_ms, RunRecord, RunStatus};

impl Daemon {
    /// A run ended: queue its change notices, then wake the delivery.
    pub(super) fn notify_run(&mut self, run: &RunRecord) {
        if run.status != RunStatus::Completed {
            return;
        }
        let Some(target) = self.set.targets.get(&run.target).cloned() else {
            return;
        };
        if target.notify.is_none() {
            return;
        }
        let channels = self.set.notify_channels_for(&target);
        let kicker = self.delivery.kicker();
        let run = run.clone();
        self.store.send(move |s| {
            match alert::queue_changes(s, &target, &run, &channels, now_ms()) {
                Ok(0) => {}
                Ok(n) => {
                    info!(target = %run.target, run = %run.id, messages = n, "Change notices queued.");
                    kicker.kick();
                }
                Err(e) => {
                    warn!(target = %run.target, run = %run.id, error = %e, "Cannot queue the run's change notices; the daemon tries again at its next start.")
                }
            }
        });
    }

    /// Targets the daemon begins to watch: queue what a stop between a run's
    /// end and its notices left unqueued.
    pub(super) fn catch_up_notices(&mut self, added: &[Arc<Target>]) {
        for t in added.iter().filter(|t| t.notify.is_some()) {
            let target = t.clone();
            let channels = self.set.notify_channels_for(t);
            let kicker = self.delivery.kicker();
            // Runs that start from now on are after [notify] was seen.
            let seen = now_ms();
            self.store.send(move |s| {
                match alert::catch_up_changes(s, &target, &channels, seen, now_ms()) {
                    Ok(0) => {}
                    Ok(n) => {
                        info!(target = %target.id, messages = n, "Change notices of the last run queued at start.");
                        kicker.kick();
                    }
                    Err(e) => {
                        warn!(target = %target.id, error = %e, "Cannot look for the last run's change notices.")
                    }
                }
            });
        }
    }
}
