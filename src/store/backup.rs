//! `crawld store check|backup|restore`: verifying every record and the
//! store's invariants, and a consistent copy of the store in a file of our
//! own format (sled's `export` panics on I/O errors).
//!
//! Backup file: `CRAWLD-BACKUP 1\n`, then records `[key len u32][key][value
//! len u32][value]` (big endian), then `[u32::MAX][record count u64][xxh3-64
//! of everything before]`.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::Xxh3;

use super::alerts::{AlertRecord, OutboxEntry};
use super::lock::StateLock;
use super::records::{
    ChangeEvent, FailureRecord, FrontierChunk, ItemRecord, PageRecord, RunRecord,
};
use super::{Store, StoreError, SEP};

const MAGIC: &[u8] = b"CRAWLD-BACKUP 1\n";
const END: u32 = u32::MAX;
/// Records restored per sled batch.
const RESTORE_BATCH: u64 = 1024;

/// What `store check` found.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub records: u64,
    pub problems: Vec<String>,
}

impl Store {
    /// The records no invariant spans: alert state, the outbox, meta and
    /// host pauses. `Ok(Some(_))` is a problem to report.
    fn check_other(&self, k: &[u8], v: &[u8]) -> Result<Option<String>, StoreError> {
        let shown = || String::from_utf8_lossy(k).into_owned();
        Ok(match k.first() {
            Some(b'a') => self.decode::<AlertRecord>(k, v).map(|_| None)?,
            Some(b'q') => self.decode::<OutboxEntry>(k, v).map(|_| None)?,
            Some(b'm') => None,
            Some(b'h') if v.len() == 8 => None,
            Some(b'h') => Some(format!(
                "host pause record {:?} holds {} bytes, not an 8-byte time",
                shown(),
                v.len()
            )),
            _ => Some(format!("unknown record {:?}", shown())),
        })
    }

    /// Decodes every record and checks the cross-record invariants.
    pub fn check(&self) -> Result<CheckReport, StoreError> {
        let mut report = CheckReport::default();
        let mut runs: HashMap<(String, u64), RunRecord> = HashMap::new();
        let mut pages: HashMap<(String, String), PageRecord> = HashMap::new();
        let mut items: Vec<(String, ItemRecord)> = Vec::new();
        let mut frontier_crawls: HashSet<(String, u64)> = HashSet::new();
        let mut event_runs: HashSet<(String, u64)> = HashSet::new();
        for kv in self.data.iter() {
            let (k, v) = kv?;
            report.records += 1;
            let parts: Vec<&[u8]> = k.splitn(3, |&b| b == SEP).collect();
            let target = parts
                .get(1)
                .map(|t| String::from_utf8_lossy(t).into_owned())
                .unwrap_or_default();
            let rest = parts.get(2).copied().unwrap_or_default();
            let be = |b: &[u8]| {
                b.get(..8)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u64::from_be_bytes)
            };
            let decoded = match k.first() {
                Some(b'r') => self.decode::<RunRecord>(&k, &v).map(|r| {
                    runs.insert((target, r.id.0), r);
                }),
                Some(b'p') => self.decode::<PageRecord>(&k, &v).map(|p| {
                    pages.insert((target, p.url.clone()), p);
                }),
                Some(b'i') => self
                    .decode::<ItemRecord>(&k, &v)
                    .map(|i| items.push((target, i))),
                Some(b'f') => self.decode::<FrontierChunk>(&k, &v).map(|_| {
                    frontier_crawls.insert((target, be(rest)));
                }),
                Some(b'e') => self.decode::<ChangeEvent>(&k, &v).map(|_| {
                    event_runs.insert((target, be(rest)));
                }),
                Some(b'x') => self.decode::<FailureRecord>(&k, &v).map(|_| {
                    event_runs.insert((target, be(rest)));
                }),
                _ => self.check_other(&k, &v).map(|problem| {
                    report.problems.extend(problem);
                }),
            };
            if let Err(e) = decoded {
                report.problems.push(e.to_string());
            }
        }
        for (target, item) in &items {
            match pages.get(&(target.clone(), item.page.clone())) {
                None => report
                    .problems
                    .push(format!("{target}: item {}/{} names page {} that has no record", item.kind, item.key, item.page)),
                Some(page) if page.run < item.run => report.problems.push(format!(
                    "{target}: item {}/{} was written by run {} but its page {} was last committed by run {}",
                    item.kind, item.key, item.run, item.page, page.run
                )),
                Some(_) => {}
            }
        }
        let item_ids: HashSet<(String, String)> = items
            .iter()
            .map(|(t, i)| (t.clone(), format!("{}\0{}", i.kind, i.key)))
            .collect();
        for ((target, url), page) in &pages {
            for id in &page.items {
                if !item_ids.contains(&(target.clone(), id.clone())) {
                    report.problems.push(format!(
                        "{target}: page {url} lists item {} that is missing",
                        id.replace('\0', "/")
                    ));
                }
            }
        }
        let crawls: HashSet<(String, u64)> = runs
            .values()
            .map(|r| (r.target.to_string(), r.crawl.0))
            .collect();
        for (target, crawl) in frontier_crawls.difference(&crawls) {
            report
                .problems
                .push(format!("{target}: frontier of unknown crawl {crawl}"));
        }
        for (target, run) in &event_runs {
            if !runs.contains_key(&(target.clone(), *run)) {
                report
                    .problems
                    .push(format!("{target}: change events of unknown run {run}"));
            }
        }
        Ok(report)
    }

    /// Writes every record to `file`; returns how many.
    pub fn backup(&self, file: &Path) -> Result<u64, StoreError> {
        let err = |detail: String| StoreError::Backup {
            path: file.to_path_buf(),
            detail,
        };
        let out = File::create(file).map_err(|e| err(e.to_string()))?;
        let mut out = HashingWriter {
            inner: BufWriter::new(out),
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
            out.inner.flush()?;
            out.inner.get_ref().sync_all()
        })();
        result.map_err(|e| err(e.to_string()))?;
        Ok(n)
    }

    /// Restores a backup into `state_dir`, which must not hold a store yet.
    /// The file is verified before the store appears: a bad file leaves
    /// nothing behind.
    pub fn restore(state_dir: &Path, file: &Path) -> Result<u64, StoreError> {
        let err = |detail: String| StoreError::Backup {
            path: file.to_path_buf(),
            detail,
        };
        std::fs::create_dir_all(state_dir).map_err(|source| StoreError::Io {
            what: "cannot create the state dir",
            path: state_dir.to_path_buf(),
            source,
        })?;
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
    let mut batch = super::tree::Batch::default();
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
            return Err("not a crawld backup (bad header)".into());
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
    fn check_knows_host_pause_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .set_host_pause(&crate::ids::HostKey::new("a.example:443"), 42)
            .unwrap();
        let report = store.check().unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert!(report.records >= 1);
    }
}
