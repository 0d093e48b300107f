//! Opening the daemon's store: a command that briefly holds the state dir
//! is waited for a little, a disk short of space as long as it takes.

use std::time::{Duration, Instant};

use tracing::{error, info};

use super::Options;
use crate::store::{Store, StoreError};

/// Opens the store, waiting a little for a command that briefly holds the
/// state dir (`crawld export` on it): exit 75 stops systemd's restarts.
/// Short of disk space it waits for space as long as it takes, rather than
/// exit with a status the unit does not restart (see [`wait_for_space`]).
pub(super) async fn open_store(opts: &Options) -> Result<Store, StoreError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut short_of_space = false;
    let mut database_lost = false;
    loop {
        let (state, cluster) = (opts.state.clone(), opts.cluster.clone());
        let opened = tokio::task::spawn_blocking(move || match cluster {
            Some(url) => Store::connect(&url, &state),
            None => Store::open(&state),
        })
        .await
        .unwrap_or_else(|e| {
            Err(StoreError::Io {
                what: "the store's open failed",
                path: opts.state.clone(),
                source: std::io::Error::other(e.to_string()),
            })
        });
        match opened {
            Err(StoreError::Locked { .. } | StoreError::DatabaseLocked { .. })
                if Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e @ StoreError::NoSpaceToOpen { .. }) => {
                wait_for_space(&e, !short_of_space).await;
                short_of_space = true;
            }
            // The database is down or unreachable (a server starting, a
            // network cut): wait for it like for space, rather than exit.
            Err(e @ StoreError::DatabaseLost { .. }) => {
                wait_for_database(&e, !database_lost).await;
                database_lost = true;
            }
            other => {
                if short_of_space && other.is_ok() {
                    info!(state = %opts.state.display(), "Free space is back: the store is open.");
                }
                if database_lost && other.is_ok() {
                    info!("The database answers: the store is open.");
                }
                return other;
            }
        }
    }
}

/// How often a daemon short of disk space looks again.
const SPACE_RECHECK: Duration = Duration::from_secs(2);

/// One wait of a daemon that cannot open its store for lack of space; the
/// first says so (an error, once) and tells systemd, which would otherwise
/// kill a service that is not ready, or never restart one that exited.
async fn wait_for_space(e: &StoreError, first: bool) {
    if first {
        error!(error = %e, "Waiting for free space before opening the store; the daemon starts once there is room.");
        let status = format!("waiting for free space: {e}");
        let _ = sd_notify::notify(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&status),
        ]);
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
    tokio::time::sleep(SPACE_RECHECK).await;
}

/// One wait of a daemon whose database does not answer at start-up; the
/// first says so and tells systemd (see [`wait_for_space`]).
async fn wait_for_database(e: &StoreError, first: bool) {
    if first {
        error!(error = %e, "Waiting for the database before opening the store; the daemon starts once it answers.");
        let status = format!("waiting for the database: {e}");
        let _ = sd_notify::notify(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&status),
        ]);
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
    tokio::time::sleep(SPACE_RECHECK).await;
}
