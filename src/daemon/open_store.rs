//! Opening the daemon's store: a command that briefly holds the state dir
//! is waited for a little, a disk short of space as long as it takes.

use std::time::{Duration, Instant};

use tracing::{error, info};

use super::Options;
use crate::store::{open_off, Store, StoreError};

/// Opens the store, waiting a little for a command that briefly holds the
/// state dir (`crawld export` on it): exit 75 stops systemd's restarts.
/// Short of disk space it waits for space as long as it takes, rather than
/// exit with a status the unit does not restart (see [`wait_before_open`]).
pub(super) async fn open_store(opts: &Options) -> Result<Store, StoreError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut short_of_space = false;
    let mut database_lost = false;
    loop {
        let (state, cluster, lease) = (opts.state.clone(), opts.cluster.clone(), opts.lease);
        // The URL may carry a password: a panic's message names the option.
        let place = match &cluster {
            Some(_) => "the database of --cluster".to_owned(),
            None => opts.state.display().to_string(),
        };
        let opened = open_off(place, move || match cluster {
            Some(url) => Store::connect_node(&url, &state, lease),
            None => Store::open(&state),
        })
        .await;
        match opened {
            Err(StoreError::Locked { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e @ StoreError::NoSpaceToOpen { .. }) => {
                wait_before_open(&e, !short_of_space, "free space").await;
                short_of_space = true;
            }
            // The database is down or unreachable (a server starting, a
            // network cut): wait for it like for space, rather than exit.
            Err(e @ StoreError::DatabaseLost { .. }) => {
                wait_before_open(&e, !database_lost, "the database").await;
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

/// One wait of a daemon that cannot open its store for lack of space
/// (`what` "free space") or because its database does not answer (`what`
/// "the database"); the first says so (an error, once) and tells systemd,
/// which would otherwise kill a service that is not ready, or never restart
/// one that exited.
async fn wait_before_open(e: &StoreError, first: bool, what: &str) {
    if first {
        error!(error = %e, "Waiting for {what} before opening the store; the daemon starts once it is there.");
        let status = format!("waiting for {what}: {e}");
        let _ = sd_notify::notify(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&status),
        ]);
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
    tokio::time::sleep(SPACE_RECHECK).await;
}
