//! Commands that read or manage what is stored: export, history, runs,
//! failures and `store check|backup|restore`.
//!
//! The reading commands are a [`ReadCommand`]: the CLI runs one against the
//! store itself, or, when a daemon holds the state dir, sends it over the
//! control socket and the daemon runs the very same code.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{fail, open_existing_store as open_store};
use crate::config::Target;
use crate::daemon::control;
use crate::error::Exit;
use crate::export::{self, ExportError, Format};
use crate::ids::{RunId, TargetId};
use crate::store::{RunStatus, Store, StoreError};

/// A command that only reads the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "lowercase")]
pub enum ReadCommand {
    Export {
        target: String,
        format: Format,
        kind: Option<String>,
    },
    Changes {
        target: String,
        since: Option<u64>,
    },
    History {
        target: String,
        key: String,
        kind: Option<String>,
    },
    Runs {
        target: String,
        json: bool,
    },
    Failures {
        target: String,
        run: Option<u64>,
    },
}

impl ReadCommand {
    pub fn target(&self) -> &str {
        match self {
            ReadCommand::Export { target, .. }
            | ReadCommand::Changes { target, .. }
            | ReadCommand::History { target, .. }
            | ReadCommand::Runs { target, .. }
            | ReadCommand::Failures { target, .. } => target,
        }
    }
}

/// stdout, or a temporary file beside `out` that [`finish`] moves in place,
/// so that a failed export never leaves a partial file.
fn sink(out: Option<&Path>) -> Result<Sink, Exit> {
    let inner: Box<dyn Write> = match out {
        Some(path) => match std::fs::File::create(partial(path)) {
            Ok(f) => Box::new(std::io::BufWriter::new(f)),
            Err(e) => {
                return Err(fail(
                    Exit::Failed,
                    format!("cannot create {}: {e}", path.display()),
                ))
            }
        },
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    Ok(Sink { inner, bytes: 0 })
}

/// Where a reading command's output goes, counting what it was given: output
/// on stdout cannot be taken back, so a failure after some of it must say so.
struct Sink {
    inner: Box<dyn Write>,
    bytes: u64,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn partial(path: &Path) -> std::path::PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".partial");
    path.with_file_name(name)
}

/// Moves a finished export in place, or removes what a failed one wrote.
fn finish(out: Option<&Path>, exit: Exit) -> Exit {
    let Some(path) = out else { return exit };
    if exit != Exit::Ok {
        let _ = std::fs::remove_file(partial(path));
        return exit;
    }
    match std::fs::rename(partial(path), path) {
        Ok(()) => Exit::Ok,
        Err(e) => fail(
            Exit::Failed,
            format!("cannot write {}: {e}", path.display()),
        ),
    }
}

/// Runs a reading command here, or through the daemon that holds the state dir.
pub(super) async fn read(
    state: &Path,
    socket: Option<&Path>,
    config: Option<&Target>,
    cmd: ReadCommand,
    out: Option<&Path>,
) -> Exit {
    // An operator may name only the daemon's socket (`--socket` or
    // CRAWLD_SOCKET), not its state dir: ask the daemon then.
    if !state.join("db").exists() && socket.is_none() {
        // `open_store` explains that nothing was crawled here.
        return open_store(state).err().unwrap_or(Exit::Store);
    }
    let mut sink = match sink(out) {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    let local = if state.join("db").exists() {
        Store::open_read(state)
    } else {
        Err(StoreError::Locked {
            dir: state.to_path_buf(),
            pid: "unknown".into(),
        })
    };
    let exit = match local {
        Ok(store) => run_read(&store, config, &cmd, &mut sink, &mut std::io::stderr()),
        Err(StoreError::Locked { dir, pid }) => {
            let path = control::socket_path(socket, state);
            match control::call(&path, "POST", "/read", serde_json::to_value(&cmd).ok()).await {
                Ok(answer) if answer.status >= 400 => {
                    let v: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
                    fail(Exit::Failed, v["error"].as_str().unwrap_or("the daemon refused the request"))
                }
                Ok(answer) => {
                    let exit = answer
                        .headers
                        .get(control::EXIT_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u8>().ok())
                        .unwrap_or(1);
                    if let Some(err) = answer.headers.get(control::STDERR_HEADER).and_then(|v| v.to_str().ok()) {
                        let text: String = url::form_urlencoded::parse(format!("e={err}").as_bytes())
                            .map(|(_, v)| v.into_owned())
                            .collect();
                        eprint!("{text}");
                    }
                    let written = sink.write_all(&answer.body).and_then(|_| sink.flush());
                    match written {
                        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => fail(Exit::Failed, e),
                        _ => exit_from(exit),
                    }
                }
                Err(e @ control::ClientError::NoDaemon(_)) if !state.join("db").exists() => {
                    fail(Exit::Failed, format!("{e}, and there is no store in {} either", dir.display()))
                }
                Err(e) => fail(
                    Exit::Locked,
                    format!("state dir {} is in use by crawld pid {pid}, and its control socket does not answer: {e}", dir.display()),
                ),
            }
        }
        Err(e) => {
            let exit = Exit::from(&e);
            fail(exit, e)
        }
    };
    let written = sink.bytes;
    drop(sink);
    if out.is_none() && exit != Exit::Ok && written > 0 {
        eprintln!(
            "error: the output on stdout is INCOMPLETE: the command failed after writing {written} bytes \
             to stdout. With --out FILE, a failed export leaves no file instead"
        );
    }
    finish(out, exit)
}

fn exit_from(code: u8) -> Exit {
    match code {
        0 => Exit::Ok,
        2 => Exit::Usage,
        74 => Exit::Store,
        75 => Exit::Locked,
        78 => Exit::Config,
        _ => Exit::Failed,
    }
}

/// Runs a reading command against an open store: output to `out`, messages to `err`.
pub fn run_read(
    store: &Store,
    config: Option<&Target>,
    cmd: &ReadCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Exit {
    let target = TargetId::new(cmd.target());
    let store_failed = |e: StoreError| (Exit::from(&e), e.to_string());
    let result: Result<(), (Exit, String)> = match cmd {
        ReadCommand::Export { format, kind, .. } => {
            match export::export(store, &target, config, kind.as_deref(), *format, out) {
                Ok(0) => {
                    let _ = writeln!(err, "warning: no items of target {target}");
                    Ok(())
                }
                Ok(_) => Ok(()),
                Err(e) => Err(export_failed(e)),
            }
        }
        ReadCommand::Changes { since, .. } => {
            export::export_changes(store, &target, since.map(RunId), out)
                .map(|_| ())
                .map_err(export_failed)
        }
        ReadCommand::History { key, kind, .. } => {
            history(store, &target, key, kind.as_deref(), out)
        }
        ReadCommand::Runs { json, .. } => {
            runs(store, &target, *json, out, err).map_err(store_failed)
        }
        ReadCommand::Failures { run, .. } => failures(store, &target, *run, out),
    };
    match result {
        Ok(()) => Exit::Ok,
        Err((Exit::Ok, _)) => Exit::Ok,
        Err((exit, msg)) => {
            let _ = writeln!(err, "error: {msg}");
            exit
        }
    }
}

fn export_failed(e: ExportError) -> (Exit, String) {
    let broken_pipe = |e: &std::io::Error| e.kind() == std::io::ErrorKind::BrokenPipe;
    match e {
        // `crawld export … | head` closing the pipe early is not an error.
        ExportError::Write(e) if broken_pipe(&e) => (Exit::Ok, String::new()),
        ExportError::Csv(e) if matches!(e.kind(), csv::ErrorKind::Io(io) if broken_pipe(io)) => {
            (Exit::Ok, String::new())
        }
        ExportError::Store(e) => (Exit::from(&e), e.to_string()),
        e @ ExportError::KindNeeded { .. } => (Exit::Usage, e.to_string()),
        e => (Exit::Failed, e.to_string()),
    }
}

fn history(
    store: &Store,
    target: &TargetId,
    key: &str,
    kind: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), (Exit, String)> {
    let found = match kind {
        Some(kind) => store
            .item(target, kind, key)
            .map(|i| i.into_iter().collect::<Vec<_>>()),
        None => store
            .items(target)
            .filter(|i| !matches!(i, Ok(item) if item.key != key))
            .collect::<Result<Vec<_>, _>>(),
    }
    .map_err(|e| (Exit::from(&e), e.to_string()))?;
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
            format!("{:?}", r.mode).to_lowercase(),
            format!("{:?}", r.status).to_lowercase(),
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
    out: &mut dyn Write,
) -> Result<(), (Exit, String)> {
    let store_err = |e: StoreError| (Exit::from(&e), e.to_string());
    let run = match run {
        Some(id) => RunId(id),
        None => match store.last_run(target).map_err(store_err)? {
            Some(r) => r.id,
            None => return Err((Exit::Failed, format!("target {target} has no runs"))),
        },
    };
    for f in store.failures(target, run) {
        let f = f.map_err(store_err)?;
        let line = serde_json::json!({"url": f.url, "run": f.run, "kind": f.kind, "detail": f.detail, "status": f.status, "at": export::rfc3339(f.at_ms)});
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
    Ok(())
}

pub(super) fn store_check(state: &Path) -> Exit {
    let store = match open_store(state) {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    match store.check() {
        Ok(report) if report.problems.is_empty() => {
            outln!(
                "{}: {} records, all valid",
                store.path().display(),
                report.records
            );
            Exit::Ok
        }
        Ok(report) => {
            for p in &report.problems {
                eprintln!("problem: {p}");
            }
            fail(
                Exit::Store,
                format!(
                    "{} problem(s) in {} records of {}",
                    report.problems.len(),
                    report.records,
                    store.path().display()
                ),
            )
        }
        Err(e) => {
            let exit = Exit::from(&e);
            fail(exit, e)
        }
    }
}

pub(super) fn store_backup(state: &Path, file: &Path) -> Exit {
    let store = match open_store(state) {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    match store.backup(file) {
        Ok(n) => {
            outln!("{n} records written to {}", file.display());
            Exit::Ok
        }
        Err(e) => fail(Exit::Store, e),
    }
}

pub(super) fn store_restore(state: &Path, file: &Path) -> Exit {
    match Store::restore(state, file) {
        Ok(n) => {
            outln!("{n} records restored into {}", state.display());
            Exit::Ok
        }
        Err(e) => {
            let exit = Exit::from(&e);
            fail(exit, e)
        }
    }
}
