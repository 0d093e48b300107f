//! One channel's queue in the store, delivered one notice at a time, oldest
//! first: a notice that fails stays at the head and is retried after a
//! backoff (so a `resolved` never overtakes its `firing`), whose time is in
//! the store and so survives restarts; the channel's rate limit holds the
//! rest in the queue, never dropping them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::send::Sender;
use crate::config::Channel;
use crate::ids::ChannelName;
use crate::store::{now_ms, Store, StoreError};

/// The wait before the first retry of a failed delivery.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(5);
/// The longest wait between retries.
pub const BACKOFF_MAX: Duration = Duration::from_secs(600);
/// The rate limit's window: `max_per_minute` deliveries per this.
const WINDOW: Duration = Duration::from_secs(60);

/// Retry waits: doubling from `first` up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: BACKOFF_FIRST,
            max: BACKOFF_MAX,
        }
    }
}

impl Backoff {
    /// The wait after the `attempts`-th failure in a row (from 1).
    pub fn after(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(30);
        self.first.saturating_mul(1 << doublings).min(self.max)
    }
}

/// What deliveries to one channel did since the process started.
#[derive(Debug, Clone, Default)]
pub(super) struct Counters {
    pub pending: u64,
    pub delivered: u64,
    pub failed: u64,
    /// Credentials removed (errors never carry them).
    pub last_error: Option<String>,
    pub last_delivered_ms: Option<u64>,
}

/// Counters by channel, shared by the queues and the status.
pub(super) type Stats = Arc<Mutex<BTreeMap<ChannelName, Counters>>>;

pub(super) fn with_counters<T>(
    stats: &Stats,
    name: &ChannelName,
    f: impl FnOnce(&mut Counters) -> T,
) -> T {
    let mut all = stats
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f(all.entry(name.clone()).or_default())
}

/// The deliveries of the last minute, for `max_per_minute`.
#[derive(Debug, Default)]
pub(super) struct RateWindow {
    sent: VecDeque<Instant>,
}

impl RateWindow {
    /// How long to wait before the next delivery, if the limit is reached.
    pub(super) fn wait(&mut self, now: Instant, max_per_minute: u32) -> Option<Duration> {
        while self
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            self.sent.pop_front();
        }
        if self.sent.len() < max_per_minute as usize {
            return None;
        }
        self.sent
            .front()
            .map(|t| (*t + WINDOW).saturating_duration_since(now))
    }

    pub(super) fn record(&mut self, now: Instant) {
        self.sent.push_back(now);
    }
}

/// What one step of a queue did or waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    /// Nothing is queued.
    Empty,
    /// The head waits for its retry time (milliseconds since the epoch).
    RetryAt(u64),
    /// The rate limit is reached for this long.
    Limited(Duration),
    Delivered,
    /// The head failed (the error, credentials removed); it is retried later.
    Failed(String),
}

/// One channel's queue.
pub(super) struct ChannelQueue {
    pub(super) name: ChannelName,
    store: Arc<Store>,
    sender: Sender,
    backoff: Backoff,
    window: RateWindow,
    stats: Stats,
    /// Retry times are ignored: a pass the user asked for tries now.
    pub(super) eager: bool,
}

impl ChannelQueue {
    pub(super) fn new(
        name: ChannelName,
        store: Arc<Store>,
        sender: Sender,
        backoff: Backoff,
        stats: Stats,
    ) -> Self {
        ChannelQueue {
            name,
            store,
            sender,
            backoff,
            window: RateWindow::default(),
            stats,
            eager: false,
        }
    }

    /// Delivers the head of the queue if it is due and the rate limit allows.
    pub(super) async fn step(&mut self, channel: &Channel) -> Result<Step, StoreError> {
        let name = self.name.clone();
        let entries = blocking(&self.store, move |s| s.outbox(&name)).await?;
        let pending = entries.len() as u64;
        with_counters(&self.stats, &self.name, |c| c.pending = pending);
        let Some(mut head) = entries.into_iter().next() else {
            return Ok(Step::Empty);
        };
        if !self.eager && head.next_attempt_ms > now_ms() {
            return Ok(Step::RetryAt(head.next_attempt_ms));
        }
        if let Some(wait) = self.window.wait(Instant::now(), channel.max_per_minute) {
            return Ok(Step::Limited(wait));
        }
        self.window.record(Instant::now());
        match self.sender.send(channel, &head.notice).await {
            Ok(said) => {
                info!(channel = %self.name, target = %head.notice.target, monitor = %head.notice.monitor, state = head.notice.state.name(), "Alert delivered: {said}.");
                let done = head.clone();
                blocking(&self.store, move |s| s.outbox_delivered(&done)).await?;
                with_counters(&self.stats, &self.name, |c| {
                    c.delivered += 1;
                    c.pending = pending - 1;
                    c.last_delivered_ms = Some(now_ms());
                });
                Ok(Step::Delivered)
            }
            Err(e) => {
                let error = e.to_string();
                head.attempts += 1;
                let wait = self.backoff.after(head.attempts);
                head.next_attempt_ms = now_ms().saturating_add(wait.as_millis() as u64);
                warn!(channel = %self.name, attempts = head.attempts, retry_in = %humantime::format_duration(wait), error = %error, "Alert delivery failed; it stays queued.");
                let retry = head.clone();
                blocking(&self.store, move |s| s.outbox_retry(&retry)).await?;
                with_counters(&self.stats, &self.name, |c| {
                    c.failed += 1;
                    c.last_error = Some(error.clone());
                });
                Ok(Step::Failed(error))
            }
        }
    }
}

/// Runs a store call off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    store: &Arc<Store>,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let s = store.clone();
    match tokio::task::spawn_blocking(move || f(&s)).await {
        Ok(r) => r,
        Err(e) => Err(StoreError::Io {
            what: "a store call of the alert delivery failed on",
            path: store.path().to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap() {
        let b = Backoff::default();
        let secs: Vec<u64> = (1..=9).map(|a| b.after(a).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 320, 600, 600]);
        assert_eq!(b.after(u32::MAX), BACKOFF_MAX);
    }

    #[test]
    fn the_rate_window_holds_the_excess() {
        let mut w = RateWindow::default();
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(w.wait(t0 + Duration::from_secs(i), 3), None);
            w.record(t0 + Duration::from_secs(i));
        }
        let now = t0 + Duration::from_secs(10);
        assert_eq!(w.wait(now, 3), Some(Duration::from_secs(50)));
        assert_eq!(w.wait(t0 + WINDOW, 3), None, "the first left the window");
    }
}
