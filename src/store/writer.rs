//! Committing a run's pages: each batch of pages, with their items and the
//! run's counters, is one atomic sled batch followed by a blocking flush.
//! Called from a dedicated thread, never from the async workers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::records::{now_ms, value_hash, ItemRecord, ItemVersion, PageRecord, RunRecord, FORMAT};
use super::{item_key, page_key, run_key, Store, StoreError};
use crate::extract::Item;

/// How many past versions an item keeps.
pub const KEEP_VERSIONS: usize = 10;

/// One fetched page, ready to be stored.
#[derive(Debug)]
pub struct PageCommit {
    pub url: String,
    pub status: u16,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub body_hash: Option<String>,
    pub links: Vec<String>,
    pub depth: u32,
    pub items: Vec<Item>,
    pub fetched_ms: u64,
}

/// What one commit changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CommitStats {
    pub pages: u64,
    pub items_new: u64,
    pub items_changed: u64,
    pub items_unchanged: u64,
    pub items_duplicate: u64,
}

/// Writes one run's pages; owns the run's item dedup set.
pub struct RunWriter {
    store: Arc<Store>,
    run: RunRecord,
    seen: HashSet<(String, String)>,
}

impl RunWriter {
    pub fn new(store: Arc<Store>, run: RunRecord) -> Self {
        RunWriter {
            store,
            run,
            seen: HashSet::new(),
        }
    }

    /// The run record with the item counters committed so far.
    pub fn run(&self) -> &RunRecord {
        &self.run
    }

    /// Writes `pages` atomically and flushes. On error nothing of the batch
    /// is in the store and the counters are unchanged.
    pub fn commit(&mut self, pages: Vec<PageCommit>) -> Result<CommitStats, StoreError> {
        let store = &*self.store;
        let target = self.run.target.clone();
        let run_id = self.run.id;
        let mut stats = CommitStats::default();
        let mut batch = sled::Batch::default();
        let mut newly_seen = HashSet::new();
        // Items written earlier in this batch, so two pages of one batch see each other.
        let mut pending: HashMap<Vec<u8>, ItemRecord> = HashMap::new();
        for page in pages {
            let now = page.fetched_ms;
            let mut item_ids = Vec::with_capacity(page.items.len());
            for item in page.items {
                let id = (item.kind, item.key);
                if self.seen.contains(&id) || newly_seen.contains(&id) {
                    stats.items_duplicate += 1;
                    continue;
                }
                let key = item_key(&target, &id.0, &id.1);
                let previous = match pending.remove(&key) {
                    Some(r) => Some(r),
                    None => match store.data.get(&key).map_err(|e| store.write_err(e))? {
                        Some(bytes) => Some(store.decode::<ItemRecord>(&key, &bytes)?),
                        None => None,
                    },
                };
                let hash = value_hash(&item.value);
                let record = match previous {
                    None => {
                        stats.items_new += 1;
                        ItemRecord {
                            v: FORMAT,
                            kind: id.0.clone(),
                            key: id.1.clone(),
                            page: page.url.clone(),
                            value: item.value,
                            hash,
                            first_seen_ms: now,
                            last_seen_ms: now,
                            last_changed_ms: now,
                            run: run_id,
                            removed_ms: None,
                            history: Default::default(),
                        }
                    }
                    Some(mut old) => {
                        if old.hash == hash && old.removed_ms.is_none() {
                            stats.items_unchanged += 1;
                        } else {
                            stats.items_changed += 1;
                            let value = std::mem::replace(&mut old.value, item.value);
                            old.history.push_back(ItemVersion {
                                value,
                                hash: std::mem::replace(&mut old.hash, hash),
                                run: old.run,
                                at_ms: old.last_changed_ms,
                            });
                            while old.history.len() > KEEP_VERSIONS {
                                old.history.pop_front();
                            }
                            old.last_changed_ms = now;
                            old.removed_ms = None;
                        }
                        old.page.clone_from(&page.url);
                        old.last_seen_ms = now;
                        old.run = run_id;
                        old
                    }
                };
                item_ids.push(format!("{}\0{}", id.0, id.1));
                pending.insert(key, record);
                newly_seen.insert(id);
            }
            let record = PageRecord {
                v: FORMAT,
                url: page.url,
                run: run_id,
                fetched_ms: now,
                status: page.status,
                etag: page.etag,
                last_modified: page.last_modified,
                body_hash: page.body_hash,
                links: page.links,
                items: item_ids,
                depth: page.depth,
            };
            batch.insert(page_key(&target, &record.url), encode(store, &record)?);
            stats.pages += 1;
        }
        for (key, record) in &pending {
            batch.insert(key.as_slice(), encode(store, record)?);
        }
        let mut run = self.run.clone();
        run.counts.pages_committed += stats.pages;
        run.counts.items_new += stats.items_new;
        run.counts.items_changed += stats.items_changed;
        run.counts.items_unchanged += stats.items_unchanged;
        run.counts.items_duplicate += stats.items_duplicate;
        batch.insert(run_key(&target, run_id), encode(store, &run)?);
        store
            .data
            .apply_batch(batch)
            .map_err(|e| store.write_err(e))?;
        store.flush()?;
        self.run = run;
        self.seen.extend(newly_seen);
        Ok(stats)
    }

    /// Records the run's end state, merging the counters the fetch side kept.
    pub fn finish(mut self, update: impl FnOnce(&mut RunRecord)) -> Result<RunRecord, StoreError> {
        update(&mut self.run);
        self.run.ended_ms = Some(now_ms());
        self.store.finish_run(&self.run)?;
        Ok(self.run)
    }
}

fn encode<T: serde::Serialize>(store: &Store, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt {
        path: store.path.clone(),
        key: "(encoding)".into(),
        detail: e.to_string(),
    })
}
