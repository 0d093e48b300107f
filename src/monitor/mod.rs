//! Monitors: what tells an operator that a target broke. Each monitor is
//! evaluated into a [`MonitorState`] (ok or firing, with the figure that
//! decided it and its threshold): the run-end monitors when a run ends, the
//! clock monitors by the daemon between runs. `alert` turns changes of state
//! into notices; status, the dashboard and the metrics show the states.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::Target;
use crate::failure::Failure;
use crate::ids::{HostKey, RunId, TargetId};
use crate::store::{RunCounts, RunRecord, RunStatus, Store, StoreError};

mod clock;
mod evaluate;
pub use clock::{config_broken, deadline, overdue};
pub use evaluate::{after_run, attempted, items_of, unjudged, RunFacts};

/// The monitors crawld has. Their names are stable: they are in the store,
/// in alerts, in metrics labels and in `[monitor]` keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MonitorKind {
    /// A run ended `failed`, or was stopped by `max_duration`.
    RunFailed,
    /// Failed pages / pages attempted above `failure_rate`.
    FailureRate,
    /// Fewer items than `min_items`, or a drop against the baseline.
    ItemCount,
    /// A field's coverage fell against its baseline (selector drift).
    FieldCoverage,
    /// A host paused by the breaker, answering mostly 403/429, or without
    /// a readable robots.txt.
    HostBlocked,
    /// No completed run for longer than `overdue` × the schedule interval.
    Overdue,
    /// The target runs its last good version: its file has errors.
    ConfigBroken,
}

impl MonitorKind {
    pub const ALL: [MonitorKind; 7] = [
        MonitorKind::RunFailed,
        MonitorKind::FailureRate,
        MonitorKind::ItemCount,
        MonitorKind::FieldCoverage,
        MonitorKind::HostBlocked,
        MonitorKind::Overdue,
        MonitorKind::ConfigBroken,
    ];

    /// Evaluated when a run ends.
    pub const RUN_END: [MonitorKind; 5] = [
        MonitorKind::RunFailed,
        MonitorKind::FailureRate,
        MonitorKind::ItemCount,
        MonitorKind::FieldCoverage,
        MonitorKind::HostBlocked,
    ];

    /// Evaluated by the daemon's clock, between runs.
    pub const CLOCK: [MonitorKind; 2] = [MonitorKind::Overdue, MonitorKind::ConfigBroken];

    pub fn name(self) -> &'static str {
        match self {
            MonitorKind::RunFailed => "run_failed",
            MonitorKind::FailureRate => "failure_rate",
            MonitorKind::ItemCount => "item_count",
            MonitorKind::FieldCoverage => "field_coverage",
            MonitorKind::HostBlocked => "host_blocked",
            MonitorKind::Overdue => "overdue",
            MonitorKind::ConfigBroken => "config_broken",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }
}

impl fmt::Display for MonitorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The `value` of a state whose run had nothing to measure (a run that
/// extracted no items has no field coverage): shown without a figure.
pub const NO_FIGURE: f64 = -1.0;

/// Whether a monitor fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Ok,
    /// Its condition holds, in fewer consecutive runs than its
    /// `fire_after`: no alert yet (Prometheus' pending).
    Pending,
    Firing,
}

/// One monitor of one target, as last evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorState {
    pub target: TargetId,
    pub monitor: MonitorKind,
    /// What within the target it is about: `KIND.FIELD` for
    /// `field_coverage`, a host (`host:port`) for `host_blocked`; empty for
    /// the others, and for the ok state of a monitor as a whole.
    #[serde(default)]
    pub subject: String,
    pub state: Health,
    /// The figure that decided the state (a share, a count, seconds…).
    pub value: f64,
    /// The threshold it was compared with.
    pub threshold: f64,
    /// One sentence a person can act on.
    pub message: String,
    /// The run it was evaluated on (none for the clock monitors).
    #[serde(default)]
    pub run: Option<RunId>,
    /// When it entered this state, milliseconds since the Unix epoch.
    #[serde(default)]
    pub since_ms: u64,
}

impl MonitorState {
    pub fn firing(&self) -> bool {
        self.state == Health::Firing
    }

    pub fn pending(&self) -> bool {
        self.state == Health::Pending
    }

    /// The identity of an alert: one per target, monitor and subject.
    pub fn key(&self) -> (&TargetId, MonitorKind, &str) {
        (&self.target, self.monitor, &self.subject)
    }
}

/// A run's judgement: the monitors it judged (`scope`) and their states.
#[derive(Debug, Clone)]
pub struct Judged {
    pub scope: Vec<MonitorKind>,
    pub states: Vec<MonitorState>,
}

/// The run-end monitors of a run that ended, judged against the target's
/// earlier runs in `store`. A monitor the run gives too little to judge
/// (see [`unjudged`]) keeps its stored state; without one it shows ok.
///
/// The run's breaches (the states that fire, before `fire_after` lets them
/// alert) are recorded on its run record, so that later baselines leave it
/// out: it writes the store.
pub fn judge_run(
    store: &Store,
    target: &Target,
    run: &RunRecord,
    timed_out: bool,
) -> Result<Judged, StoreError> {
    let runs: Vec<RunRecord> = store.runs(&target.id).collect::<Result<_, _>>()?;
    let (whole, history) = with_chains(&runs, run);
    let robots = robots_unavailable(store, target, run)?;
    let prior = store.monitor_states(&target.id)?;
    let firing: BTreeSet<String> = prior
        .iter()
        .filter(|s| s.firing())
        .map(MonitorState::label)
        .collect();
    let facts = RunFacts {
        run: &whole,
        history: &history,
        firing: &firing,
        robots_unavailable: &robots,
        timed_out,
    };
    let mut states = after_run(target, &facts);
    let keep: Vec<MonitorKind> = unjudged(target, &facts)
        .into_iter()
        .filter(|k| prior.iter().any(|p| p.monitor == *k))
        .collect();
    states.retain(|s| !keep.contains(&s.monitor));
    let breached: Vec<String> = states
        .iter()
        .filter(|s| s.firing())
        .map(MonitorState::label)
        .collect();
    // Without room on the disk the judgement still goes out; this run then
    // stays in the baselines.
    if let Err(e) = store.record_breaches(&target.id, run.id, breached) {
        tracing::warn!(target = %target.id, run = run.id.0, error = %e, "Cannot record which monitors the run breached.");
    }
    // Disabled monitors are in scope with no state: a firing one resolves.
    let scope = MonitorKind::RUN_END
        .into_iter()
        .filter(|k| !keep.contains(k))
        .collect();
    Ok(Judged { scope, states })
}

/// `run`, and the completed runs before it (oldest first: what the
/// baselines choose from), each with the counts of its whole resumed chain:
/// a run that resumed a stopped one found only the rest of the site. The
/// hosts' figures stay each run's own: a block is judged as it is now. One
/// pass over `runs`, which are in id order.
fn with_chains(runs: &[RunRecord], run: &RunRecord) -> (RunRecord, Vec<RunRecord>) {
    let mut so_far: HashMap<RunId, RunCounts> = HashMap::new();
    let whole = |r: &RunRecord, mut counts: RunCounts| {
        counts.hosts.clone_from(&r.counts.hosts);
        RunRecord {
            counts,
            ..r.clone()
        }
    };
    let mut history = Vec::new();
    for r in runs.iter().filter(|r| r.id < run.id) {
        so_far.entry(r.crawl).or_default().add(&r.counts);
        if r.status == RunStatus::Completed {
            let counts = so_far.remove(&r.crawl).unwrap_or_default();
            history.push(whole(r, counts));
        }
    }
    let mut counts = so_far.remove(&run.crawl).unwrap_or_default();
    counts.add(&run.counts);
    (whole(run, counts), history)
}

/// Hosts whose robots.txt could not be had in the run, with the URLs it
/// cost: read from the run's failure records only when there are some.
fn robots_unavailable(
    store: &Store,
    target: &Target,
    run: &RunRecord,
) -> Result<BTreeMap<String, u64>, StoreError> {
    let mut robots = BTreeMap::new();
    if !run.counts.errors.contains_key(&Failure::RobotsUnavailable) {
        return Ok(robots);
    }
    for f in store.failures(&target.id, run.id) {
        let f = f?;
        if f.kind != Failure::RobotsUnavailable {
            continue;
        }
        let host = url::Url::parse(&f.url)
            .ok()
            .and_then(|u| HostKey::of(&u))
            .map_or_else(|| "(no host)".to_owned(), |h| h.as_str().to_owned());
        *robots.entry(host).or_insert(0u64) += 1;
    }
    Ok(robots)
}

impl MonitorState {
    /// The figure and its threshold as a person reads them: shares in per
    /// cent, durations in time, counts as counts.
    pub fn figures(&self) -> String {
        if self.value < 0.0 {
            return String::new();
        }
        // Each at a precision: the least one is tried first.
        let pct = |x: f64, p: usize| format!("{:.p$} %", x * 100.0);
        let num = |x: f64, p: usize| format!("{x:.p$}");
        let secs = |x: f64, p: usize| match p {
            0 => humantime::format_duration(std::time::Duration::from_secs(x as u64)).to_string(),
            _ => humantime::format_duration(std::time::Duration::from_millis(
                (x * 1000.0).round() as u64
            ))
            .to_string(),
        };
        let (show, cmp): (&dyn Fn(f64, usize) -> String, &str) = match self.monitor {
            MonitorKind::FailureRate => (&pct, ">"),
            MonitorKind::FieldCoverage => (&pct, "<"),
            MonitorKind::HostBlocked => (&pct, "≥"),
            MonitorKind::ItemCount => (&num, "<"),
            MonitorKind::Overdue => (&secs, ">"),
            MonitorKind::RunFailed | MonitorKind::ConfigBroken => {
                return String::new();
            }
        };
        // A firing figure must not read equal to its threshold ("9s > 9s"):
        // more digits until they differ, when they differ at all.
        let (v, t) = (0..4)
            .map(|p| (show(self.value, p), show(self.threshold, p)))
            .find(|(v, t)| v != t || cmp == "≥")
            .unwrap_or_else(|| (show(self.value, 3), show(self.threshold, 3)));
        if self.state != Health::Ok {
            format!("{v} {cmp} {t}")
        } else {
            v
        }
    }

    /// `monitor` or `monitor KIND.FIELD` / `monitor HOST`.
    pub fn label(&self) -> String {
        label(self.monitor, &self.subject)
    }
}

/// `monitor` or `monitor SUBJECT`: how a state is named in messages, in
/// the run records' `breached` and in the judgement's firing set.
pub(crate) fn label(monitor: MonitorKind, subject: &str) -> String {
    if subject.is_empty() {
        monitor.name().to_owned()
    } else {
        format!("{} {subject}", monitor.name())
    }
}

/// The monitors as lines of text: one per firing state, then the ok ones
/// on one line. Empty without states.
pub fn render(states: &[MonitorState]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if states.is_empty() {
        return out;
    }
    let firing: Vec<&MonitorState> = states.iter().filter(|s| s.firing()).collect();
    let _ = writeln!(
        out,
        "Monitors: {}",
        if firing.is_empty() {
            "all ok".to_owned()
        } else {
            format!("{} firing", firing.len())
        }
    );
    let pending = states.iter().filter(|s| s.pending());
    for (word, s) in firing
        .iter()
        .map(|s| ("FIRING", *s))
        .chain(pending.map(|s| ("pending", s)))
    {
        let figures = s.figures();
        let sep = if figures.is_empty() { "" } else { "  " };
        let _ = writeln!(out, "  {word} {}{sep}{figures}: {}", s.label(), s.message);
    }
    let ok: Vec<String> = states
        .iter()
        .filter(|s| s.state == Health::Ok && !firing.iter().any(|f| f.monitor == s.monitor))
        .map(|s| {
            let figures = s.figures();
            if figures.is_empty() {
                s.monitor.name().to_owned()
            } else {
                format!("{} {figures}", s.monitor.name())
            }
        })
        .collect();
    if !ok.is_empty() {
        let _ = writeln!(out, "  ok     {}", ok.join(" · "));
    }
    out
}

#[cfg(test)]
mod tests;
