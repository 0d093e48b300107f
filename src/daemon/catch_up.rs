//! Catch-up runs (`catch_up = "once"`): when a target is added (at start-up
//! or by a reload), a target with no completed full run gets one, and so
//! does one whose full firing was missed while the daemon was down. The
//! verdicts are reached on the store thread; a run history that cannot be
//! read is an error, logged, and never taken for "no run".

use std::sync::Arc;

use chrono::Utc;
use tracing::{error, info, warn};

use super::store_handle::StoreHandle;
use super::{schedule, Daemon};
use crate::config::{CatchUp, Target};
use crate::ids::TargetId;
use crate::store::{RunMode, RunStatus, Store, StoreError};

/// Whether a target gets a catch-up full run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CatchUpVerdict {
    /// It has a completed full run and missed no full firing.
    None,
    /// It never completed a full run (`first`), or missed a full firing.
    Run { first: bool },
}

/// Why the catch-up could not be decided.
#[derive(Debug, thiserror::Error)]
pub(super) enum CatchUpError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store thread's call failed, for every target it decided.
    #[error(transparent)]
    Call(Arc<StoreError>),
}

/// The verdict of each target, by target.
pub(super) type Verdicts = Vec<(TargetId, Result<CatchUpVerdict, CatchUpError>)>;

/// Decides, on the store thread, which of `targets` get a catch-up run
/// (`catch_up = "once"`): a target with no completed full run gets one, and
/// so does one whose full firing was missed while the daemon was down. A
/// catch-up is recorded as a firing, so that a restart does not repeat it.
pub(super) fn catch_up_verdicts(
    store: &StoreHandle,
    targets: &[Arc<Target>],
) -> impl std::future::Future<Output = Verdicts> + Send + 'static {
    let targets: Vec<Arc<Target>> = targets
        .iter()
        .filter(|t| t.catch_up != CatchUp::Skip && t.full_schedule.is_some())
        .cloned()
        .collect();
    let ids: Vec<TargetId> = targets.iter().map(|t| t.id.clone()).collect();
    let call = store.call(move |s| {
        targets
            .iter()
            .map(|t| catch_up_verdict(s, t).map_err(CatchUpError::from))
            .collect::<Vec<_>>()
    });
    async move {
        match call.await {
            Ok(verdicts) => ids.into_iter().zip(verdicts).collect(),
            Err(e) => {
                let e = Arc::new(e);
                ids.into_iter()
                    .map(|id| (id, Err(CatchUpError::Call(e.clone()))))
                    .collect()
            }
        }
    }
}

/// One target's catch-up verdict; an unreadable history is an error, never "no run".
fn catch_up_verdict(store: &Store, target: &Target) -> Result<CatchUpVerdict, StoreError> {
    let has_full = store.runs(&target.id).try_fold(false, |found, r| {
        r.map(|r| found || (r.mode == RunMode::Full && r.status == RunStatus::Completed))
    })?;
    let last = store.last_fired(&target.id, RunMode::Full)?;
    let missed = match (last, &target.full_schedule) {
        (Some(last), Some(schedule)) => schedule::next_fire(schedule, target.timezone, last)
            .is_some_and(|next| next < Utc::now()),
        _ => false,
    };
    if has_full && !missed {
        return Ok(CatchUpVerdict::None);
    }
    // Recorded as a firing, claimed against the one read: of nodes that
    // start together, one catches up.
    match store.claim_catch_up(&target.id, last) {
        Ok(true) => {}
        Ok(false) => {
            info!(target = %target.id, "Catch-up taken by another node of the cluster.");
            return Ok(CatchUpVerdict::None);
        }
        Err(e) => {
            warn!(target = %target.id, error = %e, "Cannot record the catch-up: a restart may catch up again.");
        }
    }
    Ok(CatchUpVerdict::Run { first: !has_full })
}

impl Daemon {
    /// Starts the catch-up runs that were decided; a target whose history
    /// could not be read gets none (it runs on its schedule), and says so.
    pub(super) fn caught_up(&mut self, verdicts: Verdicts) {
        for (id, verdict) in verdicts {
            match verdict {
                Ok(CatchUpVerdict::None) => {}
                Ok(CatchUpVerdict::Run { first }) => {
                    info!(target = %id, first, "Catching up on a full run.");
                    let _ = self.request(&id, RunMode::Full, false);
                }
                Err(e) => error!(
                    target = %id,
                    error = %e,
                    "Cannot read the target's run history: no catch-up run (it runs on its schedule). Check the store with `crawld store check` once the daemon is stopped."
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Arc<Target> {
        let text = "start_urls = [\"http://127.0.0.1:9/\"]\nschedule = \"0 0 0 1 1 *\"\n\
                    full_schedule = \"0 0 3 * * *\"\n";
        let files = vec![(std::path::PathBuf::from("books.toml"), Ok(text.to_owned()))];
        let report = crate::config::load_files(files, &|_| None);
        assert!(report.all_errors().is_empty());
        report.set.targets[&TargetId::new("books")].clone()
    }

    /// A backup file (the format of `store/backup.rs`) holding `records`.
    fn backup(path: &std::path::Path, records: &[(Vec<u8>, &[u8])]) {
        let mut bytes = b"CRAWLD-BACKUP 1\n".to_vec();
        for (key, value) in records {
            bytes.extend((key.len() as u32).to_be_bytes());
            bytes.extend(key);
            bytes.extend((value.len() as u32).to_be_bytes());
            bytes.extend(*value);
        }
        bytes.extend(u32::MAX.to_be_bytes());
        bytes.extend((records.len() as u64).to_be_bytes());
        let digest = xxhash_rust::xxh3::xxh3_64(&bytes);
        bytes.extend(digest.to_be_bytes());
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn an_unreadable_run_history_is_an_error_not_a_first_run() {
        let tmp = tempfile::tempdir().unwrap();
        let (file, state) = (tmp.path().join("b.bak"), tmp.path().join("state"));
        // Run 1 of target books, damaged: it does not decode.
        let mut key = b"r\0books\0".to_vec();
        key.extend(1u64.to_be_bytes());
        backup(&file, &[(key, b"{not a run record")]);
        Store::restore(&state, &file).unwrap();
        let store = Store::open_read(&state).unwrap();
        let verdict = catch_up_verdict(&store, &target());
        assert!(
            matches!(verdict, Err(StoreError::Corrupt { .. })),
            "a history that cannot be read must not start a catch-up run: {verdict:?}"
        );
    }

    #[test]
    fn a_target_without_runs_gets_its_first_full_run() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let verdict = catch_up_verdict(&store, &target()).unwrap();
        assert_eq!(verdict, CatchUpVerdict::Run { first: true });
    }
}
