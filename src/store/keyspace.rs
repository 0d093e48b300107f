//! The store's records as one ordered keyspace, on one of two backends.
//!
//! Everything above this module (runs, the run writer, items and their
//! history, alerts, the outbox) is written once against these few calls:
//! a point read, an atomic batch, a read-modify-write of one record, and a
//! scan of a key prefix in key order. sled keeps the keyspace as it is
//! (`tree`); PostgreSQL keeps it in tables with real columns (`postgres`),
//! so that the same records can be queried in SQL.

use super::postgres::{self, Tables};
use super::tree::{self, Tree};
use super::StoreError;

/// The backend holding the records.
pub enum Keyspace {
    Sled(Tree),
    Postgres(Box<Tables>),
}

/// A key or value read back: sled's own buffer, or bytes read from a
/// database. Either way, bytes.
#[derive(Debug, Clone)]
pub enum Val {
    Sled(sled::IVec),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Val {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Val::Sled(v) => v,
            Val::Owned(v) => v,
        }
    }
}

impl AsRef<[u8]> for Val {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

/// One record: its key and its value.
pub type Record = (Val, Val);

/// Writes to apply atomically, in order (a later write of a key wins), with
/// the bytes they carry (for the free-space check before they are applied).
/// Keys and values are held as sled's buffers: sled takes them as they are,
/// with no second copy, and the database reads them as bytes.
#[derive(Default, Debug)]
pub struct Batch {
    pub(super) ops: Vec<(sled::IVec, Option<sled::IVec>)>,
    bytes: u64,
    /// On a database, the run lease the batch's transaction checks (and
    /// steps): a run's writes stop once another node took the run over.
    pub(super) fence: Option<postgres::Fence>,
    /// On a database, what the commit of a shared run does to its frontier.
    pub(super) shared: Option<postgres::SharedStep>,
}

impl Batch {
    pub fn insert(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        let (key, value) = (key.as_ref(), value.as_ref());
        self.bytes += (key.len() + value.len()) as u64;
        self.ops.push((key.into(), Some(value.into())));
    }

    pub fn remove(&mut self, key: impl AsRef<[u8]>) {
        let key = key.as_ref();
        self.bytes += key.len() as u64;
        self.ops.push((key.into(), None));
    }

    /// Bytes of keys and values written.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.shared.is_none()
    }
}

impl Keyspace {
    pub fn get(&self, key: &[u8]) -> Result<Option<Val>, StoreError> {
        match self {
            Keyspace::Sled(t) => Ok(t.get(key)?.map(Val::Sled)),
            Keyspace::Postgres(t) => Ok(t.get(key)?.map(Val::Owned)),
        }
    }

    /// The records at `keys`, in their order (`None`: no record).
    pub fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Val>>, StoreError> {
        match self {
            Keyspace::Sled(t) => keys.iter().map(|k| Ok(t.get(k)?.map(Val::Sled))).collect(),
            Keyspace::Postgres(t) => Ok(t
                .get_many(keys)?
                .into_iter()
                .map(|v| v.map(Val::Owned))
                .collect()),
        }
    }

    /// Applies a batch atomically. On sled it is durable only after
    /// [`Keyspace::flush`]; on PostgreSQL it is committed when this returns.
    pub fn apply_batch(&self, batch: Batch) -> Result<(), StoreError> {
        match self {
            Keyspace::Sled(t) => t.apply_batch(batch),
            Keyspace::Postgres(t) => t.apply_batch(batch),
        }
    }

    /// Replaces the record at `key` with what `f` makes of it, atomically
    /// (also against other processes on a shared database), and returns
    /// the new value.
    pub fn update_and_fetch(
        &self,
        key: &[u8],
        f: impl FnMut(Option<&[u8]>) -> Option<Vec<u8>> + Send + 'static,
    ) -> Result<Option<Val>, StoreError> {
        match self {
            Keyspace::Sled(t) => Ok(t.update_and_fetch(key, f)?.map(Val::Sled)),
            Keyspace::Postgres(t) => Ok(t.update_and_fetch(key, f)?.map(Val::Owned)),
        }
    }

    /// Makes everything applied so far durable (blocking).
    pub fn flush(&self) -> Result<(), StoreError> {
        match self {
            Keyspace::Sled(t) => t.flush(),
            Keyspace::Postgres(_) => Ok(()),
        }
    }

    /// Every record whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Scan<'_> {
        match self {
            Keyspace::Sled(t) => Scan::Sled(t.scan_prefix(prefix)),
            Keyspace::Postgres(t) => Scan::Postgres(t.scan_prefix(prefix.as_ref())),
        }
    }

    /// Every record, in key order.
    pub fn iter(&self) -> Scan<'_> {
        match self {
            Keyspace::Sled(t) => Scan::Sled(t.iter()),
            Keyspace::Postgres(t) => Scan::Postgres(t.scan_prefix(&[])),
        }
    }
}

/// Records in key order, read as the caller goes.
pub enum Scan<'a> {
    Sled(tree::Scan<'a>),
    Postgres(postgres::Scan<'a>),
}

impl Iterator for Scan<'_> {
    type Item = Result<Record, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Scan::Sled(s) => s
                .next()
                .map(|r| r.map(|(k, v)| (Val::Sled(k), Val::Sled(v)))),
            Scan::Postgres(s) => s.next(),
        }
    }
}
