//! The outbox's delivery with a real store and real loopback receivers:
//! retries until a channel recovers (exactly one delivery), channels that do
//! not wait on each other, the rate limit, one foreground pass, and the
//! daemon delivering what was queued before it started.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crawld::alert::{self, Backoff, Delivery};
use crawld::config::Channel;
use crawld::control::status::ChannelStatus;
use crawld::health::{Health, MonitorKind, MonitorState};
use crawld::ids::{ChannelName, RunId, TargetId};
use crawld::store::{now_ms, Store};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::channels;
use super::common::daemon::{wait_for, Daemon};
use super::common::sinks::WebhookSink;
use super::common::tcp::TcpServer;

/// Short retries, so that a test sees several within a second.
const FAST: Backoff = Backoff {
    first: Duration::from_millis(50),
    max: Duration::from_millis(200),
};

fn books() -> TargetId {
    TargetId::new("books")
}

fn firing(monitor: MonitorKind) -> MonitorState {
    MonitorState {
        target: books(),
        monitor,
        subject: String::new(),
        state: Health::Firing,
        value: 0.4,
        threshold: 0.1,
        message: "14 of 35 pages failed".into(),
        run: Some(RunId(3)),
        since_ms: 0,
    }
}

/// Queues one firing notice of `monitor` on `to`.
fn queue(store: &Store, to: &[&str], monitor: MonitorKind) {
    let to: Vec<ChannelName> = to.iter().map(|c| ChannelName::new(*c)).collect();
    let states = vec![firing(monitor)];
    // Every monitor fires on its first breach here.
    let mut cfg = crawld::config::MonitorConfig::default();
    cfg.fire_after.insert(monitor, 1);
    alert::observe(store, &books(), &to, &cfg, &[monitor], states, now_ms()).unwrap();
}

fn hook(name: &str, url: &str, extra: &str) -> String {
    format!("[channels.{name}]\nkind = \"webhook\"\nurl = \"{url}\"\n{extra}\n")
}

fn start(store: &Arc<Store>, map: BTreeMap<ChannelName, Arc<Channel>>) -> Delivery {
    let (tx, rx) = watch::channel(Arc::new(map));
    // The sender may go: the delivery keeps the last channel set.
    drop(tx);
    let d = Delivery::start_with(store.clone(), rx, CancellationToken::new(), FAST);
    d.kicker().kick();
    d
}

fn status(d: &Delivery, name: &str) -> ChannelStatus {
    d.status().into_iter().find(|c| c.name == name).unwrap()
}

/// Polls `ok` every 20 ms; fails the test after 10 s.
async fn until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pending(store: &Store, name: &str) -> usize {
    store.outbox(&ChannelName::new(name)).unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_answering_500_gets_the_alert_once_it_recovers() {
    let sink = WebhookSink::start();
    sink.answer(500);
    let dir = tempfile::tempdir().unwrap();
    let map = channels(
        &dir.path().join("configs"),
        &hook("ops", &sink.url("/hook"), ""),
    );
    let store = Arc::new(Store::open(&dir.path().join("state")).unwrap());
    queue(&store, &["ops"], MonitorKind::FailureRate);
    let d = start(&store, map);

    until("two failed attempts", || status(&d, "ops").failed >= 2).await;
    assert!(sink.hooks().len() >= 2);
    let s = status(&d, "ops");
    assert_eq!((s.delivered, s.pending), (0, 1));
    assert!(
        s.last_error
            .as_deref()
            .unwrap_or("")
            .contains("answered 500"),
        "{s:?}"
    );

    sink.answer(200);
    until("delivered", || pending(&store, "ops") == 0).await;
    let accepted = sink.accepted();
    assert_eq!(accepted.len(), 1, "exactly once");
    assert_eq!(accepted[0]["state"], "firing");
    assert_eq!(accepted[0]["target"], "books");
    assert_eq!(accepted[0]["monitor"], "failure_rate");
    assert_eq!(accepted[0]["run"], 3);
    until("counted", || status(&d, "ops").delivered == 1).await;
    let s = status(&d, "ops");
    assert_eq!((s.delivered, s.pending), (1, 0));
    assert!(s.last_delivered_ms.is_some());
    assert_eq!(s.last_error, None, "a success clears the red error: {s:?}");

    // An idle queue wakes on a kick for what is queued next (it would
    // otherwise look again only after 30 s).
    queue(&store, &["ops"], MonitorKind::ItemCount);
    d.kicker().kick();
    until("the next one delivered", || sink.accepted().len() == 2).await;
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_retried_until_the_receiver_is_back() {
    let sink = WebhookSink::start();
    sink.close();
    let dir = tempfile::tempdir().unwrap();
    let map = channels(
        &dir.path().join("configs"),
        &hook("ops", &sink.url("/hook"), ""),
    );
    let store = Arc::new(Store::open(&dir.path().join("state")).unwrap());
    queue(&store, &["ops"], MonitorKind::RunFailed);
    let d = start(&store, map);

    until("two failed attempts", || status(&d, "ops").failed >= 2).await;
    let s = status(&d, "ops");
    assert!(
        s.last_error
            .as_deref()
            .unwrap_or("")
            .contains("cannot reach"),
        "{s:?}"
    );
    // Kept across attempts, in the store.
    let entry = &store.outbox(&ChannelName::new("ops")).unwrap()[0];
    assert!(
        entry.attempts >= 2 && entry.next_attempt_ms > 0,
        "{entry:?}"
    );

    sink.reopen();
    until("delivered", || pending(&store, "ops") == 0).await;
    assert_eq!(sink.accepted().len(), 1, "exactly once");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_that_hangs_does_not_hold_up_another() {
    // Accepts, then never answers.
    let hang = TcpServer::start(|tcp| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(tcp);
    });
    let sink = WebhookSink::start();
    let dir = tempfile::tempdir().unwrap();
    let text = hook(
        "slow",
        &format!("http://{}/hook", hang.addr),
        "timeout = \"5s\"",
    ) + &hook("fast", &sink.url("/hook"), "");
    let map = channels(&dir.path().join("configs"), &text);
    let store = Arc::new(Store::open(&dir.path().join("state")).unwrap());
    // The slow channel is first in line.
    queue(&store, &["slow", "fast"], MonitorKind::ItemCount);
    let started = Instant::now();
    let d = start(&store, map);

    until("the fast channel delivered", || sink.accepted().len() == 1).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    until("the slow one is being tried", || hang.connections() == 1).await;
    let slow = status(&d, "slow");
    assert_eq!((slow.delivered, slow.failed, slow.pending), (0, 0, 1));
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_holds_the_excess_in_the_queue() {
    let sink = WebhookSink::start();
    let dir = tempfile::tempdir().unwrap();
    let text = hook("ops", &sink.url("/hook"), "max_per_minute = 2");
    let map = channels(&dir.path().join("configs"), &text);
    let store = Arc::new(Store::open(&dir.path().join("state")).unwrap());
    for m in [
        MonitorKind::RunFailed,
        MonitorKind::FailureRate,
        MonitorKind::ItemCount,
    ] {
        queue(&store, &["ops"], m);
    }
    let d = start(&store, map);
    until("two delivered", || sink.accepted().len() == 2).await;
    // Sent in the order they were queued.
    let monitors: Vec<String> = sink
        .accepted()
        .iter()
        .map(|b| b["monitor"].to_string())
        .collect();
    assert_eq!(monitors, ["\"run_failed\"", "\"failure_rate\""]);
    // The third waits for the minute to pass: still queued a moment later, not dropped.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.accepted().len(), 2);
    assert_eq!(pending(&store, "ops"), 1);
    assert_eq!(status(&d, "ops").pending, 1);
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pass_delivers_what_it_can_and_drops_notices_of_unknown_channels() {
    let sink = WebhookSink::start();
    let down = WebhookSink::start();
    down.close();
    let dir = tempfile::tempdir().unwrap();
    let text = hook("ops", &sink.url("/hook"), "") + &hook("down", &down.url("/hook"), "");
    let map = channels(&dir.path().join("configs"), &text);
    let store = Arc::new(Store::open(&dir.path().join("state")).unwrap());
    queue(&store, &["ops", "down", "gone"], MonitorKind::RunFailed);
    queue(&store, &["ops", "down", "gone"], MonitorKind::FailureRate);

    let drained = alert::deliver_pending(store.clone(), &map, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!((drained.delivered, drained.failed), (2, 1), "{drained:?}");
    assert_eq!((drained.pending, drained.dropped), (2, 2), "{drained:?}");
    assert_eq!(drained.errors.len(), 1);
    assert_eq!(drained.errors[0].0, ChannelName::new("down"));
    assert!(drained.errors[0].1.contains("cannot reach"), "{drained:?}");
    assert_eq!(sink.accepted().len(), 2);
    assert_eq!((pending(&store, "down"), pending(&store, "gone")), (2, 0));
}

#[test]
fn the_daemon_delivers_what_was_queued_and_never_twice() {
    let sink = WebhookSink::start();
    let dir = tempfile::tempdir().unwrap();
    let (configs, state) = (dir.path().join("configs"), dir.path().join("state"));
    channels(&configs, &hook("ops", &sink.url("/hook"), "default = true"));
    {
        let store = Store::open(&state).unwrap();
        queue(&store, &["ops"], MonitorKind::Overdue);
    }
    let daemon = Daemon::start(&configs, &state, &[]);
    wait_for(
        || sink.accepted().len() == 1,
        "the queued alert is delivered",
    );
    wait_for(
        || daemon.status()["channels"][0]["delivered"] == 1,
        "the status counts the delivery",
    );
    let c = &daemon.status()["channels"][0];
    assert_eq!(
        (c["name"].as_str(), c["kind"].as_str()),
        (Some("ops"), Some("webhook"))
    );
    assert_eq!(c["pending"], 0);
    assert_eq!(daemon.stop(), Some(0));

    // Nothing is left to send again after a restart.
    let store = Store::open_read(&state).unwrap();
    assert_eq!(pending(&store, "ops"), 0);
    assert_eq!(sink.accepted().len(), 1);
}

/// After an outage, a firing that resolved meanwhile is one message, not
/// two, and what still fires goes first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_outage_a_firing_that_resolved_meanwhile_is_one_message() {
    let sink = WebhookSink::start();
    sink.close();
    let dir = tempfile::tempdir().unwrap();
    let map = channels(
        &dir.path().join("configs"),
        &hook("ops", &sink.url("/hook"), ""),
    );
    let store = Arc::new(Store::open(&dir.path().join("state")).unwrap());
    queue(&store, &["ops"], MonitorKind::FailureRate);
    let d = start(&store, map);
    until("a failed attempt", || status(&d, "ops").failed >= 1).await;
    // While the channel is down: failure_rate resolves, item_count fires.
    let ops = [ChannelName::new("ops")];
    let mut cfg = crawld::config::MonitorConfig::default();
    cfg.fire_after.insert(MonitorKind::ItemCount, 1);
    let mut ok = firing(MonitorKind::FailureRate);
    ok.state = Health::Ok;
    ok.message = "0 of 35 pages failed".into();
    let scope = [MonitorKind::FailureRate];
    alert::observe(&store, &books(), &ops, &cfg, &scope, vec![ok], now_ms()).unwrap();
    let scope = [MonitorKind::ItemCount];
    let items = vec![firing(MonitorKind::ItemCount)];
    alert::observe(&store, &books(), &ops, &cfg, &scope, items, now_ms()).unwrap();
    sink.reopen();
    until("delivered", || pending(&store, "ops") == 0).await;
    let sent = sink.accepted();
    let seen: Vec<(String, String)> = sent
        .iter()
        .map(|n| (n["monitor"].to_string(), n["state"].to_string()))
        .collect();
    assert_eq!(
        seen,
        [
            (r#""item_count""#.to_owned(), r#""firing""#.to_owned()),
            (r#""failure_rate""#.to_owned(), r#""resolved""#.to_owned()),
        ],
        "the current one first, then one message for the old episode"
    );
    let old = sent[1]["message"].as_str().unwrap();
    assert!(old.starts_with("fired at "), "{old}");
    assert!(old.contains("0 of 35 pages failed"), "{old}");
    until("no red error after a success", || {
        status(&d, "ops").last_error.is_none()
    })
    .await;
    d.shutdown().await;
}
