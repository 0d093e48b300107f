//! The thresholds, on hand-made runs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::*;
use crate::config::Target;
use crate::ids::TargetId;
use crate::store::{HostRunCounts, KindCoverage, RunCounts, RunMode, FORMAT};

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
        breached: Vec::new(),
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
    judge_firing(t, now, history, &[])
}

/// [`judge`] while the monitors labelled `firing` fire.
fn judge_firing(
    t: &Target,
    now: &RunRecord,
    history: &[RunRecord],
    firing: &[&str],
) -> Vec<MonitorState> {
    after_run(
        t,
        &RunFacts {
            run: now,
            history,
            firing: &firing.iter().map(|s| (*s).to_owned()).collect(),
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
    let mut paused = HostRunCounts {
        paused_until_ms: Some(60_000),
        ..HostRunCounts::default()
    };
    paused.answers.requests = 4;
    paused.answers.status_403 = 3;
    paused.answers.errors = 1;
    c.hosts.insert("b:80".into(), paused);
    // Down: refused connections and 503s paused it, but nothing blocks it.
    let mut down = HostRunCounts {
        paused_until_ms: Some(60_000),
        ..HostRunCounts::default()
    };
    down.answers.requests = 30;
    down.answers.errors = 25;
    down.answers.status_5xx = 5;
    c.hosts.insert("e:80".into(), down);
    c.hosts.insert("c:80".into(), HostRunCounts::default());
    let robots = BTreeMap::from([("d:80".to_owned(), 7)]);
    let r = run(1, RunMode::Full, c);
    let states = after_run(
        &t,
        &RunFacts {
            run: &r,
            history: &[],
            firing: &BTreeSet::new(),
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
    let no_firing = BTreeSet::new();
    let facts = |timed_out| RunFacts {
        run: &r,
        history: &[],
        firing: &no_firing,
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
    // Every 30 minutes from the epoch: a run is due at 00:30, and two
    // firings after it, 01:30, it is overdue.
    let t = target("overdue = 2.0");
    let fresh = overdue(&t, 0, 5_400_000).unwrap();
    assert!(!fresh.firing(), "{fresh:?}");
    let late = overdue(&t, 0, 5_400_001).unwrap();
    assert!(late.firing() && late.threshold == 5400.0, "{late:?}");
    // A fraction goes part of the way to the next firing.
    let t = target("overdue = 2.5");
    assert!(!overdue(&t, 0, 6_300_000).unwrap().firing());
    assert!(overdue(&t, 0, 6_300_001).unwrap().firing());
    let off = target("disable = [\"overdue\", \"failure_rate\"]");
    assert!(overdue(&off, 0, u64::MAX / 2).is_none());
    let states = judge(&off, &run(1, RunMode::Full, items(30, 30)), &[]);
    assert!(states.iter().all(|s| s.monitor != MonitorKind::FailureRate));
}

/// A schedule that rests at night: the last run of the day completed at
/// 17:01, a run is due at 09:00 the next morning, and the switch waits for
/// the second firing after that, 11:00, rather than 2 × one hour.
#[test]
fn overdue_follows_the_schedule_through_its_quiet_hours() {
    let dir = tempfile::tempdir().unwrap();
    let text = "start_urls = [\"http://127.0.0.1:9/\"]\nschedule = \"0 0 9-17 * * *\"\n";
    std::fs::write(dir.path().join("t.toml"), text).unwrap();
    let report = crate::config::load_dir(dir.path()).unwrap();
    let t = report.set.targets[&TargetId::new("t")].clone();
    let h = 3_600_000;
    let done = 17 * h + 60_000;
    assert_eq!(deadline(&t, done), Some(24 * h + 11 * h));
    assert!(
        !overdue(&t, done, 24 * h + 10 * h).unwrap().firing(),
        "the night and a slow first run pass"
    );
    assert!(overdue(&t, done, 35 * h + 1).unwrap().firing());
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

/// Three runs in which the items fell from 30 to 5 do not become the
/// baseline: the fourth such run still fires, judged against 30.
#[test]
fn a_run_that_breached_a_monitor_is_left_out_of_its_baseline() {
    let t = target("");
    let mut history: Vec<RunRecord> = (1..=2)
        .map(|i| run(i, RunMode::Full, items(30, 30)))
        .collect();
    for i in 3..=5 {
        let mut r = run(i, RunMode::Full, items(5, 5));
        r.breached = vec!["item_count".into()];
        history.push(r);
    }
    let states = judge_firing(
        &t,
        &run(6, RunMode::Full, items(5, 5)),
        &history,
        &["item_count"],
    );
    let f = firing(&states, MonitorKind::ItemCount);
    assert_eq!(f.len(), 1, "{states:?}");
    assert!(f[0].message.contains("median of 30"), "{}", f[0].message);
    // Another monitor's breach does not take the run out of this baseline.
    for r in &mut history[2..] {
        r.breached = vec!["failure_rate".into()];
    }
    let states = judge(&t, &run(6, RunMode::Full, items(5, 5)), &history);
    assert!(
        firing(&states, MonitorKind::ItemCount).is_empty(),
        "{states:?}"
    );
}

/// Coverage baselines leave out the runs in which that field breached, and
/// only that field.
#[test]
fn a_coverage_breach_leaves_the_run_out_of_that_fields_baseline_only() {
    let t = target("");
    let mut history: Vec<RunRecord> = (1..=2)
        .map(|i| run(i, RunMode::Full, items(30, 30)))
        .collect();
    for i in 3..=5 {
        let mut r = run(i, RunMode::Full, items(30, 15));
        r.breached = vec!["field_coverage product.price".into()];
        history.push(r);
    }
    let states = judge_firing(
        &t,
        &run(6, RunMode::Full, items(30, 15)),
        &history,
        &["field_coverage product.price"],
    );
    let f = firing(&states, MonitorKind::FieldCoverage);
    assert_eq!(f.len(), 1, "{states:?}");
    assert_eq!(f[0].subject, "product.price");
    assert!(f[0].message.contains("down from 100 %"), "{}", f[0].message);
}

/// A firing monitor resolves only once its figure is back past the margin:
/// a failure rate wavering around 10 % stays firing, 7 % resolves it.
#[test]
fn a_firing_monitor_resolves_only_past_the_hysteresis() {
    let t = target("");
    let rate = |failed: u64| {
        let mut c = items(100, 100);
        c.pages_failed = failed;
        run(2, RunMode::Full, c)
    };
    let waver = judge_firing(&t, &rate(9), &[], &["failure_rate"]);
    assert_eq!(
        firing(&waver, MonitorKind::FailureRate).len(),
        1,
        "{waver:?}"
    );
    assert!(firing(&judge(&t, &rate(9), &[]), MonitorKind::FailureRate).is_empty());
    let back = judge_firing(&t, &rate(7), &[], &["failure_rate"]);
    assert!(
        firing(&back, MonitorKind::FailureRate).is_empty(),
        "{back:?}"
    );
    // item_count: firing below 50 % of the median, resolving from 75 %.
    let history: Vec<RunRecord> = (1..=3)
        .map(|i| run(i, RunMode::Full, items(100, 100)))
        .collect();
    let some = judge_firing(
        &t,
        &run(4, RunMode::Full, items(60, 60)),
        &history,
        &["item_count"],
    );
    assert_eq!(firing(&some, MonitorKind::ItemCount).len(), 1, "{some:?}");
    let most = judge_firing(
        &t,
        &run(4, RunMode::Full, items(80, 80)),
        &history,
        &["item_count"],
    );
    assert!(firing(&most, MonitorKind::ItemCount).is_empty(), "{most:?}");
}

/// A stopped or failed run is not judged on its item count.
#[test]
fn a_partial_run_is_not_judged_on_its_items() {
    let t = target("");
    let history: Vec<RunRecord> = (1..=3)
        .map(|i| run(i, RunMode::Full, items(30, 30)))
        .collect();
    for status in [RunStatus::Interrupted, RunStatus::Failed] {
        let mut r = run(4, RunMode::Full, items(8, 8));
        r.status = status;
        let facts = RunFacts {
            run: &r,
            history: &history,
            firing: &BTreeSet::new(),
            robots_unavailable: &BTreeMap::new(),
            timed_out: true,
        };
        assert!(
            unjudged(&t, &facts).contains(&MonitorKind::ItemCount),
            "{status:?}"
        );
    }
}
