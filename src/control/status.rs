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
    /// The nodes of the cluster (`--cluster`), this one included; empty
    /// on sled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberStatus>,
    /// Why the members could not be read, when they could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members_error: Option<String>,
}

/// A node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// `HOSTNAME-PID-XXXX`: unique per process.
    pub node: String,
    pub hostname: String,
    pub pid: u32,
    /// crawld's version on the node.
    pub version: String,
    /// Milliseconds since the Unix epoch.
    pub started_ms: u64,
    pub heartbeat_ms: u64,
    /// Its heartbeat is recent; a gone node stays listed for an hour.
    pub alive: bool,
    /// The node answering this status.
    pub this: bool,
    /// The runs it holds: target and run id (once recorded).
    pub runs: Vec<(TargetId, Option<RunId>)>,
    /// The hosts it leases: only it fetches from them now.
    #[serde(default)]
    pub hosts: Vec<HostKey>,
    /// Targets it configures differently from the node running the target
    /// (or, when none runs it, from the node answering): its config file
    /// differs, and a run it takes over extracts with its own.
    #[serde(default)]
    pub config_differs: Vec<TargetId>,
    /// The shared runs other nodes own that it works on: target and run.
    #[serde(default)]
    pub helps: Vec<(TargetId, RunId)>,
}

impl MemberStatus {
    /// The members as `status` lists them, with the targets each
    /// configures differently from the run's node (see `config_differs`).
    pub fn list(members: Vec<crate::store::Member>) -> Vec<MemberStatus> {
        use std::collections::BTreeMap;
        // The reference fingerprint per target: the running node's, else
        // this node's.
        let mut reference: BTreeMap<String, String> = BTreeMap::new();
        for m in members.iter().filter(|m| m.this) {
            reference.extend(m.configs.clone());
        }
        for m in &members {
            for (t, _) in &m.runs {
                if let Some(hash) = m.configs.get(t.as_str()) {
                    reference.insert(t.to_string(), hash.clone());
                }
            }
        }
        members
            .into_iter()
            .map(|m| MemberStatus {
                config_differs: m
                    .configs
                    .iter()
                    .filter(|(t, h)| reference.get(*t).is_some_and(|r| r != *h))
                    .map(|(t, _)| TargetId::new(t))
                    .collect(),
                node: m.node,
                hostname: m.hostname,
                pid: m.pid,
                version: m.version,
                started_ms: m.started_ms,
                heartbeat_ms: m.heartbeat_ms,
                alive: m.alive,
                this: m.this,
                runs: m.runs,
                hosts: m.hosts,
                helps: m.helps,
            })
            .collect()
    }
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
