//! Runs in the daemon: a request starts, queues or refuses a run; a started
//! run is followed until its record is known (its real mode: a run that
//! resumes an interrupted one keeps that one's mode); an ended run frees its
//! target and starts what waited for it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::store_handle::StoreHandle;
use super::Daemon;
use crate::control::ApiError;
use crate::crawl::{self, Progress, ProgressSink};
use crate::error::Exit;
use crate::ids::{RunId, TargetId};
use crate::query::mode_name;
use crate::store::{now_ms, RunMode, RunRecord, RunStatus};

/// What is known of a started run's record.
#[derive(Debug, Clone)]
pub enum Recorded {
    /// Not recorded yet.
    Pending,
    Known(Box<RunRecord>),
    /// The store could not be read: the mode stays the requested one.
    Unreadable,
    /// The run ended before its record was seen.
    Ended,
}

/// The latest progress of a run, for `crawld status`; each update also
/// wakes the task that looks for the run's record.
#[derive(Default)]
pub(super) struct LiveRun {
    progress: Mutex<Progress>,
    updated: Notify,
    /// The record is known: updates need not wake anyone any more.
    known: AtomicBool,
}

impl ProgressSink for LiveRun {
    fn update(&self, progress: &Progress) {
        *self.progress.lock().unwrap_or_else(PoisonError::into_inner) = progress.clone();
        if !self.known.load(Ordering::Relaxed) {
            self.updated.notify_one();
        }
    }
}

impl LiveRun {
    pub(super) fn progress(&self) -> Progress {
        self.progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A run in progress.
pub(super) struct Running {
    /// The mode asked for; [`Running::mode`] is the one it has.
    requested: RunMode,
    pub cancel: CancellationToken,
    pub live: Arc<LiveRun>,
    pub record: watch::Receiver<Recorded>,
    pub started: Instant,
    /// Set when `max_duration` stopped the run.
    pub timed_out: Arc<AtomicBool>,
}

impl Running {
    /// The run's record, once known.
    pub(super) fn known(&self) -> Option<RunRecord> {
        match &*self.record.borrow() {
            Recorded::Known(r) => Some((**r).clone()),
            _ => None,
        }
    }

    /// The mode the run has: its record's once known, the requested one before.
    pub(super) fn mode(&self) -> RunMode {
        self.known().map_or(self.requested, |r| r.mode)
    }

    pub(super) fn run_id(&self) -> Option<RunId> {
        self.known().map(|r| r.id)
    }
}

/// A run task's end: its target, the requested mode and the run's record.
pub(super) type RunResult = (TargetId, RunMode, Result<RunRecord, RunFailed>);

/// Why a run task ended without a record: the run's own error, kept typed
/// so that its exit code (74 store, 75 locked, 1 otherwise) reaches the log
/// and the `run_failed` monitor, or the task itself failed (a panic).
#[derive(Debug, thiserror::Error)]
pub(super) enum RunFailed {
    #[error(transparent)]
    Run(#[from] crawl::RunError),
    #[error("the run task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

impl RunFailed {
    /// The run is another node's: it runs there, or was taken over.
    pub(super) fn runs_elsewhere(&self) -> bool {
        matches!(
            self,
            RunFailed::Run(crawl::RunError::Store(
                crate::store::StoreError::RunElsewhere { .. }
                    | crate::store::StoreError::LeaseLost { .. }
            ))
        )
    }

    /// The exit code `crawld crawl` would have ended with.
    pub(super) fn exit(&self) -> Exit {
        match self {
            RunFailed::Run(e) => e.exit(),
            RunFailed::Task(_) => Exit::Failed,
        }
    }
}

/// What a run request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Decision {
    /// A run task started.
    Started,
    /// `--max-runs` runs are in progress.
    Queued { running: usize },
    /// A run of the target was already queued; it now has this mode.
    AlreadyQueued { mode: RunMode },
    /// A scheduled full run waits for the incremental run in progress.
    FullAfter,
    /// A scheduled run skipped: the target is running.
    Skipped,
}

impl Daemon {
    /// Starts, queues or refuses a run. Manual requests on a running target
    /// are refused; scheduled ones are skipped (a full one waits for the
    /// incremental run in progress).
    pub(super) fn request(
        &mut self,
        id: &TargetId,
        mode: RunMode,
        manual: bool,
    ) -> Result<Decision, ApiError> {
        if !self.set.targets.contains_key(id) {
            return Err(ApiError::UnknownTarget {
                target: id.clone(),
                known: self.set.targets.keys().cloned().collect(),
            });
        }
        if let Some(r) = self.running.get(id) {
            let running = r.mode();
            if manual {
                return Err(ApiError::AlreadyRunning {
                    target: id.clone(),
                    run: r.run_id(),
                    mode: running,
                });
            }
            if mode == RunMode::Full && running == RunMode::Incremental {
                self.full_after.insert(id.clone());
                info!(target = %id, "Full firing during an incremental run: it starts right after.");
                return Ok(Decision::FullAfter);
            }
            info!(target = %id, mode = mode_name(mode), "Firing skipped: the target is running.");
            return Ok(Decision::Skipped);
        }
        if let Some(cancel) = self.helping.get(id) {
            // This node works on another node's run of the target (which
            // it now takes over, say): that work stops first.
            cancel.cancel();
            let after = self.after_help.entry(id.clone()).or_insert(mode);
            if mode == RunMode::Full {
                *after = RunMode::Full;
            }
            return Ok(Decision::Queued {
                running: self.running.len(),
            });
        }
        if let Some(queued) = self.queue.iter_mut().find(|(t, _)| t == id) {
            if mode == RunMode::Full {
                queued.1 = RunMode::Full;
            }
            return Ok(Decision::AlreadyQueued { mode: queued.1 });
        }
        if self.running.len() + self.helping.len() >= self.opts.max_runs.max(1) {
            self.queue.push_back((id.clone(), mode));
            info!(target = %id, mode = mode_name(mode), "Run queued: --max-runs reached.");
            return Ok(Decision::Queued {
                running: self.running.len(),
            });
        }
        self.start(id, mode);
        Ok(Decision::Started)
    }

    pub(super) fn start(&mut self, id: &TargetId, mode: RunMode) {
        let Some(target) = self.set.targets.get(id).cloned() else {
            return;
        };
        let cancel = CancellationToken::new();
        let ended = CancellationToken::new();
        let live = Arc::new(LiveRun::default());
        let timed_out = Arc::new(AtomicBool::new(false));
        if let Some(max) = target.max_duration {
            // A run past max_duration stops (and checkpoints) so it cannot silence later firings.
            let c = cancel.clone();
            let tid = id.clone();
            let flag = timed_out.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(max) => {
                        if !c.is_cancelled() {
                            warn!(target = %tid, ?max, "Run reached max_duration: stopping it; it resumes at its next start.");
                            flag.store(true, Ordering::Relaxed);
                            c.cancel();
                        }
                    }
                    _ = c.cancelled() => {}
                }
            });
        }
        let (record_tx, record) = watch::channel(Recorded::Pending);
        tokio::spawn(follow_record(
            self.store.clone(),
            id.clone(),
            live.clone(),
            ended.clone(),
            record_tx,
        ));
        let (engine, store, token, sink) = (
            self.engine.clone(),
            self.store.shared(),
            cancel.clone(),
            live.clone(),
        );
        let tid = id.clone();
        let handle = self.tasks.spawn(async move {
            // Also when the run panics: the record follower must not wait forever.
            let _ended = ended.drop_guard();
            let result = crawl::run(&engine, store, target, mode, token.clone(), &*sink).await;
            // Stop the max_duration timer.
            token.cancel();
            (tid, mode, result.map_err(RunFailed::from))
        });
        self.task_targets.insert(handle.id(), (id.clone(), mode));
        self.running.insert(
            id.clone(),
            Running {
                requested: mode,
                cancel,
                live,
                record,
                started: Instant::now(),
                timed_out,
            },
        );
    }

    /// A run task ended, normally or by a panic.
    pub(super) fn joined(
        &mut self,
        done: Result<(tokio::task::Id, RunResult), tokio::task::JoinError>,
    ) {
        match done {
            Ok((task, result)) => {
                self.task_targets.remove(&task);
                self.finished(result);
            }
            Err(e) => {
                if let Some((id, mode)) = self.task_targets.remove(&e.id()) {
                    self.finished((id, mode, Err(RunFailed::Task(e))));
                }
            }
        }
    }

    fn finished(&mut self, (id, mode, result): RunResult) {
        let running = self.running.remove(&id);
        let timed_out = running
            .as_ref()
            .is_some_and(|r| r.timed_out.load(Ordering::Relaxed));
        // The mode the run had (a resumed run keeps the interrupted one's).
        let mode = running.as_ref().map_or(mode, Running::mode);
        let removed = self.stopping.remove(&id);
        match result {
            Ok(run) => {
                info!(target = %id, run = %run.id, mode = mode_name(run.mode), status = crate::query::status_name(run.status), pages = run.counts.pages_fetched, "Run ended.");
                // A run stopped because the daemon stops, or its target went,
                // says nothing of the target's health.
                let stopped = run.status == RunStatus::Interrupted && !timed_out;
                if !removed {
                    self.notify_run(&run);
                }
                if !removed && !stopped {
                    self.judge_run(run, timed_out);
                }
            }
            Err(e) if e.runs_elsewhere() => {
                // Another node of the cluster runs it (or took it over):
                // nothing failed, and it is that node's to judge.
                info!(target = %id, mode = mode_name(mode), reason = %e, "Run left to another node.");
            }
            Err(e) => {
                error!(target = %id, mode = mode_name(mode), exit = e.exit() as u8, error = %e, "Run failed.");
                // Its record may not say so (a full disk): run_failed does.
                if !removed {
                    self.run_errored(&id, &e);
                }
            }
        }
        if self.full_after.remove(&id) && self.set.targets.contains_key(&id) {
            self.start(&id, RunMode::Full);
        }
        while self.running.len() < self.opts.max_runs.max(1) {
            let Some((next, mode)) = self.queue.pop_front() else {
                break;
            };
            if !self.running.contains_key(&next) {
                self.start(&next, mode);
            }
        }
    }
}

/// Finds a started run's record: after each progress update (the run is
/// recorded before it makes progress) until it is there, and once more when
/// the run ends. It is the target's last run, and it is running or started
/// after the task did: the target's earlier runs all ended before it.
async fn follow_record(
    store: StoreHandle,
    target: TargetId,
    live: Arc<LiveRun>,
    ended: CancellationToken,
    record: watch::Sender<Recorded>,
) {
    let spawned_ms = now_ms();
    let ours = move |r: &RunRecord| r.status == RunStatus::Running || r.started_ms >= spawned_ms;
    loop {
        let over = tokio::select! {
            biased;
            _ = live.updated.notified() => false,
            _ = ended.cancelled() => true,
        };
        let id = target.clone();
        let found = match store.call(move |s| s.last_run(&id)).await {
            Ok(Ok(last)) => last.filter(&ours),
            Ok(Err(e)) => {
                warn!(target = %target, error = %e, "Cannot read the run's record: status shows the requested mode.");
                record.send_replace(Recorded::Unreadable);
                return;
            }
            Err(gone) => {
                warn!(target = %target, error = %gone, "Cannot read the run's record: status shows the requested mode.");
                record.send_replace(Recorded::Unreadable);
                return;
            }
        };
        if let Some(run) = found {
            live.known.store(true, Ordering::Relaxed);
            record.send_replace(Recorded::Known(Box::new(run)));
            return;
        }
        if over {
            record.send_replace(Recorded::Ended);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    #[tokio::test]
    async fn a_failed_run_keeps_the_exit_code_of_its_error() {
        let locked = StoreError::Locked {
            dir: "/var/lib/crawld".into(),
            pid: "7".into(),
        };
        let failed = RunFailed::from(crawl::RunError::from(locked));
        assert_eq!(failed.exit(), Exit::Locked);
        assert!(failed.to_string().contains("crawld pid 7"), "{failed}");
        let full = StoreError::Io {
            what: "cannot write",
            path: "/var/lib/crawld/db".into(),
            source: std::io::Error::other("no space left on device"),
        };
        assert_eq!(
            RunFailed::from(crawl::RunError::from(full)).exit(),
            Exit::Store
        );
        let panicked = tokio::spawn(async { panic!("a bug") }).await.unwrap_err();
        let failed = RunFailed::Task(panicked);
        assert_eq!(failed.exit(), Exit::Failed);
        assert!(
            failed.to_string().starts_with("the run task failed"),
            "{failed}"
        );
    }
}
