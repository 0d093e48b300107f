//! Change notices (`[notify]`): the item changes of a completed run, read
//! from the store's change feed, filtered by the target's `[notify]` and
//! queued, one message per channel, in the alerts' outbox.
//!
//! A run's message covers the runs it resumed too (as `crawld export
//! --changes` does): an interrupted run sends nothing, and the run that
//! completes its crawl sends what the whole crawl changed. The feed is read
//! as a stream: a message keeps at most `max_items` changes and counts the
//! rest, whatever the run changed. A message is bounded in bytes too: each
//! value is cut ([`VALUE_CHARS`], [`LIST_ITEMS`], [`VALUE_BYTES`]) and the
//! list stops at [`MESSAGE_BYTES`], the rest counted in `truncated`.

use serde_json::{Map, Value};

use crate::config::{NotifyConfig, Target};
use crate::ids::{ChannelName, RunId};
use crate::store::{
    ChangeCounts, ChangeEvent, ChangeKind, ChangeNotice, ItemChange, ItemChangeKind, RunRecord,
    RunStatus, Store, StoreError, CHANGES_TYPE, CHANGES_VERSION,
};

/// A string in a notice (a field's value, or one inside a list or an
/// object) keeps at most this many characters, then `…`.
pub const VALUE_CHARS: usize = 1_000;
/// An item's key and page keep at most this many characters, then `…`.
pub const KEY_CHARS: usize = 2_000;
/// A list in a value keeps at most this many elements, then the string
/// `… and N more`.
pub const LIST_ITEMS: usize = 100;
/// A field's value whose JSON is still longer than this (deep or wide
/// objects) is sent as its JSON text, cut to [`VALUE_CHARS`].
pub const VALUE_BYTES: usize = 8 * 1024;
/// A message lists changes while their JSON fits in this many bytes; the
/// rest are counted in `truncated`, as beyond `max_items`.
pub const MESSAGE_BYTES: usize = 256 * 1024;

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
    // The JSON bytes of the changes listed so far; once one does not fit,
    // none after it is listed (the list keeps the run's order).
    let (mut bytes, mut full) = (0usize, false);
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
            if !full && notice.changes.len() < notify.max_items {
                let item = item_change(change, event);
                let size = serde_json::to_vec(&item).map_or(usize::MAX, |v| v.len() + 1);
                if bytes.saturating_add(size) <= MESSAGE_BYTES {
                    bytes += size;
                    notice.changes.push(item);
                    continue;
                }
                full = true;
            }
            notice.truncated += 1;
        }
    }
    Ok((notice.counts.total() > 0).then_some(notice))
}

/// The runs whose events the message of `run` covers, oldest first: the
/// interrupted runs it resumed, every run after the target's marker (the
/// last run queued) up to `run` whatever its status (an abandoned or failed
/// run wrote its changes too, and the runs after it saw those items
/// unchanged), then itself.
fn chain(store: &Store, run: &RunRecord) -> Result<Vec<RunId>, StoreError> {
    let mut ids = resumed(store, run)?;
    if let Some(marker) = store.notified_run(&run.target)? {
        for r in store.runs(&run.target) {
            let id = r?.id;
            if id > marker && id < run.id && !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    ids.sort();
    Ok(ids)
}

/// `run` and the interrupted runs it resumed.
fn resumed(store: &Store, run: &RunRecord) -> Result<Vec<RunId>, StoreError> {
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
    m.insert("old".into(), capped(old));
    m.insert("new".into(), capped(new));
    Value::Object(m)
}

/// At most `max` characters of `s`, cut on a character boundary, then `…`.
fn cut(mut s: String, max: usize) -> String {
    if let Some((end, _)) = s.char_indices().nth(max) {
        s.truncate(end);
        s.push('…');
    }
    s
}

/// A field's value as a notice carries it: strings cut at [`VALUE_CHARS`],
/// lists at [`LIST_ITEMS`], and a value still over [`VALUE_BYTES`] as its
/// JSON text, cut.
fn capped(v: Value) -> Value {
    let v = capped_in(v);
    match serde_json::to_string(&v) {
        Ok(json) if json.len() > VALUE_BYTES => Value::String(cut(json, VALUE_CHARS)),
        _ => v,
    }
}

fn capped_in(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(cut(s, VALUE_CHARS)),
        Value::Array(a) => {
            let more = a.len().saturating_sub(LIST_ITEMS);
            let mut out: Vec<Value> = a.into_iter().take(LIST_ITEMS).map(capped_in).collect();
            if more > 0 {
                out.push(Value::String(format!("… and {more} more")));
            }
            Value::Array(out)
        }
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, capped_in(v))).collect()),
        other => other,
    }
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
        key: cut(event.key, KEY_CHARS),
        change,
        url: cut(event.page, KEY_CHARS),
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

/// When a `[notify]` target is first seen (by the daemon, or by `crawl
/// --notify`, before its run starts): a target without a marker gets one at
/// its last run that started before `seen_ms` (or before every run), so
/// that enabling `[notify]` does not send what ran before, and a missing
/// marker later can only mean `[notify]` was just added, never "the first
/// notified run ended and the process stopped before queueing it".
/// True when it wrote the marker.
pub fn mark_notify_start(
    store: &Store,
    target: &Target,
    seen_ms: u64,
    now_ms: u64,
) -> Result<bool, StoreError> {
    if target.notify.is_none() || store.notified_run(&target.id)?.is_some() {
        return Ok(false);
    }
    let mut before = RunId(0);
    for r in store.runs(&target.id) {
        let r = r?;
        if r.started_ms < seen_ms {
            before = before.max(r.id);
        }
    }
    store.queue_changes(&target.id, before, Vec::new(), now_ms)
}

/// At start-up: queues the changes of the target's last run if it completed
/// after the last one queued (the daemon stopped between the two). A target
/// never notified is marked instead ([`mark_notify_start`], with the runs
/// that started before `seen_ms`): enabling `[notify]` does not send a run
/// that ended before.
pub fn catch_up_changes(
    store: &Store,
    target: &Target,
    channels: &[ChannelName],
    seen_ms: u64,
    now_ms: u64,
) -> Result<usize, StoreError> {
    if target.notify.is_none() {
        return Ok(0);
    }
    if mark_notify_start(store, target, seen_ms, now_ms)? {
        return Ok(0);
    }
    let Some(last) = store.last_run(&target.id)? else {
        return Ok(0);
    };
    if last.status != RunStatus::Completed {
        return Ok(0);
    }
    queue_changes(store, target, &last, channels, now_ms)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::extract::Item;
    use crate::ids::TargetId;
    use crate::store::{PageCommit, PageOutcome, RunMode, RunPolicy, RunWriter};

    const POLICY: RunPolicy = RunPolicy {
        resume_within: Duration::from_secs(3600),
        keep_versions: 2,
        keep_runs: 10,
    };

    /// One page per product, `price(i)` its price.
    fn pages(range: std::ops::Range<usize>, price: impl Fn(usize) -> f64) -> Vec<PageCommit> {
        range
            .map(|i| {
                let url = format!("http://shop/p/{i}");
                let mut value = Map::new();
                value.insert("name".into(), json!(format!("P{i}")));
                value.insert("price".into(), json!(price(i)));
                PageCommit {
                    url: url.clone(),
                    depth: 1,
                    admitted: Vec::new(),
                    fetched_ms: 1,
                    outcome: PageOutcome::Fetched {
                        status: 200,
                        etag: None,
                        last_modified: None,
                        body_hash: None,
                        links: Vec::new(),
                        items: vec![Item {
                            kind: "product".into(),
                            key: url,
                            value,
                        }],
                    },
                }
            })
            .collect()
    }

    /// A run of `n` products priced by `price`, stopped after `upto` of
    /// them when it is given (an interrupted run).
    fn run(
        store: &Arc<Store>,
        n: usize,
        upto: Option<usize>,
        price: impl Fn(usize) -> f64 + Copy,
    ) -> RunRecord {
        run_in(store, RunMode::Full, n, upto, price)
    }

    fn run_in(
        store: &Arc<Store>,
        mode: RunMode,
        n: usize,
        upto: Option<usize>,
        price: impl Fn(usize) -> f64 + Copy,
    ) -> RunRecord {
        let t = TargetId::new("shop");
        let start = store.start_run(&t, mode, &[], &POLICY).unwrap();
        let from = start.run.counts.pages_fetched as usize;
        let mut w = RunWriter::new(store.clone(), &start, POLICY, String::new());
        let end = upto.unwrap_or(n);
        for chunk in (from..end).step_by(1000) {
            w.commit(pages(chunk..(chunk + 1000).min(end), price))
                .unwrap();
        }
        let status = match upto {
            Some(_) => RunStatus::Interrupted,
            None => RunStatus::Completed,
        };
        w.finish(status, None, |r| r.counts.pages_fetched = end as u64)
            .unwrap()
    }

    #[test]
    fn a_message_lists_max_items_and_counts_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let first = run(&store, 5000, None, |i| i as f64);
        let notify = NotifyConfig {
            max_items: 10,
            ..NotifyConfig::default()
        };
        let n = digest(&store, &notify, &first).unwrap().unwrap();
        assert_eq!(n.counts.new, 5000);
        assert_eq!((n.changes.len(), n.truncated), (10, 4990));
        let second = run(&store, 5000, None, |i| i as f64 + 0.5);
        let n = digest(&store, &notify, &second).unwrap().unwrap();
        assert_eq!((n.counts.changed, n.counts.new), (5000, 0));
        assert_eq!(
            n.changes[0].fields["price"],
            json!({"old": 0.0, "new": 0.5})
        );
        let unchanged = run(&store, 5000, None, |i| i as f64 + 0.5);
        assert_eq!(digest(&store, &notify, &unchanged).unwrap(), None);
    }

    #[test]
    fn an_interrupted_run_sends_nothing_and_its_completion_sends_the_whole_crawl() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let configs = tempfile::tempdir().unwrap();
        std::fs::write(
            configs.path().join("shop.toml"),
            "start_urls = [\"http://shop/\"]\n[notify]\n",
        )
        .unwrap();
        let report = crate::config::load_dir(configs.path()).unwrap();
        let target = report.set.targets[&TargetId::new("shop")].clone();
        assert_eq!(target.notify, Some(NotifyConfig::default()));
        let ops = [ChannelName::new("ops")];
        run(&store, 100, None, |i| i as f64);
        store
            .queue_changes(&target.id, RunId(1), Vec::new(), 0)
            .unwrap();
        let stopped = run(&store, 100, Some(40), |i| i as f64 + 1.0);
        assert_eq!(
            queue_changes(&store, &target, &stopped, &ops, 0).unwrap(),
            0
        );
        let resumed = run(&store, 100, None, |i| i as f64 + 1.0);
        assert_eq!(resumed.resumed_from, Some(stopped.id));
        assert_eq!(
            queue_changes(&store, &target, &resumed, &ops, 0).unwrap(),
            1
        );
        let queued = store.change_outbox(&ops[0]).unwrap();
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].message.counts.changed, 100, "both runs' changes");
        assert_eq!(queued[0].message.run, resumed.id.0);
        // Once only, and the start-up catch-up agrees.
        assert_eq!(
            queue_changes(&store, &target, &resumed, &ops, 0).unwrap(),
            0
        );
        assert_eq!(catch_up_changes(&store, &target, &ops, 0, 0).unwrap(), 0);
        assert_eq!(store.change_outbox(&ops[0]).unwrap().len(), 1);
    }

    fn shop_target() -> Arc<Target> {
        let configs = tempfile::tempdir().unwrap();
        std::fs::write(
            configs.path().join("shop.toml"),
            "start_urls = [\"http://shop/\"]\n[notify]\n",
        )
        .unwrap();
        let report = crate::config::load_dir(configs.path()).unwrap();
        report.set.targets[&TargetId::new("shop")].clone()
    }

    #[test]
    fn the_changes_of_an_abandoned_run_are_sent_with_the_next_completed_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let target = shop_target();
        let ops = [ChannelName::new("ops")];
        let first = run(&store, 100, None, |i| i as f64);
        assert_eq!(queue_changes(&store, &target, &first, &ops, 0).unwrap(), 1);
        // An incremental run changes 40 prices and stops; a full run
        // abandons it and finds those 40 unchanged, the other 60 changed.
        let stopped = run_in(&store, RunMode::Incremental, 100, Some(40), |i| {
            i as f64 + 1.0
        });
        assert_eq!(
            queue_changes(&store, &target, &stopped, &ops, 0).unwrap(),
            0
        );
        let full = run(&store, 100, None, |i| i as f64 + 1.0);
        assert_eq!(full.resumed_from, None);
        assert_eq!(
            store.run(&target.id, stopped.id).unwrap().unwrap().status,
            RunStatus::Abandoned
        );
        assert_eq!(queue_changes(&store, &target, &full, &ops, 0).unwrap(), 1);
        let queued = store.change_outbox(&ops[0]).unwrap();
        assert_eq!(queued.len(), 2);
        assert_eq!(queued[1].message.run, full.id.0);
        assert_eq!(
            queued[1].message.counts.changed, 100,
            "the abandoned run's 40 and the full run's 60"
        );
        // The next run covers only what came after.
        let next = run(
            &store,
            100,
            None,
            |i| if i == 7 { 0.5 } else { i as f64 + 1.0 },
        );
        assert_eq!(queue_changes(&store, &target, &next, &ops, 0).unwrap(), 1);
        let queued = store.change_outbox(&ops[0]).unwrap();
        assert_eq!(queued[2].message.counts.changed, 1);
    }

    #[test]
    fn a_first_run_that_ends_before_a_crash_is_sent_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let target = shop_target();
        let ops = [ChannelName::new("ops")];
        // The daemon sees the target before its first run…
        assert!(mark_notify_start(&store, &target, now(), 1).unwrap());
        assert_eq!(store.notified_run(&target.id).unwrap(), Some(RunId(0)));
        assert!(!mark_notify_start(&store, &target, now(), 1).unwrap());
        // …which completes, and the process dies before queueing its notice.
        let first = run(&store, 100, None, |i| i as f64);
        // At the next start the run is sent, once.
        assert_eq!(
            catch_up_changes(&store, &target, &ops, now(), 2).unwrap(),
            1
        );
        let queued = store.change_outbox(&ops[0]).unwrap();
        assert_eq!(queued.len(), 1);
        assert_eq!(
            (queued[0].message.run, queued[0].message.counts.new),
            (first.id.0, 100)
        );
        assert_eq!(
            catch_up_changes(&store, &target, &ops, now(), 3).unwrap(),
            0
        );
    }

    #[test]
    fn notify_added_to_a_target_with_runs_sends_none_of_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let target = shop_target();
        let ops = [ChannelName::new("ops")];
        run(&store, 10, None, |i| i as f64);
        let second = run(&store, 10, None, |i| i as f64 + 1.0);
        assert_eq!(
            catch_up_changes(&store, &target, &ops, now() + 1, 1).unwrap(),
            0
        );
        assert_eq!(store.notified_run(&target.id).unwrap(), Some(second.id));
        assert!(store.change_outbox(&ops[0]).unwrap().is_empty());
    }

    fn now() -> u64 {
        crate::store::now_ms()
    }

    /// A completed full run of one product per value of `values`.
    fn run_of(store: &Arc<Store>, values: Vec<Map<String, Value>>) -> RunRecord {
        let t = TargetId::new("shop");
        let start = store.start_run(&t, RunMode::Full, &[], &POLICY).unwrap();
        let mut w = RunWriter::new(store.clone(), &start, POLICY, String::new());
        let n = values.len();
        let commits = values
            .into_iter()
            .enumerate()
            .map(|(i, value)| {
                let url = format!("http://shop/p/{i}");
                let mut page = pages(i..i + 1, |_| 0.0).remove(0);
                if let PageOutcome::Fetched { items, .. } = &mut page.outcome {
                    items[0] = Item {
                        kind: "product".into(),
                        key: url,
                        value,
                    };
                }
                page
            })
            .collect();
        w.commit(commits).unwrap();
        w.finish(RunStatus::Completed, None, |r| {
            r.counts.pages_fetched = n as u64
        })
        .unwrap()
    }

    #[test]
    fn a_value_is_cut_and_a_list_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let mut value = Map::new();
        // 10 MB of text, of two-byte characters.
        value.insert("desc".into(), json!("é".repeat(5_000_000)));
        value.insert("tags".into(), json!((0..500).collect::<Vec<_>>()));
        value.insert("nested".into(), json!([{"a": "x".repeat(3000)}]));
        value.insert(
            "wide".into(),
            json!((0..90).map(|i| "y".repeat(i * 10)).collect::<Vec<_>>()),
        );
        value.insert("price".into(), json!(1.5));
        let first = run_of(&store, vec![value]);
        let n = digest(&store, &NotifyConfig::default(), &first)
            .unwrap()
            .unwrap();
        let f = &n.changes[0].fields;
        let desc = f["desc"]["new"].as_str().unwrap();
        assert_eq!(desc.chars().count(), VALUE_CHARS + 1);
        assert_eq!(desc, format!("{}…", "é".repeat(VALUE_CHARS)));
        let tags = f["tags"]["new"].as_array().unwrap();
        assert_eq!(tags.len(), LIST_ITEMS + 1);
        assert_eq!(tags[LIST_ITEMS], json!("… and 400 more"));
        assert_eq!(
            f["nested"]["new"][0]["a"],
            json!(format!("{}…", "x".repeat(VALUE_CHARS)))
        );
        // Over VALUE_BYTES once its strings are cut: its JSON text, cut.
        let wide = f["wide"]["new"].as_str().unwrap();
        assert!(wide.starts_with("[\"\",\"yyyyyyyyyy\","), "{wide}");
        assert_eq!(wide.chars().count(), VALUE_CHARS + 1);
        assert_eq!(f["price"]["new"], json!(1.5));
        assert!(serde_json::to_vec(&n).unwrap().len() < 20_000);
    }

    #[test]
    fn a_message_stops_listing_at_its_byte_budget_and_counts_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let values = (0..1000)
            .map(|i| {
                let mut v = Map::new();
                v.insert("name".into(), json!(format!("{i} {}", "é".repeat(2000))));
                v
            })
            .collect();
        let first = run_of(&store, values);
        let notify = NotifyConfig {
            max_items: 1000,
            ..NotifyConfig::default()
        };
        let n = digest(&store, &notify, &first).unwrap().unwrap();
        assert_eq!(n.counts.new, 1000);
        let listed = n.changes.len();
        assert!(listed > 50 && listed < 1000, "{listed}");
        assert_eq!(listed as u64 + n.truncated, 1000);
        let body = serde_json::to_vec(&n).unwrap().len();
        assert!(body <= MESSAGE_BYTES + 1024, "{body}");
        assert!(body > MESSAGE_BYTES - 4 * 1024, "{body}");
        // In the run's order: the first ones are listed.
        assert!(n.changes[0].fields["name"]["new"]
            .as_str()
            .unwrap()
            .starts_with("0 "));
    }

    /// The memory a digest of many changes takes: run with
    /// `CRAWLD_DIGEST_ITEMS=1000000 cargo test --lib digest_memory -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, minutes long"]
    fn digest_memory() {
        let n: usize = std::env::var("CRAWLD_DIGEST_ITEMS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200_000);
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        run(&store, n, None, |i| i as f64);
        let second = run(&store, n, None, |i| i as f64 + 0.5);
        let rss = |field: &str| {
            std::fs::read_to_string("/proc/self/status")
                .unwrap()
                .lines()
                .find(|l| l.starts_with(field))
                .map(|l| l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap())
                .unwrap()
        };
        // Resets the peak (VmHWM) to what is resident now.
        std::fs::write("/proc/self/clear_refs", "5").unwrap();
        let before = rss("VmRSS:");
        let started = std::time::Instant::now();
        let notice = digest(&store, &NotifyConfig::default(), &second)
            .unwrap()
            .unwrap();
        let took = started.elapsed();
        assert_eq!(notice.counts.changed, n as u64);
        assert_eq!(notice.changes.len(), 100);
        println!(
            "{n} changes: digest in {took:?}, resident {before} kB before, peak {} kB during",
            rss("VmHWM:")
        );
    }
}
