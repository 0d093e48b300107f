//! Monitors: what tells an operator that a target broke. Each monitor is
//! evaluated into a [`MonitorState`] (ok or firing, with the figure that
//! decided it and its threshold): the run-end monitors when a run ends, the
//! clock monitors by the daemon between runs. `alert` turns changes of state
//! into notices; status, the dashboard and the metrics show the states.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::config::Target;
use crate::failure::Failure;
use crate::health::{label, Health, MonitorKind, MonitorState, NO_FIGURE};
use crate::ids::{HostKey, RunId};
use crate::store::{RunCounts, RunRecord, RunStatus, Store, StoreError};

mod clock;
mod evaluate;
pub use clock::{config_broken, deadline, overdue};
pub use evaluate::{after_run, attempted, items_of, unjudged, RunFacts};

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
