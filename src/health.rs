//! The words for a target's health, shared by the floors that use them:
//! the monitors crawld has ([`MonitorKind`]), whether one fires ([`Health`])
//! and one monitor's last evaluation ([`MonitorState`]). `config` names the
//! kinds in `[monitor]`, `store` keeps the states, `monitor` evaluates them,
//! and `alert`, `control` and `web` show them; so they live in a module of
//! their own below all of those (only `ids` is lower).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{RunId, TargetId};

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
