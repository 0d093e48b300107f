//! Evaluating the monitors: pure functions of a run, the runs before it and
//! the clock, so that the daemon and `crawld crawl` judge alike, and so that
//! every threshold is tested without a crawl.

use std::collections::{BTreeMap, BTreeSet};

use super::{Health, MonitorKind, MonitorState};
use crate::config::{MonitorConfig, Target};
use crate::ids::TargetId;
use crate::store::{RunCounts, RunMode, RunRecord, RunStatus};

/// A host's share of 403/429 answers counts only from this many requests.
pub const MIN_HOST_REQUESTS: u64 = 10;
/// A kind's field coverage is compared only from this many items in a run
/// (and in each baseline run): below it one item moves a share by 10 points.
pub const MIN_COVERAGE_ITEMS: u64 = 10;

/// A firing monitor resolves only once its figure is back this far inside
/// its threshold: a rate at 80 % of it, a drop at half of `item_drop` or
/// `coverage_drop`. A figure that wavers around a threshold fires once.
pub const RESOLVE_RATE: f64 = 0.8;
pub const RESOLVE_DROP: f64 = 0.5;

/// What the run-end monitors look at.
pub struct RunFacts<'a> {
    /// The run, with the counts of the whole resumed chain it completes.
    pub run: &'a RunRecord,
    /// The target's earlier runs, oldest first (any mode and status; a
    /// completed one with its chain's counts). A run in whose judgement a
    /// monitor's condition held (`breached`) is left out of that monitor's
    /// baseline.
    pub history: &'a [RunRecord],
    /// The labels (`monitor` or `monitor SUBJECT`) of the target's monitors
    /// that fire now: they resolve only past the hysteresis margin.
    pub firing: &'a BTreeSet<String>,
    /// Hosts whose robots.txt could not be had in the run, with the URLs skipped.
    pub robots_unavailable: &'a BTreeMap<String, u64>,
    /// The run was stopped by `max_duration`.
    pub timed_out: bool,
}

/// The items a run extracted: new, changed and unchanged ones.
pub fn items_of(counts: &RunCounts) -> u64 {
    counts.items_new + counts.items_changed + counts.items_unchanged
}

/// Pages whose outcome the run recorded: fetched or failed.
pub fn attempted(counts: &RunCounts) -> u64 {
    counts.pages_committed.max(counts.pages_fetched)
}

/// Every run-end monitor of `target` on a run that ended.
pub fn after_run(target: &Target, facts: &RunFacts) -> Vec<MonitorState> {
    let cfg = &target.monitor;
    let mut out = Vec::new();
    let base = Base {
        target: &target.id,
        run: facts.run,
        firing: facts.firing,
    };
    for kind in MonitorKind::RUN_END {
        if !cfg.enabled(kind) {
            continue;
        }
        let states = match kind {
            MonitorKind::RunFailed => vec![run_failed(&base, facts.timed_out)],
            MonitorKind::FailureRate => vec![failure_rate(&base, cfg)],
            MonitorKind::ItemCount => vec![item_count(&base, cfg, facts.history)],
            MonitorKind::FieldCoverage => field_coverage(&base, target, facts.history),
            MonitorKind::HostBlocked => host_blocked(&base, cfg, facts.robots_unavailable),
            MonitorKind::Overdue | MonitorKind::ConfigBroken => Vec::new(),
        };
        out.extend(states);
    }
    out
}

/// The run-end monitors a run gives too little to judge: too few pages,
/// items or earlier runs. Their ok state is shown when they have no other,
/// but it does not resolve a firing one: a quiet incremental run with every
/// page unchanged says nothing of a field that stopped matching.
pub fn unjudged(target: &Target, facts: &RunFacts) -> Vec<MonitorKind> {
    let cfg = &target.monitor;
    let c = &facts.run.counts;
    let mut out = Vec::new();
    if attempted(c) < cfg.min_pages {
        out.push(MonitorKind::FailureRate);
    }
    let runs = baseline(
        facts.history,
        facts.run,
        cfg.baseline_runs,
        MonitorKind::ItemCount.name(),
    );
    // A stopped, failed or partial run says nothing of how many items
    // there are: only a completed chain is counted.
    let items_judged = facts.run.status == RunStatus::Completed
        && match facts.run.mode {
            RunMode::Full => !runs.is_empty() || cfg.min_items.is_some(),
            RunMode::Incremental => {
                parsed(c) >= cfg.min_pages
                    && runs.iter().any(|r| parsed(&r.counts) >= cfg.min_pages)
            }
        };
    if !items_judged {
        out.push(MonitorKind::ItemCount);
    }
    let kinds = || target.items.iter().filter_map(|k| c.coverage.get(&k.name));
    let coverage_judged = kinds().any(|k| k.items >= MIN_COVERAGE_ITEMS)
        || (!cfg.min_coverage.is_empty() && kinds().any(|k| k.items > 0));
    if !coverage_judged {
        out.push(MonitorKind::FieldCoverage);
    }
    if c.hosts.values().all(|h| h.answers.requests == 0) && facts.robots_unavailable.is_empty() {
        out.push(MonitorKind::HostBlocked);
    }
    out
}

/// What every state of one run shares.
struct Base<'a> {
    target: &'a TargetId,
    run: &'a RunRecord,
    firing: &'a BTreeSet<String>,
}

impl Base<'_> {
    /// Whether the state labelled `label` fires now (before this run).
    fn was_firing(&self, label: &str) -> bool {
        self.firing.contains(label)
    }

    /// `threshold` for the state labelled `label`, times `resolve` while
    /// it fires (the hysteresis margin).
    fn limit(&self, label: &str, threshold: f64, resolve: f64) -> f64 {
        if self.was_firing(label) {
            threshold * resolve
        } else {
            threshold
        }
    }

    fn state(
        &self,
        monitor: MonitorKind,
        firing: bool,
        value: f64,
        threshold: f64,
        message: String,
    ) -> MonitorState {
        MonitorState {
            target: self.target.clone(),
            monitor,
            subject: String::new(),
            state: if firing { Health::Firing } else { Health::Ok },
            value,
            threshold,
            message,
            run: Some(self.run.id),
            since_ms: 0,
        }
    }
}

fn run_failed(b: &Base, timed_out: bool) -> MonitorState {
    let run = b.run;
    let (firing, message) = match run.status {
        RunStatus::Failed => (
            true,
            format!(
                "run {} failed: {}",
                run.id.0,
                run.error.as_deref().unwrap_or("no reason recorded")
            ),
        ),
        RunStatus::Interrupted if timed_out => (
            true,
            format!(
                "run {} was stopped by max_duration before it finished",
                run.id.0
            ),
        ),
        _ => (false, format!("run {} ended normally", run.id.0)),
    };
    b.state(
        MonitorKind::RunFailed,
        firing,
        f64::from(u8::from(firing)),
        0.0,
        message,
    )
}

fn failure_rate(b: &Base, cfg: &MonitorConfig) -> MonitorState {
    let c = &b.run.counts;
    let attempted = attempted(c);
    let share = if attempted == 0 {
        0.0
    } else {
        c.pages_failed as f64 / attempted as f64
    };
    let enough = attempted >= cfg.min_pages;
    let limit = b.limit(
        MonitorKind::FailureRate.name(),
        cfg.failure_rate,
        RESOLVE_RATE,
    );
    let firing = enough && share > limit;
    let message = if firing {
        // While it fires, the threshold is the one where it resolves.
        let resolves = if limit < cfg.failure_rate {
            ", where it resolves"
        } else {
            ""
        };
        format!(
            "{} of {} pages failed ({:.0} %, above {:.0} %{resolves}); `crawld failures {}` lists them",
            c.pages_failed,
            attempted,
            share * 100.0,
            limit * 100.0,
            b.target
        )
    } else if !enough {
        format!(
            "{} of {} pages failed; not judged below min_pages = {}",
            c.pages_failed, attempted, cfg.min_pages
        )
    } else {
        format!(
            "{} of {} pages failed ({:.1} %)",
            c.pages_failed,
            attempted,
            share * 100.0
        )
    };
    b.state(MonitorKind::FailureRate, firing, share, limit, message)
}

/// The last `n` completed runs of `run`'s mode before it in which the
/// condition of the monitor labelled `label` did not hold, oldest first.
fn baseline<'a>(
    history: &'a [RunRecord],
    run: &RunRecord,
    n: usize,
    label: &str,
) -> Vec<&'a RunRecord> {
    let mut runs: Vec<&RunRecord> = history
        .iter()
        .filter(|r| r.id < run.id && r.mode == run.mode && r.status == RunStatus::Completed)
        .filter(|r| !r.breached.iter().any(|l| l == label))
        .collect();
    let skip = runs.len().saturating_sub(n);
    runs.drain(..skip);
    runs
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    })
}

/// Pages whose body was parsed in a run: fetched with new content.
fn parsed(c: &RunCounts) -> u64 {
    c.pages_fetched.saturating_sub(
        c.pages_not_modified + c.pages_unchanged + c.pages_not_html + c.pages_failed,
    )
}

/// A full run is judged on the items it found. An incremental run parses
/// only the pages that changed, so its count says how much changed, not
/// how much is there: it is judged on items per parsed page, once it parsed
/// `min_pages` pages.
fn item_count(b: &Base, cfg: &MonitorConfig, history: &[RunRecord]) -> MonitorState {
    let label = MonitorKind::ItemCount.name();
    let runs = baseline(history, b.run, cfg.baseline_runs, label);
    // Firing, it resolves only once the count is back near the baseline.
    let drop = b.limit(label, cfg.item_drop, RESOLVE_DROP);
    if b.run.mode == RunMode::Incremental {
        return items_per_page(b, cfg, drop, &runs);
    }
    let items = items_of(&b.run.counts) as f64;
    let median = median(runs.iter().map(|r| items_of(&r.counts) as f64).collect());
    let drop_floor = median.map(|m| m * (1.0 - drop));
    let floor = cfg.min_items.map(|n| n as f64);
    let below_drop = drop_floor.is_some_and(|f| items < f);
    let below_min = floor.is_some_and(|f| items < f);
    let threshold = drop_floor.into_iter().chain(floor).fold(0.0, f64::max);
    let message = match (below_min, below_drop, median) {
        (true, _, _) => format!(
            "{items} items, fewer than min_items = {}",
            cfg.min_items.unwrap_or(0)
        ),
        (_, true, Some(m)) if drop < cfg.item_drop => format!(
            "{items} items, {:.0} % fewer than the median of {m} over the last {} healthy full runs: it resolves from {:.0} items",
            (1.0 - items / m) * 100.0,
            runs.len(),
            m * (1.0 - drop)
        ),
        (_, true, Some(m)) => format!(
            "{items} items, {:.0} % fewer than the median of {m} over the last {} healthy full runs (item_drop = {:.0} %)",
            (1.0 - items / m) * 100.0,
            runs.len(),
            cfg.item_drop * 100.0
        ),
        (_, _, Some(m)) => format!(
            "{items} items; the median of the last {} full runs is {m}",
            runs.len()
        ),
        _ => format!("{items} items; no earlier completed full run to compare with"),
    };
    b.state(
        MonitorKind::ItemCount,
        below_min || below_drop,
        items,
        threshold,
        message,
    )
}

fn items_per_page(b: &Base, cfg: &MonitorConfig, drop: f64, runs: &[&RunRecord]) -> MonitorState {
    let ratio = |c: &RunCounts| items_of(c) as f64 / parsed(c).max(1) as f64;
    let pages = parsed(&b.run.counts);
    let now = ratio(&b.run.counts);
    let past = runs
        .iter()
        .filter(|r| parsed(&r.counts) >= cfg.min_pages)
        .map(|r| ratio(&r.counts))
        .collect();
    let median = median(past).filter(|_| pages >= cfg.min_pages);
    let floor = median.map(|m| m * (1.0 - drop));
    let firing = floor.is_some_and(|f| now < f);
    let message = match median {
        Some(m) if firing => format!(
            "{now:.2} items per parsed page over {pages} changed pages, {:.0} % fewer than the median of {m:.2} over the last incremental runs (item_drop = {:.0} %)",
            (1.0 - now / m) * 100.0,
            drop * 100.0
        ),
        Some(m) => format!("{now:.2} items per parsed page; the median is {m:.2}"),
        None => format!(
            "{} items from {pages} changed pages; judged from min_pages = {} changed pages and an earlier such incremental run",
            items_of(&b.run.counts),
            cfg.min_pages
        ),
    };
    b.state(
        MonitorKind::ItemCount,
        firing,
        items_of(&b.run.counts) as f64,
        floor.map_or(0.0, |f| f * pages as f64),
        message,
    )
}

fn field_coverage(b: &Base, target: &Target, history: &[RunRecord]) -> Vec<MonitorState> {
    let cfg = &target.monitor;
    let mut firing = Vec::new();
    let mut lowest: Option<(f64, String)> = None;
    for kind in &target.items {
        let Some(now) = b.run.counts.coverage.get(&kind.name) else {
            continue;
        };
        for field in &kind.fields {
            let subject = format!("{}.{}", kind.name, field.name);
            let Some(share) = now.share(&field.name) else {
                continue;
            };
            if lowest.as_ref().is_none_or(|(s, _)| share < *s) {
                lowest = Some((share, subject.clone()));
            }
            let label = super::label(MonitorKind::FieldCoverage, &subject);
            let runs = baseline(history, b.run, cfg.baseline_runs, &label);
            let was_firing = b.was_firing(&label);
            let drop = b.limit(&label, cfg.coverage_drop, RESOLVE_DROP);
            let past = runs
                .iter()
                .filter_map(|r| r.counts.coverage.get(&kind.name))
                .filter(|c| c.items >= MIN_COVERAGE_ITEMS)
                .filter_map(|c| c.share(&field.name))
                .collect();
            let base = median(past).filter(|_| now.items >= MIN_COVERAGE_ITEMS);
            let floor = cfg.min_coverage.get(&subject).copied();
            let dropped = base.filter(|&m| m - share > drop + 1e-9);
            let below = floor.filter(|&f| share < f);
            let message = match (dropped, below) {
                (Some(m), _) => format!(
                    "[items.{}] field {:?} is on {:.0} % of {} items, down from {:.0} % (median of the last {} healthy runs): its selector may no longer match{}",
                    kind.name, field.name, share * 100.0, now.items, m * 100.0, runs.len(),
                    if was_firing { format!("; it resolves from {:.0} %", (m - drop) * 100.0) } else { String::new() }
                ),
                (None, Some(f)) => format!(
                    "[items.{}] field {:?} is on {:.0} % of {} items, below min_coverage {:.0} %",
                    kind.name, field.name, share * 100.0, now.items, f * 100.0
                ),
                (None, None) => continue,
            };
            let threshold = match dropped {
                Some(m) => m - drop,
                None => floor.unwrap_or(0.0),
            };
            let mut s = b.state(MonitorKind::FieldCoverage, true, share, threshold, message);
            s.subject = subject;
            firing.push(s);
        }
    }
    if !firing.is_empty() {
        return firing;
    }
    let message = match &lowest {
        Some((s, f)) => format!("every field holds; the lowest is {f} at {:.0} %", s * 100.0),
        None => "no items extracted in this run".to_owned(),
    };
    let value = lowest.map_or(super::NO_FIGURE, |(s, _)| s);
    vec![b.state(
        MonitorKind::FieldCoverage,
        false,
        value,
        cfg.coverage_drop,
        message,
    )]
}

fn host_blocked(
    b: &Base,
    cfg: &MonitorConfig,
    robots_unavailable: &BTreeMap<String, u64>,
) -> Vec<MonitorState> {
    let ended = b.run.ended_ms.unwrap_or(b.run.started_ms);
    let mut firing = Vec::new();
    let mut worst = 0.0f64;
    for (host, h) in &b.run.counts.hosts {
        let a = &h.answers;
        let blocked = a.status_403 + a.status_429;
        let share = if a.requests == 0 {
            0.0
        } else {
            blocked as f64 / a.requests as f64
        };
        worst = worst.max(share);
        let label = super::label(MonitorKind::HostBlocked, host);
        let limit = b.limit(&label, cfg.blocked_share, RESOLVE_RATE);
        // A host that is down (refused connections, timeouts, 5xx) is
        // paused too, but it is not blocked: `failure_rate` tells of it.
        let paused = h
            .paused_until_ms
            .filter(|&until| until > ended && blocked > 0 && share >= limit);
        let message = if let Some(until) = paused {
            let secs = (until - ended) / 1000;
            format!(
                "{host} is paused by the breaker for {secs} s more: it answered {blocked} of {} requests with 403 or 429",
                a.requests
            )
        } else if a.requests >= MIN_HOST_REQUESTS && share >= limit {
            format!(
                "{host} answered {blocked} of {} requests with 403 or 429 ({:.0} %)",
                a.requests,
                share * 100.0
            )
        } else {
            continue;
        };
        let mut s = b.state(MonitorKind::HostBlocked, true, share, limit, message);
        s.subject = host.clone();
        firing.push(s);
    }
    for (host, skipped) in robots_unavailable {
        if firing.iter().any(|s| &s.subject == host) {
            continue;
        }
        let message = format!(
            "{host}: robots.txt could not be fetched, so its {skipped} URL(s) were not crawled"
        );
        let mut s = b.state(
            MonitorKind::HostBlocked,
            true,
            1.0,
            cfg.blocked_share,
            message,
        );
        s.subject = host.clone();
        firing.push(s);
    }
    if !firing.is_empty() {
        return firing;
    }
    let message = format!(
        "no host blocked; the most 403/429 answers on one host: {:.0} %",
        worst * 100.0
    );
    vec![b.state(
        MonitorKind::HostBlocked,
        false,
        worst,
        cfg.blocked_share,
        message,
    )]
}
