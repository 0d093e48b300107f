//! One channel's queue in the store, delivered one message at a time (what
//! goes next and what goes together is [`super::plan`]'s): a message that
//! fails stays queued and the channel is retried after a backoff (so a
//! `resolved` never overtakes its `firing`), whose time is in the store and
//! so survives restarts; the channel's rate limit holds the rest in the
//! queue, never dropping them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::send::Sender;
use crate::config::Channel;
use crate::ids::ChannelName;
use crate::store::{now_ms, ChangeEntry, Store, StoreError};

/// The wait before the first retry of a failed delivery.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(5);
/// The longest wait between retries: a channel that answers again is
/// found within a minute (a failed attempt costs one request).
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
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

    /// Delivers the next message if the channel is due and the rate limit
    /// allows.
    pub(super) async fn step(&mut self, channel: &Channel) -> Result<Step, StoreError> {
        // In a cluster one node delivers each channel's notices: the others
        // would send them again. (A pass asked for now too: the holder
        // delivers what it leaves.)
        let role = format!("deliver:{}", self.name);
        if !self.store.call(move |s| s.holds_role(&role)).await? {
            return Ok(Step::Empty);
        }
        let name = self.name.clone();
        let (entries, changes) = self
            .store
            .call(move |s| Ok((s.outbox(&name)?, s.change_outbox(&name)?)))
            .await?;
        let pending = (entries.len() + changes.len()) as u64;
        with_counters(&self.stats, &self.name, |c| c.pending = pending);
        // The channel waits out the backoff of its last failure.
        let retry_at = entries
            .iter()
            .map(|e| e.next_attempt_ms)
            .chain(changes.iter().map(|e| e.next_attempt_ms))
            .max()
            .unwrap_or(0);
        // A change notice goes once no alert queued before it waits.
        let oldest_alert = entries.first().map(|e| e.seq);
        let change = changes
            .into_iter()
            .next()
            .filter(|c| oldest_alert.is_none_or(|a| c.seq < a));
        let message = match change {
            Some(_) => None,
            None => match super::plan::next(&entries, channel.kind.read_by_people()) {
                Some(m) => Some(m),
                None => return Ok(Step::Empty),
            },
        };
        if !self.eager && retry_at > now_ms() {
            return Ok(Step::RetryAt(retry_at));
        }
        if let Some(wait) = self.window.wait(Instant::now(), channel.max_per_minute) {
            return Ok(Step::Limited(wait));
        }
        self.window.record(Instant::now());
        let Some(message) = message else {
            // INVARIANT: `message` is None only when `change` is Some.
            let Some(change) = change else {
                return Ok(Step::Empty);
            };
            return self.send_change(channel, change, pending).await;
        };
        let head = &message.notices[0];
        match self.sender.send_all(channel, &message.notices).await {
            Ok(said) => {
                info!(channel = %self.name, target = %head.target, monitor = %head.monitor, state = head.state.name(), notices = message.entries.len(), "Alert delivered: {said}.");
                let done = message.entries.clone();
                let n = done.len() as u64;
                self.store.call(move |s| s.outbox_delivered(&done)).await?;
                with_counters(&self.stats, &self.name, |c| {
                    c.delivered += n;
                    c.pending = pending.saturating_sub(n);
                    c.last_delivered_ms = Some(now_ms());
                    // The channel answers again: its last error is history.
                    c.last_error = None;
                });
                Ok(Step::Delivered)
            }
            Err(e) => {
                let error = e.to_string();
                let attempts = message
                    .entries
                    .iter()
                    .map(|e| e.attempts)
                    .max()
                    .unwrap_or(0)
                    + 1;
                let wait = self.backoff.after(attempts);
                let next_attempt_ms = now_ms().saturating_add(wait.as_millis() as u64);
                warn!(channel = %self.name, attempts, retry_in = %humantime::format_duration(wait), error = %error, "Alert delivery failed; it stays queued.");
                let mut retry = message.entries;
                for e in &mut retry {
                    e.attempts = attempts;
                    e.next_attempt_ms = next_attempt_ms;
                }
                self.store.call(move |s| s.outbox_retry(&retry)).await?;
                with_counters(&self.stats, &self.name, |c| {
                    c.failed += 1;
                    c.last_error = Some(error.clone());
                });
                Ok(Step::Failed(error))
            }
        }
    }
}

impl ChannelQueue {
    /// Delivers one change notice, or records its failure, as [`Self::step`]
    /// does for alerts.
    async fn send_change(
        &mut self,
        channel: &Channel,
        mut entry: ChangeEntry,
        pending: u64,
    ) -> Result<Step, StoreError> {
        let (target, run) = (entry.message.target.clone(), entry.message.run);
        match self.sender.send_changes(channel, &entry.message).await {
            Ok(said) => {
                info!(channel = %self.name, target = %target, run, changes = entry.message.counts.total(), "Change notice delivered: {said}.");
                self.store.call(move |s| s.change_delivered(&entry)).await?;
                with_counters(&self.stats, &self.name, |c| {
                    c.delivered += 1;
                    c.pending = pending.saturating_sub(1);
                    c.last_delivered_ms = Some(now_ms());
                    c.last_error = None;
                });
                Ok(Step::Delivered)
            }
            Err(e) => {
                let error = e.to_string();
                entry.attempts += 1;
                let wait = self.backoff.after(entry.attempts);
                entry.next_attempt_ms = now_ms().saturating_add(wait.as_millis() as u64);
                warn!(channel = %self.name, target = %target, run, attempts = entry.attempts, retry_in = %humantime::format_duration(wait), error = %error, "Change notice delivery failed; it stays queued.");
                self.store.call(move |s| s.change_retry(&entry)).await?;
                with_counters(&self.stats, &self.name, |c| {
                    c.failed += 1;
                    c.last_error = Some(error.clone());
                });
                Ok(Step::Failed(error))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap() {
        let b = Backoff::default();
        let secs: Vec<u64> = (1..=9).map(|a| b.after(a).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 60, 60, 60, 60, 60]);
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
