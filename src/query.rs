//! The reading commands (`export`, `history`, `runs`, `failures`) as one
//! [`ReadCommand`] type and the code that runs it against a [`Store`],
//! writing to any [`Write`]. The CLI runs it on a store it opened itself; the
//! daemon runs the very same code on its own store and streams the output
//! over the control socket. Both import it from here, below them both.

use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::config::Target;
use crate::error::Exit;
use crate::export::{self, ExportError, Format};
use crate::ids::{RunId, TargetId};
use crate::store::{RunMode, RunStatus, Store, StoreError};

/// A command that only reads the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "lowercase")]
pub enum ReadCommand {
    Export {
        target: TargetId,
        format: Format,
        kind: Option<String>,
    },
    Changes {
        target: TargetId,
        since: Option<u64>,
    },
    History {
        target: TargetId,
        key: String,
        kind: Option<String>,
    },
    Runs {
        target: TargetId,
        json: bool,
    },
    Failures {
        target: TargetId,
        run: Option<u64>,
        /// JSON lines instead of a table. Absent from an older client's
        /// request: it printed JSON lines then.
        #[serde(default = "older_client_json")]
        json: bool,
    },
}

/// An older client sent `failures` without `json` and printed JSON lines.
fn older_client_json() -> bool {
    true
}

/// What a reader knows of the configs: the target's own config (CSV column
/// order, the item kinds) and the name of every configured target, valid or
/// not, so that a typo is told the names that exist. A target is known when
/// it is configured or has runs in the store.
#[derive(Debug, Default, Clone, Copy)]
pub struct Configured<'a> {
    pub target: Option<&'a Target>,
    pub names: &'a [TargetId],
}

impl Configured<'_> {
    /// Whether `target` has a config, valid or not.
    fn has(&self, target: &TargetId) -> bool {
        self.target.is_some() || self.names.contains(target)
    }

    /// "it is not configured", naming those that are.
    pub fn not_configured(&self) -> String {
        if self.names.is_empty() {
            "it is not configured".to_owned()
        } else {
            let names: Vec<&str> = self.names.iter().map(TargetId::as_str).collect();
            format!("it is not configured (configured: {})", names.join(", "))
        }
    }
}

impl ReadCommand {
    /// The target the command reads.
    pub fn target(&self) -> &TargetId {
        match self {
            ReadCommand::Export { target, .. }
            | ReadCommand::Changes { target, .. }
            | ReadCommand::History { target, .. }
            | ReadCommand::Runs { target, .. }
            | ReadCommand::Failures { target, .. } => target,
        }
    }
}

/// A run mode as commands and status show it.
pub fn mode_name(mode: RunMode) -> &'static str {
    match mode {
        RunMode::Incremental => "incremental",
        RunMode::Full => "full",
    }
}

/// A run status as commands and status show it.
pub fn status_name(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Running => "running",
        RunStatus::Completed => "completed",
        RunStatus::Interrupted => "interrupted",
        RunStatus::Failed => "failed",
        RunStatus::Abandoned => "abandoned",
    }
}

/// Why a reading command failed: the exit code and what to tell the user.
type Failed = (Exit, String);

fn store_failed(e: StoreError) -> Failed {
    (Exit::from(&e), e.to_string())
}

/// Runs a reading command against an open store: output to `out`, messages
/// to `err` (each a line, `error: …` for the failure). Returns the exit code.
pub fn run_read(
    store: &Store,
    configured: Configured<'_>,
    cmd: &ReadCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Exit {
    let result =
        known(store, configured, cmd).and_then(|()| read(store, configured.target, cmd, out, err));
    match result {
        Ok(()) | Err((Exit::Ok, _)) => Exit::Ok,
        Err((exit, msg)) => {
            let _ = writeln!(err, "error: {msg}");
            exit
        }
    }
}

/// A usage error (exit 2) for a target neither configured nor in the store,
/// naming those that are, and for an item kind the target does not have.
fn known(store: &Store, configured: Configured<'_>, cmd: &ReadCommand) -> Result<(), Failed> {
    let target = cmd.target();
    let config = configured.target;
    if let (
        Some(t),
        ReadCommand::Export {
            kind: Some(kind), ..
        }
        | ReadCommand::History {
            kind: Some(kind), ..
        },
    ) = (config, cmd)
    {
        if !t.items.iter().any(|k| &k.name == kind) {
            let kinds: Vec<&str> = t.items.iter().map(|k| k.name.as_str()).collect();
            return Err((
                Exit::Usage,
                format!(
                    "target {target} has no item kind {kind:?}; its kinds are {}",
                    kinds.join(", ")
                ),
            ));
        }
    }
    if configured.has(target) || store.last_run(target).map_err(store_failed)?.is_some() {
        return Ok(());
    }
    let stored = store.targets_with_runs().map_err(store_failed)?;
    let names: Vec<&str> = stored.iter().map(TargetId::as_str).collect();
    let which = if names.is_empty() {
        "the store has no runs of any target".to_owned()
    } else {
        format!("the store has runs of {}", names.join(", "))
    };
    Err((
        Exit::Usage,
        format!(
            "unknown target {target}: {} and {which}",
            configured.not_configured()
        ),
    ))
}

fn read(
    store: &Store,
    config: Option<&Target>,
    cmd: &ReadCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failed> {
    let target = cmd.target();
    match cmd {
        ReadCommand::Export { format, kind, .. } => {
            match export::export(store, target, config, kind.as_deref(), *format, out) {
                Ok(0) => {
                    let _ = writeln!(err, "warning: no items of target {target}");
                    Ok(())
                }
                Ok(_) => Ok(()),
                Err(e) => Err(export_failed(e)),
            }
        }
        ReadCommand::Changes { since, .. } => {
            export::export_changes(store, target, since.map(RunId), out)
                .map(|_| ())
                .map_err(export_failed)
        }
        ReadCommand::History { key, kind, .. } => history(store, target, key, kind.as_deref(), out),
        ReadCommand::Runs { json, .. } => {
            runs(store, target, *json, out, err).map_err(store_failed)
        }
        ReadCommand::Failures { run, json, .. } => failures(store, target, *run, *json, out),
    }
}

fn broken_pipe(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

fn export_failed(e: ExportError) -> Failed {
    match e {
        // `crawld export … | head` closing the pipe early is not an error.
        ExportError::Write(e) if broken_pipe(&e) => (Exit::Ok, String::new()),
        ExportError::Csv(e) if matches!(e.kind(), csv::ErrorKind::Io(io) if broken_pipe(io)) => {
            (Exit::Ok, String::new())
        }
        ExportError::Store(e) => store_failed(e),
        e @ ExportError::KindNeeded { .. } => (Exit::Usage, e.to_string()),
        // The output (a full disk, `--out /dev/full`): an I/O error, as the store's.
        e @ ExportError::Write(_) => (Exit::Store, e.to_string()),
        e => (Exit::Failed, e.to_string()),
    }
}

fn history(
    store: &Store,
    target: &TargetId,
    key: &str,
    kind: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), Failed> {
    let found = match kind {
        Some(kind) => store
            .item(target, kind, key)
            .map(|i| i.into_iter().collect::<Vec<_>>()),
        None => store
            .items(target)
            .filter(|i| !matches!(i, Ok(item) if item.key != key))
            .collect::<Result<Vec<_>, _>>(),
    }
    .map_err(store_failed)?;
    let item = match found.as_slice() {
        [] => {
            return Err((
                Exit::Failed,
                format!("no item with key {key:?} in target {target}"),
            ))
        }
        [item] => item,
        several => {
            let kinds: Vec<&str> = several.iter().map(|i| i.kind.as_str()).collect();
            return Err((
                Exit::Usage,
                format!(
                    "key {key:?} exists in kinds {}: choose one with --kind",
                    kinds.join(", ")
                ),
            ));
        }
    };
    let mut lines: Vec<serde_json::Value> = item
        .history
        .iter()
        .map(
            |v| serde_json::json!({"run": v.run, "at": export::rfc3339(v.at_ms), "value": v.value}),
        )
        .collect();
    lines.push(serde_json::json!({
        "run": item.made_by(),
        "at": export::rfc3339(item.last_changed_ms),
        "value": item.value,
        "current": true,
        "removed": item.removed_ms.map(export::rfc3339),
    }));
    for line in lines {
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
    Ok(())
}

fn runs(
    store: &Store,
    target: &TargetId,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), StoreError> {
    let runs = store.runs(target).collect::<Result<Vec<_>, _>>()?;
    if json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&runs).unwrap_or_default()
        );
        return Ok(());
    }
    let _ = writeln!(
        out,
        "{:>6}  {:<11}  {:<11}  {:<24}  {:>9}  {:>7}  {:>7}  {:>6}  {:>7}  {:>7}  resumed_from",
        "run",
        "mode",
        "status",
        "started",
        "duration",
        "pages",
        "failed",
        "new",
        "changed",
        "removed"
    );
    for r in &runs {
        let duration = r
            .ended_ms
            .map(|end| format!("{:.1}s", end.saturating_sub(r.started_ms) as f64 / 1000.0))
            .unwrap_or_else(|| "-".into());
        let c = &r.counts;
        let _ = writeln!(
            out,
            "{:>6}  {:<11}  {:<11}  {:<24}  {:>9}  {:>7}  {:>7}  {:>6}  {:>7}  {:>7}  {}",
            r.id.0,
            mode_name(r.mode),
            status_name(r.status),
            export::rfc3339(r.started_ms),
            duration,
            c.pages_fetched,
            c.pages_failed,
            c.items_new,
            c.items_changed,
            c.items_removed,
            r.resumed_from.map(|id| id.to_string()).unwrap_or_default()
        );
    }
    if runs.iter().any(|r| r.status == RunStatus::Interrupted) {
        let _ = writeln!(
            err,
            "an interrupted run resumes at the target's next run (within its resume_within)"
        );
    }
    Ok(())
}

fn failures(
    store: &Store,
    target: &TargetId,
    run: Option<u64>,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Failed> {
    let run = match run {
        Some(id) => RunId(id),
        None => match store.last_run(target).map_err(store_failed)? {
            Some(r) => r.id,
            None => return Err((Exit::Failed, format!("target {target} has no runs"))),
        },
    };
    if json {
        for f in store.failures(target, run) {
            let f = f.map_err(store_failed)?;
            let line = serde_json::json!({"url": f.url, "run": f.run, "kind": f.kind, "detail": f.detail, "status": f.status, "at": export::rfc3339(f.at_ms)});
            if writeln!(out, "{line}").is_err() {
                break;
            }
        }
        return Ok(());
    }
    // A table is aligned on its longest URL: read them all first.
    let failed = store
        .failures(target, run)
        .collect::<Result<Vec<_>, _>>()
        .map_err(store_failed)?;
    let _ = write!(out, "{}", failures_table(&failed));
    Ok(())
}

/// `crawld failures` as a table, like `crawld runs`: one line a URL, the
/// detail last since it is the longest (its leading URL, which the URL
/// column shows already, dropped).
fn failures_table(failed: &[crate::store::FailureRecord]) -> String {
    use std::fmt::Write as _;
    let width = failed.iter().map(|f| f.url.len()).max().unwrap_or(3).max(3);
    let mut table = format!(
        "{:>6}  {:<24}  {:<18}  {:>6}  {:<width$}  detail\n",
        "run", "at", "kind", "status", "url"
    );
    for f in failed {
        let detail = f
            .detail
            .strip_prefix(f.url.as_str())
            .and_then(|d| d.strip_prefix(": "))
            .unwrap_or(&f.detail);
        let status = f
            .status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            table,
            "{:>6}  {:<24}  {:<18}  {:>6}  {:<width$}  {detail}",
            f.run.0,
            export::rfc3339(f.at_ms),
            f.kind.name(),
            status,
            f.url
        );
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_command_keeps_its_wire_form() {
        // The daemon and an older or newer client must agree on this shape.
        let cmd = ReadCommand::Export {
            target: TargetId::new("shop"),
            format: Format::Csv,
            kind: None,
        };
        let json = serde_json::to_value(&cmd).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"command": "export", "target": "shop", "format": "csv", "kind": null})
        );
        assert_eq!(serde_json::from_value::<ReadCommand>(json).unwrap(), cmd);
    }

    #[test]
    fn an_older_clients_failures_request_gets_json_lines() {
        // It printed JSON lines before `failures` had a table.
        let old = serde_json::json!({"command": "failures", "target": "shop", "run": null});
        let cmd: ReadCommand = serde_json::from_value(old).unwrap();
        assert!(matches!(cmd, ReadCommand::Failures { json: true, .. }));
    }
}
