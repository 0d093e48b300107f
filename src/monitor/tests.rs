//! The thresholds, on hand-made runs.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::config::Target;
use crate::store::{HostRunCounts, KindCoverage, RunCounts, FORMAT};

fn target(monitor: &str) -> Arc<Target> {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "start_urls = [\"http://127.0.0.1:9/\"]\nschedule = \"0 */30 * * * *\"\n\
         [items.product.fields]\nname = \"h1\"\nprice = \".price\"\n[monitor]\n{monitor}\n"
    );
    std::fs::write(dir.path().join("t.toml"), text).unwrap();
    let report = crate::config::load_dir(dir.path()).unwrap();
    assert!(report.all_errors().is_empty(), "{:?}", report.all_errors());
    report.set.targets[&TargetId::new("t")].clone()
}

fn run(id: u64, mode: RunMode, counts: RunCounts) -> RunRecord {
    RunRecord {
        v: FORMAT,
        id: RunId(id),
        target: TargetId::new("t"),
        mode,
        status: RunStatus::Completed,
        started_ms: 1_000,
        ended_ms: Some(2_000),
        resumed_from: None,
        crawl: RunId(id),
        counts,
        error: None,
    }
}

fn items(n: u64, price: u64) -> RunCounts {
    let mut c = RunCounts {
        pages_fetched: n,
        pages_committed: n,
        items_new: n,
        ..RunCounts::default()
    };
    c.coverage.insert(
        "product".into(),
        KindCoverage {
            items: n,
            fields: BTreeMap::from([("name".into(), n), ("price".into(), price)]),
        },
    );
    c
}

fn judge(t: &Target, now: &RunRecord, history: &[RunRecord]) -> Vec<MonitorState> {
    after_run(
        t,
        &RunFacts {
            run: now,
            history,
            robots_unavailable: &BTreeMap::new(),
            timed_out: false,
        },
    )
}

fn firing(states: &[MonitorState], kind: MonitorKind) -> Vec<&MonitorState> {
    states
        .iter()
        .filter(|s| s.monitor == kind && s.firing())
        .collect()
}

#[test]
fn item_drop_is_judged_against_the_median_of_the_same_mode_only() {
    let t = target("baseline_runs = 3");
    // An old big full run falls out of the window; incremental runs never count.
    let history = vec![
        run(1, RunMode::Full, items(1000, 1000)),
        run(2, RunMode::Full, items(100, 100)),
        run(3, RunMode::Incremental, items(5, 5)),
        run(4, RunMode::Full, items(90, 90)),
        run(5, RunMode::Full, items(110, 110)),
    ];
    let ok = judge(&t, &run(6, RunMode::Full, items(51, 51)), &history);
    assert!(firing(&ok, MonitorKind::ItemCount).is_empty(), "{ok:?}");
    let low = judge(&t, &run(6, RunMode::Full, items(49, 49)), &history);
    let f = firing(&low, MonitorKind::ItemCount);
    assert_eq!(f.len(), 1, "{low:?}");
    assert_eq!((f[0].value, f[0].threshold), (49.0, 50.0));
    assert!(f[0].message.contains("median of 100"), "{}", f[0].message);
}

#[test]
fn a_first_run_has_no_baseline_and_min_items_is_a_floor() {
    let t = target("min_items = 10");
    let states = judge(&t, &run(1, RunMode::Full, items(12, 12)), &[]);
    assert!(states.iter().all(|s| !s.firing()), "{states:?}");
    let states = judge(&t, &run(1, RunMode::Full, items(9, 9)), &[]);
    assert_eq!(firing(&states, MonitorKind::ItemCount).len(), 1);
}

#[test]
fn coverage_fires_per_field_past_the_drop_and_below_a_floor() {
    let t = target("coverage_drop = 0.2\nmin_coverage = { \"product.name\" = 0.99 }");
    let history = vec![run(1, RunMode::Full, items(50, 50))];
    // 81 % is a drop of 19 points: holds.
    let ok = judge(&t, &run(2, RunMode::Full, items(100, 81)), &history);
    assert!(firing(&ok, MonitorKind::FieldCoverage).is_empty(), "{ok:?}");
    let mut c = items(100, 79);
    c.coverage
        .get_mut("product")
        .unwrap()
        .fields
        .insert("name".into(), 98);
    let states = judge(&t, &run(2, RunMode::Full, c), &history);
    let f = firing(&states, MonitorKind::FieldCoverage);
    let subjects: Vec<&str> = f.iter().map(|s| s.subject.as_str()).collect();
    assert_eq!(subjects, ["product.name", "product.price"]);
    assert!((f[1].value - 0.79).abs() < 1e-9 && (f[1].threshold - 0.8).abs() < 1e-9);
}

#[test]
fn an_incremental_run_is_judged_per_parsed_page() {
    let t = target("");
    let history: Vec<RunRecord> = (1..=3)
        .map(|i| run(i, RunMode::Incremental, items(40, 40)))
        .collect();
    // Few pages changed, one item each: a quiet day, not a drop.
    let quiet = judge(&t, &run(4, RunMode::Incremental, items(3, 3)), &history);
    assert!(
        firing(&quiet, MonitorKind::ItemCount).is_empty(),
        "{quiet:?}"
    );
    // 40 pages parsed, 10 items: a quarter of the usual yield.
    let mut c = items(10, 10);
    c.pages_fetched = 40;
    c.pages_committed = 40;
    let states = judge(&t, &run(4, RunMode::Incremental, c), &history);
    assert_eq!(
        firing(&states, MonitorKind::ItemCount).len(),
        1,
        "{states:?}"
    );
}

#[test]
fn hosts_are_blocked_by_403_and_429_pauses_and_robots() {
    let t = target("");
    let mut c = items(30, 30);
    let mut h = HostRunCounts::default();
    h.answers.requests = 20;
    h.answers.status_403 = 6;
    h.answers.status_429 = 4;
    c.hosts.insert("a:80".into(), h);
    let paused = HostRunCounts {
        paused_until_ms: Some(60_000),
        ..HostRunCounts::default()
    };
    c.hosts.insert("b:80".into(), paused);
    c.hosts.insert("c:80".into(), HostRunCounts::default());
    let robots = BTreeMap::from([("d:80".to_owned(), 7)]);
    let r = run(1, RunMode::Full, c);
    let states = after_run(
        &t,
        &RunFacts {
            run: &r,
            history: &[],
            robots_unavailable: &robots,
            timed_out: false,
        },
    );
    let f = firing(&states, MonitorKind::HostBlocked);
    let hosts: Vec<&str> = f.iter().map(|s| s.subject.as_str()).collect();
    assert_eq!(hosts, ["a:80", "b:80", "d:80"], "{states:?}");
    assert!(f[2].message.contains("robots.txt"), "{}", f[2].message);
}

#[test]
fn run_failed_counts_max_duration_but_not_a_plain_interruption() {
    let t = target("");
    let mut r = run(1, RunMode::Full, items(30, 30));
    r.status = RunStatus::Interrupted;
    let none = BTreeMap::new();
    let facts = |timed_out| RunFacts {
        run: &r,
        history: &[],
        robots_unavailable: &none,
        timed_out,
    };
    assert!(firing(&after_run(&t, &facts(false)), MonitorKind::RunFailed).is_empty());
    assert_eq!(
        firing(&after_run(&t, &facts(true)), MonitorKind::RunFailed).len(),
        1
    );
}

#[test]
fn overdue_counts_from_the_reference_and_disabled_monitors_are_skipped() {
    // Every 30 minutes from the epoch: the second firing is at 01:00.
    let t = target("overdue = 2.0");
    let fresh = overdue(&t, 0, 3_600_000).unwrap();
    assert!(!fresh.firing(), "{fresh:?}");
    let late = overdue(&t, 0, 3_600_001).unwrap();
    assert!(late.firing() && late.threshold == 3600.0, "{late:?}");
    // A fraction goes part of the way to the next firing.
    let t = target("overdue = 2.5");
    assert!(!overdue(&t, 0, 4_500_000).unwrap().firing());
    assert!(overdue(&t, 0, 4_500_001).unwrap().firing());
    let off = target("disable = [\"overdue\", \"failure_rate\"]");
    assert!(overdue(&off, 0, u64::MAX / 2).is_none());
    let states = judge(&off, &run(1, RunMode::Full, items(30, 30)), &[]);
    assert!(states.iter().all(|s| s.monitor != MonitorKind::FailureRate));
}

/// A schedule that rests at night: the last run of the day completed at
/// 17:01, and the switch waits for the second firing after it, 10:00 the
/// next morning, rather than 2 × one hour.
#[test]
fn overdue_follows_the_schedule_through_its_quiet_hours() {
    let dir = tempfile::tempdir().unwrap();
    let text = "start_urls = [\"http://127.0.0.1:9/\"]\nschedule = \"0 0 9-17 * * *\"\n";
    std::fs::write(dir.path().join("t.toml"), text).unwrap();
    let report = crate::config::load_dir(dir.path()).unwrap();
    let t = report.set.targets[&TargetId::new("t")].clone();
    let h = 3_600_000;
    let done = 17 * h + 60_000;
    assert_eq!(deadline(&t, done), Some(24 * h + 10 * h));
    assert!(
        !overdue(&t, done, 24 * h + 9 * h).unwrap().firing(),
        "the night passes"
    );
    assert!(overdue(&t, done, 34 * h + 1).unwrap().firing());
    assert!(overdue(&t, 0, 1).unwrap().threshold > 0.0);
    std::fs::write(
        dir.path().join("t.toml"),
        "start_urls = [\"http://127.0.0.1:9/\"]\n",
    )
    .unwrap();
    let report = crate::config::load_dir(dir.path()).unwrap();
    let plain = &report.set.targets[&TargetId::new("t")];
    assert!(overdue(plain, 0, u64::MAX / 2).is_none(), "not scheduled");
}
