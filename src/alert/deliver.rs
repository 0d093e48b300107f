//! Delivery of the store's outbox: [`Delivery`] for the daemon (one task per
//! channel, so that a channel that is down never slows another, and the
//! crawl never waits on any), and [`deliver_pending`] for one pass with a
//! deadline (`crawld crawl --alert`).
//!
//! Notices queued for a channel that is no longer configured are dropped,
//! with a warning, when the channel set is applied: the configuration says
//! where alerts go, and a channel that is gone has nowhere to send them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use super::queue::{with_counters, Backoff, ChannelQueue, Stats, Step};
use super::send::Sender;
use crate::config::Channel;
use crate::control::status::ChannelStatus;
use crate::ids::ChannelName;
use crate::store::{now_ms, Store, StoreError};

/// The channels as configured, shared with the delivery.
pub type ChannelMap = Arc<BTreeMap<ChannelName, Arc<Channel>>>;

/// How often an idle queue looks at the store even without a kick.
const POLL: Duration = Duration::from_secs(30);
/// The wait after the store failed before a queue tries it again.
const STORE_RETRY: Duration = Duration::from_secs(60);
/// How long [`Delivery::shutdown`] waits for deliveries in flight.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// The daemon's delivery of queued alerts.
pub struct Delivery {
    stats: Stats,
    channels: watch::Receiver<ChannelMap>,
    kick: watch::Sender<u64>,
    cancel: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Delivery {
    /// Starts delivering, with the default retry backoff; every notice
    /// names `dashboard`, the daemon's dashboard, when there is one.
    pub fn start(
        store: Arc<Store>,
        channels: watch::Receiver<ChannelMap>,
        cancel: CancellationToken,
        dashboard: Option<String>,
    ) -> Delivery {
        let sender = Sender::new().with_dashboard(dashboard);
        Delivery::launch(store, channels, cancel, Backoff::default(), sender)
    }

    /// Starts delivering with a given retry backoff (tests use a short one).
    pub fn start_with(
        store: Arc<Store>,
        channels: watch::Receiver<ChannelMap>,
        cancel: CancellationToken,
        backoff: Backoff,
    ) -> Delivery {
        Delivery::launch(store, channels, cancel, backoff, Sender::new())
    }

    fn launch(
        store: Arc<Store>,
        channels: watch::Receiver<ChannelMap>,
        cancel: CancellationToken,
        backoff: Backoff,
        sender: Sender,
    ) -> Delivery {
        let cancel = cancel.child_token();
        let stats = Stats::default();
        let (kick, kick_rx) = watch::channel(0u64);
        let supervisor = Supervisor {
            store,
            channels: channels.clone(),
            kick: kick_rx,
            backoff,
            stats: stats.clone(),
            sender,
            cancel: cancel.clone(),
            workers: BTreeMap::new(),
        };
        let task = tokio::spawn(supervisor.run());
        Delivery {
            stats,
            channels,
            kick,
            cancel,
            task: Mutex::new(Some(task)),
        }
    }

    /// Wakes the queues: call it after notices were queued.
    pub fn kick(&self) {
        self.kick.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A handle that wakes the queues, for tasks that queue notices and
    /// cannot hold the delivery itself.
    pub fn kicker(&self) -> Kicker {
        Kicker(self.kick.clone())
    }

    /// Every configured channel with its queue and deliveries.
    pub fn status(&self) -> Vec<ChannelStatus> {
        let map = self.channels.borrow().clone();
        map.values()
            .map(|c| {
                let k = with_counters(&self.stats, &c.name, |k| k.clone());
                ChannelStatus {
                    name: c.name.to_string(),
                    kind: c.kind.name().to_owned(),
                    pending: k.pending,
                    delivered: k.delivered,
                    failed: k.failed,
                    last_error: k.last_error,
                    last_delivered_ms: k.last_delivered_ms,
                }
            })
            .collect()
    }

    /// Stops, letting deliveries in flight finish for a few seconds (a
    /// delivery cut short is sent again later: at least once).
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        let task = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(SHUTDOWN_WAIT, task).await;
        }
    }
}

/// Wakes a [`Delivery`]'s queues (see [`Delivery::kicker`]).
#[derive(Clone)]
pub struct Kicker(watch::Sender<u64>);

impl Kicker {
    /// Wakes the queues: call it after notices were queued.
    pub fn kick(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Starts and stops one queue task per configured channel.
struct Supervisor {
    store: Arc<Store>,
    channels: watch::Receiver<ChannelMap>,
    kick: watch::Receiver<u64>,
    backoff: Backoff,
    stats: Stats,
    sender: Sender,
    cancel: CancellationToken,
    workers: BTreeMap<ChannelName, (CancellationToken, JoinHandle<()>)>,
}

impl Supervisor {
    async fn run(mut self) {
        self.on_channels().await;
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                changed = self.channels.changed() => match changed {
                    Ok(()) => self.on_channels().await,
                    // No more changes will come: keep the last set until cancelled.
                    Err(_) => {
                        self.cancel.cancelled().await;
                        break;
                    }
                },
            }
        }
        // Each worker's token is a child of ours: they finish what is in flight.
        for (_, (_, task)) in std::mem::take(&mut self.workers) {
            let _ = task.await;
        }
    }

    /// Applies a new channel set: stops the queues of removed channels,
    /// drops what waits for them, starts the queues of new ones.
    async fn on_channels(&mut self) {
        let map = self.channels.borrow_and_update().clone();
        let removed: Vec<ChannelName> = self
            .workers
            .keys()
            .filter(|n| !map.contains_key(*n))
            .cloned()
            .collect();
        for name in removed {
            if let Some((token, task)) = self.workers.remove(&name) {
                token.cancel();
                // Its delivery in flight ends within the channel's timeout.
                let _ = task.await;
            }
        }
        self.stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|n, _| map.contains_key(n));
        if let Err(e) = drop_orphans(&self.store, &map, &self.stats).await {
            error!(error = %e, "Cannot read the alert queue.");
        }
        for name in map.keys() {
            if self.workers.contains_key(name) {
                continue;
            }
            let token = self.cancel.child_token();
            let queue = ChannelQueue::new(
                name.clone(),
                self.store.clone(),
                self.sender.clone(),
                self.backoff,
                self.stats.clone(),
            );
            let worker = Worker {
                queue,
                channels: self.channels.clone(),
                kick: self.kick.clone(),
                cancel: token.clone(),
            };
            self.workers
                .insert(name.clone(), (token, tokio::spawn(worker.run())));
        }
    }
}

/// Drops the notices of channels not in `map`; records the others' counts.
async fn drop_orphans(
    store: &Arc<Store>,
    map: &BTreeMap<ChannelName, Arc<Channel>>,
    stats: &Stats,
) -> Result<u64, StoreError> {
    let counts = store.call(|s| s.outbox_counts()).await?;
    let mut dropped = 0;
    for (name, n) in counts {
        if map.contains_key(&name) {
            with_counters(stats, &name, |c| c.pending = n);
            continue;
        }
        let gone = name.clone();
        let n = store.call(move |s| s.outbox_drop(&gone)).await?;
        warn!(channel = %name, dropped = n, "Alerts queued for a channel that is no longer configured were dropped.");
        dropped += n;
    }
    Ok(dropped)
}

/// The task of one channel's queue.
struct Worker {
    queue: ChannelQueue,
    channels: watch::Receiver<ChannelMap>,
    kick: watch::Receiver<u64>,
    cancel: CancellationToken,
}

impl Worker {
    async fn run(mut self) {
        let mut kicks = true;
        while !self.cancel.is_cancelled() {
            self.kick.borrow_and_update();
            let Some(channel) = self.channels.borrow().get(&self.queue.name).cloned() else {
                return;
            };
            // A delivery in flight is not cancelled: it is bounded by the channel's timeout.
            let wait = match self.queue.step(&channel).await {
                Ok(Step::Delivered | Step::Failed(_)) => continue,
                Ok(Step::Empty) => POLL,
                Ok(Step::RetryAt(ms)) => Duration::from_millis(ms.saturating_sub(now_ms())),
                Ok(Step::Limited(wait)) => wait,
                Err(e) => {
                    error!(channel = %self.queue.name, error = %e, "Cannot use the alert queue; trying again in a minute.");
                    STORE_RETRY
                }
            };
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(wait.min(POLL)) => {}
                changed = self.kick.changed(), if kicks => kicks = changed.is_ok(),
            }
        }
    }
}

/// What one pass of [`deliver_pending`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drained {
    pub delivered: u64,
    /// Failed attempts (each channel stops at its first failure).
    pub failed: u64,
    /// Still queued for configured channels.
    pub pending: u64,
    /// Dropped: queued for channels that are not configured.
    pub dropped: u64,
    /// The failure of each channel that failed, credentials removed.
    pub errors: Vec<(ChannelName, String)>,
}

/// One pass over the outbox within `deadline`: each configured channel's
/// notices are sent in order (retry times ignored: the caller asked now)
/// until one fails or the deadline passes, all channels at once.
pub async fn deliver_pending(
    store: Arc<Store>,
    channels: &BTreeMap<ChannelName, Arc<Channel>>,
    deadline: Duration,
) -> Result<Drained, StoreError> {
    let until = tokio::time::Instant::now() + deadline;
    let stats = Stats::default();
    let mut drained = Drained {
        dropped: drop_orphans(&store, channels, &stats).await?,
        ..Drained::default()
    };
    let waiting: Vec<ChannelName> = with_stats(&stats, |all| {
        all.iter()
            .filter(|(_, c)| c.pending > 0)
            .map(|(n, _)| n.clone())
            .collect()
    });
    let sender = Sender::new();
    let mut passes = JoinSet::new();
    for name in waiting {
        let Some(channel) = channels.get(&name).cloned() else {
            continue;
        };
        let mut queue = ChannelQueue::new(
            name.clone(),
            store.clone(),
            sender.clone(),
            Backoff::default(),
            stats.clone(),
        );
        queue.eager = true;
        passes.spawn(async move { (name, pass(queue, channel, until).await) });
    }
    let mut first_error = None;
    while let Some(joined) = passes.join_next().await {
        match joined {
            Ok((name, Ok(Some(e)))) => drained.errors.push((name, e)),
            Ok((_, Ok(None))) => {}
            Ok((_, Err(e))) => first_error = first_error.or(Some(e)),
            Err(e) => error!(error = %e, "An alert delivery task failed."),
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    with_stats(&stats, |all| {
        for c in all.values() {
            drained.delivered += c.delivered;
            drained.failed += c.failed;
            drained.pending += c.pending;
        }
    });
    drained.errors.sort();
    Ok(drained)
}

/// Drains one queue until it is empty, a delivery fails or `until`; the
/// failure's message, if one did.
async fn pass(
    mut queue: ChannelQueue,
    channel: Arc<Channel>,
    until: tokio::time::Instant,
) -> Result<Option<String>, StoreError> {
    loop {
        let Ok(step) = tokio::time::timeout_at(until, queue.step(&channel)).await else {
            return Ok(None);
        };
        match step? {
            Step::Delivered => {}
            Step::Failed(e) => return Ok(Some(e)),
            Step::Empty | Step::RetryAt(_) => return Ok(None),
            Step::Limited(wait) => {
                let wake = tokio::time::Instant::now() + wait;
                if wake > until {
                    return Ok(None);
                }
                tokio::time::sleep_until(wake).await;
            }
        }
    }
}

fn with_stats<T>(
    stats: &Stats,
    f: impl FnOnce(&BTreeMap<ChannelName, super::queue::Counters>) -> T,
) -> T {
    f(&stats
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner))
}
