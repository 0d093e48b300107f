//! What `GET /status` answers: the daemon's targets with their schedules,
//! runs in progress and last runs, the hosts it met, and its configuration
//! errors. `crawld status --json` prints it as it comes.

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::health::MonitorState;
use crate::ids::{HostKey, RunId, TargetId};
use crate::store::{AnswerCounts, RunMode, RunRecord};

/// The daemon as a whole.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    pub configs: String,
    pub state: String,
    /// The PostgreSQL database holding the store (without its password),
    /// when the store is one (`--cluster`); `None`: sled in `state`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Runs in progress.
    pub running: usize,
    /// Runs waiting for `--max-runs`.
    pub queued: usize,
    pub targets: Vec<TargetStatus>,
    pub hosts: Vec<HostStatus>,
    /// Proxies and how often each failed.
    pub proxy_failures: Vec<(String, u64)>,
    /// Configuration errors, in file order, each with its file, line,
    /// column and key (see [`ConfigErrorJson`](crate::config::ConfigErrorJson)).
    pub errors: Vec<ConfigError>,
    /// Alert channels and their deliveries since the daemon started.
    #[serde(default)]
    pub channels: Vec<ChannelStatus>,
    /// The address of the HTTP listener (`--http`), when it listens.
    #[serde(default)]
    pub http: Option<String>,
}

/// One alert channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelStatus {
    pub name: String,
    /// `webhook`, `slack`, `discord`, `email` or `exec`.
    pub kind: String,
    /// Alerts waiting in the store's queue for this channel.
    pub pending: u64,
    /// Delivered since the daemon started.
    pub delivered: u64,
    /// Failed attempts since the daemon started (each retry counts).
    pub failed: u64,
    /// The last delivery error, credentials removed.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Milliseconds since the Unix epoch.
    #[serde(default)]
    pub last_delivered_ms: Option<u64>,
}

/// One target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetStatus {
    pub name: TargetId,
    pub file: String,
    pub schedule: Option<String>,
    pub full_schedule: Option<String>,
    pub timezone: String,
    /// RFC 3339.
    pub next_incremental: Option<String>,
    /// RFC 3339.
    pub next_full: Option<String>,
    pub running: Option<RunningStatus>,
    pub queued: bool,
    /// Running its last good version: its file has errors.
    pub stale: bool,
    /// `None` also when the store could not be read (`last_run_error` says why).
    pub last_run: Option<RunRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_error: Option<String>,
    /// Every monitor of the target as last evaluated: one ok state per
    /// monitor, or one firing state per subject that fires.
    #[serde(default)]
    pub monitors: Vec<MonitorState>,
}

/// A run in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunningStatus {
    /// The mode the run has (a resumed run keeps the mode of the run it resumes).
    pub mode: RunMode,
    /// `None` until the run is recorded, a moment after it starts.
    #[serde(default)]
    pub run: Option<RunId>,
    #[serde(default)]
    pub resumed_from: Option<RunId>,
    pub secs: u64,
    pub done: u64,
    pub queued: u64,
    pub fetched: u64,
    pub failed: u64,
    pub items: u64,
    pub committed: u64,
}

/// One host, since the daemon started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostStatus {
    pub host: HostKey,
    pub in_flight: u32,
    pub concurrency: u32,
    /// The adaptive limit now (= `concurrency` when not adaptive or recovered).
    pub effective: u32,
    /// Delay between requests, least and most.
    pub delay_ms: (u64, u64),
    /// Breaker pause end, milliseconds since the Unix epoch.
    pub paused_until_ms: Option<u64>,
    /// 429/503 backoff end, milliseconds since the Unix epoch.
    pub backoff_until_ms: Option<u64>,
    /// What the host's `Retry-After` asked for (ms), when `retry_after_max`
    /// cut it to the backoff above.
    #[serde(default)]
    pub backoff_asked_ms: Option<u64>,
    pub counters: AnswerCounts,
}
