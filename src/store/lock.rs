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
    _file: File,
}

impl StateLock {
    pub fn acquire(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join("crawld.lock");
        let io = |what, source| StoreError::Io {
            what,
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io("cannot open the lock file", e))?;
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
        file.set_len(0)
            .map_err(|e| io("cannot write the lock file", e))?;
        file.rewind()
            .map_err(|e| io("cannot write the lock file", e))?;
        writeln!(file, "{}", std::process::id())
            .map_err(|e| io("cannot write the lock file", e))?;
        file.flush()
            .map_err(|e| io("cannot write the lock file", e))?;
        Ok(StateLock { _file: file })
    }
}
