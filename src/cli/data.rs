//! Commands that read or manage what is stored: export, history, runs,
//! failures and `store check|backup|restore`.
//!
//! The reading commands are a [`ReadCommand`] (see [`crate::query`]): the CLI
//! runs one against the store itself or, when a daemon holds the state dir,
//! sends it over the control socket; the daemon runs the very same code and
//! streams its output back as it is written.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::holder::{self, Holder};
use super::{fail, open_existing_store as open_store};
use crate::control::client::{Client, ClientError};
use crate::control::socket_path;
use crate::error::Exit;
use crate::files::{self, OutFile};
use crate::query::{run_read, Configured, ReadCommand};
use crate::store::{Store, StoreError};

/// stdout, or the `--out` path written through ([`OutFile`]): nothing is in
/// place at the path until [`finish`] commits it, so that a failed export
/// never leaves a partial file.
fn sink(out: Option<&Path>) -> Result<Sink, Exit> {
    let inner = match out {
        Some(path) => match OutFile::create(path, files::user_file_mode()) {
            Ok(f) => Dest::File(std::io::BufWriter::new(f), path.to_path_buf()),
            Err(e) => {
                return Err(fail(
                    Exit::Store,
                    format!("cannot create {}: {e}", path.display()),
                ))
            }
        },
        None => Dest::Stdout(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    Ok(Sink { inner, bytes: 0 })
}

/// Where a reading command's output goes, counting what it was given: output
/// on stdout cannot be taken back, so a failure after some of it must say so.
struct Sink {
    inner: Dest,
    bytes: u64,
}

enum Dest {
    Stdout(std::io::BufWriter<std::io::StdoutLock<'static>>),
    /// The file, and its path for the errors.
    File(std::io::BufWriter<OutFile>, PathBuf),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = match &mut self.inner {
            Dest::Stdout(w) => w.write(buf)?,
            Dest::File(w, path) => w.write(buf).map_err(|e| in_file(path, e))?,
        };
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.inner {
            Dest::Stdout(w) => w.flush(),
            Dest::File(w, path) => w.flush().map_err(|e| in_file(path, e)),
        }
    }
}

/// A write error that names the `--out` file.
fn in_file(path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Flushes the output and puts a finished `--out` file in place, or drops
/// what a failed command wrote. A write that fails here (a full disk,
/// `/dev/full`) fails the command.
fn finish(sink: Sink, out: Option<&Path>, exit: Exit) -> Exit {
    let shown = || out.map_or("stdout".into(), |p| p.display().to_string());
    let written = match sink.inner {
        Dest::File(w, _) if exit == Exit::Ok => w
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(OutFile::commit),
        Dest::File(..) => return exit,
        Dest::Stdout(mut w) => match w.flush() {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other,
        },
    };
    match written {
        Ok(()) => exit,
        Err(e) if exit == Exit::Ok => fail(Exit::Store, format!("cannot write {}: {e}", shown())),
        Err(_) => exit,
    }
}

/// Runs a reading command here, or through the daemon that holds the state dir.
pub(super) async fn read(
    state: &Path,
    socket: Option<&Path>,
    configured: Configured<'_>,
    cmd: ReadCommand,
    out: Option<&Path>,
) -> Exit {
    let here = state.join("db").exists();
    // An operator may name only the daemon's socket (`--socket` or
    // CRAWLD_SOCKET), not its state dir: ask the daemon then. A daemon whose
    // store is a database (`--cluster`) has no store in its state dir, only
    // its socket: ask it too.
    let daemon_here = socket_path(None, state).exists();
    if !here && socket.is_none() && !daemon_here {
        let target = cmd.target();
        if configured.target.is_none() && !configured.names.contains(target) {
            // A typo is more likely than a wrong --state: say what exists.
            return fail(
                Exit::Usage,
                format!(
                    "unknown target {target}: {} and there is no store in {}",
                    configured.not_configured(),
                    state.display()
                ),
            );
        }
        // `open_store` explains that nothing was crawled here.
        return open_store(state).err().unwrap_or(Exit::Store);
    }
    let mut sink = match sink(out) {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    let exit = if here {
        match Store::open_read(state) {
            Ok(store) => run_read(&store, configured, &cmd, &mut sink, &mut std::io::stderr()),
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
    finish_read(sink, out, exit)
}

/// Ends a reading command's output; a failure after some of it went to
/// stdout says that stdout is incomplete.
fn finish_read(sink: Sink, out: Option<&Path>, exit: Exit) -> Exit {
    let written = sink.bytes;
    let exit = finish(sink, out, exit);
    if out.is_none() && exit != Exit::Ok && written > 0 {
        errln!(
            "error: the output on stdout is INCOMPLETE: the command failed after writing {written} bytes \
             to stdout. With --out FILE, a failed export leaves no file instead"
        );
    }
    exit
}

/// Runs a reading command on the PostgreSQL database at `url`, in
/// read-only sessions; no daemon is needed (or asked).
pub(super) fn read_database(
    url: &str,
    configured: Configured<'_>,
    cmd: ReadCommand,
    out: Option<&Path>,
) -> Exit {
    let store = match Store::connect_read(url) {
        Ok(s) => s,
        Err(e) => return super::store_failed(e),
    };
    let mut sink = match sink(out) {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    let exit = run_read(&store, configured, &cmd, &mut sink, &mut std::io::stderr());
    finish_read(sink, out, exit)
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
        Err(e @ ClientError::Output(_)) => return fail(Exit::Store, e),
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

/// `store backup FILE`: from the store here or, while a daemon holds the
/// state dir, through the daemon, which reads it out consistently while its
/// runs write.
pub(super) async fn store_backup(state: &Path, socket: Option<&Path>, file: &Path) -> Exit {
    if !state.join("db").exists() {
        // `open_store` explains that nothing was crawled here.
        return open_store(state).err().unwrap_or(Exit::Store);
    }
    let store = match Store::open_read(state) {
        Ok(s) => s,
        Err(StoreError::Locked { dir, pid }) => {
            return backup_through_daemon(state, socket, file, (&dir, &pid)).await
        }
        Err(e) => return super::store_failed(e),
    };
    match store.backup(file) {
        Ok(n) => {
            outln!("{n} records written to {}", file.display());
            Exit::Ok
        }
        Err(e) => fail(Exit::Store, e),
    }
}

/// The daemon's backup, written to `file` here, as the user: nothing is in
/// place until the whole stream arrived.
async fn backup_through_daemon(
    state: &Path,
    socket: Option<&Path>,
    file: &Path,
    (dir, pid): (&Path, &str),
) -> Exit {
    let cannot_write =
        |e: std::io::Error| fail(Exit::Store, format!("cannot write {}: {e}", file.display()));
    let out = match OutFile::create(file, 0o600) {
        Ok(out) => out,
        Err(e) => return cannot_write(e),
    };
    let mut out = Tail::new(std::io::BufWriter::new(out));
    let client = Client::new(&socket_path(socket, state));
    match client.backup(&mut out, &mut std::io::stderr()).await {
        Ok(Exit::Ok) => {}
        Ok(exit) => return exit,
        Err(ClientError::Output(e)) => return cannot_write(e),
        Err(ClientError::Refused(e)) => return fail(e.exit(), e),
        Err(
            e @ (ClientError::NoDaemon(_)
            | ClientError::PermissionDenied(_)
            | ClientError::Failed { .. }),
        ) => {
            return fail(
                Exit::Locked,
                format!(
                    "{}, and its daemon cannot be asked: {e}",
                    holder::locked_message(dir, pid)
                ),
            )
        }
        Err(e) => return fail(Exit::Failed, e),
    }
    let records = out.records();
    let committed = out
        .inner
        .into_inner()
        .map_err(|e| e.into_error())
        .and_then(OutFile::commit);
    match committed {
        Ok(()) => {
            outln!(
                "{records} records written to {} by the daemon (pid {pid})",
                file.display()
            );
            Exit::Ok
        }
        Err(e) => cannot_write(e),
    }
}

/// Keeps the last bytes written: a backup ends with its record count and
/// checksum.
struct Tail<W> {
    inner: W,
    last: Vec<u8>,
}

/// A backup's trailer: the record count, then the checksum (8 bytes each).
const TRAILER: usize = 16;

impl<W: Write> Tail<W> {
    fn new(inner: W) -> Self {
        Tail {
            inner,
            last: Vec::with_capacity(2 * TRAILER),
        }
    }

    /// The record count of the trailer.
    fn records(&self) -> u64 {
        let count = self.last.get(..8).and_then(|b| b.try_into().ok());
        count.map_or(0, u64::from_be_bytes)
    }
}

impl<W: Write> Write for Tail<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.last
            .extend_from_slice(&buf[n.saturating_sub(TRAILER)..n]);
        let extra = self.last.len().saturating_sub(TRAILER);
        self.last.drain(..extra);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
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
