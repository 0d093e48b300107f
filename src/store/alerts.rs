//! Alert state and the alert outbox.
//!
//! Each (target, monitor, subject) has an [`AlertRecord`]: the monitor's
//! state as last evaluated, when a notice about it was last queued, and
//! whether an alert is open (a firing notice went out, no resolved one yet).
//! So a restart neither sends an alert twice nor forgets an open one.
//!
//! The outbox holds one [`OutboxEntry`] per notice per channel, in the order
//! they were queued, until the channel takes it: the alert module's delivery
//! drains it, and an entry's retry time survives restarts. A change of alert
//! state and the notices it queues are one batch.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{keyspace, prefixed, Store, StoreError, FORMAT, SEP};
use crate::health::{MonitorKind, MonitorState};
use crate::ids::{ChannelName, TargetId};

/// Meta record: the sequence number of the next outbox entry.
const OUTBOX_SEQ: &[u8] = b"m\0outbox";

/// Meta record: since when a daemon watches a target (see
/// [`Store::watched_since`]).
fn watched_key(target: &TargetId) -> Vec<u8> {
    prefixed(b'm', &[b"watched", target.as_str().as_bytes()])
}

/// The version of the notice schema (the webhook body), `version` in it.
pub const NOTICE_VERSION: u32 = 1;

/// The persisted state of one alert key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    pub v: u8,
    pub state: MonitorState,
    /// When a notice about it was last queued, milliseconds since the Unix
    /// epoch; `None` while none was (no channel, or never firing).
    #[serde(default)]
    pub last_sent_ms: Option<u64>,
    /// A firing notice was queued and no resolved one since.
    #[serde(default)]
    pub open: bool,
    /// Consecutive judgements in which the condition held, while pending.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub streak: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl AlertRecord {
    pub fn new(state: MonitorState, last_sent_ms: Option<u64>, open: bool) -> Self {
        AlertRecord {
            v: FORMAT,
            state,
            last_sent_ms,
            open,
            streak: 0,
        }
    }
}

/// What a notice announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeState {
    /// A monitor started firing, or still fires after the repeat interval.
    Firing,
    /// A monitor that fired is ok again.
    Resolved,
    /// `crawld alert test`.
    Test,
}

impl NoticeState {
    pub fn name(self) -> &'static str {
        match self {
            NoticeState::Firing => "firing",
            NoticeState::Resolved => "resolved",
            NoticeState::Test => "test",
        }
    }
}

/// One alert as channels receive it: the generic webhook's JSON body, the
/// exec channel's stdin. Its fields are a stable schema, versioned by
/// `version` ([`NOTICE_VERSION`]); README documents them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    pub version: u32,
    /// The target's name (empty for a test).
    pub target: String,
    /// The monitor's name (`failure_rate`, …; `test` for a test).
    pub monitor: String,
    /// What within the target: `KIND.FIELD`, a host; empty for the target as a whole.
    pub subject: String,
    pub state: NoticeState,
    /// The figure that decided the state.
    pub value: f64,
    /// The threshold it was compared with.
    pub threshold: f64,
    /// The run it was evaluated on.
    pub run: Option<u64>,
    /// One sentence a person can act on.
    pub message: String,
    /// RFC 3339: when the monitor started firing.
    pub since: String,
    /// RFC 3339: when this notice was made.
    pub at: String,
    /// The host crawld runs on, filled in when the notice is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The daemon's dashboard, when it serves one, filled in when sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard: Option<String>,
}

/// One notice waiting for one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub v: u8,
    /// Queue order, unique in the store.
    pub seq: u64,
    pub channel: ChannelName,
    pub notice: Notice,
    /// Failed deliveries so far.
    pub attempts: u32,
    /// Not tried again before this, milliseconds since the Unix epoch.
    pub next_attempt_ms: u64,
    /// When it was queued, milliseconds since the Unix epoch.
    pub queued_ms: u64,
}

/// What one update of a target's alerts writes, as one batch.
#[derive(Debug, Default)]
pub struct AlertChanges {
    /// Records written (replacing those of the same key).
    pub put: Vec<AlertRecord>,
    /// Keys (monitor, subject) of the target removed.
    pub remove: Vec<(MonitorKind, String)>,
    /// Notices queued, each for its channel, in this order.
    pub notices: Vec<(ChannelName, Notice)>,
    /// When they are queued, milliseconds since the Unix epoch.
    pub now_ms: u64,
}

fn alert_prefix(target: &TargetId) -> Vec<u8> {
    prefixed(b'a', &[target.as_str().as_bytes()])
}

fn alert_key(target: &TargetId, monitor: MonitorKind, subject: &str) -> Vec<u8> {
    prefixed(
        b'a',
        &[
            target.as_str().as_bytes(),
            monitor.name().as_bytes(),
            subject.as_bytes(),
        ],
    )
}

fn outbox_prefix(channel: &ChannelName) -> Vec<u8> {
    prefixed(b'q', &[channel.as_str().as_bytes()])
}

fn outbox_key(channel: &ChannelName, seq: u64) -> Vec<u8> {
    let mut k = outbox_prefix(channel);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

impl Store {
    /// A target's monitors as last evaluated, by monitor then subject. Works
    /// on a store opened read-only.
    pub fn monitor_states(&self, target: &TargetId) -> Result<Vec<MonitorState>, StoreError> {
        self.alert_records(target)
            .map(|records| records.into_iter().map(|r| r.state).collect())
    }

    /// A target's alert records, by monitor then subject.
    pub fn alert_records(&self, target: &TargetId) -> Result<Vec<AlertRecord>, StoreError> {
        let mut records: Vec<AlertRecord> =
            self.scan(alert_prefix(target)).collect::<Result<_, _>>()?;
        records.sort_by(|a, b| {
            (a.state.monitor, &a.state.subject).cmp(&(b.state.monitor, &b.state.subject))
        });
        Ok(records)
    }

    /// Reads a target's alert records, lets `decide` say what changes, and
    /// writes that as one batch. Updates of alerts are serialised, so that
    /// two evaluations of one target never both queue the same notice.
    pub fn update_alerts<T>(
        &self,
        target: &TargetId,
        decide: impl FnOnce(Vec<AlertRecord>) -> (AlertChanges, T),
    ) -> Result<T, StoreError> {
        let _serial = self
            .alerting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (changes, out) = decide(self.alert_records(target)?);
        if changes.put.is_empty() && changes.remove.is_empty() && changes.notices.is_empty() {
            return Ok(out);
        }
        let mut batch = keyspace::Batch::default();
        for (monitor, subject) in &changes.remove {
            batch.remove(alert_key(target, *monitor, subject));
        }
        for r in &changes.put {
            let key = alert_key(target, r.state.monitor, &r.state.subject);
            batch.insert(key, super::encode(self, r)?);
        }
        if !changes.notices.is_empty() {
            let mut seq = self.next_outbox_seq()?;
            for (channel, notice) in changes.notices {
                let entry = OutboxEntry {
                    v: FORMAT,
                    seq,
                    channel,
                    notice,
                    attempts: 0,
                    next_attempt_ms: 0,
                    queued_ms: changes.now_ms,
                };
                batch.insert(
                    outbox_key(&entry.channel, seq),
                    super::encode(self, &entry)?,
                );
                seq += 1;
            }
            self.set_outbox_seq(&mut batch, seq);
        }
        self.apply(batch)?;
        Ok(out)
    }

    /// Writes the outbox's next sequence number into `batch`.
    pub(super) fn set_outbox_seq(&self, batch: &mut keyspace::Batch, seq: u64) {
        batch.insert(OUTBOX_SEQ, seq.to_be_bytes());
    }

    /// The sequence number of the next outbox entry (alerts' notices and
    /// change notices alike).
    pub(super) fn next_outbox_seq(&self) -> Result<u64, StoreError> {
        Ok(self
            .data
            .get(OUTBOX_SEQ)?
            .and_then(|v| v.as_ref().try_into().ok())
            .map_or(1, u64::from_be_bytes))
    }

    /// Removes a target's alert records (a removed target). Its queued
    /// notices stay: they are about something that happened.
    pub fn forget_alerts(&self, target: &TargetId) -> Result<(), StoreError> {
        let _serial = self
            .alerting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut batch = keyspace::Batch::default();
        for kv in self.data.scan_prefix(alert_prefix(target)) {
            batch.remove(kv?.0);
        }
        if self.data.get(&watched_key(target))?.is_some() {
            batch.remove(watched_key(target));
        }
        if batch.bytes() > 0 {
            self.apply(batch)?;
        }
        Ok(())
    }

    /// Since when a daemon watches `target` (ms since the Unix epoch): where
    /// its `overdue` counts from before its first completed run, across
    /// restarts. The first call records `now_ms`.
    pub fn watched_since(&self, target: &TargetId, now_ms: u64) -> Result<u64, StoreError> {
        let key = watched_key(target);
        let stored = self.data.get(&key)?;
        if let Some(ms) = stored.and_then(|v| v.as_ref().try_into().ok()) {
            return Ok(u64::from_be_bytes(ms));
        }
        let mut batch = keyspace::Batch::default();
        batch.insert(key, now_ms.to_be_bytes());
        self.apply(batch)?;
        Ok(now_ms)
    }

    /// The notices waiting for a channel, oldest first.
    pub fn outbox(&self, channel: &ChannelName) -> Result<Vec<OutboxEntry>, StoreError> {
        self.scan(outbox_prefix(channel)).collect()
    }

    /// How many notices (alerts' and change notices) wait for each channel
    /// that has some.
    pub fn outbox_counts(&self) -> Result<BTreeMap<ChannelName, u64>, StoreError> {
        let mut counts = BTreeMap::new();
        let kvs = self
            .data
            .scan_prefix([b'q', SEP])
            .chain(self.data.scan_prefix([super::changes::PREFIX, SEP]));
        for kv in kvs {
            let (k, _) = kv?;
            let name = k
                .get(2..)
                .and_then(|rest| rest.split(|&b| b == SEP).next())
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .unwrap_or_default();
            *counts.entry(ChannelName::new(name)).or_insert(0) += 1;
        }
        Ok(counts)
    }

    /// Removes delivered entries (one message), in one batch.
    pub fn outbox_delivered(&self, entries: &[OutboxEntry]) -> Result<(), StoreError> {
        let mut batch = keyspace::Batch::default();
        for entry in entries {
            batch.remove(outbox_key(&entry.channel, entry.seq));
        }
        self.apply(batch)
    }

    /// Records a failed attempt: `entries` as they should now be (their
    /// attempts and next attempt time).
    pub fn outbox_retry(&self, entries: &[OutboxEntry]) -> Result<(), StoreError> {
        let mut batch = keyspace::Batch::default();
        for entry in entries {
            batch.insert(
                outbox_key(&entry.channel, entry.seq),
                super::encode(self, entry)?,
            );
        }
        self.apply(batch)
    }

    /// Drops every notice (alerts' and change notices) waiting for a
    /// channel (one that is no longer configured); returns how many.
    pub fn outbox_drop(&self, channel: &ChannelName) -> Result<u64, StoreError> {
        let mut batch = keyspace::Batch::default();
        let mut n = 0;
        let kvs = self
            .data
            .scan_prefix(outbox_prefix(channel))
            .chain(self.data.scan_prefix(super::changes::prefix(channel)));
        for kv in kvs {
            batch.remove(kv?.0);
            n += 1;
        }
        if n > 0 {
            self.apply(batch)?;
        }
        Ok(n)
    }
}
