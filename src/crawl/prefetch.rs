//! The page records an incremental run needs (validators for its
//! conditional requests, the links of pages that did not change), read from
//! the store a window ahead of the fetches. The run holds a few thousand
//! records at a time, whatever the size of the target, where it used to
//! read every record of the target before its first request.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::frontier::Frontier;
use crate::ids::TargetId;
use crate::store::{PageRecord, Store, StoreError};

/// URLs read ahead of the fetches, at most.
pub const WINDOW: usize = 1024;

/// A batch of records read from the store, by URL (`None`: no record).
pub(super) type Batch = Result<Vec<(String, Option<PageRecord>)>, StoreError>;

/// A batch's read, under way.
type Reading = Pin<Box<dyn Future<Output = Batch> + Send + Sync>>;

/// The window of records (see the module docs).
pub(super) struct Prefetch {
    /// Off for a full run, which fetches without validators.
    enabled: bool,
    target: TargetId,
    /// Records read and not yet handed to a fetch, by URL.
    window: HashMap<String, Option<PageRecord>>,
    /// A batch is being read.
    loading: bool,
    /// The next URL of some host waits for its record.
    stalled: bool,
    /// The batch being read, off the async threads (see [`Store::call`]).
    reading: Option<Reading>,
}

impl Prefetch {
    pub(super) fn new(enabled: bool, target: TargetId) -> Self {
        Prefetch {
            enabled,
            target,
            window: HashMap::new(),
            loading: false,
            stalled: false,
            reading: None,
        }
    }

    /// Whether records are read ahead (an incremental run).
    pub(super) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether a fetch of `url` may start: its record was read (or none is needed).
    pub(super) fn ready(&mut self, url: &str) -> bool {
        let ready = !self.enabled || self.window.contains_key(url);
        self.stalled |= !ready;
        ready
    }

    /// Hands out the record of `url`, if the store has one.
    pub(super) fn take(&mut self, url: &str) -> Option<PageRecord> {
        self.window.remove(url).flatten()
    }

    /// The URLs to read next, when a batch is due: when a fetch waits for
    /// its record, or when fewer than half the window's URLs are read.
    pub(super) fn due(&mut self, frontier: &Frontier) -> Option<Vec<String>> {
        if !self.enabled || self.loading {
            return None;
        }
        // The records read and not yet handed out are the URLs ready ahead:
        // while they are many, there is nothing to look at (this is called
        // at every event of the run).
        if !self.stalled && self.window.len() >= WINDOW / 2 {
            return None;
        }
        let upcoming = frontier.upcoming(WINDOW);
        let missing: Vec<String> = upcoming
            .iter()
            .filter(|q| !self.window.contains_key(q.url.as_str()))
            .map(|q| q.url.as_str().to_owned())
            .collect();
        let low = upcoming.len() - missing.len() < WINDOW / 2;
        if missing.is_empty() || !(self.stalled || low) {
            return None;
        }
        self.stalled = false;
        self.loading = true;
        Some(missing)
    }

    /// Starts reading the next records, off the async threads, when a
    /// batch is due.
    pub(super) fn read_ahead(&mut self, frontier: &Frontier, store: &Arc<Store>) {
        let Some(urls) = self.due(frontier) else {
            return;
        };
        let target = self.target.clone();
        self.reading = Some(Box::pin(store.call(move |store| {
            // One read for the batch: one round trip on a database.
            let records = store.pages(&target, &urls)?;
            Ok(urls.into_iter().zip(records).collect())
        })));
    }

    /// The batch being read, when it is (for the run loop's `select!`; the
    /// read stays under way when another branch wins).
    pub(super) async fn joined(&mut self) -> Option<Batch> {
        let batch = self.reading.as_mut()?.await;
        self.reading = None;
        Some(batch)
    }

    /// A batch was read; a read that failed stops the run.
    pub(super) fn on_read(&mut self, batch: Batch) -> Result<(), StoreError> {
        self.loading = false;
        let records = batch?;
        self.window.extend(records);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Target;

    fn frontier(n: usize) -> (Arc<Target>, Frontier) {
        let text = "start_urls = [\"http://a.test/\"]\nmax_pages = 100000\n";
        let files = vec![(std::path::PathBuf::from("t.toml"), Ok(text.to_owned()))];
        let report = crate::config::load_files(files, &|_| None);
        let target = report.set.targets[&TargetId::new("t")].clone();
        let mut f = Frontier::new(&target);
        for i in 0..n {
            let url = url::Url::parse(&format!("http://a.test/p/{i}")).expect("url");
            f.offer(&target, url, 1).expect("admitted");
        }
        (target, f)
    }

    fn read_all(p: &mut Prefetch, urls: Vec<String>) {
        p.loading = false;
        p.window.extend(urls.into_iter().map(|u| (u, None)));
    }

    #[test]
    fn reads_a_window_ahead_then_waits_until_half_of_it_is_used() {
        let (_, mut f) = frontier(3 * WINDOW);
        let mut p = Prefetch::new(true, TargetId::new("t"));
        let first = p.due(&f).expect("a first batch");
        assert_eq!(first.len(), WINDOW);
        assert!(p.due(&f).is_none(), "one batch at a time");
        read_all(&mut p, first);
        // Hand out just under half the window: nothing to read yet.
        for _ in 0..WINDOW / 2 {
            let (q, ()) = f
                .pop_with(|_, next| p.ready(next.url.as_str()).then_some(()))
                .expect("ready");
            p.take(q.url.as_str());
        }
        assert!(p.due(&f).is_none());
        let (q, ()) = f.pop_with(|_, _| Some(())).expect("one more");
        p.take(q.url.as_str());
        let next = p.due(&f).expect("below half: the next batch");
        assert_eq!(next.len(), WINDOW / 2 + 1, "only what is not read yet");
    }

    #[test]
    fn a_fetch_waiting_for_its_record_gets_a_batch_at_once() {
        let (_, f) = frontier(10);
        let mut p = Prefetch::new(true, TargetId::new("t"));
        p.window
            .extend((0..WINDOW).map(|i| (format!("x{i}"), None)));
        assert!(p.due(&f).is_none(), "the window looks full");
        assert!(!p.ready("http://a.test/"));
        assert_eq!(p.due(&f).map(|u| u.len()), Some(11));
    }

    #[test]
    fn a_full_run_reads_nothing_ahead() {
        let (_, f) = frontier(10);
        let mut p = Prefetch::new(false, TargetId::new("t"));
        assert!(p.ready("http://a.test/p/1"));
        assert!(p.due(&f).is_none());
    }
}
