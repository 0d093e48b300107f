//! `crawld store backup|restore`: a consistent copy of the store in a file
//! of our own format (sled's `export` panics on I/O errors).
//!
//! Backup file: `CRAWLD-BACKUP 1\n`, then records `[key len u32][key][value
//! len u32][value]` (big endian), then `[u32::MAX][record count u64][xxh3-64
//! of everything before]`.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::Xxh3;

use super::lock::StateLock;
use super::{Store, StoreError};
use crate::files::OutFile;

const MAGIC: &[u8] = b"CRAWLD-BACKUP 1\n";
const END: u32 = u32::MAX;
/// What every version's header starts with: `CRAWLD-BACKUP N\n`.
const MAGIC_PREFIX: &[u8] = b"CRAWLD-BACKUP ";

/// Why a header is not this version's: another version of the format (made
/// by a newer or older crawld), or not a crawld backup at all.
fn header_problem(magic: &[u8]) -> String {
    let version = magic
        .strip_prefix(MAGIC_PREFIX)
        .and_then(|rest| std::str::from_utf8(rest).ok())
        .map(str::trim_end)
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()));
    match version {
        Some(v) => format!(
            "a crawld backup of format version {v}, and this crawld reads version 1: restore it with the crawld release that made it"
        ),
        None => "not a crawld backup (its first bytes are not `CRAWLD-BACKUP 1`)".into(),
    }
}
/// Records restored per sled batch.
const RESTORE_BATCH: u64 = 1024;

impl Store {
    /// Writes every record to `file`; returns how many.
    pub fn backup(&self, file: &Path) -> Result<u64, StoreError> {
        let err = |detail: String| StoreError::Backup {
            path: file.to_path_buf(),
            detail,
        };
        // The user's path, written through (a new file is private: it holds
        // the whole store); nothing is in place before the commit.
        let out = OutFile::create(file, 0o600).map_err(|e| err(e.to_string()))?;
        let mut out = BufWriter::new(out);
        let n = self.backup_to(&mut out, file)?;
        let out = out.into_inner().map_err(|e| err(e.error().to_string()))?;
        out.commit().map_err(|e| err(e.to_string()))?;
        Ok(n)
    }

    /// Writes a backup of every record to `out` (`file` names it in the
    /// error); returns how many. Commits wait meanwhile, so that the copy is
    /// consistent while a daemon's runs write (`crawld store backup` through
    /// the daemon): every write goes through the commit lock.
    pub fn backup_to(&self, out: &mut dyn Write, file: &Path) -> Result<u64, StoreError> {
        let _commits = self
            .commits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = HashingWriter {
            inner: out,
            hash: Xxh3::new(),
        };
        let mut n = 0u64;
        let result: std::io::Result<()> = (|| {
            out.write_all(MAGIC)?;
            for kv in self.data.iter() {
                let (k, v) = kv.map_err(std::io::Error::other)?;
                out.write_all(&(k.len() as u32).to_be_bytes())?;
                out.write_all(&k)?;
                out.write_all(&(v.len() as u32).to_be_bytes())?;
                out.write_all(&v)?;
                n += 1;
            }
            out.write_all(&END.to_be_bytes())?;
            out.write_all(&n.to_be_bytes())?;
            let digest = out.hash.digest();
            out.inner.write_all(&digest.to_be_bytes())?;
            out.inner.flush()
        })();
        result.map_err(|e| StoreError::Backup {
            path: file.to_path_buf(),
            detail: e.to_string(),
        })?;
        Ok(n)
    }

    /// Restores a backup into `state_dir`, which must not hold a store yet.
    /// The file is verified before the store appears: a bad file leaves
    /// nothing behind.
    pub fn restore(state_dir: &Path, file: &Path) -> Result<u64, StoreError> {
        // A failed restore leaves no directory it created behind.
        let created = state_dir
            .ancestors()
            .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
            .last()
            .map(Path::to_path_buf);
        crate::files::create_private_dir(state_dir).map_err(|source| StoreError::Io {
            what: "cannot create the state dir",
            path: state_dir.to_path_buf(),
            source,
        })?;
        let restored = Store::restore_locked(state_dir, file);
        if let (Err(_), Some(created)) = (&restored, created) {
            let _ = std::fs::remove_dir_all(created);
        }
        restored
    }

    /// [`Store::restore`] in an existing state dir.
    fn restore_locked(state_dir: &Path, file: &Path) -> Result<u64, StoreError> {
        let err = |detail: String| StoreError::Backup {
            path: file.to_path_buf(),
            detail,
        };
        let _lock = StateLock::acquire(state_dir)?;
        let db_path = state_dir.join("db");
        if db_path.exists() {
            return Err(err(format!(
                "{} already holds a store; restore into an empty state dir, or move the store aside first",
                db_path.display()
            )));
        }
        let tmp: PathBuf = state_dir.join("db.restoring");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)
                .map_err(|e| err(format!("cannot clear {}: {e}", tmp.display())))?;
        }
        let result = restore_into(&tmp, file);
        match result {
            Ok(n) => {
                std::fs::rename(&tmp, &db_path)
                    .map_err(|e| err(format!("cannot move the restored store in place: {e}")))?;
                Ok(n)
            }
            Err(detail) => {
                let _ = std::fs::remove_dir_all(&tmp);
                Err(err(detail))
            }
        }
    }
}

fn restore_into(path: &Path, file: &Path) -> Result<u64, String> {
    let input = File::open(file).map_err(|e| e.to_string())?;
    let mut reader = BackupReader::new(BufReader::new(input))?;
    let tree = super::tree::Tree::open(path, super::CACHE_BYTES, false)
        .map_err(|e| format!("cannot create the store: {e}"))?;
    let mut batch = super::keyspace::Batch::default();
    let mut pending = 0u64;
    while let Some((key, value)) = reader.next_record()? {
        batch.insert(key, value);
        pending += 1;
        if pending == RESTORE_BATCH {
            tree.apply_batch(std::mem::take(&mut batch))
                .map_err(|e| e.to_string())?;
            pending = 0;
        }
    }
    let n = reader.finish()?;
    tree.apply_batch(batch).map_err(|e| e.to_string())?;
    tree.flush().map_err(|e| e.to_string())?;
    Ok(n)
}

impl Store {
    /// Reads a whole backup from `input` and verifies it (header, record
    /// lengths, count and checksum) without writing anything: the reader
    /// [`Store::restore`] uses, over any `Read`, for the fuzz target and the
    /// property tests. `file` names the input in the error.
    pub fn verify_backup(input: impl Read, file: &Path) -> Result<u64, StoreError> {
        let err = |detail: String| StoreError::Backup {
            path: file.to_path_buf(),
            detail,
        };
        let mut reader = BackupReader::new(input).map_err(err)?;
        while reader.next_record().map_err(err)?.is_some() {}
        reader.finish().map_err(err)
    }
}

/// One record of a backup: key and value.
type Record = (Vec<u8>, Vec<u8>);

/// Reads a backup's records in order, hashing as it goes. Errors are the
/// detail of a [`StoreError::Backup`].
struct BackupReader<R> {
    input: R,
    hash: Xxh3,
    records: u64,
}

impl<R: Read> BackupReader<R> {
    /// Checks the header.
    fn new(mut input: R) -> Result<Self, String> {
        let mut magic = vec![0; MAGIC.len()];
        input.read_exact(&mut magic).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "not a crawld backup (too short)".to_owned(),
            _ => format!("cannot read the file: {e}"),
        })?;
        if magic != MAGIC {
            return Err(header_problem(&magic));
        }
        let mut hash = Xxh3::new();
        hash.update(&magic);
        Ok(BackupReader {
            input,
            hash,
            records: 0,
        })
    }

    /// The next record, or `None` at the end marker.
    fn next_record(&mut self) -> Result<Option<Record>, String> {
        let len = self.read_u32()?;
        if len == END {
            return Ok(None);
        }
        let key = self.read_bytes(len)?;
        let vlen = self.read_u32()?;
        let value = self.read_bytes(vlen)?;
        self.records += 1;
        Ok(Some((key, value)))
    }

    /// Reads the trailer and checks the record count and the checksum;
    /// returns the count.
    fn finish(mut self) -> Result<u64, String> {
        let mut count = [0; 8];
        self.read_exact(&mut count)?;
        let mut digest = [0; 8];
        self.input.read_exact(&mut digest).map_err(read_error)?;
        if u64::from_be_bytes(count) != self.records
            || u64::from_be_bytes(digest) != self.hash.digest()
        {
            return Err("checksum mismatch: the file is damaged".into());
        }
        Ok(self.records)
    }

    fn read_u32(&mut self) -> Result<u32, String> {
        let mut bytes = [0; 4];
        self.read_exact(&mut bytes)?;
        Ok(u32::from_be_bytes(bytes))
    }

    /// `len` bytes, grown as they arrive: the length comes from the file, and
    /// a damaged one must not allocate gigabytes before the file runs out.
    fn read_bytes(&mut self, len: u32) -> Result<Vec<u8>, String> {
        let mut bytes = Vec::new();
        (&mut self.input)
            .take(u64::from(len))
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        if bytes.len() != len as usize {
            return Err(TRUNCATED.into());
        }
        self.hash.update(&bytes);
        Ok(bytes)
    }

    /// Fills `buf` and hashes it.
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), String> {
        self.input.read_exact(buf).map_err(read_error)?;
        self.hash.update(buf);
        Ok(())
    }
}

const TRUNCATED: &str = "the file is truncated";

fn read_error(e: std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => TRUNCATED.to_owned(),
        _ => format!("cannot read the file: {e}"),
    }
}

struct HashingWriter<W: Write> {
    inner: W,
    hash: Xxh3,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_of_another_version_says_so() {
        let newer = BackupReader::new(&b"CRAWLD-BACKUP 2\nrest"[..])
            .err()
            .unwrap();
        assert!(newer.contains("format version 2"), "{newer}");
        let other = BackupReader::new(&b"PK\x03\x04 a zip file, not a backup"[..])
            .err()
            .unwrap();
        assert!(other.starts_with("not a crawld backup"), "{other}");
        assert!(BackupReader::new(MAGIC).is_ok());
    }
}
