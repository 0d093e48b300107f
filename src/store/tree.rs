//! The guarded handle on sled: the only code that calls into it.
//!
//! sled panics on some damaged files (a truncated log panics inside its
//! segment accountant) instead of returning an error. Every call here runs
//! inside `catch_unwind`, so such a panic becomes a [`StoreError::Damaged`]
//! that names the store and what to do, never a crash. After a first panic
//! the handle is *fused*: sled's state is no longer trusted, so no further
//! call reaches it, and its files are not flushed on drop.
//!
//! Every sled error also says whether it happened while reading or writing,
//! with sled's own text made readable (`SledError`).

use std::cell::{Cell, RefCell};
use std::io::ErrorKind;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

use super::keyspace::Batch;
use super::{settle, StoreError};

/// What a guarded call was doing, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Open,
    Read,
    Write,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Op::Open => "opening",
            Op::Read => "reading",
            Op::Write => "writing",
        })
    }
}

/// A sled error, displayed for people: sled prints a corruption as
/// "Read corrupted data at file offset None".
#[derive(Debug)]
pub struct SledError(pub sled::Error);

impl std::fmt::Display for SledError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            sled::Error::Corruption {
                at: Some(sled::DiskPtr::Inline(offset)),
                ..
            } => write!(f, "corrupted data at offset {offset} of the log"),
            sled::Error::Corruption {
                at: Some(sled::DiskPtr::Blob(_, blob)),
                ..
            } => write!(f, "corrupted data in blob file {blob}"),
            sled::Error::Corruption { at: None, .. } => f.write_str("corrupted data"),
            // sled's errors are cloned from a global one, and its clone turns
            // an OS error into its Debug text: show the kind instead.
            sled::Error::Io(e) if e.raw_os_error().is_none() && e.kind() != ErrorKind::Other => {
                write!(f, "{}", e.kind())
            }
            sled::Error::Io(e) => write!(f, "{e}"),
            sled::Error::Unsupported(what) => write!(f, "unsupported: {what}"),
            sled::Error::ReportableBug(what) => write!(f, "internal error: {what}"),
            sled::Error::CollectionNotFound(_) => f.write_str("a tree is missing"),
        }
    }
}

impl std::error::Error for SledError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0 {
            sled::Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// sled's database and crawld's one tree in it, behind the guard.
pub struct Tree {
    /// `None` once fused: the handles were leaked rather than dropped.
    handles: Option<(sled::Db, sled::Tree)>,
    /// The store's sled directory, as messages name it.
    path: PathBuf,
    /// A private copy that a reader opened instead of `path` (see
    /// [`Tree::open`]); removed when the handle drops.
    _scratch: Option<tempfile::TempDir>,
    fused: AtomicBool,
    /// Set when a write failed inside sled (a full disk, an I/O error): sled
    /// then waits forever for that write to become durable when it flushes
    /// on drop, so the handles are not dropped (see `Drop`).
    write_failed: AtomicBool,
    /// Opened for a command that only reads: writes are refused here.
    reading: bool,
}

/// One sled record.
pub type Record = (sled::IVec, sled::IVec);

impl Tree {
    /// Opens (creating if needed) the sled files at `path`, for writing or
    /// for reading only.
    ///
    /// A reader must not write, but sled writes while it opens a store that a
    /// writer did not close cleanly (it recovers the log). So a reader opens
    /// the files in place only when the last writer left them settled (see
    /// [`settle`]) and they still have the length it recorded; otherwise it
    /// opens a private copy, which sled may recover as it likes. A reader
    /// also has no background flusher.
    pub fn open(path: &Path, cache_bytes: u64, reading: bool) -> Result<Tree, StoreError> {
        // sled opens its files for writing even when it writes nothing: a
        // reader without write access (a read-only copy) reads a copy too.
        let scratch = if reading && !(settle::is_settled(path) && settle::writable(path)) {
            Some(settle::scratch_copy(path)?)
        } else {
            if !reading {
                settle::unsettle(path)?;
            }
            None
        };
        let copy = scratch.as_ref().map(|s| s.path().join("db"));
        let from = copy.as_deref().unwrap_or(path);
        let config = sled::Config::new()
            .path(from)
            .cache_capacity(cache_bytes)
            .flush_every_ms(if reading { None } else { Some(500) });
        let opened = guarded(path, Op::Open, || {
            #[allow(clippy::disallowed_methods)]
            // The one place that opens sled: callers go through Store::open.
            let db = config.open()?;
            let tree = db.open_tree("data")?;
            Ok((db, tree))
        });
        let handles = opened.map_err(|e| match e {
            Failed::Sled(source) => StoreError::Open {
                path: path.to_path_buf(),
                source: SledError(source),
            },
            Failed::Panic(detail) => StoreError::Damaged {
                path: path.to_path_buf(),
                op: Op::Open,
                detail,
            },
        })?;
        Ok(Tree {
            handles: Some(handles),
            path: path.to_path_buf(),
            _scratch: scratch,
            fused: AtomicBool::new(false),
            write_failed: AtomicBool::new(false),
            reading,
        })
    }

    /// Runs `f` on the tree inside the guard.
    fn call<T>(
        &self,
        op: Op,
        f: impl FnOnce(&sled::Db, &sled::Tree) -> sled::Result<T>,
    ) -> Result<T, StoreError> {
        if op == Op::Write && self.reading {
            return Err(StoreError::ReadOnly {
                path: self.path.clone(),
            });
        }
        let Some((db, tree)) = self.handles.as_ref().filter(|_| !self.is_fused()) else {
            return Err(self.fused_error(op));
        };
        guarded(&self.path, op, || f(db, tree)).map_err(|e| self.failed(op, e))
    }

    fn is_fused(&self) -> bool {
        self.fused.load(Ordering::Acquire)
    }

    fn fused_error(&self, op: Op) -> StoreError {
        StoreError::Damaged {
            path: self.path.clone(),
            op,
            detail: "an earlier operation failed inside sled".into(),
        }
    }

    fn failed(&self, op: Op, e: Failed) -> StoreError {
        let path = self.path.clone();
        match e {
            Failed::Sled(e) if op == Op::Write => {
                self.write_failed.store(true, Ordering::Release);
                StoreError::Write {
                    path,
                    source: SledError(e),
                }
            }
            Failed::Sled(e) => StoreError::Read {
                path,
                source: SledError(e),
            },
            Failed::Panic(detail) => {
                self.fused.store(true, Ordering::Release);
                StoreError::Damaged { path, op, detail }
            }
        }
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
        self.call(Op::Read, |_, t| t.get(key))
    }

    /// Applies a batch atomically (not yet durable: see [`Tree::flush`]).
    pub fn apply_batch(&self, batch: Batch) -> Result<(), StoreError> {
        let mut inner = sled::Batch::default();
        for (key, value) in batch.ops {
            match value {
                Some(value) => inner.insert(key, value),
                None => inner.remove(key),
            }
        }
        self.call(Op::Write, |_, t| t.apply_batch(inner))
    }

    pub fn update_and_fetch(
        &self,
        key: &[u8],
        f: impl FnMut(Option<&[u8]>) -> Option<Vec<u8>>,
    ) -> Result<Option<sled::IVec>, StoreError> {
        self.call(Op::Write, |_, t| t.update_and_fetch(key, f))
    }

    /// Makes everything applied so far durable (blocking).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.call(Op::Write, |db, _| db.flush().map(|_| ()))
    }

    /// Every record whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Scan<'_> {
        let iter = self.call(Op::Read, |_, t| Ok(t.scan_prefix(prefix)));
        Scan {
            tree: self,
            iter,
            ended: false,
        }
    }

    /// Every record, in key order.
    pub fn iter(&self) -> Scan<'_> {
        let iter = self.call(Op::Read, |_, t| Ok(t.iter()));
        Scan {
            tree: self,
            iter,
            ended: false,
        }
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let Some(handles) = self.handles.take() else {
            return;
        };
        if self.is_fused() || self.write_failed.load(Ordering::Acquire) {
            // sled's drop flushes: it may panic again on state it no longer
            // understands, and it waits forever for a write that failed. Every
            // commit was flushed when it was made, so nothing is lost by not
            // flushing: the files are left exactly as they are.
            std::mem::forget(handles);
            return;
        }
        let closed = guarded(&self.path, Op::Write, move || {
            drop(handles);
            Ok(())
        });
        if closed.is_ok() && !self.reading {
            self.settle();
        }
    }
}

impl Tree {
    /// The first open after a writing session makes sled write: it stores a
    /// snapshot of its page table and zeroes the log's tail. A writer opens
    /// and closes once more after closing, so that these writes are its own,
    /// then records that the store is settled: the reading commands that come
    /// next open it in place and find nothing to write.
    /// Skipped when space is short: the next open checks space itself.
    fn settle(&self) {
        let roomy = self.path.parent().map(super::free_bytes).unwrap_or(0) >= super::MIN_FREE_BYTES;
        if !roomy {
            return;
        }
        let config = sled::Config::new()
            .path(&self.path)
            .cache_capacity(SETTLE_CACHE)
            .flush_every_ms(None);
        let settled = guarded(&self.path, Op::Open, move || {
            #[allow(clippy::disallowed_methods)]
            // The reopen of a store this process just closed, under its lock.
            let db = config.open()?;
            drop(db);
            Ok(())
        });
        let marked = match settled {
            Ok(()) => settle::mark_settled(&self.path).map_err(|e| e.to_string()),
            Err(Failed::Sled(e)) => Err(SledError(e).to_string()),
            Err(Failed::Panic(detail)) => Err(detail),
        };
        if let Err(error) = marked {
            tracing::debug!(path = %self.path.display(), %error, "Could not settle the store.");
        }
    }
}

/// sled's cache while it settles a store: it only replays the log.
const SETTLE_CACHE: u64 = 1024 * 1024;

/// A guarded sled iterator: each step runs inside the guard, and the
/// iteration ends after its first error.
pub struct Scan<'a> {
    tree: &'a Tree,
    iter: Result<sled::Iter, StoreError>,
    ended: bool,
}

impl Iterator for Scan<'_> {
    type Item = Result<Record, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ended {
            return None;
        }
        let tree = self.tree;
        let step = match &mut self.iter {
            Err(e) => Err(std::mem::replace(e, tree.fused_error(Op::Read))),
            Ok(_) if tree.is_fused() => Err(tree.fused_error(Op::Read)),
            Ok(iter) => guarded(&tree.path, Op::Read, || iter.next().transpose())
                .map_err(|e| tree.failed(Op::Read, e)),
        };
        match step {
            Ok(Some(record)) => Some(Ok(record)),
            Ok(None) => {
                self.ended = true;
                None
            }
            Err(e) => {
                self.ended = true;
                Some(Err(e))
            }
        }
    }
}

/// Why a guarded call failed.
enum Failed {
    Sled(sled::Error),
    /// sled panicked; the panic's message.
    Panic(String),
}

thread_local! {
    /// Set while a guarded call runs on this thread: its panics are expected
    /// to be caught, so the panic hook keeps their message instead of printing it.
    static GUARDED: Cell<bool> = const { Cell::new(false) };
    static MESSAGE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `f`, turning a panic into [`Failed::Panic`] with its message.
fn guarded<T>(path: &Path, op: Op, f: impl FnOnce() -> sled::Result<T>) -> Result<T, Failed> {
    install_hook();
    let outer = GUARDED.with(|g| g.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(outer));
    match result {
        Ok(r) => r.map_err(Failed::Sled),
        Err(payload) => {
            let message = MESSAGE
                .with(|m| m.borrow_mut().take())
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            tracing::debug!(path = %path.display(), %op, %message, "sled panicked; contained.");
            Err(Failed::Panic(message))
        }
    }
}

/// Wraps the process's panic hook once: panics inside a guarded call are
/// recorded for the error instead of printed; every other panic is printed
/// as before.
fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if GUARDED.with(Cell::get) {
                // The crate's own path ("sled-0.34.7/src/…"), not where cargo keeps it.
                let at = info
                    .location()
                    .map(|l| {
                        let file = l.file();
                        let short = file.rfind("/sled-").map_or(file, |i| &file[i + 1..]);
                        format!(" at {short}:{}", l.line())
                    })
                    .unwrap_or_default();
                let text = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".into());
                MESSAGE.with(|m| *m.borrow_mut() = Some(format!("{text}{at}")));
            } else {
                previous(info);
            }
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sled_errors_read_as_sentences() {
        let os = std::io::Error::from_raw_os_error(28);
        let cloned = std::io::Error::new(os.kind(), format!("{os:?}"));
        assert_eq!(
            SledError(sled::Error::Io(cloned)).to_string(),
            "no storage space"
        );
        assert_eq!(
            SledError(sled::Error::Io(os)).to_string(),
            "No space left on device (os error 28)"
        );
        let corrupt = sled::Error::Corruption { at: None, bt: () };
        assert_eq!(SledError(corrupt).to_string(), "corrupted data");
    }

    #[test]
    fn a_panic_inside_the_guard_becomes_an_error_and_fuses_the_handle() {
        let dir = tempfile::tempdir().unwrap();
        let tree = Tree::open(&dir.path().join("db"), 1 << 20, false).unwrap();
        let e = tree
            .call(Op::Read, |_, _| -> sled::Result<()> { panic!("boom") })
            .unwrap_err();
        assert!(
            matches!(&e, StoreError::Damaged { op: Op::Read, detail, .. } if detail.contains("boom")),
            "{e}"
        );
        // Fused: nothing reaches sled any more.
        assert!(matches!(tree.get(b"k"), Err(StoreError::Damaged { .. })));
        assert!(matches!(
            tree.iter().next(),
            Some(Err(StoreError::Damaged { .. }))
        ));
    }
}
