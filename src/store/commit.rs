//! One commit of a run being built: the records of a batch of pages (their
//! failures, page records, items and change events), for [`RunWriter::commit`]
//! to apply at once.

use std::collections::HashMap;

use super::keyspace::Batch;
use super::records::{FailureRecord, ItemRecord, PageRecord, FORMAT};
use super::writer::{CommitStats, PageCommit, PageOutcome, RunWriter};
use super::{encode, event_key, failure_key, item_key, page_key, StoreError};
use crate::extract::Item;
use crate::failure::Failure;

/// One commit being built: its batch, what it counted, and the items it
/// wrote so far (so that two pages of one batch see each other's items).
pub(super) struct Building<'w> {
    pub(super) writer: &'w RunWriter,
    pub(super) batch: Batch,
    pub(super) stats: CommitStats,
    pub(super) next_event: u64,
    pub(super) pending: HashMap<Vec<u8>, ItemRecord>,
    /// The stored records of the batch's items, read at once before it is
    /// built (see [`stored_items`]).
    pub(super) stored: HashMap<Vec<u8>, ItemRecord>,
}

/// Reads the stored records of every item of `pages` in one read (one round
/// trip on a database, rather than one per item), after cleaning the
/// items' keys and values (see [`scrub`]).
pub(super) fn stored_items(
    store: &super::Store,
    target: &crate::ids::TargetId,
    pages: &mut [PageCommit],
) -> Result<HashMap<Vec<u8>, ItemRecord>, StoreError> {
    let mut keys = Vec::new();
    for page in pages.iter_mut() {
        if let PageOutcome::Fetched { items, .. } = &mut page.outcome {
            for item in items.iter_mut() {
                scrub(item);
                keys.push(item_key(target, &item.kind, &item.key));
            }
        }
    }
    let values = store.data.get_many(&keys)?;
    let mut stored = HashMap::with_capacity(keys.len());
    for (key, value) in keys.into_iter().zip(values) {
        if let Some(value) = value {
            let record: ItemRecord = store.decode(&key, &value)?;
            stored.insert(key, record);
        }
    }
    Ok(stored)
}

impl Building<'_> {
    /// Adds one page's records to the batch.
    pub(super) fn page(&mut self, page: PageCommit) -> Result<(), StoreError> {
        self.stats.pages += 1;
        let answered = match &page.outcome {
            PageOutcome::Fetched { .. }
            | PageOutcome::Unchanged { .. }
            | PageOutcome::Gone { .. } => true,
            PageOutcome::Failed { status, .. } => status.is_some(),
        };
        self.stats.fetched += u64::from(answered);
        let (store, run) = (&*self.writer.store, &self.writer.run);
        let now = page.fetched_ms;
        let record = match page.outcome {
            PageOutcome::Failed {
                kind,
                detail,
                status,
            } => return self.failure(&page.url, now, kind, detail, status),
            PageOutcome::Gone {
                status,
                kind,
                detail,
            } => {
                self.failure(&page.url, now, kind, detail, Some(status))?;
                self.fresh_record(&page.url, now, page.depth, status)
            }
            // Same validators as stored: nothing to write but the frontier.
            PageOutcome::Unchanged { validators: None } => return Ok(()),
            PageOutcome::Unchanged {
                validators: Some((etag, last_modified)),
            } => {
                let Some(mut record) = store.page(&run.target, &page.url)? else {
                    return Ok(());
                };
                record.run = run.id;
                record.fetched_ms = now;
                record.etag = etag.or(record.etag);
                record.last_modified = last_modified.or(record.last_modified);
                record
            }
            PageOutcome::Fetched {
                status,
                etag,
                last_modified,
                body_hash,
                links,
                items,
            } => {
                let item_ids = self.items(&page.url, now, items)?;
                PageRecord {
                    etag,
                    last_modified,
                    body_hash,
                    links,
                    items: item_ids,
                    ..self.fresh_record(&page.url, now, page.depth, status)
                }
            }
        };
        self.batch
            .insert(page_key(&run.target, &record.url), encode(store, &record)?);
        Ok(())
    }

    /// Records a failure of the page in this run.
    fn failure(
        &mut self,
        url: &str,
        now: u64,
        kind: Failure,
        detail: String,
        status: Option<u16>,
    ) -> Result<(), StoreError> {
        let (store, run) = (&*self.writer.store, &self.writer.run);
        let failure = FailureRecord {
            v: FORMAT,
            url: url.to_owned(),
            run: run.id,
            at_ms: now,
            kind,
            detail,
            status,
        };
        self.batch.insert(
            failure_key(&run.target, run.id, url),
            encode(store, &failure)?,
        );
        Ok(())
    }

    /// A page record of this run with no validators, links or items.
    fn fresh_record(&self, url: &str, now: u64, depth: u32, status: u16) -> PageRecord {
        PageRecord {
            v: FORMAT,
            url: url.to_owned(),
            run: self.writer.run.id,
            fetched_ms: now,
            status,
            etag: None,
            last_modified: None,
            body_hash: None,
            links: Vec::new(),
            items: Vec::new(),
            depth,
            config: Some(self.writer.fingerprint.clone()),
        }
    }

    /// Updates the page's items (new, changed or unchanged, each with its
    /// event) and returns their ids for the page record. An item seen
    /// earlier in this crawl keeps its first version.
    fn items(&mut self, url: &str, now: u64, items: Vec<Item>) -> Result<Vec<String>, StoreError> {
        let (writer, store) = (self.writer, &*self.writer.store);
        let (target, run_id) = (&writer.run.target, writer.run.id);
        let mut item_ids = Vec::with_capacity(items.len());
        for item in items {
            // Scrubbed by `stored_items`, which also read the records.
            let key = item_key(target, &item.kind, &item.key);
            let (previous, from_batch) = match self.pending.remove(&key) {
                Some(r) => (Some(r), true),
                None => (self.stored.remove(&key), false),
            };
            if previous
                .as_ref()
                .is_some_and(|old| writer.chain.contains(&old.run))
            {
                // Seen earlier in this crawl: the first one wins.
                self.stats.items_duplicate += 1;
                // Kept where it was found, for the same key later in the batch.
                match (previous, from_batch) {
                    (Some(old), true) => self.pending.insert(key, old),
                    (Some(old), false) => self.stored.insert(key, old),
                    (None, _) => None,
                };
                continue;
            }
            item_ids.push(format!("{}\0{}", item.kind, item.key));
            let (record, event) = writer.update_item(previous, item, url, now, &mut self.stats);
            if let Some(mut event) = event {
                event.run = run_id;
                self.batch.insert(
                    event_key(target, run_id, self.next_event),
                    encode(store, &event)?,
                );
                self.next_event += 1;
            }
            self.pending.insert(key, record);
        }
        Ok(item_ids)
    }
}

/// U+0000 in an item's key or values becomes U+FFFD, on both backends so
/// that they keep the same items: PostgreSQL's text and jsonb refuse it
/// (a page's JSON-LD may well say `"\u0000"`).
fn scrub(item: &mut Item) {
    if item.key.contains('\0') {
        item.key = item.key.replace('\0', "\u{FFFD}");
    }
    item.value.values_mut().for_each(scrub_value);
}

fn scrub_value(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) if s.contains('\0') => *s = s.replace('\0', "\u{FFFD}"),
        serde_json::Value::Array(a) => a.iter_mut().for_each(scrub_value),
        serde_json::Value::Object(o) => o.values_mut().for_each(scrub_value),
        _ => {}
    }
}
