//! Monitors: what tells an operator that a target broke. Each monitor is
//! evaluated into a [`MonitorState`] (ok or firing, with the figure that
//! decided it and its threshold): the run-end monitors when a run ends, the
//! clock monitors by the daemon between runs. `alert` turns changes of state
//! into notices; status, the dashboard and the metrics show the states.

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

/// Whether a monitor fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Ok,
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

    /// The identity of an alert: one per target, monitor and subject.
    pub fn key(&self) -> (&TargetId, MonitorKind, &str) {
        (&self.target, self.monitor, &self.subject)
    }
}
