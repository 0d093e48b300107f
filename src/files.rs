//! Files: what crawld creates for itself is private, and a path the user
//! names is written through, never over.
//!
//! crawld's own files (the state dir, the store, sled's files, backups'
//! temporary files, the last good configs, logs) are created under a process
//! umask of 0o077 that [`restrict_umask`] sets before anything else runs, so
//! that files sled creates later on its own (snapshots, blobs) are private
//! too; directories crawld makes are created 0700 explicitly as well, for
//! library callers that keep their umask.
//!
//! A user-given output path ([`OutFile`]: `export --out`, `store backup`) is
//! handled like `cp` and `curl -o` do: a symlink is followed (the link stays
//! a link), a device or FIFO is written in place, and a regular file is
//! replaced atomically, keeping its mode and owner.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The umask the process started with: new output files the user asks for
/// follow it, as any other tool's do.
static USER_UMASK: OnceLock<u32> = OnceLock::new();

/// Makes everything the process creates from now on private (umask 0o077),
/// remembering the user's umask for the files they name. Call it first in
/// `main`, before any thread starts: the umask is per process.
pub fn restrict_umask() {
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let _ = USER_UMASK.set(old.as_raw_mode() as u32);
}

/// The mode a new file gets with the user's umask: 0o666 without it
/// (0o644 under the usual 0o022). Before [`restrict_umask`] ran, 0o600.
pub fn user_file_mode() -> u32 {
    USER_UMASK.get().map_or(0o600, |mask| 0o666 & !mask)
}

/// Creates `dir` and its missing parents as 0700 directories; an existing
/// directory is left as it is.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// A user-given output path being written. Nothing is in place at the path
/// until [`OutFile::commit`] (for a regular file); dropping it uncommitted
/// removes what was written.
pub struct OutFile {
    file: File,
    how: How,
}

enum How {
    /// A device or FIFO: written in place, nothing to move.
    InPlace,
    /// A temporary file beside `target`, renamed over it at commit, with
    /// `mode` and `owner` (uid, gid) then.
    Replace {
        temp: tempfile::TempPath,
        target: PathBuf,
        mode: u32,
        owner: Option<(u32, u32)>,
    },
}

impl OutFile {
    /// Opens `path` for writing. `new_mode` is the mode of a file that does
    /// not exist yet; an existing regular file keeps its own.
    pub fn create(path: &Path, new_mode: u32) -> std::io::Result<OutFile> {
        let target = resolve_links(path)?;
        let existing = match std::fs::metadata(&target) {
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if let Some(meta) = &existing {
            if meta.is_dir() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::IsADirectory,
                    "it is a directory",
                ));
            }
            if !meta.is_file() {
                // A device, FIFO or socket: the data goes through it.
                let file = File::options().write(true).open(&target)?;
                return Ok(OutFile {
                    file,
                    how: How::InPlace,
                });
            }
        }
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = target.file_name().unwrap_or_default().to_string_lossy();
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".partial")
            .tempfile_in(&dir)?;
        let (file, temp) = temp.into_parts();
        let (mode, owner) = match &existing {
            Some(meta) => (meta.mode() & 0o7777, Some((meta.uid(), meta.gid()))),
            None => (new_mode, None),
        };
        Ok(OutFile {
            file,
            how: How::Replace {
                temp,
                target,
                mode,
                owner,
            },
        })
    }

    /// Makes the output durable and, for a regular file, puts it in place
    /// with the mode and owner it had. An error here leaves the old file.
    pub fn commit(self) -> std::io::Result<()> {
        let OutFile { file, how } = self;
        match how {
            How::InPlace => Ok(()),
            How::Replace {
                temp,
                target,
                mode,
                owner,
            } => {
                if let Some((uid, gid)) = owner {
                    let meta = file.metadata()?;
                    if (meta.uid(), meta.gid()) != (uid, gid) {
                        rustix::fs::fchown(
                            &file,
                            Some(rustix::fs::Uid::from_raw(uid)),
                            Some(rustix::fs::Gid::from_raw(gid)),
                        )?;
                    }
                }
                // After the chown, which clears set-id bits.
                file.set_permissions(std::fs::Permissions::from_mode(mode))?;
                file.sync_all()?;
                temp.persist(&target).map_err(|e| e.error)?;
                Ok(())
            }
        }
    }
}

impl Write for OutFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// The path a chain of symlinks at `path` ends at (which may not exist yet):
/// the file to write, so that the links stay links.
fn resolve_links(path: &Path) -> std::io::Result<PathBuf> {
    let mut at = path.to_path_buf();
    // As the kernel does (ELOOP after 40).
    for _ in 0..40 {
        match std::fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let to = std::fs::read_link(&at)?;
                at = match at.parent() {
                    Some(dir) => dir.join(to),
                    None => to,
                };
            }
            Ok(_) => return Ok(at),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(at),
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("too many levels of symbolic links"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_gets_the_mode_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let mut out = OutFile::create(&path, 0o640).unwrap();
        out.write_all(b"data").unwrap();
        assert!(!path.exists(), "nothing in place before the commit");
        out.commit().unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o640);
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn an_uncommitted_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        std::fs::write(&path, "old").unwrap();
        let mut out = OutFile::create(&path, 0o600).unwrap();
        out.write_all(b"new").unwrap();
        drop(out);
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_private_dir_is_0700() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b");
        create_private_dir(&path).unwrap();
        for p in [dir.path().join("a"), path] {
            assert_eq!(std::fs::metadata(p).unwrap().mode() & 0o777, 0o700);
        }
    }
}
