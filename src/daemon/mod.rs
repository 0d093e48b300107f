//! `crawld run`: the long-running service. One supervisor loop owns the
//! running configuration, the runs in progress and their queue; everything
//! else talks to it through channels:
//!
//! ```text
//! scheduler (one-shot jobs) ─ Firing ─┐
//! control socket ─── Request ─────────┤
//! config watcher, SIGHUP ─ reload ────┼─► supervisor ─► crawl::run (one task per run)
//! SIGTERM, SIGINT ─ shutdown ─────────┤
//! store thread ─── Event ─────────────┘
//! ```
//!
//! The supervisor never touches the store on its loop: its store calls go to
//! the store thread ([`store_handle`]) and their results come back as events.

mod catch_up;
mod changes;
mod cluster;
mod fds;
mod monitors;
mod open_store;
mod origin;
pub mod reload;
mod requests;
mod runs;
pub mod schedule;
mod server;
mod socket;
mod store_handle;
mod unrecorded;
mod watch;
mod web_source;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::alert::{ChannelMap, Delivery};
use crate::config::{ConfigError, Target, TargetSet};
use crate::crawl::Engine;
use crate::error::Exit;
use crate::ids::TargetId;
use crate::query::mode_name;
use crate::store::RunMode;
use catch_up::catch_up_verdicts;
use runs::{RunResult, Running};
use schedule::{Firing, Scheduler};
use store_handle::StoreHandle;

/// How the daemon is started.
#[derive(Debug, Clone)]
pub struct Options {
    pub configs: PathBuf,
    pub state: PathBuf,
    /// The PostgreSQL database holding the store (`--cluster`), instead of
    /// sled in `state`.
    pub cluster: Option<String>,
    /// How long this node's leases last without a heartbeat (`--cluster`).
    pub lease: Duration,
    pub socket: PathBuf,
    /// Runs in progress across all targets, at most.
    pub max_runs: usize,
    /// How long running runs get to checkpoint on SIGTERM.
    pub grace: Duration,
    /// Watch the configs directory for changes.
    pub watch: bool,
    /// The dashboard and metrics listener (`--http`), if asked for.
    pub http: Option<crate::web::HttpConfig>,
}

/// Quiet period after the last change in the configs directory before a
/// reload, so that a `git checkout` of many files gives one reload.
const QUIET: Duration = Duration::from_millis(500);

/// What the store thread reports back to the supervisor.
enum Event {
    /// Which newly added targets need a catch-up run.
    CatchUp(catch_up::Verdicts),
    /// A target's stored monitors and last completed run, read when the
    /// daemon began to watch it.
    Known(TargetId, monitors::Known),
    /// New states of a target's monitors.
    Judged(TargetId, Vec<crate::health::MonitorState>),
    /// A target's clock monitors could not be recorded.
    ClockFailed(unrecorded::Unrecorded),
    /// A run's monitors were judged but could not be recorded.
    Unrecorded(unrecorded::Unrecorded),
    /// A firing's claim was answered: whether this node takes it.
    Claimed(Firing, Result<bool, String>),
    /// What the cluster tick found.
    Cluster(cluster::News),
    /// This node's work on another node's shared run ended.
    Helped(TargetId, crate::ids::RunId, Result<(), String>),
}

struct Daemon {
    opts: Options,
    store: StoreHandle,
    /// Results of store calls, back from the store thread.
    events: mpsc::UnboundedSender<Event>,
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
    /// Where the HTTP listener listens, for the status.
    http: Option<String>,
    monitors: monitors::Monitors,
    /// Monitor states that could not be recorded (a full disk).
    unrecorded: unrecorded::Pending,
    /// Alert delivery, and the channel set it delivers to.
    delivery: Delivery,
    channels: tokio::sync::watch::Sender<ChannelMap>,
    /// Whether this daemon judges the clock monitors: always on sled; in a
    /// cluster, the node holding the "clock" role (see `cluster.rs`).
    clock_role: bool,
    /// Shared runs of other nodes this node works on, by target.
    helping: HashMap<TargetId, CancellationToken>,
    helpers: JoinSet<()>,
    /// Shared runs this node does not work on because its configuration
    /// of the target differs (said once per run).
    differs: HashSet<crate::ids::RunId>,
    /// Shared runs this node worked on until no URL was left: not joined
    /// again while their owner ends them.
    helped: HashSet<crate::ids::RunId>,
    /// Runs to start here once this node stopped working on another node's
    /// run of the target (one loop per target on a node).
    after_help: HashMap<TargetId, RunMode>,
}

fn fail(exit: Exit, message: impl std::fmt::Display) -> Exit {
    error!("{message}");
    eprintln!("error: {}", crate::printable::text(&message.to_string()));
    exit
}

/// Everything the supervisor's loop waits on, and the socket server it stops.
struct Inputs {
    fire_rx: mpsc::UnboundedReceiver<Firing>,
    ctl_rx: mpsc::Receiver<server::Request>,
    watch_rx: mpsc::UnboundedReceiver<()>,
    events_rx: mpsc::UnboundedReceiver<Event>,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    /// Stops the socket server, which `server` runs, and the HTTP listener.
    stop_server: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    /// Removed at exit, if it is still ours.
    socket: socket::BoundSocket,
    web: Option<tokio::task::JoinHandle<()>>,
    watcher: Option<watch::ConfigWatcher>,
}

impl Inputs {
    /// Watches the directory the configs path names now, when it was
    /// replaced; true when it was.
    fn rearm(&mut self) -> bool {
        self.watcher
            .as_mut()
            .is_some_and(watch::ConfigWatcher::rearm)
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(opts: Options) -> Exit {
    fds::raise_open_files();
    let (mut d, mut inputs, loaded) = match start(&opts).await {
        Ok(started) => started,
        Err(exit) => return exit,
    };
    let added = d.apply(loaded).await;
    // At start-up the catch-up runs are decided before the first request is
    // answered, so that the first `crawld status` already shows them.
    let verdicts = catch_up_verdicts(&d.store, &added).await;
    d.caught_up(verdicts);
    info!(
        targets = d.set.targets.len(),
        socket = %opts.socket.display(),
        pid = std::process::id(),
        "Daemon started."
    );
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    d.serve(&mut inputs).await;
    d.shut_down(inputs).await
}

/// Opens the store, loads the configs, starts the scheduler, the socket,
/// the watcher and the signal handlers.
async fn start(opts: &Options) -> Result<(Daemon, Inputs, reload::Loaded), Exit> {
    // What can be refused is refused before the state dir is created.
    socket::check(&opts.socket)
        .await
        .map_err(|e| fail(e.exit(), e))?;
    if let Some(cfg) = &opts.http {
        crate::web::check(cfg).map_err(|e| fail(Exit::Config, e))?;
    }
    let store = open_store::open_store(opts)
        .await
        .map_err(|e| fail(Exit::from(&e), e))?;
    let store = StoreHandle::start(Arc::new(store));
    let loaded = reload::load(&opts.configs, &opts.state.join("last-good"))
        .map_err(|e| fail(Exit::Config, e))?;
    let (fire_tx, fire_rx) = mpsc::unbounded_channel();
    let scheduler = Scheduler::start(fire_tx)
        .await
        .map_err(|e| fail(Exit::Failed, e))?;
    let (ctl_tx, ctl_rx) = mpsc::channel(64);
    let stop_server = CancellationToken::new();
    let (http_addr, web) = start_web(opts, &ctl_tx, &store, &stop_server).await?;
    let (listener, socket) = socket::bind(&opts.socket)
        .await
        .map_err(|e| fail(e.exit(), e))?;
    let server = server::serve(listener, ctl_tx, stop_server.clone());
    let (watch_tx, watch_rx) = mpsc::unbounded_channel();
    let watcher = if opts.watch {
        watch::ConfigWatcher::start(&opts.configs, watch_tx)
            .inspect_err(
                |e| warn!(error = %e, "Config changes will need SIGHUP or `crawld reload`."),
            )
            .ok()
    } else {
        None
    };
    let (term, int, hup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(t), Ok(i), Ok(h)) => (t, i, h),
        _ => return Err(fail(Exit::Failed, "cannot install signal handlers")),
    };
    let (events, events_rx) = mpsc::unbounded_channel();
    let (channels, channels_rx) =
        tokio::sync::watch::channel(Arc::new(loaded.set.channels.clone()));
    let delivery = Delivery::start(
        store.shared(),
        channels_rx,
        CancellationToken::new(),
        origin::dashboard_url(http_addr.as_deref()),
    );
    let d = Daemon {
        opts: opts.clone(),
        store,
        events,
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
        http: http_addr,
        monitors: monitors::Monitors::default(),
        unrecorded: unrecorded::Pending::default(),
        delivery,
        channels,
        clock_role: opts.cluster.is_none(),
        helping: HashMap::new(),
        helpers: JoinSet::new(),
        differs: HashSet::new(),
        helped: HashSet::new(),
        after_help: HashMap::new(),
    };
    let inputs = Inputs {
        fire_rx,
        ctl_rx,
        watch_rx,
        events_rx,
        term,
        int,
        hup,
        stop_server,
        server,
        socket,
        web,
        watcher,
    };
    Ok((d, inputs, loaded))
}

/// The dashboard and metrics listener, when asked for: its address and task.
/// Bound before the socket, so that an unusable address stops the start
/// before anything listens; like a bad socket path, a configuration error.
async fn start_web(
    opts: &Options,
    ctl_tx: &mpsc::Sender<server::Request>,
    store: &StoreHandle,
    stop: &CancellationToken,
) -> Result<(Option<String>, Option<tokio::task::JoinHandle<()>>), Exit> {
    let Some(cfg) = &opts.http else {
        return Ok((None, None));
    };
    let bound = crate::web::bind(cfg)
        .await
        .map_err(|e| fail(Exit::Config, e))?;
    let addr = bound.addr.to_string();
    let source = web_source::WebSource {
        tx: ctl_tx.clone(),
        store: store.clone(),
    };
    Ok((
        Some(addr),
        Some(crate::web::serve(bound, source, stop.clone())),
    ))
}

/// Half of systemd's watchdog period, when it asks for one.
fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(100)))
}

impl Daemon {
    /// The supervisor's loop: it only dispatches, each event to its method.
    async fn serve(&mut self, inputs: &mut Inputs) {
        let watchdog = watchdog_interval();
        let mut watchdog_tick =
            tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
        let mut reload_at: Option<tokio::time::Instant> = None;
        let mut clock_every = self.clock_tick();
        let mut clock = tokio::time::interval(clock_every);
        clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut recheck = tokio::time::interval(watch::RECHECK);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let in_cluster = self.store.shared().is_database();
        let mut cluster_tick = tokio::time::interval(cluster::tick_every(self.opts.lease));
        cluster_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let quiet = async {
                match reload_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = inputs.term.recv() => break,
                _ = inputs.int.recv() => break,
                _ = inputs.hup.recv() => {
                    info!("SIGHUP: reloading the configs.");
                    inputs.rearm();
                    self.reload().await;
                }
                Some(()) = inputs.watch_rx.recv() => {
                    reload_at = Some(tokio::time::Instant::now() + QUIET);
                }
                _ = quiet => {
                    reload_at = None;
                    inputs.rearm();
                    self.reload().await;
                }
                _ = recheck.tick(), if inputs.watcher.is_some() => {
                    // The directory was replaced and its events missed.
                    if inputs.rearm() {
                        reload_at = Some(tokio::time::Instant::now() + QUIET);
                    }
                }
                Some(firing) = inputs.fire_rx.recv() => self.fired(firing).await,
                Some(req) = inputs.ctl_rx.recv() => self.control(req).await,
                Some(event) = inputs.events_rx.recv() => self.event(event),
                Some(done) = self.tasks.join_next_with_id() => self.joined(done),
                _ = cluster_tick.tick(), if in_cluster => self.cluster_tick(),
                _ = watchdog_tick.tick(), if watchdog.is_some() => {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                }
                _ = clock.tick() => {
                    self.clock();
                    // A reload may have brought a shorter schedule.
                    let every = self.clock_tick();
                    if every != clock_every {
                        clock_every = every;
                        clock = tokio::time::interval(every);
                        clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    }
                }
            }
        }
    }

    /// No new runs; running ones checkpoint within the grace period.
    async fn shut_down(mut self, mut inputs: Inputs) -> Exit {
        let grace = self.opts.grace;
        info!(running = self.running.len(), grace = ?grace, "Shutting down.");
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        // Requests waiting in the channel get "shutting down" from their handlers.
        drop(inputs.ctl_rx);
        inputs.stop_server.cancel();
        self.scheduler.shutdown().await;
        self.queue.clear();
        self.full_after.clear();
        // In a cluster, the runs this stop interrupts go on on other nodes.
        self.store.shared().hand_over_at_exit();
        for r in self.running.values() {
            r.cancel.cancel();
        }
        for c in self.helping.values() {
            c.cancel();
        }
        let deadline = tokio::time::sleep(grace);
        tokio::pin!(deadline);
        let mut exit = Exit::Ok;
        while !self.tasks.is_empty() || !self.helpers.is_empty() {
            tokio::select! {
                Some(done) = self.tasks.join_next_with_id() => self.joined(done),
                // What a node working on others' runs holds goes back to them.
                Some(_) = self.helpers.join_next() => {}
                _ = &mut deadline => {
                    // What they committed is safe; they resume at the next start.
                    warn!(left = self.tasks.len(), "Grace period over: runs still stopping are left mid-way.");
                    break;
                }
                _ = inputs.term.recv() => { exit = Exit::Failed; break; }
                _ = inputs.int.recv() => { exit = Exit::Failed; break; }
            }
        }
        self.delivery.shutdown().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), inputs.server).await;
        if let Some(web) = inputs.web {
            let _ = tokio::time::timeout(Duration::from_secs(2), web).await;
        }
        inputs.socket.remove();
        info!("Daemon stopped.");
        exit
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::CatchUp(verdicts) => self.caught_up(verdicts),
            Event::Known(id, known) => self.known(id, known),
            Event::Judged(id, states) => self.judged(id, states),
            Event::ClockFailed(u) => self.clock_failed(u),
            Event::Unrecorded(u) => self.unrecorded(u),
            Event::Claimed(firing, claimed) => self.claimed(firing, claimed),
            Event::Cluster(news) => self.cluster_news(news),
            Event::Helped(id, run, result) => self.helped(id, run, result),
        }
    }

    fn clock_tick(&self) -> Duration {
        let targets: Vec<Arc<Target>> = self.set.targets.values().cloned().collect();
        monitors::tick_for(&targets)
    }

    fn last_good(&self) -> PathBuf {
        self.opts.state.join("last-good")
    }

    async fn reload(&mut self) {
        match reload::load(&self.opts.configs, &self.last_good()) {
            Ok(loaded) => {
                let added = self.apply(loaded).await;
                if !added.is_empty() {
                    // Decided on the store thread; the verdicts come back as an event.
                    let verdicts = catch_up_verdicts(&self.store, &added);
                    let events = self.events.clone();
                    tokio::spawn(async move {
                        let _ = events.send(Event::CatchUp(verdicts.await));
                    });
                }
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
    /// Returns the targets it added.
    async fn apply(&mut self, loaded: reload::Loaded) -> Vec<Arc<Target>> {
        reload::log_error_news(&self.errors, &loaded);
        let diff = reload::diff(&self.set, &loaded.set);
        for id in &diff.removed {
            info!(target = %id, "Target removed: unscheduled.");
            self.forget_monitors(id);
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
        self.channels
            .send_replace(Arc::new(self.set.channels.clone()));
        self.errors = loaded.errors;
        self.stale = loaded.stale;
        if let Err(e) = reload::save_last_good(&self.last_good(), &loaded_good) {
            warn!(error = %e, "Cannot keep the last good configs in the state dir.");
        }
        self.watch_monitors(&diff.added);
        self.catch_up_notices(&diff.added);
        self.publish_configs();
        diff.added
    }

    async fn fired(&mut self, firing: Firing) {
        // A job that should have been removed (a failed removal, or a firing
        // already on its way during a reload) is not the current schedule.
        if !self.scheduler.is_current(&firing) {
            warn!(target = %firing.target, mode = mode_name(firing.mode), "A firing of a replaced or removed schedule: ignored.");
            return;
        }
        let Some(target) = self.set.targets.get(&firing.target).cloned() else {
            return;
        };
        // Arm the next firing first, so a slow run never delays the schedule.
        self.scheduler
            .arm_after(&target, firing.mode, firing.at)
            .await;
        // The run starts when the claim is answered (Event::Claimed).
        self.claim_firing(firing);
    }
}
