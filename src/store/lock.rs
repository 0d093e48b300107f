//! The state directory's lock: one process at a time, and a second one is
//! told which pid holds it instead of getting a sled error.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use super::StoreError;

/// An exclusive advisory lock on `<state>/crawld.lock`, holding our pid.
/// The OS releases it when the process dies, so a crash never leaves it stale.
#[derive(Debug)]
pub struct StateLock {
    /// `None`: a reader of a state dir it cannot write, which holds no lock
    /// file (a read-only copy): nobody can lock it, and nothing to lock.
    _file: Option<File>,
}

impl StateLock {
    /// Takes the lock for a command that writes.
    pub fn acquire(dir: &Path) -> Result<Self, StoreError> {
        Self::take(dir, false)
    }

    /// Takes the lock for a command that only reads. A reader may have no
    /// write access to the state dir (a read-only copy or mount, another
    /// user's snapshot): it then locks the file opened read-only (`flock`
    /// needs no write access) and leaves its pid out.
    pub fn acquire_read(dir: &Path) -> Result<Self, StoreError> {
        Self::take(dir, true)
    }

    fn take(dir: &Path, reading: bool) -> Result<Self, StoreError> {
        let path = dir.join("crawld.lock");
        let io = |what, source| StoreError::Io {
            what,
            path: path.clone(),
            source,
        };
        let opened = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path);
        let (mut file, writable) = match opened {
            Ok(file) => (file, true),
            Err(e) if reading && cannot_write(&e) => match File::open(&path) {
                Ok(file) => (file, false),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Ok(StateLock { _file: None })
                }
                Err(e) => return Err(io("cannot open the lock file", e)),
            },
            Err(e) => return Err(io("cannot open the lock file", e)),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(StoreError::Locked {
                    dir: dir.to_path_buf(),
                    pid: if pid.is_empty() {
                        "unknown".into()
                    } else {
                        pid.into()
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(io("cannot lock", e)),
        }
        if !writable {
            return Ok(StateLock { _file: Some(file) });
        }
        file.set_len(0)
            .map_err(|e| io("cannot write the lock file", e))?;
        file.rewind()
            .map_err(|e| io("cannot write the lock file", e))?;
        writeln!(file, "{}", std::process::id())
            .map_err(|e| io("cannot write the lock file", e))?;
        file.flush()
            .map_err(|e| io("cannot write the lock file", e))?;
        Ok(StateLock { _file: Some(file) })
    }
}

/// Whether opening for writing failed for want of write access.
fn cannot_write(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
    )
}
