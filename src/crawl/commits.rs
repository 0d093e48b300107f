//! The commit buffer: fetched pages wait here for the writer thread, which
//! commits them in batches of [`COMMIT_PAGES`] (or after
//! `COMMIT_INTERVAL`, which the run loop times).

use std::time::Instant;

use tokio::sync::mpsc;

use super::COMMIT_PAGES;
use crate::store::PageCommit;

/// Fetched pages waiting for the writer thread, which commits them in batches.
pub(super) struct Commits {
    pub(super) pending: Vec<PageCommit>,
    pub(super) since: Instant,
    pub(super) tx: mpsc::UnboundedSender<Vec<PageCommit>>,
}

impl Commits {
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
        if !self.pending.is_empty() {
            let _ = self.tx.send(std::mem::take(&mut self.pending));
        }
    }
}
