//! The state machine against a real store in a temp dir.

use super::*;
use crate::health::Health;
use crate::ids::RunId;
use crate::store::OutboxEntry;

const HOUR: u64 = 3_600_000;

/// Every monitor fires on its first breach here; `fire_after` has its own test.
fn cfg() -> MonitorConfig {
    let mut c = MonitorConfig::default();
    for k in MonitorKind::RUN_END {
        c.fire_after.insert(k, 1);
    }
    c
}

fn t() -> TargetId {
    TargetId::new("books")
}

fn channels() -> Vec<ChannelName> {
    vec![ChannelName::new("ops"), ChannelName::new("mail")]
}

fn state(monitor: MonitorKind, subject: &str, firing: bool, value: f64) -> MonitorState {
    MonitorState {
        target: t(),
        monitor,
        subject: subject.into(),
        state: if firing { Health::Firing } else { Health::Ok },
        value,
        threshold: 0.1,
        message: format!("{monitor} {subject} at {value}"),
        run: Some(RunId(7)),
        since_ms: 0,
    }
}

fn rate(firing: bool) -> MonitorState {
    state(
        MonitorKind::FailureRate,
        "",
        firing,
        if firing { 0.4 } else { 0.0 },
    )
}

fn queued(store: &Store) -> Vec<OutboxEntry> {
    let mut all = Vec::new();
    for c in channels() {
        all.extend(store.outbox(&c).unwrap());
    }
    all.sort_by_key(|e| e.seq);
    all
}

fn observe_rate(store: &Store, firing: bool, now: u64) -> Vec<MonitorState> {
    let scope = [MonitorKind::FailureRate];
    observe(
        store,
        &t(),
        &channels(),
        &cfg(),
        &scope,
        vec![rate(firing)],
        now,
    )
    .unwrap()
}

#[test]
fn firing_once_then_silent_then_repeated_then_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let t0 = 1_700_000_000_000;

    let now = observe_rate(&store, true, t0);
    assert_eq!(now.len(), 1);
    assert_eq!((now[0].state, now[0].since_ms), (Health::Firing, t0));
    let q = queued(&store);
    assert_eq!(q.len(), 2, "one firing notice per channel");
    let names: BTreeSet<&str> = q.iter().map(|e| e.channel.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["mail", "ops"]));
    assert!(q.iter().all(|e| e.notice.state == NoticeState::Firing
        && e.notice.monitor == "failure_rate"
        && e.notice.run == Some(7)
        && e.notice.since == "2023-11-14T22:13:20Z"));

    // Still firing within the repeat interval: nothing new, `since` kept.
    let now = observe_rate(&store, true, t0 + HOUR);
    assert_eq!(queued(&store).len(), 2);
    assert_eq!(now[0].since_ms, t0);

    // Still firing after the repeat interval: sent again.
    observe_rate(&store, true, t0 + 25 * HOUR);
    let q = queued(&store);
    assert_eq!(q.len(), 4);
    assert!(q[2..].iter().all(|e| e.notice.state == NoticeState::Firing));

    // Cleared: one resolved per channel, then the monitor is ok.
    let now = observe_rate(&store, false, t0 + 26 * HOUR);
    let q = queued(&store);
    assert_eq!(q.len(), 6);
    assert!(q[4..]
        .iter()
        .all(|e| e.notice.state == NoticeState::Resolved));
    assert_eq!(
        (now[0].state, now[0].since_ms),
        (Health::Ok, t0 + 26 * HOUR)
    );

    // Ok again: nothing more.
    observe_rate(&store, false, t0 + 27 * HOUR);
    assert_eq!(queued(&store).len(), 6);
}

#[test]
fn monitors_out_of_scope_keep_their_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let overdue = state(MonitorKind::Overdue, "", true, 7200.0);
    let clock = [MonitorKind::Overdue];
    observe(
        &store,
        &t(),
        &channels(),
        &cfg(),
        &clock,
        vec![overdue],
        1_000,
    )
    .unwrap();
    assert_eq!(queued(&store).len(), 2);

    // A run-end evaluation does not judge `overdue`: it stays firing, unsent.
    let now = observe_rate(&store, false, 2_000);
    assert_eq!(queued(&store).len(), 2);
    let overdue_now = now
        .iter()
        .find(|s| s.monitor == MonitorKind::Overdue)
        .unwrap();
    assert_eq!(
        (overdue_now.state, overdue_now.since_ms),
        (Health::Firing, 1_000)
    );
    assert_eq!(now.len(), 2);
    assert_eq!(store.monitor_states(&t()).unwrap(), now);
}

#[test]
fn subjects_fire_and_resolve_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let scope = [MonitorKind::FieldCoverage];
    let cov = |s: &str| state(MonitorKind::FieldCoverage, s, true, 0.1);
    let both = vec![cov("book.price"), cov("book.title")];
    let now = observe(&store, &t(), &channels(), &cfg(), &scope, both, 1_000).unwrap();
    assert_eq!(now.len(), 2);
    assert_eq!(queued(&store).len(), 4);

    let one = vec![cov("book.price")];
    let now = observe(&store, &t(), &channels(), &cfg(), &scope, one, 2_000).unwrap();
    let q = queued(&store);
    assert_eq!(q.len(), 6);
    assert!(q[4..]
        .iter()
        .all(|e| e.notice.state == NoticeState::Resolved && e.notice.subject == "book.title"));
    assert_eq!(now.len(), 1, "the cleared subject's record is gone");

    let ok = vec![state(MonitorKind::FieldCoverage, "", false, 1.0)];
    let now = observe(&store, &t(), &channels(), &cfg(), &scope, ok, 3_000).unwrap();
    assert_eq!(queued(&store).len(), 8);
    assert_eq!(now.len(), 1);
    assert_eq!((now[0].subject.as_str(), now[0].state), ("", Health::Ok));
}

#[test]
fn a_reopened_store_neither_resends_nor_forgets() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        observe_rate(&store, true, 1_000);
        assert_eq!(queued(&store).len(), 2);
    }
    let store = Store::open(dir.path()).unwrap();
    observe_rate(&store, true, 2_000);
    assert_eq!(
        queued(&store).len(),
        2,
        "still firing after a restart: not sent again"
    );
    observe_rate(&store, false, 3_000);
    assert_eq!(
        queued(&store).len(),
        4,
        "the open alert is resolved after a restart"
    );
    drop(store);
    let reader = Store::open_read(dir.path()).unwrap();
    let states = reader.monitor_states(&t()).unwrap();
    assert_eq!((states.len(), states[0].state), (1, Health::Ok));
    // `crawld store check` knows the alert records and the outbox.
    let check = reader.check().unwrap();
    assert!(check.problems.is_empty(), "{:?}", check.problems);
}

#[test]
fn without_channels_nothing_is_sent_nor_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let scope = [MonitorKind::FailureRate];
    observe(&store, &t(), &[], &cfg(), &scope, vec![rate(true)], 1_000).unwrap();
    observe(
        &store,
        &t(),
        &channels(),
        &cfg(),
        &scope,
        vec![rate(false)],
        2_000,
    )
    .unwrap();
    assert!(
        queued(&store).is_empty(),
        "no resolved for an alert never sent"
    );
}

/// A rate monitor (`fire_after` = 2 by default) is pending on its first
/// breach, fires on the second in a row, and a clean run between resets it.
#[test]
fn a_rate_monitor_fires_after_two_breaches_in_a_row() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let scope = [MonitorKind::FailureRate];
    let defaults = MonitorConfig::default();
    let mut at = 1_000;
    let mut observe_one = |firing: bool| {
        at += 1_000;
        observe(
            &store,
            &t(),
            &channels(),
            &defaults,
            &scope,
            vec![rate(firing)],
            at,
        )
        .unwrap()
    };
    let first = observe_one(true);
    assert_eq!(first[0].state, Health::Pending, "{first:?}");
    assert!(
        first[0].message.contains("1 of the 2"),
        "{}",
        first[0].message
    );
    assert_eq!(observe_one(false)[0].state, Health::Ok);
    assert_eq!(
        observe_one(true)[0].state,
        Health::Pending,
        "the streak was reset"
    );
    assert_eq!(observe_one(true)[0].state, Health::Firing);
    let sent: Vec<NoticeState> = queued(&store).iter().map(|e| e.notice.state).collect();
    assert_eq!(
        sent,
        [NoticeState::Firing, NoticeState::Firing],
        "one firing per channel, no resolved for a pending one"
    );
}
