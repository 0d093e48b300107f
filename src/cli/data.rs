//! Commands that read or manage what is stored: export, history, runs,
//! failures and `store check|backup|restore`.
//!
//! The reading commands are a [`ReadCommand`] (see [`crate::query`]): the CLI
//! runs one against the store itself or, when a daemon holds the state dir,
//! sends it over the control socket; the daemon runs the very same code and
//! streams its output back as it is written.

use std::io::Write;
use std::path::Path;

use super::holder::{self, Holder};
use super::{fail, open_existing_store as open_store};
use crate::config::Target;
use crate::control::client::{Client, ClientError};
use crate::control::socket_path;
use crate::error::Exit;
use crate::query::{run_read, ReadCommand};
use crate::store::{Store, StoreError};

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
    let here = state.join("db").exists();
    // An operator may name only the daemon's socket (`--socket` or
    // CRAWLD_SOCKET), not its state dir: ask the daemon then.
    if !here && socket.is_none() {
        // `open_store` explains that nothing was crawled here.
        return open_store(state).err().unwrap_or(Exit::Store);
    }
    let mut sink = match sink(out) {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    let exit = if here {
        match Store::open_read(state) {
            Ok(store) => run_read(&store, config, &cmd, &mut sink, &mut std::io::stderr()),
            Err(StoreError::Locked { dir, pid }) => {
                through_daemon(state, socket, &cmd, &mut sink, Some((&dir, &pid))).await
            }
            Err(e) => {
                let exit = Exit::from(&e);
                fail(exit, e)
            }
        }
    } else {
        through_daemon(state, socket, &cmd, &mut sink, None).await
    };
    let written = sink.bytes;
    drop(sink);
    if out.is_none() && exit != Exit::Ok && written > 0 {
        errln!(
            "error: the output on stdout is INCOMPLETE: the command failed after writing {written} bytes \
             to stdout. With --out FILE, a failed export leaves no file instead"
        );
    }
    finish(out, exit)
}

/// Runs a reading command in the daemon, its output written through as it
/// arrives. `held`: the state dir and the pid in its lock, when it is held.
async fn through_daemon(
    state: &Path,
    socket: Option<&Path>,
    cmd: &ReadCommand,
    sink: &mut Sink,
    held: Option<(&Path, &str)>,
) -> Exit {
    let client = Client::new(&socket_path(socket, state));
    let e = match client.read(cmd, sink, &mut std::io::stderr()).await {
        Ok(exit) => return exit,
        // `crawld export … | head` closing the pipe early is not an error.
        Err(ClientError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            return Exit::Ok
        }
        Err(ClientError::Refused(e)) => return fail(e.exit(), e),
        Err(e) => e,
    };
    let connected = !matches!(
        e,
        ClientError::NoDaemon(_) | ClientError::PermissionDenied(_) | ClientError::Failed { .. }
    );
    match held {
        // The daemon answered, then failed.
        _ if connected => fail(Exit::Failed, e),
        None => fail(
            Exit::Failed,
            format!("{e}, and there is no store in {} either", state.display()),
        ),
        Some((dir, pid)) => {
            let holder = holder::holder(pid);
            let what = holder::in_use(dir, pid, &holder);
            let msg = match holder {
                Holder::Command(_) => format!("{what}: run this again when it finishes"),
                Holder::Daemon => format!(
                    "{what}, but its control socket does not answer: {e}. If the daemon runs with \
                     --socket, pass the same --socket (or CRAWLD_SOCKET)"
                ),
                Holder::Unknown => {
                    format!("{what}, and no daemon answers ({e}): run this again when it finishes")
                }
            };
            fail(Exit::Locked, msg)
        }
    }
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
                errln!("problem: {p}");
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

/// `crawld store backup FILE`: here, or, while a daemon holds the state
/// dir, by the daemon (a running service is backed up without a stop).
pub(super) async fn store_backup(state: &Path, file: &Path) -> Exit {
    if !state.join("db").exists() {
        return open_store(state).err().unwrap_or(Exit::Store);
    }
    match Store::open_read(state) {
        Ok(store) => match store.backup(file) {
            Ok(n) => {
                outln!("{n} records written to {}", file.display());
                Exit::Ok
            }
            Err(e) => fail(Exit::Store, e),
        },
        Err(StoreError::Locked { pid, .. }) if holder::holder(&pid) == Holder::Daemon => {
            backup_through_daemon(state, file).await
        }
        Err(e) => super::store_failed(e),
    }
}

async fn backup_through_daemon(state: &Path, file: &Path) -> Exit {
    let client = Client::new(&socket_path(None, state));
    let mut sink = match sink(Some(file)) {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    let mut said = Vec::new();
    let exit = match client.backup(&mut sink, &mut said).await {
        Ok(exit) => exit,
        Err(e) => fail(
            Exit::Locked,
            format!(
                "state dir {} is in use by the daemon, and its control socket does not answer: {e}",
                state.display()
            ),
        ),
    };
    let flushed = sink.flush();
    drop(sink);
    let said = String::from_utf8_lossy(&said);
    let exit = match (exit, flushed) {
        (Exit::Ok, Err(e)) => fail(Exit::Store, format!("cannot write {}: {e}", file.display())),
        (Exit::Ok, Ok(())) => {
            let n = said.lines().next().unwrap_or("its records").to_owned();
            let exit = finish(Some(file), Exit::Ok);
            if exit == Exit::Ok {
                outln!("{n} written to {} by the daemon", file.display());
            }
            return exit;
        }
        (exit, _) => {
            errln!("{}", said.trim_end());
            exit
        }
    };
    finish(Some(file), exit)
}

pub(super) fn store_restore(state: &Path, file: &Path) -> Exit {
    match Store::restore(state, file) {
        Ok(n) => {
            outln!("{n} records restored into {}", state.display());
            Exit::Ok
        }
        Err(e) => super::store_failed(e),
    }
}
