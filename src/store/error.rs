//! The store's one error type: every failure at the store boundary, each
//! naming the path or record involved and what a person can do about it.

use std::path::PathBuf;

use super::tree::{Op, SledError};
use crate::error::Exit;

/// Errors at the store boundary; each names the path or record involved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state dir {dir} is in use by crawld pid {pid}")]
    Locked { dir: PathBuf, pid: String },
    #[error(
        "cannot open the store at {path}: {source}. It was left as it is: move the state dir aside, \
         or restore a backup into an empty one with `crawld store restore FILE`"
    )]
    Open {
        path: PathBuf,
        #[source]
        source: SledError,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot read the store at {path}: {source}. Restore a backup into an empty state dir with \
         `crawld store restore FILE`, or move the state dir aside"
    )]
    Read {
        path: PathBuf,
        #[source]
        source: SledError,
    },
    #[error(
        "cannot write the store at {path}: {source}. What was committed before is kept: check the \
         disk (free space, I/O errors) and run again; if the store is damaged, restore a backup \
         into an empty state dir with `crawld store restore FILE`"
    )]
    Write {
        path: PathBuf,
        #[source]
        source: SledError,
    },
    #[error(
        "the store at {path} is damaged: sled failed while {op} it ({detail}). crawld stopped using \
         it and left its files as they are: restore a backup into an empty state dir with \
         `crawld store restore FILE`, or move the state dir aside"
    )]
    Damaged {
        path: PathBuf,
        op: Op,
        detail: String,
    },
    #[error(
        "the store at {path} was not closed cleanly, and reading it in place would let sled write \
         to it: crawld reads a copy instead, but could not make one in the temporary directory \
         ({source}). Point TMPDIR at a filesystem with room for the store, or run `crawld crawl` \
         once, which recovers it"
    )]
    Scratch {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the store at {path} was opened for reading only, and a write was attempted")]
    ReadOnly { path: PathBuf },
    #[error(
        "not enough free space: only {available} bytes free on the filesystem of {path}: crawld does not open a store with \
         less than {reserve} bytes free, because opening lets sled write recovery data that a full \
         disk could tear. Nothing was read or written: free space and run the command again"
    )]
    NoSpaceToOpen {
        path: PathBuf,
        available: u64,
        reserve: u64,
    },
    #[error("corrupt record {key:?} in the store at {path}: {detail}")]
    Corrupt {
        path: PathBuf,
        key: String,
        detail: String,
    },
    #[error("backup file {path}: {detail}")]
    Backup { path: PathBuf, detail: String },
    #[error(
        "not enough free space: only {available} bytes free on the filesystem of {path}: crawld stops writing below {reserve} \
         bytes, before a full disk could tear a commit. Everything committed so far is kept; free space \
         and run again to resume"
    )]
    DiskFull {
        path: PathBuf,
        available: u64,
        reserve: u64,
    },
    #[error("invalid database URL: {detail}")]
    DatabaseUrl { detail: String },
    #[error(
        "{doing} the database at {place} failed: {detail}. What was committed before is kept: check \
         that the server is up and the URL, role and password are right, and run again"
    )]
    Database {
        place: String,
        doing: &'static str,
        detail: String,
    },
    #[error(
        "lost the database at {place} while {doing} it: {detail}. crawld retries for up to 5 \
         minutes before it gives up; what was committed before is kept: check the server, the \
         network and the URL's host, and run again (a run resumes where it stopped)"
    )]
    DatabaseLost {
        place: String,
        doing: &'static str,
        detail: String,
    },
    #[error(
        "target {target} is running on cluster node {node}: one run of a target at a time, \
         cluster-wide. It ends, or is handed over when that node stops, or is resumed here once \
         that node's lease expires (it stopped answering); see `crawld status`",
        node = if node.is_empty() { "(being handed over)" } else { node.as_str() }
    )]
    RunElsewhere { target: String, node: String },
    #[error(
        "the run of target {target} is no longer this node's (the database at {place}{}): its \
         lease expired while this node could not renew it, and another node resumed the run. \
         Nothing more of it is written here; what was committed is kept",
        holder.as_ref().map(|n| format!(" says node {n} runs it")).unwrap_or_default()
    )]
    LeaseLost {
        place: String,
        target: String,
        holder: Option<String>,
    },
    #[error(
        "the database at {place} has crawld's schema version {found}, newer than this crawld's \
         ({known}): nothing was written. Upgrade crawld on this machine to the release that wrote it"
    )]
    DatabaseNewer {
        place: String,
        found: i64,
        known: i64,
    },
    #[error(
        "the database at {place} {}: a command that only reads does not change it. Start \
         `crawld run --cluster URL` (or `crawld crawl`) of this release once, which {}",
        match found {
            None => "has no crawld schema".to_string(),
            Some(v) => format!("has crawld's schema version {v}, not this release's {known}"),
        },
        match found {
            Some(v) if v > known => "will refuse it too: upgrade crawld here instead",
            _ => "creates or upgrades it",
        }
    )]
    DatabaseSchema {
        place: String,
        found: Option<i64>,
        known: i64,
    },
    #[error(
        "store work on {place} stopped with a panic ({detail}): what was committed before is \
         kept, and this one piece of work was not done. This is a bug in crawld: please report it \
         with the log"
    )]
    Panicked { place: String, detail: String },
    #[error(
        "the store at {path} lost committed data: it holds commit {found}, but commit {expected} was \
         recorded (a truncated or replaced file?). It was left as it is: restore a backup into an empty \
         state dir with `crawld store restore FILE`, or move it aside"
    )]
    Lost {
        path: PathBuf,
        found: u64,
        expected: u64,
    },
}

/// A held state dir is its own exit code (75), every other store error 74:
/// the store owns the mapping, so the exit-code table (`error`) stays on
/// the ground floor.
impl From<&StoreError> for Exit {
    fn from(e: &StoreError) -> Self {
        match e {
            StoreError::Locked { .. }
            | StoreError::RunElsewhere { .. }
            | StoreError::LeaseLost { .. } => Exit::Locked,
            _ => Exit::Store,
        }
    }
}
