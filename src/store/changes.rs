//! The outbox of change notices (`[notify]`): one message per run and
//! channel, queued beside the alerts' notices and numbered from the same
//! sequence, so that a channel's queue delivers both in the order they were
//! queued.
//!
//! Each target has a marker, the last run whose changes were queued: the
//! messages of a run and the marker are one batch, and a run at or below the
//! marker is never queued again. So a restart (or a second look at the same
//! run) neither loses a run's message nor queues it twice.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{keyspace, prefixed, Store, StoreError, FORMAT};
use crate::ids::{ChannelName, RunId, TargetId};

/// The version of the change notice schema (the webhook body), `version` in it.
pub const CHANGES_VERSION: u32 = 1;

/// The `type` of a change notice's body.
pub const CHANGES_TYPE: &str = "changes";

/// How many changes of each kind a message reports (those that matched the
/// target's `[notify]`, listed or counted in `truncated`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeCounts {
    pub new: u64,
    pub changed: u64,
    pub removed: u64,
}

impl ChangeCounts {
    pub fn total(&self) -> u64 {
        self.new + self.changed + self.removed
    }
}

/// What happened to an item, as a change notice says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemChangeKind {
    New,
    Changed,
    Removed,
}

impl ItemChangeKind {
    pub fn name(self) -> &'static str {
        match self {
            ItemChangeKind::New => "new",
            ItemChangeKind::Changed => "changed",
            ItemChangeKind::Removed => "removed",
        }
    }
}

/// One item's change in a notice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemChange {
    /// The item kind (`[items.NAME]`).
    pub kind: String,
    pub key: String,
    pub change: ItemChangeKind,
    /// The page the item was found on (last found on, when removed).
    pub url: String,
    /// Field name → `{"old": …, "new": …}`: for `changed` the fields that
    /// changed, for `new` every field (old null), for `removed` every field
    /// (new null).
    pub fields: Map<String, Value>,
}

/// One run's item changes as a channel receives them: the generic webhook's
/// JSON body, the exec channel's stdin. A stable schema, versioned by
/// `version` ([`CHANGES_VERSION`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeNotice {
    pub version: u32,
    /// Always [`CHANGES_TYPE`]: tells it from an alert's notice.
    #[serde(rename = "type")]
    pub kind: String,
    pub target: String,
    pub run: u64,
    pub counts: ChangeCounts,
    /// At most the target's `max_items`, in the order the run found them.
    pub changes: Vec<ItemChange>,
    /// Changes counted but not listed (beyond `max_items`).
    pub truncated: u64,
}

/// One change notice waiting for one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEntry {
    pub v: u8,
    /// Queue order, from the same sequence as the alerts' outbox.
    pub seq: u64,
    pub channel: ChannelName,
    pub message: ChangeNotice,
    /// Failed deliveries so far.
    pub attempts: u32,
    /// Not tried again before this, milliseconds since the Unix epoch.
    pub next_attempt_ms: u64,
    /// When it was queued, milliseconds since the Unix epoch.
    pub queued_ms: u64,
}

/// The record prefix of change notices.
pub(super) const PREFIX: u8 = b'n';

pub(super) fn prefix(channel: &ChannelName) -> Vec<u8> {
    prefixed(PREFIX, &[channel.as_str().as_bytes()])
}

fn key(channel: &ChannelName, seq: u64) -> Vec<u8> {
    let mut k = prefix(channel);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Meta record: the last run of a target whose changes were queued.
fn marker_key(target: &TargetId) -> Vec<u8> {
    prefixed(b'm', &[b"notified", target.as_str().as_bytes()])
}

impl Store {
    /// The last run of `target` whose changes were queued (or looked at and
    /// found to match nothing), if any.
    pub fn notified_run(&self, target: &TargetId) -> Result<Option<RunId>, StoreError> {
        Ok(self
            .data
            .get(&marker_key(target))?
            .and_then(|v| v.as_ref().try_into().ok())
            .map(|b| RunId(u64::from_be_bytes(b))))
    }

    /// Queues `messages` (each for its channel) for `run` of `target` and
    /// moves the target's marker to `run`, as one batch; does nothing when
    /// the marker is at `run` or later. True when it queued (or marked).
    pub fn queue_changes(
        &self,
        target: &TargetId,
        run: RunId,
        messages: Vec<(ChannelName, ChangeNotice)>,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        // The alerts' lock: the two share the outbox's sequence.
        let _serial = self
            .alerting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.notified_run(target)?.is_some_and(|m| m >= run) {
            return Ok(false);
        }
        let mut batch = keyspace::Batch::default();
        if !messages.is_empty() {
            let mut seq = self.next_outbox_seq()?;
            for (channel, message) in messages {
                let entry = ChangeEntry {
                    v: FORMAT,
                    seq,
                    channel,
                    message,
                    attempts: 0,
                    next_attempt_ms: 0,
                    queued_ms: now_ms,
                };
                batch.insert(key(&entry.channel, seq), super::encode(self, &entry)?);
                seq += 1;
            }
            self.set_outbox_seq(&mut batch, seq);
        }
        batch.insert(marker_key(target), run.0.to_be_bytes());
        self.apply(batch)?;
        Ok(true)
    }

    /// The change notices waiting for a channel, oldest first.
    pub fn change_outbox(&self, channel: &ChannelName) -> Result<Vec<ChangeEntry>, StoreError> {
        self.scan(prefix(channel)).collect()
    }

    /// Removes a delivered change notice.
    pub fn change_delivered(&self, entry: &ChangeEntry) -> Result<(), StoreError> {
        let mut batch = keyspace::Batch::default();
        batch.remove(key(&entry.channel, entry.seq));
        self.apply(batch)
    }

    /// Records a failed attempt: `entry` as it should now be.
    pub fn change_retry(&self, entry: &ChangeEntry) -> Result<(), StoreError> {
        let mut batch = keyspace::Batch::default();
        batch.insert(key(&entry.channel, entry.seq), super::encode(self, entry)?);
        self.apply(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(run: u64) -> ChangeNotice {
        ChangeNotice {
            version: CHANGES_VERSION,
            kind: CHANGES_TYPE.into(),
            target: "t".into(),
            run,
            counts: ChangeCounts::default(),
            changes: Vec::new(),
            truncated: 0,
        }
    }

    #[test]
    fn a_run_is_queued_once_and_shares_the_alerts_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (t, ops) = (TargetId::new("t"), ChannelName::new("ops"));
        assert_eq!(store.notified_run(&t).unwrap(), None);
        let q = |run| {
            store
                .queue_changes(&t, RunId(run), vec![(ops.clone(), notice(run))], 1)
                .unwrap()
        };
        assert!(q(2));
        assert!(!q(2), "the same run again");
        assert!(!q(1), "an older run");
        assert!(q(3));
        let queued = store.change_outbox(&ops).unwrap();
        assert_eq!(queued.len(), 2);
        assert!(queued[0].seq < queued[1].seq);
        assert_eq!(store.notified_run(&t).unwrap(), Some(RunId(3)));
        assert_eq!(store.outbox_counts().unwrap()[&ops], 2);
        store.change_delivered(&queued[0]).unwrap();
        assert_eq!(store.change_outbox(&ops).unwrap().len(), 1);
        assert!(store.check().unwrap().problems.is_empty());
        assert_eq!(store.outbox_drop(&ops).unwrap(), 1);
        assert!(store.change_outbox(&ops).unwrap().is_empty());
    }
}
