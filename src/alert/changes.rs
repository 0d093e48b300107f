//! Change notices (`[notify]`): the item changes of a completed run, read
//! from the store's change feed, filtered by the target's `[notify]` and
//! queued, one message per channel, in the alerts' outbox.
//!
//! A run's message covers the runs it resumed too (as `crawld export
//! --changes` does): an interrupted run sends nothing, and the run that
//! completes its crawl sends what the whole crawl changed. The feed is read
//! as a stream: a message keeps at most `max_items` changes and counts the
//! rest, whatever the run changed.

use serde_json::{Map, Value};

use crate::config::{NotifyConfig, Target};
use crate::ids::{ChannelName, RunId};
use crate::store::{
    ChangeCounts, ChangeEvent, ChangeKind, ChangeNotice, ItemChange, ItemChangeKind, RunRecord,
    RunStatus, Store, StoreError, CHANGES_TYPE, CHANGES_VERSION,
};

/// The change notice of `run`: `None` when nothing matched `notify`.
pub fn digest(
    store: &Store,
    notify: &NotifyConfig,
    run: &RunRecord,
) -> Result<Option<ChangeNotice>, StoreError> {
    let mut notice = ChangeNotice {
        version: CHANGES_VERSION,
        kind: CHANGES_TYPE.to_owned(),
        target: run.target.to_string(),
        run: run.id.0,
        counts: ChangeCounts::default(),
        changes: Vec::new(),
        truncated: 0,
    };
    for id in chain(store, run)? {
        for event in store.events(&run.target, id) {
            let event = event?;
            let Some(change) = matched(notify, &event) else {
                continue;
            };
            match change {
                ItemChangeKind::New => notice.counts.new += 1,
                ItemChangeKind::Changed => notice.counts.changed += 1,
                ItemChangeKind::Removed => notice.counts.removed += 1,
            }
            if notice.changes.len() < notify.max_items {
                notice.changes.push(item_change(change, event));
            } else {
                notice.truncated += 1;
            }
        }
    }
    Ok((notice.counts.total() > 0).then_some(notice))
}

/// The runs whose events the message of `run` covers, oldest first: the
/// interrupted runs it resumed, then itself.
fn chain(store: &Store, run: &RunRecord) -> Result<Vec<RunId>, StoreError> {
    let mut ids = vec![run.id];
    let mut cursor = run.resumed_from;
    // A chain is short; the bound guards against a corrupt loop.
    while let Some(prev) = cursor.filter(|_| ids.len() < 10_000) {
        if ids.contains(&prev) {
            break;
        }
        ids.push(prev);
        cursor = store.run(&run.target, prev)?.and_then(|r| r.resumed_from);
    }
    ids.reverse();
    Ok(ids)
}

/// What `event` is in a notice, if `notify` sends it.
fn matched(notify: &NotifyConfig, event: &ChangeEvent) -> Option<ItemChangeKind> {
    match event.change {
        ChangeKind::Added => notify.new.then_some(ItemChangeKind::New),
        ChangeKind::Removed => notify.removed.then_some(ItemChangeKind::Removed),
        ChangeKind::Changed => notify
            .wants_changed(&event.fields)
            .then_some(ItemChangeKind::Changed),
    }
}

fn old_new(old: Value, new: Value) -> Value {
    let mut m = Map::with_capacity(2);
    m.insert("old".into(), old);
    m.insert("new".into(), new);
    Value::Object(m)
}

fn item_change(change: ItemChangeKind, event: ChangeEvent) -> ItemChange {
    let fields: Map<String, Value> = match change {
        ItemChangeKind::New => event
            .value
            .into_iter()
            .map(|(k, v)| (k, old_new(Value::Null, v)))
            .collect(),
        ItemChangeKind::Removed => event
            .value
            .into_iter()
            .map(|(k, v)| (k, old_new(v, Value::Null)))
            .collect(),
        ItemChangeKind::Changed => {
            let (mut old, mut value) = (event.old, event.value);
            event
                .fields
                .into_iter()
                .map(|f| {
                    let before = old.remove(&f).unwrap_or(Value::Null);
                    let after = value.remove(&f).unwrap_or(Value::Null);
                    (f, old_new(before, after))
                })
                .collect()
        }
    };
    ItemChange {
        kind: event.kind,
        key: event.key,
        change,
        url: event.page,
        fields,
    }
}

/// Queues the change notice of `run` for each of `channels`, once: a run
/// already queued (or older than one) is skipped, and a run that did not
/// complete sends nothing (its resumption does). Returns how many messages
/// were queued.
pub fn queue_changes(
    store: &Store,
    target: &Target,
    run: &RunRecord,
    channels: &[ChannelName],
    now_ms: u64,
) -> Result<usize, StoreError> {
    let Some(notify) = &target.notify else {
        return Ok(0);
    };
    if run.status != RunStatus::Completed {
        return Ok(0);
    }
    if store
        .notified_run(&run.target)?
        .is_some_and(|m| m >= run.id)
    {
        return Ok(0);
    }
    let messages: Vec<(ChannelName, ChangeNotice)> = match digest(store, notify, run)? {
        Some(notice) => channels
            .iter()
            .map(|c| (c.clone(), notice.clone()))
            .collect(),
        None => Vec::new(),
    };
    let n = messages.len();
    // The marker moves even when nothing matched: the run was looked at.
    let queued = store.queue_changes(&run.target, run.id, messages, now_ms)?;
    Ok(if queued { n } else { 0 })
}

/// At start-up: queues the changes of the target's last run if it completed
/// after the last one queued (the daemon stopped between the two). A target
/// never notified is marked at its last run instead: enabling `[notify]`
/// does not send a run that ended before.
pub fn catch_up_changes(
    store: &Store,
    target: &Target,
    channels: &[ChannelName],
    now_ms: u64,
) -> Result<usize, StoreError> {
    if target.notify.is_none() {
        return Ok(0);
    }
    let Some(last) = store.last_run(&target.id)? else {
        return Ok(0);
    };
    if last.status != RunStatus::Completed {
        return Ok(0);
    }
    match store.notified_run(&target.id)? {
        Some(_) => queue_changes(store, target, &last, channels, now_ms),
        None => {
            store.queue_changes(&target.id, last.id, Vec::new(), now_ms)?;
            Ok(0)
        }
    }
}
