//! The HTTP listener's way into the daemon ([`crate::web::Source`]): the
//! status through the control socket's own function, so `/api/status` is
//! what `crawld status --json` prints, and run records read on a blocking
//! thread, so a scrape neither waits behind nor delays the supervisor's
//! store calls.

use super::server::{full_status, Tx};
use super::store_handle::StoreHandle;
use crate::control::Status;
use crate::ids::TargetId;
use crate::web::{Source, SourceError, TargetRuns};

#[derive(Clone)]
pub(super) struct WebSource {
    pub tx: Tx,
    pub store: StoreHandle,
}

impl Source for WebSource {
    async fn status(&self) -> Result<Status, SourceError> {
        Ok(full_status(&self.tx).await?)
    }

    async fn runs(&self, targets: Vec<TargetId>, limit: usize) -> Result<TargetRuns, SourceError> {
        let runs = self.store.shared().call_any(move |store| {
            targets
                .into_iter()
                .map(|id| {
                    let runs = store.runs(&id).collect::<Result<Vec<_>, _>>().map(|mut r| {
                        // The store keeps at most keep_runs: collecting all is bounded.
                        r.drain(..r.len().saturating_sub(limit));
                        r
                    });
                    (id, runs)
                })
                .collect()
        });
        Ok(runs.await?)
    }
}
