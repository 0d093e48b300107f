//! `crawld store check`: every record decoded, and the invariants that span
//! records. What the invariants need is kept as fingerprints (a page's
//! last run, the items that exist), and items and pages are read a second
//! time to check them, so that a store of a million pages is checked in
//! tens of MB rather than with every record in memory.

use std::collections::{HashMap, HashSet};

use super::alerts::{AlertRecord, OutboxEntry};
use super::records::{
    ChangeEvent, FailureRecord, FrontierChunk, ItemRecord, PageRecord, RunRecord,
};
use super::{Store, StoreError, SEP};

/// What `store check` found.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub records: u64,
    pub problems: Vec<String>,
}

/// What the first pass keeps for the invariants.
#[derive(Default)]
struct Facts {
    /// (target, run id) → the run's crawl.
    runs: HashMap<(String, u64), u64>,
    /// Fingerprint of target · url → the run that last committed the page.
    page_runs: HashMap<u128, u64>,
    /// Fingerprints of target · kind · key of every item.
    items: HashSet<u128>,
    frontier_crawls: HashSet<(String, u64)>,
    event_runs: HashSet<(String, u64)>,
}

/// The fingerprint of a target and the parts of a name within it.
fn fingerprint(target: &str, parts: &[&str]) -> u128 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(target.as_bytes());
    for p in parts {
        h.update(&[SEP]);
        h.update(p.as_bytes());
    }
    h.digest128()
}

/// A record's target and the key's part after it.
fn split_key(k: &[u8]) -> (String, &[u8]) {
    let parts: Vec<&[u8]> = k.splitn(3, |&b| b == SEP).collect();
    let target = parts
        .get(1)
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .unwrap_or_default();
    (target, parts.get(2).copied().unwrap_or_default())
}

/// The big-endian number a key part starts with.
fn be(b: &[u8]) -> u64 {
    b.get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

impl Store {
    /// Decodes every record and checks the cross-record invariants.
    pub fn check(&self) -> Result<CheckReport, StoreError> {
        let mut report = CheckReport::default();
        let mut facts = Facts::default();
        for kv in self.data.iter() {
            let (k, v) = kv?;
            report.records += 1;
            if let Err(e) = self.check_record(&k, &v, &mut facts, &mut report) {
                report.problems.push(e.to_string());
            }
        }
        self.check_items(&facts, &mut report)?;
        self.check_pages(&facts, &mut report)?;
        let crawls: HashSet<(String, u64)> = facts
            .runs
            .iter()
            .map(|((target, _), crawl)| (target.clone(), *crawl))
            .collect();
        for (target, crawl) in facts.frontier_crawls.difference(&crawls) {
            report
                .problems
                .push(format!("{target}: frontier of unknown crawl {crawl}"));
        }
        for (target, run) in &facts.event_runs {
            if !facts.runs.contains_key(&(target.clone(), *run)) {
                report
                    .problems
                    .push(format!("{target}: change events of unknown run {run}"));
            }
        }
        Ok(report)
    }

    /// Decodes one record and keeps what the invariants need of it.
    fn check_record(
        &self,
        k: &[u8],
        v: &[u8],
        facts: &mut Facts,
        report: &mut CheckReport,
    ) -> Result<(), StoreError> {
        let (target, rest) = split_key(k);
        match k.first() {
            Some(b'r') => {
                let r = self.decode::<RunRecord>(k, v)?;
                facts.runs.insert((target, r.id.0), r.crawl.0);
            }
            Some(b'p') => {
                let p = self.decode::<PageRecord>(k, v)?;
                facts
                    .page_runs
                    .insert(fingerprint(&target, &[&p.url]), p.run.0);
            }
            Some(b'i') => {
                let i = self.decode::<ItemRecord>(k, v)?;
                facts.items.insert(fingerprint(&target, &[&i.kind, &i.key]));
            }
            Some(b'f') => {
                self.decode::<FrontierChunk>(k, v)?;
                facts.frontier_crawls.insert((target, be(rest)));
            }
            Some(b'e') => {
                self.decode::<ChangeEvent>(k, v)?;
                facts.event_runs.insert((target, be(rest)));
            }
            Some(b'x') => {
                self.decode::<FailureRecord>(k, v)?;
                facts.event_runs.insert((target, be(rest)));
            }
            _ => report.problems.extend(self.check_other(k, v)?),
        }
        Ok(())
    }

    /// Every item names a page that has a record, committed by its run or a
    /// later one. Records that do not decode were reported already.
    fn check_items(&self, facts: &Facts, report: &mut CheckReport) -> Result<(), StoreError> {
        for kv in self.data.scan_prefix([b'i']) {
            let (k, v) = kv?;
            let Ok(item) = self.decode::<ItemRecord>(&k, &v) else {
                continue;
            };
            let (target, _) = split_key(&k);
            match facts.page_runs.get(&fingerprint(&target, &[&item.page])) {
                None => report.problems.push(format!(
                    "{target}: item {}/{} names page {} that has no record",
                    item.kind, item.key, item.page
                )),
                Some(&page_run) if page_run < item.run.0 => report.problems.push(format!(
                    "{target}: item {}/{} was written by run {} but its page {} was last committed by run {}",
                    item.kind, item.key, item.run, item.page, page_run
                )),
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Every item a page lists exists.
    fn check_pages(&self, facts: &Facts, report: &mut CheckReport) -> Result<(), StoreError> {
        for kv in self.data.scan_prefix([b'p']) {
            let (k, v) = kv?;
            let Ok(page) = self.decode::<PageRecord>(&k, &v) else {
                continue;
            };
            let (target, _) = split_key(&k);
            for id in &page.items {
                let (kind, key) = id.split_once('\0').unwrap_or((id, ""));
                if !facts.items.contains(&fingerprint(&target, &[kind, key])) {
                    report.problems.push(format!(
                        "{target}: page {} lists item {} that is missing",
                        page.url,
                        id.replace('\0', "/")
                    ));
                }
            }
        }
        Ok(())
    }

    /// The records no invariant spans: alert state, the outbox, meta and
    /// host pauses. `Ok(Some(_))` is a problem to report.
    fn check_other(&self, k: &[u8], v: &[u8]) -> Result<Option<String>, StoreError> {
        let shown = || String::from_utf8_lossy(k).into_owned();
        Ok(match k.first() {
            Some(b'a') => self.decode::<AlertRecord>(k, v).map(|_| None)?,
            Some(b'q') => self.decode::<OutboxEntry>(k, v).map(|_| None)?,
            Some(b'n') => self.decode::<super::ChangeEntry>(k, v).map(|_| None)?,
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

    fn page(url: &str, run: u64, items: &[&str]) -> PageRecord {
        PageRecord {
            v: 1,
            url: url.into(),
            run: crate::ids::RunId(run),
            fetched_ms: 0,
            status: 200,
            etag: None,
            last_modified: None,
            body_hash: None,
            links: Vec::new(),
            items: items.iter().map(|i| i.to_string()).collect(),
            depth: 0,
            config: None,
        }
    }

    fn item(key: &str, page: &str, run: u64) -> ItemRecord {
        ItemRecord {
            v: 1,
            kind: "book".into(),
            key: key.into(),
            page: page.into(),
            value: Default::default(),
            hash: String::new(),
            first_seen_ms: 0,
            last_seen_ms: 0,
            last_changed_ms: 0,
            run: crate::ids::RunId(run),
            changed_run: None,
            removed_ms: None,
            history: Default::default(),
        }
    }

    #[test]
    fn items_and_pages_that_disagree_are_each_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let t = crate::ids::TargetId::new("t");
        let mut batch = super::super::keyspace::Batch::default();
        let put_page = |p: PageRecord| {
            let key = super::super::page_key(&t, &p.url);
            (key, super::super::encode(&store, &p).unwrap())
        };
        let pages = [
            put_page(page("http://a/ok", 2, &["book\0fine"])),
            put_page(page("http://a/old", 1, &[])),
            put_page(page("http://a/lists", 2, &["book\0missing"])),
        ];
        for (k, v) in pages {
            batch.insert(k, v);
        }
        for i in [
            item("fine", "http://a/ok", 2),
            item("orphan", "http://a/none", 2),
            item("newer", "http://a/old", 2),
        ] {
            let key = super::super::item_key(&t, &i.kind, &i.key);
            batch.insert(key, super::super::encode(&store, &i).unwrap());
        }
        store.apply(batch).unwrap();
        let mut problems = store.check().unwrap().problems;
        problems.sort();
        assert_eq!(
            problems,
            [
                "t: item book/newer was written by run 2 but its page http://a/old was last committed by run 1",
                "t: item book/orphan names page http://a/none that has no record",
                "t: page http://a/lists lists item book/missing that is missing",
            ]
        );
    }
}
