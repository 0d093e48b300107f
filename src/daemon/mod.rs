//! `crawld run`: the long-running service. One supervisor loop owns the
//! running configuration, the runs in progress and their queue; everything
//! else talks to it through channels:
//!
//! ```text
//! scheduler (one-shot jobs) ─ Firing ─┐
//! control socket ─── Request ─────────┤
//! config watcher, SIGHUP ─ reload ────┼─► supervisor ─► crawl::run (one task per run)
//! SIGTERM, SIGINT ─ shutdown ─────────┘
//! ```

pub mod control;
pub mod reload;
mod requests;
pub mod schedule;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use chrono::Utc;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{CatchUp, ConfigError, Target, TargetSet};
use crate::crawl::{self, Engine, Progress, ProgressSink};
use crate::error::Exit;
use crate::ids::TargetId;
use crate::store::{RunMode, RunRecord, RunStatus, Store};
use requests::mode_name;
use schedule::{Firing, Scheduler};

/// How the daemon is started.
#[derive(Debug, Clone)]
pub struct Options {
    pub configs: PathBuf,
    pub state: PathBuf,
    pub socket: PathBuf,
    /// Runs in progress across all targets, at most.
    pub max_runs: usize,
    /// How long running runs get to checkpoint on SIGTERM.
    pub grace: Duration,
    /// Watch the configs directory for changes.
    pub watch: bool,
}

/// Quiet period after the last change in the configs directory before a
/// reload, so that a `git checkout` of many files gives one reload.
const QUIET: Duration = Duration::from_millis(500);

/// The latest progress of a run, for `crawld status`.
#[derive(Default)]
struct LiveProgress(Mutex<Progress>);

impl ProgressSink for LiveProgress {
    fn update(&self, progress: &Progress) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = progress.clone();
    }
}

struct Running {
    mode: RunMode,
    cancel: CancellationToken,
    progress: Arc<LiveProgress>,
    started: Instant,
}

type RunResult = (TargetId, RunMode, Result<RunRecord, String>);

struct Daemon {
    opts: Options,
    store: Arc<Store>,
    engine: Arc<Engine>,
    set: TargetSet,
    errors: Vec<ConfigError>,
    stale: Vec<TargetId>,
    scheduler: Scheduler,
    running: HashMap<TargetId, Running>,
    queue: VecDeque<(TargetId, RunMode)>,
    /// Full firings that came during an incremental run of their target.
    full_after: HashSet<TargetId>,
    tasks: JoinSet<RunResult>,
    /// Which target each run task crawls, so a task that panics frees its target.
    task_targets: HashMap<tokio::task::Id, (TargetId, RunMode)>,
    /// Targets removed while running: their runs are stopping.
    stopping: HashSet<TargetId>,
}

fn fail(exit: Exit, message: impl std::fmt::Display) -> Exit {
    error!("{message}");
    eprintln!("error: {message}");
    exit
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(opts: Options) -> Exit {
    let store = match open_store(&opts).await {
        Ok(s) => Arc::new(s),
        Err(e) => {
            let exit = Exit::from(&e);
            return fail(exit, e);
        }
    };
    let last_good = opts.state.join("last-good");
    let loaded = match reload::load(&opts.configs, &last_good) {
        Ok(l) => l,
        Err(e) => return fail(Exit::Config, e),
    };
    let (fire_tx, mut fire_rx) = mpsc::unbounded_channel();
    let scheduler = match Scheduler::start(fire_tx).await {
        Ok(s) => s,
        Err(e) => return fail(Exit::Failed, e),
    };
    let (ctl_tx, mut ctl_rx) = mpsc::channel(64);
    let stop_server = CancellationToken::new();
    let server = match control::serve(&opts.socket, ctl_tx, stop_server.clone()).await {
        Ok(s) => s,
        // A socket path that cannot work is a configuration error: no restart fixes it.
        Err(e) => return fail(Exit::Config, e),
    };
    let (watch_tx, mut watch_rx) = mpsc::unbounded_channel();
    let _watcher = if opts.watch {
        match reload::watch(&opts.configs, watch_tx) {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(error = %e, "Config changes will need SIGHUP or `crawld reload`.");
                None
            }
        }
    } else {
        drop(watch_tx);
        None
    };
    let (mut term, mut int, mut hup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(t), Ok(i), Ok(h)) => (t, i, h),
        _ => return fail(Exit::Failed, "cannot install signal handlers"),
    };

    let mut d = Daemon {
        opts: opts.clone(),
        store,
        engine: Arc::new(Engine::default()),
        set: TargetSet::default(),
        errors: Vec::new(),
        stale: Vec::new(),
        scheduler,
        running: HashMap::new(),
        queue: VecDeque::new(),
        full_after: HashSet::new(),
        tasks: JoinSet::new(),
        task_targets: HashMap::new(),
        stopping: HashSet::new(),
    };
    d.apply(loaded).await;
    info!(
        targets = d.set.targets.len(),
        socket = %opts.socket.display(),
        pid = std::process::id(),
        "Daemon started."
    );
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let watchdog = watchdog_interval();
    let mut watchdog_tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    let mut reload_at: Option<tokio::time::Instant> = None;

    loop {
        let quiet = async {
            match reload_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                info!("SIGHUP: reloading the configs.");
                d.reload().await;
            }
            Some(()) = watch_rx.recv() => {
                reload_at = Some(tokio::time::Instant::now() + QUIET);
            }
            _ = quiet => {
                reload_at = None;
                d.reload().await;
            }
            Some(firing) = fire_rx.recv() => d.fired(firing).await,
            Some(req) = ctl_rx.recv() => d.control(req).await,
            Some(done) = d.tasks.join_next_with_id() => d.joined(done),
            _ = watchdog_tick.tick(), if watchdog.is_some() => {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
        }
    }

    // Shutdown: no new runs, running ones checkpoint within the grace period.
    info!(running = d.running.len(), grace = ?opts.grace, "Shutting down.");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    // Requests waiting in the channel get "shutting down" from their handlers.
    drop(ctl_rx);
    stop_server.cancel();
    d.scheduler.shutdown().await;
    d.queue.clear();
    d.full_after.clear();
    for r in d.running.values() {
        r.cancel.cancel();
    }
    let deadline = tokio::time::sleep(opts.grace);
    tokio::pin!(deadline);
    let mut exit = Exit::Ok;
    while !d.tasks.is_empty() {
        tokio::select! {
            Some(done) = d.tasks.join_next_with_id() => d.joined(done),
            _ = &mut deadline => {
                // What they committed is safe; they resume at the next start.
                warn!(left = d.tasks.len(), "Grace period over: runs still stopping are left mid-way.");
                break;
            }
            _ = term.recv() => { exit = Exit::Failed; break; }
            _ = int.recv() => { exit = Exit::Failed; break; }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    let _ = std::fs::remove_file(&opts.socket);
    info!("Daemon stopped.");
    exit
}

/// Opens the store, waiting a little for a command that briefly holds the
/// state dir (`crawld export` on it): exit 75 stops systemd's restarts.
async fn open_store(opts: &Options) -> Result<Store, crate::store::StoreError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Store::open(&opts.state) {
            Err(crate::store::StoreError::Locked { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            other => return other,
        }
    }
}

/// Half of systemd's watchdog period, when it asks for one.
fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(100)))
}

impl Daemon {
    fn last_good(&self) -> PathBuf {
        self.opts.state.join("last-good")
    }

    async fn reload(&mut self) {
        match reload::load(&self.opts.configs, &self.last_good()) {
            Ok(loaded) => {
                self.apply(loaded).await;
                // Errors were logged when they appeared; the count says they remain.
                info!(
                    targets = self.set.targets.len(),
                    errors = self.errors.len(),
                    "Configs reloaded."
                );
            }
            Err(e) => {
                // The directory itself is unreadable: keep everything as it is.
                error!(error = %e, "Reload failed; the running configuration stays.");
                self.errors = vec![e];
            }
        }
    }

    /// Makes `loaded` the running configuration, changing only what differs.
    async fn apply(&mut self, loaded: reload::Loaded) {
        reload::log_error_news(&self.errors, &loaded);
        let diff = reload::diff(&self.set, &loaded.set);
        for id in &diff.removed {
            info!(target = %id, "Target removed: unscheduled.");
            self.scheduler.disarm(id).await;
            self.queue.retain(|(t, _)| t != id);
            self.full_after.remove(id);
            if let Some(r) = self.running.get(id) {
                r.cancel.cancel();
                self.stopping.insert(id.clone());
            }
        }
        for t in &diff.changed {
            info!(target = %t.id, "Target changed: new schedules now, new settings from its next run.");
            self.scheduler.arm(t).await;
        }
        for t in &diff.added {
            info!(target = %t.id, "Target scheduled.");
            self.scheduler.arm(t).await;
        }
        let loaded_good = reload::Loaded {
            good: loaded.good,
            errors: loaded.errors.clone(),
            ..Default::default()
        };
        self.set = loaded.set;
        self.errors = loaded.errors;
        self.stale = loaded.stale;
        if let Err(e) = reload::save_last_good(&self.last_good(), &loaded_good) {
            warn!(error = %e, "Cannot keep the last good configs in the state dir.");
        }
        for t in &diff.added {
            self.catch_up(t.clone());
        }
    }

    /// `catch_up = "once"`: a target with no completed full run gets one now,
    /// and a full firing missed while the daemon was down runs once.
    fn catch_up(&mut self, target: Arc<Target>) {
        if target.catch_up == CatchUp::Skip || target.full_schedule.is_none() {
            return;
        }
        let runs: Vec<RunRecord> = self.store.runs(&target.id).filter_map(Result::ok).collect();
        let has_full = runs
            .iter()
            .any(|r| r.mode == RunMode::Full && r.status == RunStatus::Completed);
        let missed = match (
            self.store.last_fired(&target.id, RunMode::Full),
            &target.full_schedule,
        ) {
            (Ok(Some(last)), Some(schedule)) => {
                schedule::next_fire(schedule, target.timezone, last)
                    .is_some_and(|next| next < Utc::now())
            }
            _ => false,
        };
        if !has_full || missed {
            info!(target = %target.id, first = !has_full, "Catching up on a full run.");
            // Recorded as a firing, so a restart does not catch up again.
            if let Err(e) = self
                .store
                .set_last_fired(&target.id, RunMode::Full, Utc::now())
            {
                warn!(target = %target.id, error = %e, "Cannot record the catch-up.");
            }
            let _ = self.request(&target.id, RunMode::Full, false);
        }
    }

    async fn fired(&mut self, firing: Firing) {
        let Some(target) = self.set.targets.get(&firing.target).cloned() else {
            return;
        };
        if let Err(e) = self
            .store
            .set_last_fired(&firing.target, firing.mode, firing.at)
        {
            warn!(target = %firing.target, error = %e, "Cannot record the fire time.");
        }
        // Arm the next firing first, so a slow run never delays the schedule.
        self.scheduler.arm_after(&target, firing.at).await;
        let _ = self.request(&firing.target, firing.mode, false);
    }

    /// Starts, queues or refuses a run. Manual requests on a running target
    /// are refused; scheduled ones are skipped (a full one waits for the
    /// incremental run in progress).
    fn request(
        &mut self,
        id: &TargetId,
        mode: RunMode,
        manual: bool,
    ) -> Result<String, (StatusCode, String)> {
        if !self.set.targets.contains_key(id) {
            return Err((StatusCode::NOT_FOUND, format!("no target {id}")));
        }
        if let Some(r) = self.running.get(id) {
            let run = self
                .store
                .last_run(id)
                .ok()
                .flatten()
                .filter(|r| r.status == RunStatus::Running)
                .map(|r| format!("run {}", r.id))
                .unwrap_or_else(|| "a run".into());
            if manual {
                return Err((
                    StatusCode::CONFLICT,
                    format!(
                        "target {id} is running {run} ({:?}); stop it with `crawld stop-run {id}`",
                        r.mode
                    ),
                ));
            }
            if mode == RunMode::Full && r.mode == RunMode::Incremental {
                self.full_after.insert(id.clone());
                info!(target = %id, "Full firing during an incremental run: it starts right after.");
                return Ok(format!("{id}: full run starts after the current run"));
            }
            info!(target = %id, ?mode, "Firing skipped: the target is running.");
            return Ok(format!("{id}: skipped, already running"));
        }
        if let Some(queued) = self.queue.iter_mut().find(|(t, _)| t == id) {
            if mode == RunMode::Full {
                queued.1 = RunMode::Full;
            }
            return Ok(format!("{id}: already queued"));
        }
        if self.running.len() >= self.opts.max_runs.max(1) {
            self.queue.push_back((id.clone(), mode));
            info!(target = %id, ?mode, "Run queued: --max-runs reached.");
            return Ok(format!(
                "{id}: queued ({} runs in progress)",
                self.running.len()
            ));
        }
        self.start(id, mode);
        Ok(format!("{id}: {} run started", mode_name(mode)))
    }

    fn start(&mut self, id: &TargetId, mode: RunMode) {
        let Some(target) = self.set.targets.get(id).cloned() else {
            return;
        };
        let cancel = CancellationToken::new();
        let progress = Arc::new(LiveProgress::default());
        if let Some(max) = target.max_duration {
            // A run past max_duration stops (and checkpoints) so it cannot silence later firings.
            let c = cancel.clone();
            let tid = id.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(max) => {
                        if !c.is_cancelled() {
                            warn!(target = %tid, ?max, "Run reached max_duration: stopping it; it resumes at its next start.");
                            c.cancel();
                        }
                    }
                    _ = c.cancelled() => {}
                }
            });
        }
        let (engine, store, token, sink) = (
            self.engine.clone(),
            self.store.clone(),
            cancel.clone(),
            progress.clone(),
        );
        let tid = id.clone();
        let handle = self.tasks.spawn(async move {
            let result = crawl::run(&engine, store, target, mode, token.clone(), &*sink).await;
            // Stop the max_duration timer.
            token.cancel();
            (tid, mode, result.map_err(|e| e.to_string()))
        });
        self.task_targets.insert(handle.id(), (id.clone(), mode));
        self.running.insert(
            id.clone(),
            Running {
                mode,
                cancel,
                progress,
                started: Instant::now(),
            },
        );
    }

    /// A run task ended, normally or by a panic.
    fn joined(&mut self, done: Result<(tokio::task::Id, RunResult), tokio::task::JoinError>) {
        match done {
            Ok((task, result)) => {
                self.task_targets.remove(&task);
                self.finished(result);
            }
            Err(e) => {
                if let Some((id, mode)) = self.task_targets.remove(&e.id()) {
                    self.finished((id, mode, Err(format!("the run task failed: {e}"))));
                }
            }
        }
    }

    fn finished(&mut self, (id, mode, result): RunResult) {
        self.running.remove(&id);
        self.stopping.remove(&id);
        match result {
            Ok(run) => {
                info!(target = %id, run = %run.id, status = ?run.status, pages = run.counts.pages_fetched, "Run ended.")
            }
            Err(e) => error!(target = %id, ?mode, error = %e, "Run failed."),
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
