//! The embedded store (sled): runs, pages with their validators and links,
//! and items with their history. This is the only module that imports sled.
//!
//! Everything lives in one tree with typed key prefixes, so that one sled
//! `Batch` writes a page, its items and its run's counters atomically:
//!
//! | prefix | key                          | value          |
//! |--------|------------------------------|----------------|
//! | `r`    | target · run id (big endian) | [`RunRecord`]  |
//! | `p`    | target · url                 | [`PageRecord`] |
//! | `i`    | target · kind · key          | [`ItemRecord`] |
//! | `f`    | target · crawl id · sequence | [`FrontierChunk`] |
//! | `e`    | target · run id · sequence   | [`ChangeEvent`] |
//! | `x`    | target · run id · url        | [`FailureRecord`] |
//! | `h`    | host                         | breaker pause end (ms, big endian) |
//! | `a`    | target · monitor · subject   | [`AlertRecord`] |
//! | `q`    | channel · sequence           | [`OutboxEntry`] (a notice waiting for its channel) |
//! | `m`    | name                         | meta: the commit counter, schedule firings, the outbox sequence |

mod alerts;
mod backup;
mod changes;
mod check;
mod cluster;
mod commit;
mod error;
mod keyspace;
mod lock;
mod offload;
mod postgres;
mod records;
mod runs;
mod settle;
mod shared;
mod tree;
mod writer;

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

pub use alerts::{AlertChanges, AlertRecord, Notice, NoticeState, OutboxEntry, NOTICE_VERSION};
pub use changes::{
    ChangeCounts, ChangeEntry, ChangeNotice, ItemChange, ItemChangeKind, CHANGES_TYPE,
    CHANGES_VERSION,
};
pub use check::CheckReport;
pub use cluster::{HostSync, Member, DEFAULT_LEASE};
pub use error::StoreError;
pub use lock::StateLock;
pub use offload::open_off;
pub use postgres::Claim;
pub use records::{
    now_ms, value_hash, AnswerCounts, ChangeEvent, ChangeKind, FailureRecord, FrontierChunk,
    FrontierEntry, HostRunCounts, ItemRecord, ItemVersion, KindCoverage, PageRecord, RunCounts,
    RunMode, RunRecord, RunStatus, FORMAT,
};
pub use runs::{Resume, RunPolicy, RunStart};
pub use shared::SharedRun;
pub use tree::{Op, SledError};

use keyspace::Keyspace;
pub use writer::{CommitStats, PageCommit, PageOutcome, RunWriter};

use crate::ids::{HostKey, RunId, TargetId};

/// sled's page cache, capped: its default is 1 GiB.
const CACHE_BYTES: u64 = 32 * 1024 * 1024;
const SEP: u8 = 0;

/// An open store: a state directory's sled files (holding it holds the
/// directory's lock), or a PostgreSQL database.
pub struct Store {
    data: Keyspace,
    /// Where the records are, as messages name it: the sled directory, or
    /// the database's address without its password.
    path: PathBuf,
    /// The local directory for this process's own files (the frontier's
    /// spill files): the state dir.
    dir: PathBuf,
    /// Opened by a command that only reads: every write is refused.
    reading: bool,
    /// Serialises commits, so that the commit counter only grows.
    commits: std::sync::Mutex<Commits>,
    /// Serialises updates of alert state (a read, then a batch).
    alerting: std::sync::Mutex<()>,
    /// The state dir's lock (sled); a database is locked by its backend.
    _lock: Option<StateLock>,
}

/// Free space below which commits stop: sled can tear a batch when the disk
/// fills up in the middle of writing it, so crawld stops well before.
pub const MIN_FREE_BYTES: u64 = 8 * 1024 * 1024;

/// Bytes of free space a batch needs for each byte it carries, beyond the
/// reserve: sled writes it to its log, may move it again, and keeps large
/// values in blob files of their own.
const BATCH_AMPLIFICATION: u64 = 2;

/// Free space a run's last record may still use: the run that stopped at
/// [`MIN_FREE_BYTES`] records why it ended (a few KB) from this reserve.
const END_FREE_BYTES: u64 = 1024 * 1024;

/// What a commit is, for the free-space reserve and the commit mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Commit {
    /// Pages and other records: the commit mark is written at most every
    /// [`MARK_EVERY`].
    Pages,
    /// A run's first record: the mark is written now.
    Start,
    /// A run's last record: the mark is written now, and the record may use
    /// the reserve below [`MIN_FREE_BYTES`], down to [`END_FREE_BYTES`].
    End,
}

/// How often the commit mark is rewritten, at most.
const MARK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The commit counter, and when it was last written beside the store.
struct Commits {
    last: u64,
    marked: Option<std::time::Instant>,
}

/// Meta record: the number of the last commit.
const COMMITS: &[u8] = b"m\0commits";
/// A file beside the store holding the number of the last flushed commit: a
/// store that comes back with a smaller one has lost data.
const COMMIT_MARK: &str = "crawld.commit";

impl Store {
    /// Opens (creating if needed) the store in `state_dir`, taking its lock,
    /// for a command that writes. Runs left "running" by a process that died
    /// are marked interrupted.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        crate::files::create_private_dir(state_dir).map_err(|source| StoreError::Io {
            what: "cannot create the state dir",
            path: state_dir.to_path_buf(),
            source,
        })?;
        let store = Store::open_as(state_dir, false)?;
        store.interrupt_stale_runs()?;
        Ok(store)
    }

    /// Opens the existing store in `state_dir`, taking its lock, for a command
    /// that only reads: crawld writes nothing (writes return
    /// [`StoreError::ReadOnly`]), sled runs no background flusher, and a store
    /// its last writer did not settle is read from a private copy, since sled
    /// writes while it recovers one (see `settle.rs`). Both opens first check
    /// for free space, as the one guard that holds whatever sled does.
    pub fn open_read(state_dir: &Path) -> Result<Self, StoreError> {
        Store::open_as(state_dir, true)
    }

    fn open_as(state_dir: &Path, reading: bool) -> Result<Self, StoreError> {
        let lock = if reading {
            StateLock::acquire_read(state_dir)?
        } else {
            StateLock::acquire(state_dir)?
        };
        let path = state_dir.join("db");
        let available = free_bytes(state_dir);
        if available < MIN_FREE_BYTES {
            return Err(StoreError::NoSpaceToOpen {
                path,
                available,
                reserve: MIN_FREE_BYTES,
            });
        }
        let existed = path.exists();
        let data = Keyspace::Sled(tree::Tree::open(&path, CACHE_BYTES, reading)?);
        let found = data
            .get(COMMITS)?
            .and_then(|v| v.as_ref().try_into().ok())
            .map_or(0, u64::from_be_bytes);
        let mark = std::fs::read_to_string(state_dir.join(COMMIT_MARK))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        if let Some(expected) = mark.filter(|&m| existed && m > found) {
            return Err(StoreError::Lost {
                path,
                found,
                expected,
            });
        }
        Ok(Store {
            data,
            path,
            dir: state_dir.to_path_buf(),
            reading,
            commits: std::sync::Mutex::new(Commits {
                last: found,
                marked: None,
            }),
            alerting: std::sync::Mutex::new(()),
            _lock: Some(lock),
        })
    }

    /// Connects to the PostgreSQL database at `url` for a process that
    /// writes, applying the schema's migrations first, and joins the
    /// cluster as a node with the default lease time; `state_dir` keeps
    /// this process's own files. Runs are not marked interrupted here, as
    /// [`Store::open`] does: other nodes may be running them. A run whose
    /// node is gone is resumed by the node that takes its lease.
    pub fn connect(url: &str, state_dir: &Path) -> Result<Self, StoreError> {
        Store::connect_node(url, state_dir, DEFAULT_LEASE)
    }

    /// [`Store::connect`] with leases that last `lease` without a heartbeat.
    pub fn connect_node(
        url: &str,
        state_dir: &Path,
        lease: std::time::Duration,
    ) -> Result<Self, StoreError> {
        crate::files::create_private_dir(state_dir).map_err(|source| StoreError::Io {
            what: "cannot create the state dir",
            path: state_dir.to_path_buf(),
            source,
        })?;
        Store::connect_as(url, state_dir.to_path_buf(), Some(lease))
    }

    /// Connects to the PostgreSQL database at `url` for a command that only
    /// reads: its sessions are read-only, and a database whose schema is not
    /// this release's is refused rather than migrated.
    pub fn connect_read(url: &str) -> Result<Self, StoreError> {
        Store::connect_as(url, std::env::temp_dir(), None)
    }

    fn connect_as(
        url: &str,
        dir: PathBuf,
        lease: Option<std::time::Duration>,
    ) -> Result<Self, StoreError> {
        let reading = lease.is_none();
        let tables = postgres::Tables::connect(url, lease)?;
        Ok(Store {
            path: PathBuf::from(tables.describe()),
            data: Keyspace::Postgres(Box::new(tables)),
            dir,
            reading,
            commits: std::sync::Mutex::new(Commits {
                last: 0,
                marked: None,
            }),
            alerting: std::sync::Mutex::new(()),
            _lock: None,
        })
    }

    /// Where the records are, for messages: the sled directory, or the
    /// database's address without its password.
    pub fn describe(&self) -> String {
        self.path.display().to_string()
    }

    /// Whether the records are in a PostgreSQL database.
    pub fn is_database(&self) -> bool {
        matches!(self.data, Keyspace::Postgres(_))
    }

    /// Applies `batch` atomically, flushes it to disk (blocking), and records
    /// the commit's number beside the store.
    pub(super) fn apply(&self, batch: keyspace::Batch) -> Result<(), StoreError> {
        self.apply_marked(batch, Commit::Pages)
    }

    /// [`Store::apply`] for a commit of the given kind: see [`Commit`].
    fn apply_marked(&self, mut batch: keyspace::Batch, kind: Commit) -> Result<(), StoreError> {
        let mut commits = self
            .commits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.reading {
            return Err(StoreError::ReadOnly {
                path: self.path.clone(),
            });
        }
        if self.is_database() {
            // The database makes a commit durable, refuses one it has no
            // room for, and guards its own files: the reserve and the
            // commit mark are sled's.
            return self.data.apply_batch(batch);
        }
        let next = commits.last + 1;
        let available = free_bytes(&self.path);
        // sled writes a batch more than once (log, blobs, segment moves):
        // a large batch needs room beyond the reserve.
        let reserve = match kind {
            Commit::Pages | Commit::Start => MIN_FREE_BYTES,
            Commit::End => END_FREE_BYTES,
        } + BATCH_AMPLIFICATION * batch.bytes();
        if available < reserve {
            return Err(StoreError::DiskFull {
                path: self.path.clone(),
                available,
                reserve,
            });
        }
        batch.insert(COMMITS, next.to_be_bytes());
        self.data.apply_batch(batch)?;
        self.data.flush()?;
        commits.last = next;
        // The mark is a guard against lost files, not part of the commit: it
        // may lag (never lead), so it is written at most every MARK_EVERY.
        if kind == Commit::Pages && commits.marked.is_some_and(|t| t.elapsed() < MARK_EVERY) {
            return Ok(());
        }
        commits.marked = Some(std::time::Instant::now());
        let mark = self.state_dir().join(COMMIT_MARK);
        let tmp = mark.with_extension("tmp");
        let io = |source| StoreError::Io {
            what: "cannot write the commit mark",
            path: mark.clone(),
            source,
        };
        std::fs::write(&tmp, format!("{next}\n")).map_err(io)?;
        std::fs::rename(&tmp, &mark).map_err(io)?;
        Ok(())
    }

    /// The state directory: the store's, or (on a database) this
    /// process's own.
    pub fn state_dir(&self) -> &Path {
        &self.dir
    }

    /// Where the sled files are (on a database: its address, for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn decode<T: DeserializeOwned>(&self, key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            key: String::from_utf8_lossy(key).replace('\0', "/"),
            detail: e.to_string(),
        })
    }

    /// Every record under a key prefix, decoded.
    fn scan<T: DeserializeOwned>(
        &self,
        prefix: Vec<u8>,
    ) -> impl Iterator<Item = Result<T, StoreError>> + '_ {
        self.data.scan_prefix(prefix).map(move |kv| {
            let (k, v) = kv?;
            self.decode(&k, &v)
        })
    }

    /// A target's runs, oldest first.
    pub fn runs(
        &self,
        target: &TargetId,
    ) -> impl Iterator<Item = Result<RunRecord, StoreError>> + '_ {
        // This process holds the state dir's lock, so no run is running: a
        // reader shows a run left "running" by a dead process as the writer
        // that opens the store next will record it, without writing. A
        // database is read while its writer runs: its runs are as stored.
        let reading = self.reading && !self.is_database();
        self.scan(prefixed(b'r', &[target.as_str().as_bytes()]))
            .map(move |run| {
                run.map(|mut run: RunRecord| {
                    if reading && run.status == RunStatus::Running {
                        run.status = RunStatus::Interrupted;
                    }
                    run
                })
            })
    }

    /// A target's current items (tombstones included), by kind then key.
    pub fn items(
        &self,
        target: &TargetId,
    ) -> impl Iterator<Item = Result<ItemRecord, StoreError>> + '_ {
        self.scan(prefixed(b'i', &[target.as_str().as_bytes()]))
    }

    /// The last fetch of a URL by a target.
    pub fn page(&self, target: &TargetId, url: &str) -> Result<Option<PageRecord>, StoreError> {
        self.get(&page_key(target, url))
    }

    /// The last fetch of each of `urls` by a target, in their order: one
    /// read for all of them (one round trip on a database).
    pub fn pages(
        &self,
        target: &TargetId,
        urls: &[String],
    ) -> Result<Vec<Option<PageRecord>>, StoreError> {
        let keys: Vec<Vec<u8>> = urls.iter().map(|u| page_key(target, u)).collect();
        let values = self.data.get_many(&keys)?;
        keys.iter()
            .zip(values)
            .map(|(key, value)| value.map(|v| self.decode(key, &v)).transpose())
            .collect()
    }

    /// Reads every page and item record of a target, without decoding or
    /// keeping them: a run reads them as it goes, so a run starts only on a
    /// store whose records can be read, rather than failing after it
    /// recorded itself. Returns how many it read.
    pub fn check_readable(&self, target: &TargetId) -> Result<u64, StoreError> {
        let mut n = 0;
        for prefix in [b'p', b'i'] {
            for record in self
                .data
                .scan_prefix(prefixed(prefix, &[target.as_str().as_bytes()]))
            {
                record?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// When a target's schedule of `mode` last fired (for catch-up).
    pub fn last_fired(
        &self,
        target: &TargetId,
        mode: RunMode,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, StoreError> {
        let key = fired_key(target, mode);
        Ok(cluster::fired_at(self.data.get(&key)?.as_deref()))
    }

    /// Records a firing of a target's schedule.
    pub fn set_last_fired(
        &self,
        target: &TargetId,
        mode: RunMode,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        let mut batch = keyspace::Batch::default();
        batch.insert(fired_key(target, mode), at.timestamp_millis().to_be_bytes());
        self.apply(batch)
    }

    /// Hosts paused by the 429/403 breaker, with the end of each pause
    /// (milliseconds since the Unix epoch); ended pauses included.
    pub fn host_pauses(&self) -> Result<Vec<(HostKey, u64)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.data.scan_prefix([b'h', SEP]) {
            let (k, v) = kv?;
            let host = k.get(2..k.len().saturating_sub(1)).unwrap_or_default();
            let (Ok(host), Ok(ms)) = (std::str::from_utf8(host), <[u8; 8]>::try_from(v.as_ref()))
            else {
                continue;
            };
            out.push((HostKey::new(host), u64::from_be_bytes(ms)));
        }
        Ok(out)
    }

    /// Records a breaker pause of `host` until `until_ms`.
    pub fn set_host_pause(&self, host: &HostKey, until_ms: u64) -> Result<(), StoreError> {
        let mut batch = keyspace::Batch::default();
        batch.insert(
            prefixed(b'h', &[host.as_str().as_bytes()]),
            until_ms.to_be_bytes(),
        );
        self.apply(batch)
    }

    /// The URLs that failed in one run.
    pub fn failures(
        &self,
        target: &TargetId,
        run: RunId,
    ) -> impl Iterator<Item = Result<FailureRecord, StoreError>> + '_ {
        self.scan(failure_prefix(target, run))
    }

    /// One item of a target, tombstoned or not.
    pub fn item(
        &self,
        target: &TargetId,
        kind: &str,
        key: &str,
    ) -> Result<Option<ItemRecord>, StoreError> {
        self.get(&item_key(target, kind, key))
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.data.get(key)? {
            Some(v) => self.decode(key, &v).map(Some),
            None => Ok(None),
        }
    }

    fn interrupt_stale_runs(&self) -> Result<(), StoreError> {
        let stale: Vec<RunRecord> = self
            .scan::<RunRecord>(vec![b'r'])
            .filter(|r| !matches!(r, Ok(run) if run.status != RunStatus::Running))
            .collect::<Result<_, _>>()?;
        if stale.is_empty() {
            return Ok(());
        }
        let mut batch = keyspace::Batch::default();
        for mut run in stale {
            run.status = RunStatus::Interrupted;
            batch.insert(run_key(&run.target, run.id), encode(self, &run)?);
        }
        self.apply(batch)
    }
}

/// Bytes available to crawld on the filesystem of `path` (or of its
/// nearest existing ancestor); unknown counts as plenty.
pub(crate) fn free_bytes(path: &Path) -> u64 {
    path.ancestors()
        .find_map(|p| rustix::fs::statvfs(p).ok())
        .map_or(u64::MAX, |s| s.f_bavail.saturating_mul(s.f_frsize))
}

fn encode<T: serde::Serialize>(store: &Store, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt {
        path: store.path.clone(),
        key: "(encoding)".into(),
        detail: e.to_string(),
    })
}

/// `prefix · part · part …` with separators.
fn prefixed(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + parts.iter().map(|p| p.len() + 1).sum::<usize>());
    key.push(prefix);
    for p in parts {
        key.push(SEP);
        key.extend_from_slice(p);
    }
    key.push(SEP);
    key
}

fn run_key(target: &TargetId, id: RunId) -> Vec<u8> {
    let mut k = prefixed(b'r', &[target.as_str().as_bytes()]);
    k.extend_from_slice(&id.0.to_be_bytes());
    k
}

fn page_key(target: &TargetId, url: &str) -> Vec<u8> {
    let mut k = prefixed(b'p', &[target.as_str().as_bytes()]);
    k.extend_from_slice(url.as_bytes());
    k
}

fn frontier_prefix(target: &TargetId, crawl: RunId) -> Vec<u8> {
    prefixed(b'f', &[target.as_str().as_bytes(), &crawl.0.to_be_bytes()])
}

fn frontier_key(target: &TargetId, crawl: RunId, seq: u64) -> Vec<u8> {
    let mut k = frontier_prefix(target, crawl);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn event_prefix(target: &TargetId, run: RunId) -> Vec<u8> {
    prefixed(b'e', &[target.as_str().as_bytes(), &run.0.to_be_bytes()])
}

fn event_key(target: &TargetId, run: RunId, seq: u64) -> Vec<u8> {
    let mut k = event_prefix(target, run);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn fired_key(target: &TargetId, mode: RunMode) -> Vec<u8> {
    let mode = match mode {
        RunMode::Incremental => b"incremental".as_slice(),
        RunMode::Full => b"full".as_slice(),
    };
    prefixed(b'm', &[b"fired", target.as_str().as_bytes(), mode])
}

fn failure_prefix(target: &TargetId, run: RunId) -> Vec<u8> {
    prefixed(b'x', &[target.as_str().as_bytes(), &run.0.to_be_bytes()])
}

fn failure_key(target: &TargetId, run: RunId, url: &str) -> Vec<u8> {
    let mut k = failure_prefix(target, run);
    k.extend_from_slice(url.as_bytes());
    k
}

fn item_key(target: &TargetId, kind: &str, key: &str) -> Vec<u8> {
    let mut k = prefixed(b'i', &[target.as_str().as_bytes(), kind.as_bytes()]);
    k.extend_from_slice(key.as_bytes());
    k
}
