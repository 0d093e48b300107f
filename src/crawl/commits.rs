//! The commit buffer: fetched pages wait here for the writer thread, which
//! commits them in batches of [`COMMIT_PAGES`] (or after
//! `COMMIT_INTERVAL`, which the run loop times).

use std::time::Instant;

use tokio::sync::mpsc;

use super::COMMIT_PAGES;
use crate::store::PageCommit;

/// Batches handed to the writer and not yet committed, at most, before the
/// run stops starting fetches: when the store is slower than the network
/// (a big store on a slow disk), the crawl slows down to the store's pace
/// rather than piling fetched pages up in memory.
const WRITER_BACKLOG: usize = 4;

/// Fetched pages waiting for the writer thread, which commits them in batches.
pub(super) struct Commits {
    pub(super) pending: Vec<PageCommit>,
    pub(super) since: Instant,
    pub(super) tx: mpsc::UnboundedSender<Vec<PageCommit>>,
    /// Batches sent to the writer that it has not answered yet.
    pub(super) in_writer: usize,
}

impl Commits {
    pub(super) fn new(tx: mpsc::UnboundedSender<Vec<PageCommit>>) -> Self {
        Commits {
            pending: Vec::new(),
            since: Instant::now(),
            tx,
            in_writer: 0,
        }
    }

    /// Whether the writer is so far behind that no fetch should start.
    pub(super) fn behind(&self) -> bool {
        self.in_writer >= WRITER_BACKLOG
    }

    /// The writer answered one batch.
    pub(super) fn answered(&mut self) {
        self.in_writer = self.in_writer.saturating_sub(1);
    }

    pub(super) fn push(&mut self, page: PageCommit) {
        if self.pending.is_empty() {
            self.since = Instant::now();
        }
        self.pending.push(page);
        if self.pending.len() >= COMMIT_PAGES {
            self.send();
        }
    }

    pub(super) fn send(&mut self) {
        if !self.pending.is_empty() && self.tx.send(std::mem::take(&mut self.pending)).is_ok() {
            self.in_writer += 1;
        }
    }
}
