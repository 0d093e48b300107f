//! The command line: argument parsing, directory defaults, and the glue from
//! each command to the library. Errors become the exit codes of [`Exit`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Parser;
use tokio_util::sync::CancellationToken;

/// `println!` that does not panic when stdout is a closed pipe (`crawld … | head`).
/// What it prints may hold text from the network: control characters are
/// escaped (`crate::printable`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let text = format!($($arg)*);
        let _ = writeln!(std::io::stdout().lock(), "{}", $crate::printable::text(&text));
    }};
}

/// `print!` that does not panic when stdout is a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let text = format!($($arg)*);
        let _ = write!(std::io::stdout().lock(), "{}", $crate::printable::text(&text));
    }};
}

/// `eprintln!` with control characters escaped, like [`outln!`].
macro_rules! errln {
    ($($arg:tt)*) => {{
        let text = format!($($arg)*);
        eprintln!("{}", $crate::printable::text(&text));
    }};
}

mod alert_cli;
mod args;
mod daemon_cli;
mod data;
mod demo;
mod dispatch;
mod holder;
mod manual;
mod markdown_roff;
mod monitors;
mod test_page;

use args::{Cli, Command, StateArg};
pub(crate) use monitors::Watch;

use crate::config::{self, LoadReport, Target};
use crate::control::{self, client::Client};
use crate::crawl::{self, Engine};
use crate::error::Exit;
use crate::ids::TargetId;
use crate::report::{self, ProgressView};
use crate::store::{RunMode, RunStatus, Store, StoreError};

/// Failed URLs listed in a run's summary; `crawld failures` lists them all.
const SUMMARY_FAILURES: usize = 5;

/// How long the process waits, once a command is done, for blocking tasks
/// still running (see `main`): long enough for a store commit in flight.
const BLOCKING_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

/// Entry point of the binary.
pub fn main() -> std::process::ExitCode {
    // Before any thread or file exists: what crawld creates is private.
    crate::files::restrict_umask();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                Exit::Usage.into()
            } else {
                Exit::Ok.into()
            };
        }
    };
    let daemon = matches!(cli.command, Command::Run { .. });
    let log_files = match &cli.command {
        Command::Run {
            log_dir: Some(dir),
            log_keep,
            ..
        } => Some((dir.clone(), *log_keep)),
        _ => None,
    };
    // Keeps the log file writer flushing until the process ends.
    let _log_guard = match init_logging(cli.verbose, daemon, log_files) {
        Ok(guard) => guard,
        Err(e) => return fail(Exit::Usage, e).into(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(Exit::Failed, format!("cannot start the async runtime: {e}")).into(),
    };
    let exit = runtime.block_on(dispatch::dispatch(cli.command));
    // Dropping the runtime would wait for every blocking task to return.
    // What is left by now is work nobody waits for: a parse or a DNS lookup
    // of a stopped run (whose page stays queued), or, when the daemon's grace
    // period ran out, a store commit of a run left mid-way, which takes
    // milliseconds and which sled recovers whole or not at all. Everything a
    // command reports as committed, its run record included, was written
    // before `dispatch` returned.
    runtime.shutdown_timeout(BLOCKING_WAIT);
    exit.into()
}

/// Logs go to stderr for the foreground commands (their stdout is data) and
/// to stdout for the daemon, at INFO by default; `-v`, `-vv` and RUST_LOG
/// change the level.
fn init_logging(
    verbose: u8,
    daemon: bool,
    files: Option<(PathBuf, usize)>,
) -> Result<Option<tracing_appender::non_blocking::WorkerGuard>, String> {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let level = match verbose {
        0 if daemon => "crawld=info",
        0 => "crawld=warn",
        1 => "crawld=info",
        _ => "crawld=debug",
    };
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level))
    };
    // journald stamps every line itself.
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    // The daemon logs to stdout; the other commands keep stdout for their data.
    let to_stdout = daemon;
    let ansi = if to_stdout {
        std::io::stdout().is_terminal()
    } else {
        std::io::stderr().is_terminal()
    };
    let writer = move || -> Box<dyn std::io::Write> {
        if to_stdout {
            Box::new(std::io::stdout())
        } else {
            Box::new(std::io::stderr())
        }
    };
    let stderr = if journald {
        tracing_subscriber::fmt::layer()
            .without_time()
            .compact()
            .with_ansi(false)
            .with_writer(writer)
            .with_filter(filter())
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(writer)
            .with_filter(filter())
            .boxed()
    };
    let (file_layer, guard) = match files {
        Some((dir, keep)) => {
            let appender = tracing_appender::rolling::Builder::new()
                .rotation(tracing_appender::rolling::Rotation::DAILY)
                .filename_prefix("crawld")
                .filename_suffix("log")
                .max_log_files(keep.max(1))
                .build(&dir)
                .map_err(|e| format!("cannot log to {}: {e}", dir.display()))?;
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let layer = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(writer)
                .with_filter(filter());
            (Some(layer), Some(guard))
        }
        None => (None, None),
    };
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(file_layer)
        .try_init();
    Ok(guard)
}

/// Prints an error and returns its exit code.
pub(crate) fn fail(exit: Exit, message: impl std::fmt::Display) -> Exit {
    errln!("error: {message}");
    exit
}

fn load(dir: &Path) -> Result<LoadReport, Exit> {
    config::load_dir(dir).map_err(|e| fail(Exit::Config, e))
}

fn print_errors(errors: &[config::ConfigError]) {
    for e in errors {
        errln!("error: {e}");
    }
}

fn check(dir: &Path) -> Exit {
    let report = match load(dir) {
        Ok(r) => r,
        Err(exit) => return exit,
    };
    let errors = report.all_errors();
    if errors.is_empty() {
        let channels = match report.set.channels.len() {
            0 => String::new(),
            n => format!(", {n} alert channel(s)"),
        };
        outln!(
            "{}: {} target(s), {} profile(s){channels}, no errors",
            dir.display(),
            report.set.targets.len(),
            report.set.profiles.len()
        );
        Exit::Ok
    } else {
        print_errors(&errors);
        errln!(
            "{} configuration error(s) in {}",
            errors.len(),
            dir.display()
        );
        Exit::Config
    }
}

/// The target named on the command line, or the exit code that says why not.
pub(crate) fn pick_target(dir: &Path, name: &str) -> Result<Arc<Target>, Exit> {
    pick_from(&load(dir)?, dir, name)
}

/// The target named on the command line from a loaded configs directory.
fn pick_from(report: &LoadReport, dir: &Path, name: &str) -> Result<Arc<Target>, Exit> {
    let id = TargetId::new(name);
    let errors = report.target_errors(&id);
    if !errors.is_empty() {
        print_errors(&errors);
        return Err(fail(
            Exit::Config,
            format!("target {name} has configuration errors and will not run"),
        ));
    }
    match report.set.targets.get(&id) {
        Some(t) => {
            let others = report.all_errors().len();
            if others > 0 {
                errln!(
                    "warning: {others} configuration error(s) in other files (see `crawld check`)"
                );
            }
            Ok(t.clone())
        }
        None => {
            let known: Vec<&str> = report.set.targets.keys().map(|t| t.as_str()).collect();
            Err(fail(
                Exit::Usage,
                format!(
                    "no target {name:?} in {} (targets: {})",
                    dir.display(),
                    known.join(", ")
                ),
            ))
        }
    }
}

pub(crate) fn open_store(dir: &Path) -> Result<Arc<Store>, Exit> {
    Store::open(dir).map(Arc::new).map_err(store_failed)
}

/// Prints why the store could not be used; a held state dir names its holder.
pub(crate) fn store_failed(e: StoreError) -> Exit {
    match e {
        StoreError::Locked { dir, pid } => fail(Exit::Locked, holder::locked_message(&dir, &pid)),
        e => {
            let exit = Exit::from(&e);
            fail(exit, e)
        }
    }
}

/// Opens a store that must exist already, for a command that only reads:
/// reading commands never create one (a mistyped `--state` would otherwise
/// read as "no items") and never write to it.
pub(crate) fn open_existing_store(dir: &Path) -> Result<Arc<Store>, Exit> {
    if !dir.join("db").exists() {
        return Err(fail(
            Exit::Store,
            format!(
                "no store in {}: nothing was crawled with this state dir (check --state)",
                dir.display()
            ),
        ));
    }
    Store::open_read(dir).map(Arc::new).map_err(store_failed)
}

/// A token cancelled by Ctrl-C or SIGTERM.
pub(crate) fn cancel_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                },
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        errln!("stopping: committing what was fetched…");
        t.cancel();
    });
    token
}

pub(crate) async fn crawl_target(
    store: Arc<Store>,
    state: &Path,
    target: Arc<Target>,
    mode: RunMode,
    progress: bool,
    watch: Watch,
) -> Exit {
    let engine = Engine::default();
    let view = ProgressView::new(progress);
    let cancel = cancel_on_signals();
    if watch.notify {
        // Before the run starts: a missing marker later means [notify] was
        // just added, not "this run ended and its notice was never queued".
        let t = target.clone();
        let seen = crate::store::now_ms();
        let marked = store
            .call(move |s| crate::alert::mark_notify_start(s, &t, seen, seen))
            .await;
        if let Err(e) = marked {
            errln!("warning: --notify: cannot mark where change notices start: {e}");
        }
    }
    let result = crawl::run(&engine, store.clone(), target.clone(), mode, cancel, &view).await;
    view.finish();
    match result {
        Ok(run) => {
            let failures: Vec<_> = store
                .failures(&run.target, run.id)
                .take(SUMMARY_FAILURES)
                .filter_map(Result::ok)
                .collect();
            out!("{}", report::summary(&run, &failures));
            let firing = monitors::judge(&store, &target, &run, &watch).await;
            if store.is_database() {
                outln!(
                    "Items are in {}; export them with: crawld export {} --format jsonl \
                     (with the same --cluster URL or CRAWLD_CLUSTER)",
                    store.describe(),
                    target.id,
                );
            } else {
                outln!(
                    "Items are in {}; export them with: crawld export {} --state {} --format jsonl",
                    state.display(),
                    target.id,
                    state.display()
                );
            }
            if run.status != RunStatus::Completed {
                Exit::Failed
            } else if firing && watch.fail_on_alert {
                Exit::Alert
            } else {
                Exit::Ok
            }
        }
        Err(e) => fail(e.exit(), e),
    }
}

async fn crawl(
    configs: &Path,
    state: &StateArg,
    cluster: Option<&str>,
    name: &str,
    mode: RunMode,
    progress: bool,
    watch: Watch,
) -> Exit {
    let target = match pick_target(configs, name) {
        Ok(t) => t,
        Err(exit) => return exit,
    };
    let mut watch = watch;
    if watch.alert || watch.notify {
        match load(configs) {
            Ok(report) => watch.channels_of(&report.set, &target),
            Err(exit) => return exit,
        }
    }
    let dir = state.dir();
    if let Some(url) = cluster {
        // Connecting may wait (for the server, for a lock a dead process
        // left): not on an async thread.
        let (url, state) = (url.to_owned(), dir.clone());
        let connect = move || Store::connect(&url, &state);
        let store = match crate::store::open_off("the database of --cluster".into(), connect).await
        {
            Ok(s) => Arc::new(s),
            Err(e) => return store_failed(e),
        };
        return crawl_target(store, &dir, target, mode, progress, watch).await;
    }
    let store = match Store::open(&dir) {
        Ok(s) => Arc::new(s),
        Err(StoreError::Locked { pid, .. }) => {
            // A daemon owns this state dir: runs go through it.
            let socket = control::socket_path(state.socket.as_deref(), &dir);
            if Client::new(&socket).status().await.is_ok() {
                return fail(Exit::Locked, format!("the crawld daemon (pid {pid}) runs on state dir {}: start a run with `crawld trigger {name}`", dir.display()));
            }
            return fail(Exit::Locked, holder::locked_message(&dir, &pid));
        }
        Err(e) => return store_failed(e),
    };
    crawl_target(store, &dir, target, mode, progress, watch).await
}
