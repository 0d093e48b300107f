//! One conformance suite for the store's interface: every behaviour the rest
//! of crawld relies on, run against both backends, sled in a temp dir and a
//! real PostgreSQL database (a fresh one per test; skipped with a notice
//! when no server is given, see README).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crawld::extract::Item;
use crawld::failure::Failure;
use crawld::health::{Health, MonitorKind, MonitorState};
use crawld::ids::{ChannelName, HostKey, RunId, TargetId};
use crawld::store::{
    AlertChanges, AlertRecord, ChangeKind, Notice, NoticeState, PageCommit, PageOutcome, RunMode,
    RunPolicy, RunRecord, RunStatus, RunWriter, Store, StoreError,
};
use serde_json::{json, Map, Value};

/// The lease of the test's nodes on a database.
const LEASE: Duration = Duration::from_secs(1);

#[allow(clippy::disallowed_methods)] // polls the database from a plain test thread
/// Starts a run, waiting (on a database) for the lease of a node that
/// "died" before (its store dropped without ending its run) to expire.
fn start_after_lease(store: &Store, mode: RunMode, urls: &[String]) -> crawld::store::RunStart {
    let deadline = std::time::Instant::now() + LEASE * 10;
    loop {
        match store.start_run(&t(), mode, urls, &POLICY) {
            Err(StoreError::RunElsewhere { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            started => return started.unwrap(),
        }
    }
}

/// Where a test's store lives.
enum Backend {
    Sled(tempfile::TempDir),
    Postgres {
        db: common::postgres::TestDatabase,
        dir: tempfile::TempDir,
    },
}

impl Backend {
    fn sled() -> Self {
        Backend::Sled(tempfile::tempdir().unwrap())
    }

    fn postgres() -> Option<Self> {
        Some(Backend::Postgres {
            db: common::postgres::database()?,
            dir: tempfile::tempdir().unwrap(),
        })
    }

    fn try_open(&self) -> Result<Store, StoreError> {
        match self {
            Backend::Sled(dir) => Store::open(dir.path()),
            // A short lease: a "dead" node's run is taken over in a second.
            Backend::Postgres { db, dir } => Store::connect_node(db.url(), dir.path(), LEASE),
        }
    }

    fn is_database(&self) -> bool {
        matches!(self, Backend::Postgres { .. })
    }

    /// The store, for a process that writes.
    fn open(&self) -> Arc<Store> {
        Arc::new(self.try_open().unwrap())
    }

    /// The store, for a command that only reads.
    fn open_read(&self) -> Store {
        match self {
            Backend::Sled(dir) => Store::open_read(dir.path()).unwrap(),
            Backend::Postgres { db, .. } => Store::connect_read(db.url()).unwrap(),
        }
    }
}

/// Each behaviour as a test per backend.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sled {
            $( #[test] fn $name() { super::$name(&super::Backend::sled()) } )*
        }
        mod postgres {
            $( #[test] fn $name() {
                if let Some(b) = super::Backend::postgres() { super::$name(&b) }
            } )*
        }
    };
}

conformance!(
    a_run_writes_pages_items_events_and_failures,
    an_interrupted_run_resumes_and_its_items_are_stored_once,
    a_changed_item_keeps_its_history_and_an_event,
    a_full_run_removes_the_items_of_gone_pages,
    old_runs_are_pruned_with_their_events,
    firings_pauses_and_run_ids_persist,
    alert_state_and_the_outbox,
    a_reader_sees_everything_and_writes_nothing,
    a_second_writer_is_refused,
    a_firing_is_claimed_once,
    scans_read_many_records_in_key_order,
    a_nul_from_a_page_is_stored_as_a_replacement_character,
    page_records_read_in_one_batch_match_single_reads,
);

const POLICY: RunPolicy = RunPolicy {
    resume_within: Duration::from_secs(3600),
    keep_versions: 2,
    keep_runs: 10,
};

fn t() -> TargetId {
    TargetId::new("books")
}

fn url(i: usize) -> String {
    format!("http://127.0.0.1:1/p/{i}")
}

fn value(price: f64) -> Map<String, Value> {
    json!({"title": "A book", "price": price})
        .as_object()
        .unwrap()
        .clone()
}

/// Page `i`, with one book (key `b{i}`) at `price` and a link to page `i + 1`.
fn page(i: usize, price: f64) -> PageCommit {
    PageCommit {
        url: url(i),
        depth: 0,
        admitted: vec![(url(i + 1), 1)],
        fetched_ms: 1,
        outcome: PageOutcome::Fetched {
            status: 200,
            etag: Some(format!("\"e{i}\"")),
            last_modified: None,
            body_hash: Some(format!("h{i}-{price}")),
            links: vec![url(i + 1)],
            items: vec![Item {
                kind: "book".into(),
                key: format!("b{i:05}"),
                value: value(price),
            }],
        },
    }
}

fn gone(i: usize) -> PageCommit {
    PageCommit {
        url: url(i),
        depth: 0,
        admitted: vec![],
        fetched_ms: 1,
        outcome: PageOutcome::Gone {
            status: 404,
            kind: Failure::Status(404),
            detail: "404 Not Found".into(),
        },
    }
}

/// A whole run of `pages`, committed in batches of 50, ended `status`.
fn run(store: &Arc<Store>, mode: RunMode, pages: Vec<PageCommit>, policy: RunPolicy) -> RunRecord {
    let start = store.start_run(&t(), mode, &[url(0)], &policy).unwrap();
    let mut w = RunWriter::new(store.clone(), &start, policy, "cfg".into());
    let mut pages = pages.into_iter().peekable();
    while pages.peek().is_some() {
        w.commit(pages.by_ref().take(50).collect()).unwrap();
    }
    w.finish(RunStatus::Completed, None, |_| {}).unwrap()
}

fn items(store: &Store) -> Vec<crawld::store::ItemRecord> {
    store.items(&t()).collect::<Result<_, _>>().unwrap()
}

fn a_run_writes_pages_items_events_and_failures(b: &Backend) {
    let store = b.open();
    let failed = PageCommit {
        url: url(9),
        depth: 1,
        admitted: vec![],
        fetched_ms: 1,
        outcome: PageOutcome::Failed {
            kind: Failure::Timeout,
            detail: "timed out after 30 s".into(),
            status: None,
        },
    };
    let pages = vec![page(0, 1.0), page(1, 2.0), page(2, 3.0), failed];
    let done = run(&store, RunMode::Full, pages, POLICY);
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.counts.items_new, 3);

    let last = store.last_run(&t()).unwrap().unwrap();
    assert_eq!((last.id, last.status), (done.id, RunStatus::Completed));
    assert_eq!(store.run(&t(), done.id).unwrap().unwrap().id, done.id);
    assert_eq!(store.targets_with_runs().unwrap(), vec![t()]);

    let all = items(&store);
    let keys: Vec<&str> = all.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["b00000", "b00001", "b00002"]);
    // Field order is the config's, as written.
    let fields: Vec<&String> = all[0].value.keys().collect();
    assert_eq!(fields, ["title", "price"]);
    let one = store.item(&t(), "book", "b00001").unwrap().unwrap();
    assert_eq!(one.value["price"], json!(2.0));
    assert!(store.item(&t(), "book", "nope").unwrap().is_none());

    let p = store.page(&t(), &url(1)).unwrap().unwrap();
    assert_eq!(
        (p.status, p.etag.as_deref(), p.links.clone()),
        (200, Some("\"e1\""), vec![url(2)])
    );
    let events: Vec<_> = store
        .events(&t(), done.id)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e.change == ChangeKind::Added));
    let failures: Vec<_> = store
        .failures(&t(), done.id)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(
        (failures[0].url.as_str(), failures[0].kind),
        (url(9).as_str(), Failure::Timeout)
    );
}

fn an_interrupted_run_resumes_and_its_items_are_stored_once(b: &Backend) {
    let first_id;
    {
        let store = b.open();
        let start = store
            .start_run(&t(), RunMode::Full, &[url(0)], &POLICY)
            .unwrap();
        first_id = start.run.id;
        let mut w = RunWriter::new(store.clone(), &start, POLICY, "cfg".into());
        w.commit((0..3).map(|i| page(i, 1.0)).collect()).unwrap();
        w.commit((3..5).map(|i| page(i, 1.0)).collect()).unwrap();
        // The process dies here: no finish, the run stays "running".
    }
    let store = b.open();
    let last = store.last_run(&t()).unwrap().unwrap();
    // sled: one process at a time, so opening marks a dead one's run
    // interrupted; a database: other nodes may be running it, so it is
    // marked by the node that takes its lease once that expires.
    let left = if b.is_database() {
        RunStatus::Running
    } else {
        RunStatus::Interrupted
    };
    assert_eq!((last.id, last.status), (first_id, left));
    let start = start_after_lease(&store, RunMode::Full, &[url(0)]);
    let last = store.run(&t(), first_id).unwrap().unwrap();
    assert_eq!(last.status, RunStatus::Interrupted);
    let resume = start.resume.as_ref().expect("the run resumes");
    assert_eq!(start.run.resumed_from, Some(first_id));
    assert_eq!(start.chain, vec![start.run.id, first_id]);
    let mut done = Vec::new();
    let mut open = Vec::new();
    store
        .replay_frontier(&t(), resume.crawl, |u, e| {
            if e.done {
                done.push(u.to_owned())
            } else {
                open.push(u.to_owned())
            }
        })
        .unwrap();
    done.sort();
    done.dedup();
    assert_eq!(done, (0..5).map(url).collect::<Vec<_>>());
    assert!(open.contains(&url(5)), "{open:?}");

    // Pages 3 and 4 again (their commit reached the store, as after a kill
    // between commit and acknowledgement), then the rest.
    let mut w = RunWriter::new(store.clone(), &start, POLICY, "cfg".into());
    w.commit((3..8).map(|i| page(i, 1.0)).collect()).unwrap();
    let second = w.finish(RunStatus::Completed, None, |_| {}).unwrap();
    let new_total = last.counts.items_new + second.counts.items_new;
    assert_eq!(new_total, 8, "every item counted new once across the chain");
    let all = items(&store);
    assert_eq!(all.len(), 8, "every item stored once");
    let mut keys: Vec<_> = all.iter().map(|i| i.key.clone()).collect();
    keys.dedup();
    assert_eq!(keys.len(), 8);
}

fn a_changed_item_keeps_its_history_and_an_event(b: &Backend) {
    let store = b.open();
    run(
        &store,
        RunMode::Full,
        vec![page(0, 10.0), page(1, 5.0)],
        POLICY,
    );
    let second = run(
        &store,
        RunMode::Incremental,
        vec![page(0, 12.5), page(1, 5.0)],
        POLICY,
    );
    assert_eq!(
        (second.counts.items_changed, second.counts.items_unchanged),
        (1, 1)
    );
    let item = store.item(&t(), "book", "b00000").unwrap().unwrap();
    assert_eq!(item.value["price"], json!(12.5));
    assert_eq!(item.history.len(), 1);
    assert_eq!(item.history[0].value["price"], json!(10.0));
    let events: Vec<_> = store
        .events(&t(), second.id)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].change, ChangeKind::Changed);
    assert_eq!(events[0].fields, ["price"]);
    assert_eq!(events[0].old["price"], json!(10.0));
}

fn a_full_run_removes_the_items_of_gone_pages(b: &Backend) {
    let store = b.open();
    run(
        &store,
        RunMode::Full,
        vec![page(0, 1.0), page(1, 1.0)],
        POLICY,
    );
    let second = run(&store, RunMode::Full, vec![page(0, 1.0), gone(1)], POLICY);
    assert_eq!(second.counts.items_removed, 1);
    let gone = store.item(&t(), "book", "b00001").unwrap().unwrap();
    assert!(gone.removed_ms.is_some());
    let kept = store.item(&t(), "book", "b00000").unwrap().unwrap();
    assert!(kept.removed_ms.is_none());
    let events: Vec<_> = store
        .events(&t(), second.id)
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(events
        .iter()
        .any(|e| e.change == ChangeKind::Removed && e.key == "b00001"));
}

fn old_runs_are_pruned_with_their_events(b: &Backend) {
    let store = b.open();
    let policy = RunPolicy {
        keep_runs: 2,
        ..POLICY
    };
    let first = run(&store, RunMode::Full, vec![page(0, 1.0)], policy);
    for price in [2.0, 3.0, 4.0] {
        run(&store, RunMode::Full, vec![page(0, price)], policy);
    }
    let runs: Vec<_> = store.runs(&t()).collect::<Result<_, _>>().unwrap();
    assert_eq!(runs.len(), 2);
    assert!(store.run(&t(), first.id).unwrap().is_none());
    assert_eq!(store.events(&t(), first.id).count(), 0);
    // Runs come oldest first.
    assert!(runs[0].id < runs[1].id);
    // Versions kept per item: keep_versions.
    let item = store.item(&t(), "book", "b00000").unwrap().unwrap();
    assert_eq!(item.history.len(), 2);
}

fn firings_pauses_and_run_ids_persist(b: &Backend) {
    let at = chrono::DateTime::from_timestamp_millis(1_765_000_000_123).unwrap();
    let first;
    {
        let store = b.open();
        assert!(store.last_fired(&t(), RunMode::Full).unwrap().is_none());
        store.set_last_fired(&t(), RunMode::Full, at).unwrap();
        store
            .set_host_pause(&HostKey::new("example.com:443"), 42)
            .unwrap();
        first = run(&store, RunMode::Full, vec![page(0, 1.0)], POLICY).id;
    }
    let store = b.open();
    assert_eq!(store.last_fired(&t(), RunMode::Full).unwrap(), Some(at));
    assert!(store
        .last_fired(&t(), RunMode::Incremental)
        .unwrap()
        .is_none());
    assert_eq!(
        store.host_pauses().unwrap(),
        vec![(HostKey::new("example.com:443"), 42)]
    );
    let next = run(&store, RunMode::Full, vec![page(0, 1.0)], POLICY).id;
    assert!(
        next > first,
        "run ids go on after a reopen: {first:?} {next:?}"
    );
}

/// Each firing of a schedule is taken once, whatever the number of nodes
/// racing for it; a catch-up decided on a stale reading is not taken.
fn a_firing_is_claimed_once(b: &Backend) {
    let at = |s: i64| chrono::DateTime::from_timestamp(1_765_000_000 + s, 0).unwrap();
    let nodes: Vec<Arc<Store>> = if b.is_database() {
        (0..3).map(|_| b.open()).collect()
    } else {
        vec![b.open()]
    };
    for firing in 0..5 {
        let taken: usize = std::thread::scope(|scope| {
            let racers: Vec<_> = (0..6)
                .map(|i| {
                    let node = nodes[i % nodes.len()].clone();
                    scope.spawn(move || {
                        node.claim_firing(&t(), RunMode::Full, at(firing * 60))
                            .unwrap()
                    })
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap() as usize).sum()
        });
        assert_eq!(taken, 1, "firing {firing}: taken once");
    }
    // An incremental firing at the same time is another firing.
    assert!(nodes[0]
        .claim_firing(&t(), RunMode::Incremental, at(240))
        .unwrap());
    // A firing older than the last one recorded is not taken again.
    assert!(!nodes[0].claim_firing(&t(), RunMode::Full, at(0)).unwrap());
    // Catch-up: decided on what was read; taken only while it still holds.
    let seen = nodes[0].last_fired(&t(), RunMode::Full).unwrap();
    assert_eq!(seen, Some(at(240)));
    let last = nodes.len() - 1;
    assert!(nodes[last].claim_catch_up(&t(), seen).unwrap());
    assert!(
        !nodes[0].claim_catch_up(&t(), seen).unwrap(),
        "the other node caught up first"
    );
}

fn monitor_state(firing: bool) -> MonitorState {
    MonitorState {
        target: t(),
        monitor: MonitorKind::FailureRate,
        subject: String::new(),
        state: if firing { Health::Firing } else { Health::Ok },
        value: 0.5,
        threshold: 0.1,
        message: "half the pages failed".into(),
        run: Some(RunId(1)),
        since_ms: 5,
    }
}

fn notice() -> Notice {
    Notice {
        version: crawld::store::NOTICE_VERSION,
        target: "books".into(),
        monitor: "failure_rate".into(),
        subject: String::new(),
        state: NoticeState::Firing,
        value: 0.5,
        threshold: 0.1,
        run: Some(1),
        message: "half the pages failed".into(),
        since: "2026-12-07T00:00:00Z".into(),
        at: "2026-12-07T00:00:00Z".into(),
        host: None,
        dashboard: None,
    }
}

fn alert_state_and_the_outbox(b: &Backend) {
    let store = b.open();
    let ops = ChannelName::new("ops");
    store
        .update_alerts(&t(), |old| {
            assert!(old.is_empty());
            let changes = AlertChanges {
                put: vec![AlertRecord::new(monitor_state(true), Some(5), true)],
                remove: vec![],
                notices: vec![(ops.clone(), notice()), (ops.clone(), notice())],
                now_ms: 5,
            };
            (changes, ())
        })
        .unwrap();
    let records = store.alert_records(&t()).unwrap();
    assert_eq!(records.len(), 1);
    assert!(records[0].open);
    assert_eq!(store.monitor_states(&t()).unwrap()[0].state, Health::Firing);

    let queued = store.outbox(&ops).unwrap();
    assert_eq!(queued.len(), 2);
    assert!(queued[0].seq < queued[1].seq);
    assert_eq!(store.outbox_counts().unwrap().get(&ops), Some(&2));
    let mut retry = queued[0].clone();
    retry.attempts = 1;
    retry.next_attempt_ms = 99;
    store.outbox_retry(std::slice::from_ref(&retry)).unwrap();
    store.outbox_delivered(&queued[1..]).unwrap();
    let left = store.outbox(&ops).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!((left[0].attempts, left[0].next_attempt_ms), (1, 99));
    assert_eq!(store.outbox_drop(&ops).unwrap(), 1);
    assert!(store.outbox(&ops).unwrap().is_empty());

    store
        .update_alerts(&t(), |old| {
            let changes = AlertChanges {
                remove: vec![(old[0].state.monitor, old[0].state.subject.clone())],
                ..AlertChanges::default()
            };
            (changes, ())
        })
        .unwrap();
    assert!(store.alert_records(&t()).unwrap().is_empty());
}

fn a_reader_sees_everything_and_writes_nothing(b: &Backend) {
    {
        let store = b.open();
        run(
            &store,
            RunMode::Full,
            vec![page(0, 1.0), page(1, 1.0)],
            POLICY,
        );
    }
    let reader = b.open_read();
    assert_eq!(reader.runs(&t()).count(), 1);
    assert_eq!(reader.items(&t()).count(), 2);
    let refused = reader.set_host_pause(&HostKey::new("a:80"), 1).unwrap_err();
    assert!(matches!(refused, StoreError::ReadOnly { .. }), "{refused}");
    assert!(reader.start_run(&t(), RunMode::Full, &[], &POLICY).is_err());
    drop(reader);
    // Nothing changed.
    let store = b.open();
    assert_eq!(store.runs(&t()).count(), 1);
    assert!(store.host_pauses().unwrap().is_empty());
}

/// sled: a second process cannot open the store. A database: a second
/// node can, and a run of a target another node runs is refused.
fn a_second_writer_is_refused(b: &Backend) {
    let first = b.open();
    if b.is_database() {
        let second = b.open();
        let start = first.start_run(&t(), RunMode::Full, &[], &POLICY).unwrap();
        let refused = second
            .start_run(&t(), RunMode::Full, &[], &POLICY)
            .unwrap_err();
        assert!(
            matches!(&refused, StoreError::RunElsewhere { node, .. } if Some(node) == first.node_id().as_ref()),
            "{refused}"
        );
        assert_eq!(
            crawld::error::Exit::from(&refused),
            crawld::error::Exit::Locked
        );
        assert_eq!(
            second.runs(&t()).count(),
            1,
            "the refused run wrote nothing"
        );
        // Ended, the run's lease goes: the second node runs the target.
        RunWriter::new(first.clone(), &start, POLICY, "cfg".into())
            .finish(RunStatus::Completed, None, |_| {})
            .unwrap();
        run(&second, RunMode::Full, vec![page(0, 1.0)], POLICY);
        return;
    }
    let second = b.try_open().err().expect("a second writer is refused");
    assert!(matches!(second, StoreError::Locked { .. }), "{second}");
    assert_eq!(
        crawld::error::Exit::from(&second),
        crawld::error::Exit::Locked
    );
    drop(first);
    // Released with the first.
    b.open();
}

/// A page with U+0000 in an item's key and values (JSON-LD may carry
/// `"\u0000"`).
fn nul_page() -> PageCommit {
    let mut p = page(0, 1.0);
    if let PageOutcome::Fetched { items, .. } = &mut p.outcome {
        items[0].key = "b\0nul".into();
        items[0].value.insert("title".into(), json!("A\0B"));
        items[0]
            .value
            .insert("tags".into(), json!(["x\0", {"y": "\0"}]));
    }
    p
}

fn a_nul_from_a_page_is_stored_as_a_replacement_character(b: &Backend) {
    let store = b.open();
    let done = run(&store, RunMode::Full, vec![nul_page()], POLICY);
    assert_eq!(done.counts.items_new, 1);
    let item = store.item(&t(), "book", "b\u{FFFD}nul").unwrap().unwrap();
    assert_eq!(item.value["title"], json!("A\u{FFFD}B"));
    assert_eq!(item.value["tags"], json!(["x\u{FFFD}", {"y": "\u{FFFD}"}]));
}

/// The read-ahead's batch read: the records of the URLs asked, in their
/// order, `None` for a URL never fetched, repeats included.
fn page_records_read_in_one_batch_match_single_reads(b: &Backend) {
    let store = b.open();
    run(
        &store,
        RunMode::Full,
        (0..30).map(|i| page(i, 1.0)).collect(),
        POLICY,
    );
    let mut urls: Vec<String> = vec![url(7), url(999), url(0), url(7), url(29)];
    urls.extend((0..1500).map(|i| url(i % 40)));
    let batch = store.pages(&t(), &urls).unwrap();
    assert_eq!(batch.len(), urls.len());
    for (u, got) in urls.iter().zip(&batch) {
        let single = store.page(&t(), u).unwrap();
        assert_eq!(
            got.as_ref().map(|p| (&p.url, p.status, &p.etag)),
            single.as_ref().map(|p| (&p.url, p.status, &p.etag)),
            "{u}"
        );
    }
    assert!(batch[1].is_none() && batch[0].is_some());
    assert!(store.pages(&t(), &[]).unwrap().is_empty());
}

fn scans_read_many_records_in_key_order(b: &Backend) {
    let store = b.open();
    // More than a page of rows of every kind a scan reads in pages.
    let n = 2_345;
    let pages: Vec<_> = (0..n).rev().map(|i| page(i, 1.0)).collect();
    run(&store, RunMode::Full, pages, POLICY);
    let all = items(&store);
    assert_eq!(all.len(), n);
    assert!(all.windows(2).all(|w| w[0].key < w[1].key), "key order");
    let last = store.last_run(&t()).unwrap().unwrap();
    assert_eq!(store.events(&t(), last.id).count(), n);
    // Pages and items, all readable.
    assert_eq!(store.check_readable(&t()).unwrap(), 2 * n as u64);
}

/// What only the PostgreSQL backend has: a versioned schema, and a server
/// that can go away and come back.
mod postgres_only {
    use super::common::postgres::{self, sql};
    use crawld::store::{Store, StoreError};

    /// Rows in every crawld table, and the schema's versions: what a write
    /// would change.
    fn footprint(url: &str) -> Vec<Vec<Option<String>>> {
        sql(
            url,
            "SELECT (SELECT count(*) FROM crawld.runs), (SELECT count(*) FROM crawld.state), \
             (SELECT string_agg(version::text, ',' ORDER BY version) FROM crawld.schema_history)",
        )
    }

    #[test]
    fn a_database_newer_than_this_release_is_refused_before_any_write() {
        let Some(db) = postgres::database() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        drop(Store::connect(db.url(), dir.path()).unwrap());
        // A later release applied version 99.
        sql(
            db.url(),
            "INSERT INTO crawld.schema_history (version, name, applied_on, checksum) \
             VALUES (99, 'later', 'now', '0')",
        );
        let before = footprint(db.url());
        let refused = Store::connect(db.url(), dir.path()).err().unwrap();
        assert!(
            matches!(refused, StoreError::DatabaseNewer { found: 99, .. }),
            "{refused}"
        );
        let text = refused.to_string();
        assert!(text.contains("nothing was written"), "{text}");
        let read = Store::connect_read(db.url()).err().unwrap();
        assert!(
            matches!(
                read,
                StoreError::DatabaseSchema {
                    found: Some(99),
                    ..
                }
            ),
            "{read}"
        );
        assert_eq!(footprint(db.url()), before);
    }

    /// The views read every item, one with a NUL from its page included.
    #[test]
    fn the_views_read_what_crawld_wrote() {
        let Some(db) = postgres::database() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::connect(db.url(), dir.path()).unwrap());
        super::run(
            &store,
            super::RunMode::Full,
            vec![super::nul_page(), super::page(1, 2.5)],
            super::POLICY,
        );
        let second = super::run(
            &store,
            super::RunMode::Full,
            vec![super::nul_page(), super::page(1, 3.0)],
            super::POLICY,
        );
        let rows = sql(
            db.url(),
            "SELECT key, value->>'title', value->>'price' FROM crawld.items_current \
             WHERE target = 'books' ORDER BY key",
        );
        assert_eq!(
            rows,
            vec![
                vec![
                    Some("b00001".into()),
                    Some("A book".into()),
                    Some("3.0".into())
                ],
                vec![
                    Some("b\u{FFFD}nul".into()),
                    Some("A\u{FFFD}B".into()),
                    Some("1.0".into())
                ],
            ]
        );
        let history = sql(
            db.url(),
            "SELECT key, value->>'price' FROM crawld.item_history WHERE target = 'books'",
        );
        assert_eq!(
            history,
            vec![vec![Some("b00001".into()), Some("2.5".into())]]
        );
        let changes = sql(
            db.url(),
            &format!(
                "SELECT change, key, old->>'price', value->>'price' FROM crawld.changes \
                 WHERE target = 'books' AND run = {}",
                second.id.0
            ),
        );
        assert_eq!(
            changes,
            vec![vec![
                Some("changed".into()),
                Some("b00001".into()),
                Some("2.5".into()),
                Some("3.0".into())
            ]]
        );
        let runs = sql(
            db.url(),
            "SELECT run, status, items_new, items_changed FROM crawld.run_summaries ORDER BY run",
        );
        assert_eq!(runs.len(), 2);
        assert_eq!(
            runs[1][1..],
            [Some("completed".into()), Some("0".into()), Some("1".into())]
        );
    }

    #[test]
    fn a_reader_does_not_create_the_schema() {
        let Some(db) = postgres::database() else {
            return;
        };
        let refused = Store::connect_read(db.url()).err().unwrap();
        assert!(
            matches!(refused, StoreError::DatabaseSchema { found: None, .. }),
            "{refused}"
        );
        assert!(
            refused.to_string().contains("has no crawld schema"),
            "{refused}"
        );
        let schema = sql(db.url(), "SELECT to_regnamespace('crawld')::text");
        assert_eq!(schema, vec![vec![None]], "a reader created nothing");
        // A writer creates it, and says where it is when it fails later.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(db.url(), dir.path()).unwrap();
        assert!(store.describe().starts_with("postgres://"));
        assert!(
            !store.describe().contains(":crawld@"),
            "no password in messages"
        );
    }
}

/// The database goes away in the middle of a run (its connections cut, new
/// ones refused, as while a server restarts) and comes back: the commit
/// waits for it, and the run completes with every item once.
#[test]
fn a_run_waits_for_a_lost_database_and_completes() {
    use postgres_only_support::*;
    let Some(db) = common::postgres::database() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (store, mut w) = writing(&db, &dir);
    w.commit((0..10).map(|i| page(i, 1.0)).collect()).unwrap();

    let outage = Duration::from_secs(2);
    cut(&db, true);
    let back = {
        let admin = db.admin_url().to_owned();
        let name = db.name().to_owned();
        std::thread::spawn(move || {
            // The outage's length, not a synchronisation: the commit below
            // must wait at least this long, however fast it retries.
            #[allow(clippy::disallowed_methods)] // a plain thread, not an async worker
            std::thread::sleep(outage);
            common::postgres::sql(
                &admin,
                &format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true"),
            );
        })
    };
    let began = Instant::now();
    w.commit((10..20).map(|i| page(i, 1.0)).collect())
        .expect("the commit waits for the database");
    let waited = began.elapsed();
    back.join().unwrap();
    assert!(
        waited >= outage,
        "the commit went through during the outage? {waited:?}"
    );
    let done = w.finish(RunStatus::Completed, None, |_| {}).unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.counts.items_new, 20);
    let all = items(&store);
    assert_eq!(all.len(), 20, "every item once");
}

mod postgres_only_support {
    use super::common::postgres::{sql, TestDatabase};

    /// Cuts the test database's connections and refuses new ones (or only
    /// refuses, with `terminate` false).
    pub fn cut(db: &TestDatabase, terminate: bool) {
        let name = db.name();
        sql(
            db.admin_url(),
            &format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false"),
        );
        if terminate {
            sql(
                db.admin_url(),
                &format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = '{name}' AND pid <> pg_backend_pid()"
                ),
            );
        }
    }
}

/// A node that could not renew its lease (cut off, stalled) and whose run
/// another node took over writes nothing more of it: every commit checks
/// the lease's generation in its transaction (fencing).
#[test]
fn a_node_whose_run_was_taken_over_writes_nothing() {
    let Some(db) = common::postgres::database() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (first, mut w) = writing(&db, &dir);
    w.commit(vec![page(0, 1.0)]).unwrap();
    // As if its heartbeats had stopped for a lease: the lease expired.
    common::postgres::sql(
        db.url(),
        "UPDATE crawld.run_leases SET expires = now() - interval '1 second'",
    );
    let second = Arc::new(Store::connect(db.url(), tempfile::tempdir().unwrap().path()).unwrap());
    let start = second.start_run(&t(), RunMode::Full, &[], &POLICY).unwrap();
    assert_eq!(
        start.run.resumed_from,
        w.run().id.into(),
        "the second node resumes the run"
    );
    let refused = w.commit(vec![page(1, 1.0)]).unwrap_err();
    assert!(
        matches!(&refused, StoreError::LeaseLost { holder: Some(n), .. } if Some(n) == second.node_id().as_ref()),
        "{refused}"
    );
    assert!(
        second.item(&t(), "book", "b00001").unwrap().is_none(),
        "the first node wrote nothing once its run was taken over"
    );
    let refused = w.finish(RunStatus::Completed, None, |_| {}).unwrap_err();
    assert!(matches!(refused, StoreError::LeaseLost { .. }), "{refused}");
    // The second node goes on and ends the run.
    let mut w2 = RunWriter::new(second.clone(), &start, POLICY, "cfg".into());
    w2.commit(vec![page(1, 1.0)]).unwrap();
    w2.finish(RunStatus::Completed, None, |_| {}).unwrap();
    assert_eq!(items(&second).len(), 2);
    drop(first);
}

/// A writer on `db` (its own files in `dir`) and a full run it started.
fn writing(
    db: &common::postgres::TestDatabase,
    dir: &tempfile::TempDir,
) -> (Arc<Store>, RunWriter) {
    let store = Arc::new(Store::connect(db.url(), dir.path()).unwrap());
    let start = store.start_run(&t(), RunMode::Full, &[], &POLICY).unwrap();
    let w = RunWriter::new(store.clone(), &start, POLICY, "cfg".into());
    (store, w)
}
