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
                Some(b'm') => Ok(()),
                _ => {
                    report
                        .problems
                        .push(format!("unknown record {:?}", String::from_utf8_lossy(&k)));
                    Ok(())
                }
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
    let mut input = BufReader::new(input);
    let mut hash = Xxh3::new();
    let mut magic = vec![0; MAGIC.len()];
    input
        .read_exact(&mut magic)
        .map_err(|_| "not a crawld backup (too short)".to_owned())?;
    if magic != MAGIC {
        return Err("not a crawld backup (bad header)".into());
    }
    hash.update(&magic);
    let tree = super::tree::Tree::open(path, super::CACHE_BYTES, false)
        .map_err(|e| format!("cannot create the store: {e}"))?;
    let truncated = |_| "the file is truncated".to_owned();
    let mut n = 0u64;
    let mut batch = super::tree::Batch::default();
    loop {
        let mut len = [0; 4];
        input.read_exact(&mut len).map_err(truncated)?;
        hash.update(&len);
        let len = u32::from_be_bytes(len);
        if len == END {
            break;
        }
        let mut key = vec![0; len as usize];
        input.read_exact(&mut key).map_err(truncated)?;
        let mut vlen = [0; 4];
        input.read_exact(&mut vlen).map_err(truncated)?;
        let mut value = vec![0; u32::from_be_bytes(vlen) as usize];
        input.read_exact(&mut value).map_err(truncated)?;
        hash.update(&key);
        hash.update(&vlen);
        hash.update(&value);
        batch.insert(key, value);
        n += 1;
        if n.is_multiple_of(RESTORE_BATCH) {
            tree.apply_batch(std::mem::take(&mut batch))
                .map_err(|e| e.to_string())?;
        }
    }
    let mut count = [0; 8];
    input.read_exact(&mut count).map_err(truncated)?;
    hash.update(&count);
    let mut digest = [0; 8];
    input.read_exact(&mut digest).map_err(truncated)?;
    if u64::from_be_bytes(count) != n || u64::from_be_bytes(digest) != hash.digest() {
        return Err("checksum mismatch: the file is damaged".into());
    }
    tree.apply_batch(batch).map_err(|e| e.to_string())?;
    tree.flush().map_err(|e| e.to_string())?;
    Ok(n)
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
