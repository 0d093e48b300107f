//! Whether a store was left settled by its last writer, and the private
//! copy a reader opens when it was not.
//!
//! sled writes while it opens a log that was not closed cleanly. A writer
//! therefore reopens its store once after closing it ("settles" it, in
//! `tree.rs`) and records here the log's length and modification time; any
//! open for writing removes that record first. A reader finds the record, with
//! the same length and time, only when nothing happened to the store since a
//! clean close: then it may open it in place without sled writing anything.
//! Otherwise (a writer was killed, or the file was truncated, overwritten or
//! replaced) it reads from a copy.

use std::path::{Path, PathBuf};

use super::StoreError;

/// Beside the sled directory: the length and modification time of the
/// settled log.
const SETTLED: &str = "crawld.settled";

fn marker(db: &Path) -> PathBuf {
    db.with_file_name(SETTLED)
}

/// The log's length and modification time (nanoseconds), as one line.
fn log_state(db: &Path) -> Option<String> {
    let meta = std::fs::metadata(db.join("db")).ok()?;
    let modified = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some(format!("{} {}", meta.len(), modified.as_nanos()))
}

/// Whether the store at `db` is as its last writer settled it.
pub fn is_settled(db: &Path) -> bool {
    let recorded = std::fs::read_to_string(marker(db)).ok();
    match (recorded, log_state(db)) {
        (Some(recorded), Some(now)) => recorded.trim() == now,
        _ => false,
    }
}

/// Records that the store at `db` is settled.
pub fn mark_settled(db: &Path) -> std::io::Result<()> {
    let state = log_state(db).ok_or_else(|| std::io::Error::other("the log is missing"))?;
    let path = marker(db);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{state}\n"))?;
    std::fs::rename(&tmp, &path)
}

/// Forgets that the store is settled, before a writer opens it.
pub fn unsettle(db: &Path) -> Result<(), StoreError> {
    let path = marker(db);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StoreError::Io {
            what: "cannot remove",
            path,
            source,
        }),
    }
}

/// Whether this process may write the sled directory `db` and every file in
/// it, as sled's open needs.
pub fn writable(db: &Path) -> bool {
    use rustix::fs::{access, Access};
    let ok = |p: &Path| access(p, Access::WRITE_OK).is_ok();
    ok(db)
        && std::fs::read_dir(db)
            .is_ok_and(|entries| entries.flatten().all(|entry| ok(&entry.path())))
}

/// A private copy of the sled directory `db`, as `db` inside a 0700
/// directory made in the system's temporary directory (`TMPDIR`), removed
/// when dropped.
pub fn scratch_copy(db: &Path) -> Result<tempfile::TempDir, StoreError> {
    let failed = |source| StoreError::Scratch {
        path: db.to_path_buf(),
        source,
    };
    // Private whatever the umask: the copy holds every URL and item.
    let dir = tempfile::Builder::new()
        .prefix("crawld-read-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir()
        .map_err(failed)?;
    // sled's own directory inside it, so that a `db` that is a file (not a
    // store at all) is copied as a file, and sled says what is wrong with it.
    copy_all(db, &dir.path().join("db")).map_err(failed)?;
    tracing::info!(
        path = %db.display(),
        "The store was not closed cleanly: reading a copy, so that it stays as it is."
    );
    Ok(dir)
}

/// Copies a file, or a directory with everything in it.
fn copy_all(from: &Path, to: &Path) -> std::io::Result<()> {
    if !std::fs::metadata(from)?.is_dir() {
        std::fs::copy(from, to)?;
        // `copy` keeps the source's mode: the copy must be private, and
        // writable for sled, even from a read-only store.
        use std::os::unix::fs::PermissionsExt;
        return std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600));
    }
    crate::files::create_private_dir(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        copy_all(&entry.path(), &to.join(entry.file_name()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_read_copy_is_private_whatever_the_modes() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        std::fs::create_dir(&db).unwrap();
        std::fs::write(db.join("conf"), "x").unwrap();
        std::fs::set_permissions(db.join("conf"), std::fs::Permissions::from_mode(0o444)).unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o755)).unwrap();
        let copy = scratch_copy(&db).unwrap();
        assert_eq!(mode(copy.path()), 0o700, "the copy's directory");
        assert_eq!(mode(&copy.path().join("db")), 0o700);
        assert_eq!(mode(&copy.path().join("db/conf")), 0o600);
    }
}
