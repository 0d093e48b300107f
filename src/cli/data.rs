//! Commands that read or manage what is stored: export, history, runs and
//! `store check|backup|restore`.

use std::io::Write;
use std::path::Path;

use super::{fail, open_existing_store as open_store};
use crate::config;
use crate::error::Exit;
use crate::export::{self, ExportError, Format};
use crate::ids::{RunId, TargetId};
use crate::store::{RunStatus, Store};

/// stdout, or a temporary file beside `out` that [`finish`] moves in place,
/// so that a failed export never leaves a partial file.
fn sink(out: Option<&Path>) -> Result<Box<dyn Write>, Exit> {
    match out {
        Some(path) => match std::fs::File::create(partial(path)) {
            Ok(f) => Ok(Box::new(std::io::BufWriter::new(f))),
            Err(e) => Err(fail(
                Exit::Failed,
                format!("cannot create {}: {e}", path.display()),
            )),
        },
        None => Ok(Box::new(std::io::BufWriter::new(std::io::stdout().lock()))),
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

fn export_failed(e: ExportError) -> Exit {
    let broken_pipe = |e: &std::io::Error| e.kind() == std::io::ErrorKind::BrokenPipe;
    match e {
        // `crawld export … | head` closing the pipe early is not an error.
        ExportError::Write(e) if broken_pipe(&e) => Exit::Ok,
        ExportError::Csv(e) if matches!(e.kind(), csv::ErrorKind::Io(io) if broken_pipe(io)) => {
            Exit::Ok
        }
        ExportError::Store(e) => {
            let exit = Exit::from(&e);
            fail(exit, e)
        }
        e @ ExportError::KindNeeded { .. } => fail(Exit::Usage, e),
        e => fail(Exit::Failed, e),
    }
}

pub(super) fn export(
    configs: &Path,
    state: &Path,
    name: &str,
    format: Format,
    kind: Option<&str>,
    out: Option<&Path>,
) -> Exit {
    let store = match open_store(state) {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    // The config only orders CSV columns: a missing or broken one is no reason to fail.
    let target = config::load_dir(configs)
        .ok()
        .and_then(|r| r.set.targets.get(&TargetId::new(name)).cloned());
    let mut sink = match sink(out) {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    let id = TargetId::new(name);
    let result = export::export(&store, &id, target.as_deref(), kind, format, &mut sink);
    drop(sink);
    let exit = match result {
        Ok(n) => {
            if n == 0 {
                eprintln!("warning: no items of target {name} in {}", state.display());
            } else if let Some(path) = out {
                eprintln!("{n} item(s) written to {}", path.display());
            }
            Exit::Ok
        }
        Err(e) => export_failed(e),
    };
    finish(out, exit)
}

pub(super) fn export_changes(
    state: &Path,
    name: &str,
    since: Option<u64>,
    out: Option<&Path>,
) -> Exit {
    let store = match open_store(state) {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    let mut sink = match sink(out) {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    let result = export::export_changes(&store, &TargetId::new(name), since.map(RunId), &mut sink);
    drop(sink);
    let exit = match result {
        Ok(n) => {
            if let Some(path) = out {
                eprintln!("{n} change(s) written to {}", path.display());
            }
            Exit::Ok
        }
        Err(e) => export_failed(e),
    };
    finish(out, exit)
}

pub(super) fn history(state: &Path, name: &str, key: &str, kind: Option<&str>) -> Exit {
    let store = match open_store(state) {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    let target = TargetId::new(name);
    let found = match kind {
        Some(kind) => store
            .item(&target, kind, key)
            .map(|i| i.into_iter().collect::<Vec<_>>()),
        None => store
            .items(&target)
            .filter(|i| !matches!(i, Ok(item) if item.key != key))
            .collect::<Result<Vec<_>, _>>(),
    };
    let found = match found {
        Ok(f) => f,
        Err(e) => {
            let exit = Exit::from(&e);
            return fail(exit, e);
        }
    };
    let item = match found.as_slice() {
        [] => {
            return fail(
                Exit::Failed,
                format!("no item with key {key:?} in target {name}"),
            )
        }
        [item] => item,
        several => {
            let kinds: Vec<&str> = several.iter().map(|i| i.kind.as_str()).collect();
            return fail(
                Exit::Usage,
                format!(
                    "key {key:?} exists in kinds {}: choose one with --kind",
                    kinds.join(", ")
                ),
            );
        }
    };
    let mut out = std::io::stdout().lock();
    let mut line = |v: serde_json::Value| writeln!(out, "{v}");
    let mut result = Ok(());
    for version in &item.history {
        result = result.and_then(|_| {
            line(serde_json::json!({
                "run": version.run,
                "at": export::rfc3339(version.at_ms),
                "value": version.value,
            }))
        });
    }
    result = result.and_then(|_| {
        line(serde_json::json!({
            "run": item.run,
            "at": export::rfc3339(item.last_changed_ms),
            "value": item.value,
            "current": true,
            "removed": item.removed_ms.map(export::rfc3339),
        }))
    });
    match result {
        Ok(()) => Exit::Ok,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Exit::Ok,
        Err(e) => fail(Exit::Failed, e),
    }
}

pub(super) fn runs(state: &Path, name: &str, json: bool) -> Exit {
    let store = match open_store(state) {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    let runs = match store
        .runs(&TargetId::new(name))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(r) => r,
        Err(e) => {
            let exit = Exit::from(&e);
            return fail(exit, e);
        }
    };
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&runs).unwrap_or_default()
        );
        return Exit::Ok;
    }
    outln!(
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
        outln!(
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
        eprintln!("an interrupted run resumes at the target's next run (within its resume_within)");
    }
    Exit::Ok
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

pub(super) fn failures(state: &Path, name: &str, run: Option<u64>) -> Exit {
    let store = match open_store(state) {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    let target = TargetId::new(name);
    let run = match run {
        Some(id) => RunId(id),
        None => match store.last_run(&target) {
            Ok(Some(r)) => r.id,
            Ok(None) => {
                return fail(
                    Exit::Failed,
                    format!("target {name} has no runs in {}", state.display()),
                )
            }
            Err(e) => {
                let exit = Exit::from(&e);
                return fail(exit, e);
            }
        },
    };
    let mut out = std::io::stdout().lock();
    for f in store.failures(&target, run) {
        let f = match f {
            Ok(f) => f,
            Err(e) => {
                let exit = Exit::from(&e);
                return fail(exit, e);
            }
        };
        let line = serde_json::json!({"url": f.url, "run": f.run, "kind": f.kind, "detail": f.detail, "status": f.status, "at": export::rfc3339(f.at_ms)});
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
    Exit::Ok
}
