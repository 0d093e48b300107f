//! In a cluster, the task that keeps this node's host leases: it takes the
//! hosts the run loops ask for, renews those still in use and gives up the
//! idle ones, so that one node at a time fetches from a host and the
//! profile's limits hold cluster-wide (see `limiter::Gate`).

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::limiter::HostPool;
use crate::store::{HostSync, Store, StoreError};

/// How often the keeper looks at what the run loops asked for.
const TICK: Duration = Duration::from_millis(100);

/// A held host with nothing in flight and not asked for this long is given
/// up, so that another node's run can have it.
const IDLE: Duration = Duration::from_secs(2);

/// How often a host held by another node is asked for again.
const WAITING_RETRY: Duration = Duration::from_millis(250);

/// A host two nodes have work for goes to each in turn, for this long.
const TURN: Duration = Duration::from_secs(3);

/// Starts the keeper for `hosts`, once per pool, when `store` is a
/// database that other nodes share; it runs as long as the process.
pub fn start(hosts: &HostPool, store: &Arc<Store>) {
    let Some(lease) = store.lease().filter(|_| store.leases_hosts()) else {
        return;
    };
    if !hosts.gate() {
        return;
    }
    tokio::spawn(keep(hosts.clone(), store.clone(), lease));
}

type Synced = Result<HostSync, StoreError>;

async fn keep(hosts: HostPool, store: Arc<Store>, lease: Duration) {
    // Often enough that a node waiting for a host gets its turn on time.
    let renew_every = (lease / 6).min(Duration::from_secs(1));
    let mut synced_at = Instant::now();
    let mut last_ok = Instant::now();
    let mut failing = false;
    // One round with the database at a time; the keeper goes on ticking
    // while it waits, so that a database that stopped answering does not
    // keep this node fetching from hosts its leases no longer cover.
    let mut pending: Option<JoinHandle<Synced>> = None;
    let mut waiting = false;
    loop {
        tokio::time::sleep(TICK).await;
        if let Some(call) = pending.take_if(|c| c.is_finished()) {
            match call.await {
                Ok(Ok(synced)) => {
                    if failing {
                        info!("Host leases renewed again.");
                    }
                    failing = false;
                    last_ok = Instant::now();
                    let renewed = !synced.contested.is_empty() || !synced.held.is_empty();
                    hosts.leased(synced.held);
                    if renewed {
                        hosts.contested(synced.contested);
                    }
                    if !synced.yield_now.is_empty() {
                        debug!(hosts = ?synced.yield_now, "Another node's turn on these hosts.");
                        hosts.yield_hosts(synced.yield_now, TURN);
                    }
                }
                Ok(Err(e)) => {
                    if !failing {
                        warn!(error = %e, "Cannot renew this node's host leases; retrying.");
                    }
                    failing = true;
                }
                Err(e) => {
                    warn!(error = %e, "The host lease round failed; retrying.");
                    failing = true;
                }
            }
        }
        // Past two thirds of a lease without renewal, another node may take
        // the hosts soon: stop fetching from them first.
        if last_ok.elapsed() > lease * 2 / 3 && !hosts.leased_hosts().is_empty() {
            warn!("Host leases not renewed for two thirds of a lease: fetching paused until they are.");
            hosts.leased(Vec::new());
        }
        if pending.is_some() {
            continue;
        }
        let round = hosts.lease_round(IDLE);
        let due = if !round.release.is_empty() {
            true
        } else if !round.want.is_empty() {
            // Asked again at once the first time, then every second while
            // another node has the host.
            !waiting || synced_at.elapsed() >= WAITING_RETRY
        } else {
            synced_at.elapsed() >= renew_every
        };
        if round.want.is_empty() {
            waiting = false;
        }
        if !due {
            continue;
        }
        if !round.want.is_empty() {
            waiting = true;
            // Dispatchers still waiting ask again, so that their hosts stay wanted.
            hosts.nudge();
        }
        synced_at = Instant::now();
        let store = store.clone();
        pending = Some(tokio::spawn(async move {
            store
                .call(move |s| s.sync_hosts(&round.want, &round.keep, &round.release, TURN))
                .await
        }));
    }
}
