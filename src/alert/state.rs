//! The alert state machine: from fresh monitor evaluations and the
//! persisted alert state to the notices to queue, written as one batch.
//!
//! Per key (target, monitor, subject): a condition that holds is pending
//! until it held in `fire_after` consecutive judgements, then firing → a
//! `firing` notice per channel; still firing → again only once `repeat` has passed since the
//! last one (never when `repeat` is zero); no longer firing → a `resolved`
//! notice, if a firing one went out. Only the monitors in `scope` are
//! judged: the others keep their persisted state.

use std::collections::{BTreeMap, BTreeSet};

use chrono::SecondsFormat;

use crate::config::MonitorConfig;
use crate::health::{Health, MonitorKind, MonitorState};
use crate::ids::{ChannelName, TargetId};
use crate::store::{
    AlertChanges, AlertRecord, Notice, NoticeState, Store, StoreError, NOTICE_VERSION,
};

type Key = (MonitorKind, String);

/// Records the fresh evaluations `states` of the monitors in `scope` for
/// `target`, queues the notices they call for on `channels`, and returns
/// the target's whole current list of monitor states (by monitor, then
/// subject). `states` holds, per monitor of `scope`, one ok state with an
/// empty subject or one firing state per firing subject.
///
/// It reads and writes the store (one batch, flushed): call it off the
/// async threads, then [`super::Delivery::kick`] the daemon's delivery.
pub fn observe(
    store: &Store,
    target: &TargetId,
    channels: &[ChannelName],
    cfg: &MonitorConfig,
    scope: &[MonitorKind],
    states: Vec<MonitorState>,
    now_ms: u64,
) -> Result<Vec<MonitorState>, StoreError> {
    store.update_alerts(target, |records| {
        let judge = Judge {
            target,
            channels,
            repeat_ms: u64::try_from(cfg.repeat.as_millis()).unwrap_or(u64::MAX),
            cfg,
            now_ms,
        };
        judge.plan(scope, states, records)
    })
}

/// Forgets a removed target's alert state (its queued notices still go
/// out). Each alert still open is closed with a `resolved` notice on
/// `channels` that says the target went, so that no receiver keeps an
/// incident open for ever.
pub fn forget(
    store: &Store,
    target: &TargetId,
    channels: &[ChannelName],
    now_ms: u64,
) -> Result<(), StoreError> {
    store.update_alerts(target, |records| {
        let mut changes = AlertChanges {
            now_ms,
            ..AlertChanges::default()
        };
        for r in records.iter().filter(|r| r.state.firing() && r.open) {
            let mut n = notice(&r.state, NoticeState::Resolved, now_ms);
            n.message = format!(
                "target {target} was removed from the configs, so it is no longer crawled or monitored (it was: {})",
                r.state.message
            );
            for c in channels {
                changes.notices.push((c.clone(), n.clone()));
            }
        }
        (changes, ())
    })?;
    store.forget_alerts(target)
}

/// What one observation is judged against.
struct Judge<'a> {
    target: &'a TargetId,
    channels: &'a [ChannelName],
    repeat_ms: u64,
    cfg: &'a MonitorConfig,
    now_ms: u64,
}

impl Judge<'_> {
    /// The changes to write, and the target's states after them.
    fn plan(
        &self,
        scope: &[MonitorKind],
        states: Vec<MonitorState>,
        records: Vec<AlertRecord>,
    ) -> (AlertChanges, Vec<MonitorState>) {
        let mut changes = AlertChanges {
            now_ms: self.now_ms,
            ..AlertChanges::default()
        };
        // A fresh state of a monitor outside `scope` is judged too: it was evaluated.
        let scope: BTreeSet<MonitorKind> = scope
            .iter()
            .copied()
            .chain(states.iter().map(|s| s.monitor))
            .collect();
        let persisted: BTreeMap<Key, AlertRecord> = records
            .into_iter()
            .map(|r| ((r.state.monitor, r.state.subject.clone()), r))
            .collect();
        let mut current: BTreeMap<Key, MonitorState> = persisted
            .iter()
            .filter(|((m, _), _)| !scope.contains(m))
            .map(|(k, r)| (k.clone(), r.state.clone()))
            .collect();
        let mut ok_of: BTreeMap<MonitorKind, MonitorState> = BTreeMap::new();
        for mut s in states {
            s.target = self.target.clone();
            let key = (s.monitor, s.subject.clone());
            let record = self.fresh(&mut s, persisted.get(&key), &mut changes.notices);
            changes.put.push(record);
            if s.state == Health::Ok {
                ok_of.entry(s.monitor).or_insert_with(|| s.clone());
            }
            current.insert(key, s);
        }
        for (key, old) in &persisted {
            if !scope.contains(&key.0) || current.get(key).is_some_and(|s| s.firing()) {
                continue;
            }
            if old.state.firing() && old.open {
                let n = self.resolved(&old.state, ok_of.get(&key.0));
                self.queue(n, &mut changes.notices);
            }
            if !current.contains_key(key) {
                changes.remove.push(key.clone());
            }
        }
        (changes, current.into_values().collect())
    }

    /// The record of a fresh state, given the persisted one of its key;
    /// sets its `since_ms` and queues what it calls for.
    fn fresh(
        &self,
        s: &mut MonitorState,
        old: Option<&AlertRecord>,
        notices: &mut Vec<(ChannelName, Notice)>,
    ) -> AlertRecord {
        let was_firing = old.filter(|o| o.state.firing());
        if s.firing() && was_firing.is_none() {
            // Pending until the condition held in `fire_after` judgements in a row.
            let pending = old.filter(|o| o.state.pending());
            let streak = pending.map_or(0, |o| o.streak) + 1;
            let need = self.cfg.fire_after(s.monitor);
            if streak < need {
                s.state = Health::Pending;
                s.message = format!(
                    "{} (held in {streak} of the {need} consecutive runs it needs to fire)",
                    s.message
                );
                s.since_ms = pending.map_or(self.now_ms, |o| o.state.since_ms);
                let mut r = AlertRecord::new(s.clone(), old.and_then(|o| o.last_sent_ms), false);
                r.streak = streak;
                return r;
            }
        }
        if !s.firing() {
            // Ok since it was last found ok, or from now.
            s.since_ms = old
                .filter(|o| o.state.state == Health::Ok)
                .map_or(self.now_ms, |o| o.state.since_ms);
            return AlertRecord::new(s.clone(), old.and_then(|o| o.last_sent_ms), false);
        }
        let (mut last_sent, mut open) = (None, false);
        let due = match was_firing {
            Some(o) => {
                s.since_ms = o.state.since_ms;
                (last_sent, open) = (o.last_sent_ms, o.open);
                // Never told (no channel then), or told longer than `repeat` ago.
                o.last_sent_ms.is_none_or(|t| {
                    self.repeat_ms > 0 && self.now_ms.saturating_sub(t) >= self.repeat_ms
                })
            }
            None => {
                s.since_ms = self.now_ms;
                true
            }
        };
        if due && !self.channels.is_empty() {
            self.queue(notice(s, NoticeState::Firing, self.now_ms), notices);
            (last_sent, open) = (Some(self.now_ms), true);
        }
        AlertRecord::new(s.clone(), last_sent, open)
    }

    /// The `resolved` notice of a firing state: with the monitor's fresh ok
    /// state's figures when there is one (a subject may clear while others
    /// of its monitor still fire).
    fn resolved(&self, firing: &MonitorState, ok: Option<&MonitorState>) -> Notice {
        let mut n = notice(firing, NoticeState::Resolved, self.now_ms);
        match ok {
            Some(ok) => {
                n.value = ok.value;
                n.threshold = ok.threshold;
                n.run = ok.run.map(|r| r.0);
                n.message = ok.message.clone();
            }
            None => n.message = format!("no longer fires (it was: {})", firing.message),
        }
        n
    }

    fn queue(&self, n: Notice, notices: &mut Vec<(ChannelName, Notice)>) {
        for c in self.channels {
            notices.push((c.clone(), n.clone()));
        }
    }
}

/// The notice of a state, made at `now_ms`.
pub fn notice(s: &MonitorState, state: NoticeState, now_ms: u64) -> Notice {
    Notice {
        version: NOTICE_VERSION,
        target: s.target.to_string(),
        monitor: s.monitor.name().to_owned(),
        subject: s.subject.clone(),
        state,
        value: s.value,
        threshold: s.threshold,
        run: s.run.map(|r| r.0),
        message: s.message.clone(),
        since: rfc3339(s.since_ms),
        at: rfc3339(now_ms),
        host: None,
        dashboard: None,
    }
}

/// Milliseconds since the Unix epoch as RFC 3339 (UTC, seconds).
pub fn rfc3339(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
#[path = "state/tests.rs"]
mod tests;
