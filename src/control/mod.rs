//! The control API of the daemon: the requests, answers and errors that the
//! socket server (`daemon`) and its client (`cli`) share, so that neither
//! builds JSON by hand nor looks fields up by string. HTTP/JSON over a Unix
//! socket; the reading commands stream their output in [`stream`] frames.
//!
//! | route            | body                | answer                  |
//! |------------------|---------------------|-------------------------|
//! | `GET /status`    | —                   | [`Status`]              |
//! | `POST /trigger`  | [`TriggerRequest`]  | [`Triggered`]           |
//! | `POST /stop-run` | [`StopRunRequest`]  | [`Stopping`]            |
//! | `POST /reload`   | —                   | [`Reloaded`]            |
//! | `POST /read`     | [`ReadCommand`]     | frames ([`stream`])     |
//!
//! A refusal is an HTTP error status with an [`ErrorBody`].

pub mod client;
pub mod status;
pub mod stream;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Exit;
use crate::ids::{RunId, TargetId};
use crate::query::mode_name;
use crate::query::ReadCommand;
use crate::store::RunMode;
pub use status::{HostStatus, MemberStatus, RunningStatus, Status, TargetStatus};

/// Longest path a Unix socket address holds (`sun_path`, minus the NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// The routes of the control socket.
pub mod route {
    pub const STATUS: &str = "/status";
    pub const TRIGGER: &str = "/trigger";
    pub const STOP_RUN: &str = "/stop-run";
    pub const RELOAD: &str = "/reload";
    pub const READ: &str = "/read";
    /// `POST`: a backup of the store, streamed as a reading command's output.
    pub const BACKUP: &str = "/backup";
}

/// The socket path: `--socket`, else `$RUNTIME_DIRECTORY/control.sock`
/// (systemd's `RuntimeDirectory=crawld`), else `STATE/control.sock`.
pub fn socket_path(explicit: Option<&Path>, state: &Path) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    match std::env::var_os("RUNTIME_DIRECTORY").and_then(|v| {
        v.to_str()
            .and_then(|s| s.split(':').next())
            .map(PathBuf::from)
    }) {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join("control.sock"),
        _ => state.join("control.sock"),
    }
}

/// `POST /trigger`: start a run of a target now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerRequest {
    pub target: TargetId,
    /// A full run; otherwise incremental (an interrupted run resumes in its own mode).
    #[serde(default)]
    pub full: bool,
}

/// `POST /stop-run`: stop a target's run in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopRunRequest {
    pub target: TargetId,
}

/// What a trigger did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Triggered {
    /// The run started. `mode` is the mode it really has: a run that
    /// resumes an interrupted one keeps that one's mode.
    Started {
        target: TargetId,
        mode: RunMode,
        run: RunId,
        resumed_from: Option<RunId>,
    },
    /// The run started but its record could not be read in time: its mode
    /// is not known yet (`crawld status` shows it).
    Starting {
        target: TargetId,
        requested: RunMode,
    },
    /// The run task ended before its run was recorded (the daemon's log says why).
    EndedAtOnce { target: TargetId, mode: RunMode },
    /// `--max-runs` runs are in progress: it starts when one ends.
    Queued {
        target: TargetId,
        mode: RunMode,
        running: usize,
    },
    /// A run of the target was already queued (a full request makes it full).
    AlreadyQueued { target: TargetId, mode: RunMode },
}

impl fmt::Display for Triggered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Triggered::Started {
                target,
                mode,
                run,
                resumed_from: Some(from),
            } => write!(
                f,
                "{target}: {} run {run} started, continuing run {from}, which did not finish",
                mode_name(*mode)
            ),
            Triggered::Started {
                target, mode, run, ..
            } => write!(f, "{target}: {} run {run} started", mode_name(*mode)),
            Triggered::Starting { target, requested } => write!(
                f,
                "{target}: run starting ({} requested; an interrupted run resumes in its own mode): \
                 `crawld status` shows it",
                mode_name(*requested)
            ),
            Triggered::EndedAtOnce { target, mode } => write!(
                f,
                "{target}: the {} run ended before it started: see the daemon's log and `crawld runs {target}`",
                mode_name(*mode)
            ),
            Triggered::Queued {
                target,
                mode,
                running,
            } => write!(
                f,
                "{target}: queued behind {running} run(s) in progress ({} run requested)",
                mode_name(*mode)
            ),
            Triggered::AlreadyQueued { target, mode } => {
                write!(f, "{target}: already queued ({} run)", mode_name(*mode))
            }
        }
    }
}

/// What `stop-run` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stopping {
    pub target: TargetId,
    pub run: Option<RunId>,
    /// The cluster node asked to stop it, when it runs on another node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl fmt::Display for Stopping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = &self.target;
        if let Some(node) = &self.node {
            return write!(f, "{target}: asked cluster node {node} to stop its run; it checkpoints and resumes at the target's next start");
        }
        match self.run {
            Some(run) => write!(f, "{target}: stopping run {run}; it checkpoints and resumes at the target's next start"),
            None => write!(f, "{target}: stopping; the run checkpoints and resumes at its next start"),
        }
    }
}

/// What a reload left running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reloaded {
    pub targets: usize,
    pub errors: usize,
}

impl fmt::Display for Reloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} target(s), {} configuration error(s)",
            self.targets, self.errors
        )
    }
}

/// Why the daemon refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ApiError {
    #[error("no target {target} in the daemon's configs ({})", targets_named(.known))]
    UnknownTarget {
        target: TargetId,
        /// The daemon's targets (absent from an older daemon's answer).
        #[serde(default)]
        known: Vec<TargetId>,
    },
    #[error("target {target} is running {} ({} run); stop it with `crawld stop-run {target}`", running_run(*.run), mode_name(*.mode))]
    AlreadyRunning {
        target: TargetId,
        run: Option<RunId>,
        mode: RunMode,
    },
    #[error("target {target} has no run in progress")]
    NotRunning { target: TargetId },
    #[error("target {target} is running on cluster node {node}; stop it with `crawld stop-run {target}` (from any node)")]
    RunningElsewhere { target: TargetId, node: String },
    #[error("cannot reach the cluster's database to ask the node that runs the target: {detail}; try again")]
    Cluster { detail: String },
    #[error("the daemon is shutting down: run this again once it has restarted")]
    ShuttingDown,
    #[error("the daemon did not understand the request ({detail}): are `crawld` and the daemon the same version?")]
    BadRequest { detail: String },
}

/// "targets: a, b", or where to look when the list is empty or unknown.
fn targets_named(known: &[TargetId]) -> String {
    if known.is_empty() {
        return "see `crawld status`".to_owned();
    }
    let names: Vec<&str> = known.iter().map(TargetId::as_str).collect();
    format!("targets: {}", names.join(", "))
}

fn running_run(run: Option<RunId>) -> String {
    match run {
        Some(id) => format!("run {id}"),
        None => "a run".into(),
    }
}

impl ApiError {
    /// The HTTP status the server answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            ApiError::UnknownTarget { .. } => 404,
            ApiError::AlreadyRunning { .. }
            | ApiError::NotRunning { .. }
            | ApiError::RunningElsewhere { .. } => 409,
            ApiError::ShuttingDown | ApiError::Cluster { .. } => 503,
            ApiError::BadRequest { .. } => 400,
        }
    }

    /// The exit code of the command that was refused.
    pub fn exit(&self) -> Exit {
        match self {
            ApiError::UnknownTarget { .. } => Exit::Usage,
            ApiError::AlreadyRunning { .. }
            | ApiError::NotRunning { .. }
            | ApiError::RunningElsewhere { .. } => Exit::Failed,
            // Temporary: the same command works once the daemon is back.
            ApiError::ShuttingDown | ApiError::Cluster { .. } => Exit::Locked,
            ApiError::BadRequest { .. } => Exit::Failed,
        }
    }
}

/// The body of a refusal: the error, and its message for people reading
/// the socket with curl.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(flatten)]
    pub error: ApiError,
    pub message: String,
}

impl From<ApiError> for ErrorBody {
    fn from(error: ApiError) -> Self {
        ErrorBody {
            message: error.to_string(),
            error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_travel_as_a_kind_with_their_fields() {
        let e = ApiError::AlreadyRunning {
            target: TargetId::new("shop"),
            run: Some(RunId(3)),
            mode: RunMode::Full,
        };
        let body = serde_json::to_value(ErrorBody::from(e.clone())).unwrap();
        assert_eq!(body["kind"], "already_running");
        assert_eq!(body["run"], 3);
        assert_eq!(
            body["message"],
            "target shop is running run 3 (full run); stop it with `crawld stop-run shop`"
        );
        let back: ErrorBody = serde_json::from_value(body).unwrap();
        assert_eq!(back.error, e);
        let gone: ErrorBody =
            serde_json::from_str(r#"{"kind":"shutting_down","message":"x"}"#).unwrap();
        assert_eq!(gone.error.exit(), Exit::Locked);
    }

    #[test]
    fn a_resumed_run_says_its_own_mode() {
        let t = Triggered::Started {
            target: TargetId::new("shop"),
            mode: RunMode::Full,
            run: RunId(2),
            resumed_from: Some(RunId(1)),
        };
        assert_eq!(
            t.to_string(),
            "shop: full run 2 started, continuing run 1, which did not finish"
        );
    }
}
