//! A made-up daemon for tests and screenshots of the dashboard: a healthy
//! target, one with firing monitors and a coverage drop, one running, one
//! that never ran, hosts in every state, alert channels, a configuration
//! error, and strings with markup where configs and errors could hold them.
//! Hidden from the docs: it is test material, not API.

use std::collections::BTreeMap;

use super::TargetRuns;
use crate::control::status::ChannelStatus;
use crate::control::{HostStatus, RunningStatus, Status, TargetStatus};
use crate::health::{Health, MonitorKind, MonitorState};
use crate::ids::{HostKey, RunId, TargetId};
use crate::store::{AnswerCounts, KindCoverage, RunCounts, RunMode, RunRecord, RunStatus, FORMAT};

/// The instant the fixture is seen at: 2026-05-14 09:30:00 UTC.
pub const NOW_MS: u64 = 1_778_751_000_000;

/// Text an attacker could put in a config or a page, which must show as text.
pub const INJECTED: &str = "<script>alert('crawld')</script>";

const MIN: u64 = 60_000;

fn run(target: &str, id: u64, i: u64, status: RunStatus, counts: RunCounts) -> RunRecord {
    let started = NOW_MS - (30 - i) * 30 * MIN;
    RunRecord {
        v: FORMAT,
        id: RunId(id),
        target: TargetId::new(target),
        mode: if i.is_multiple_of(8) {
            RunMode::Full
        } else {
            RunMode::Incremental
        },
        status,
        started_ms: started,
        ended_ms: (status != RunStatus::Running).then_some(started + 40_000 + i * 1_500),
        resumed_from: None,
        crawl: RunId(id),
        counts,
        error: (status == RunStatus::Failed).then(|| "the store could not be written".into()),
        breached: Vec::new(),
    }
}

fn counts(i: u64, fetched: u64, failed: u64, coverage: &[(&str, &str, u64)]) -> RunCounts {
    let items = fetched.saturating_sub(failed + 2);
    let mut cov: BTreeMap<String, KindCoverage> = BTreeMap::new();
    for (kind, field, present) in coverage {
        let k = cov.entry((*kind).into()).or_default();
        k.items = items;
        k.fields.insert((*field).into(), (*present).min(items));
    }
    RunCounts {
        pages_fetched: fetched,
        pages_committed: fetched,
        pages_failed: failed,
        pages_not_modified: fetched / 3,
        items_new: if i.is_multiple_of(8) { 6 } else { i % 3 },
        items_changed: (i * 7) % 5,
        items_removed: u64::from(i.is_multiple_of(8)) * 2,
        items_unchanged: items.saturating_sub(8),
        items_kept: fetched / 3,
        coverage: cov,
        ..RunCounts::default()
    }
}

fn target(name: &str) -> TargetStatus {
    TargetStatus {
        name: TargetId::new(name),
        file: format!("/etc/crawld/{name}.toml"),
        schedule: Some("0 */30 * * * *".into()),
        full_schedule: Some("0 0 3 * * Sun".into()),
        timezone: "Europe/Berlin".into(),
        next_incremental: Some("2026-05-14T11:42:00+02:00".into()),
        next_full: Some("2026-05-17T03:00:00+02:00".into()),
        running: None,
        queued: false,
        stale: false,
        last_run: None,
        last_run_error: None,
        monitors: Vec::new(),
    }
}

fn monitor(
    target: &str,
    kind: MonitorKind,
    subject: &str,
    firing: Option<(f64, f64, &str)>,
) -> MonitorState {
    let (value, threshold, message) = firing.unwrap_or((0.0, 0.0, "ok"));
    MonitorState {
        target: TargetId::new(target),
        monitor: kind,
        subject: subject.into(),
        state: if firing.is_some() {
            Health::Firing
        } else {
            Health::Ok
        },
        value,
        threshold,
        message: message.into(),
        run: Some(RunId(130)),
        since_ms: NOW_MS - 25 * MIN,
    }
}

fn ok_monitors(target: &str, except: &[MonitorKind]) -> Vec<MonitorState> {
    MonitorKind::ALL
        .into_iter()
        .filter(|k| !except.contains(k))
        .map(|k| monitor(target, k, "", None))
        .collect()
}

/// The runs of the fixture's targets: 30 of `books`, 30 of `news` (whose
/// `author` field disappears in the last runs), a few of `shop`.
pub fn runs() -> TargetRuns {
    let books = (0..30)
        .map(|i| {
            let fetched = 180 + (i * 37) % 40;
            let c = counts(
                i,
                fetched,
                i % 4,
                &[
                    ("book", "title", 999),
                    ("book", "price", 999),
                    ("book", "rating", fetched - 20 - i % 5),
                ],
            );
            run("books", 100 + i, i, RunStatus::Completed, c)
        })
        .collect();
    let news = (0..30)
        .map(|i| {
            let author = if i < 27 { 999 } else { 30 };
            let failed = if i >= 28 { 41 } else { i % 3 };
            let c = counts(
                i,
                120 + (i * 13) % 25,
                failed,
                &[
                    ("article", "headline", 999),
                    ("article", "author", author),
                    (
                        "article",
                        "published",
                        (120 + (i * 13) % 25) * 9 / 10 - failed,
                    ),
                ],
            );
            let status = if i == 29 {
                RunStatus::Failed
            } else {
                RunStatus::Completed
            };
            run("news", 200 + i, i, status, c)
        })
        .collect();
    let shop = (24..30)
        .map(|i| {
            let c = counts(
                i,
                60 + i,
                1,
                &[("product", "name", 999), ("product", "price", 999)],
            );
            let status = if i == 29 {
                RunStatus::Running
            } else {
                RunStatus::Completed
            };
            run("shop", 300 + i, i, status, c)
        })
        .collect();
    [
        ("books", books),
        ("news", news),
        ("shop", shop),
        ("prices", Vec::new()),
    ]
    .into_iter()
    .map(|(t, r)| (TargetId::new(t), Ok(r)))
    .collect()
}

/// The status that goes with [`runs`].
pub fn status() -> Status {
    let runs = runs();
    let last = |t: &str| {
        runs[&TargetId::new(t)]
            .as_ref()
            .ok()
            .and_then(|r| r.last().cloned())
    };
    let mut books = target("books");
    books.last_run = last("books");
    books.monitors = ok_monitors("books", &[]);
    let mut news = target("news");
    news.last_run = last("news");
    news.monitors = ok_monitors(
        "news",
        &[
            MonitorKind::FieldCoverage,
            MonitorKind::FailureRate,
            MonitorKind::RunFailed,
        ],
    );
    news.monitors.extend([
        monitor("news", MonitorKind::FieldCoverage, "article.author", Some((0.35, 0.8, "article.author is on 35% of items, down from 100% over the last 5 runs: its selector may no longer match"))),
        monitor("news", MonitorKind::FailureRate, "", Some((0.33, 0.1, "41 of 124 pages failed (33%), above 10%: mostly http_500"))),
        monitor("news", MonitorKind::RunFailed, "", Some((1.0, 0.0, "run 229 failed: the store could not be written"))),
    ]);
    let mut shop = target("shop");
    shop.last_run = last("shop");
    shop.monitors = ok_monitors("shop", &[]);
    shop.running = Some(RunningStatus {
        mode: RunMode::Incremental,
        run: Some(RunId(329)),
        resumed_from: None,
        secs: 74,
        done: 61,
        queued: 39,
        fetched: 58,
        failed: 1,
        items: 52,
        committed: 55,
    });
    let mut prices = target("prices");
    prices.file = format!("/etc/crawld/prices.toml {INJECTED}");
    prices.schedule = None;
    prices.full_schedule = Some("0 0 4 * * *".into());
    prices.next_incremental = None;
    prices.stale = false;
    Status {
        pid: 4242,
        configs: "/etc/crawld".into(),
        state: "/var/lib/crawld".into(),
        database: None,
        members: Vec::new(),
        members_error: None,
        running: 1,
        queued: 0,
        targets: vec![books, news, shop, prices],
        hosts: hosts(),
        proxy_failures: Vec::new(),
        // As the daemon's socket sends it.
        errors: vec![serde_json::from_value(serde_json::json!({
            "file": "/etc/crawld/prices-extra.toml",
            "line": 3,
            "column": 9,
            "key": "items.price",
            "message": format!("unknown key `selecter` {INJECTED}, expected one of `selector`, `fields`"),
        }))
        .expect("a config error in JSON")],
        channels: channels(),
        http: Some("127.0.0.1:9464".into()),
    }
}

/// A healthy host, one paused by its breaker, one in a 429 backoff.
fn hosts() -> Vec<HostStatus> {
    let host = |name: &str,
                effective,
                paused: Option<u64>,
                backoff: Option<u64>,
                ok: u64,
                e4: u64,
                e5: u64,
                t429: u64| HostStatus {
        host: HostKey::new(name),
        in_flight: u32::from(name.starts_with("shop")),
        concurrency: 4,
        effective,
        delay_ms: (500, 1500),
        paused_until_ms: paused,
        backoff_until_ms: backoff,
        backoff_asked_ms: None,
        counters: AnswerCounts {
            requests: ok + e4 + e5 + 3,
            status_2xx: ok,
            status_3xx: 3,
            status_4xx: e4,
            status_5xx: e5,
            status_429: t429,
            status_403: e4 / 3,
            errors: 0,
        },
    };
    vec![
        host("books.example.org:443", 4, None, None, 5_812, 12, 0, 0),
        host(
            "news.example.org:443",
            1,
            Some(NOW_MS + 8 * MIN),
            None,
            3_410,
            0,
            164,
            0,
        ),
        host(
            "shop.example.org:443",
            2,
            None,
            Some(NOW_MS + 40_000),
            1_950,
            31,
            4,
            27,
        ),
    ]
}

/// A channel that delivers and one that fails.
fn channels() -> Vec<ChannelStatus> {
    vec![
        ChannelStatus {
            name: "ops".into(),
            kind: "webhook".into(),
            pending: 0,
            delivered: 7,
            failed: 0,
            last_error: None,
            last_delivered_ms: Some(NOW_MS - 24 * MIN),
        },
        ChannelStatus {
            name: "oncall-mail".into(),
            kind: "email".into(),
            pending: 2,
            delivered: 3,
            failed: 4,
            last_error: Some(format!(
                "smtp://mail.example.org:587: connection refused {INJECTED}"
            )),
            last_delivered_ms: Some(NOW_MS - 3 * 3600 * 1000),
        },
    ]
}
