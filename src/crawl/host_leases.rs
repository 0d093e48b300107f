//! In a cluster, the task that keeps this node's host leases: it takes the
//! hosts the run loops ask for, renews those still in use and gives up the
//! idle ones, so that one node at a time fetches from a host and the
//! profile's limits hold cluster-wide (see `limiter::Gate`).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use crate::limiter::HostPool;
use crate::store::Store;

/// How often the keeper looks at what the run loops asked for.
const TICK: Duration = Duration::from_millis(100);

/// A held host with nothing in flight and not asked for this long is given
/// up, so that another node's run can have it.
const IDLE: Duration = Duration::from_secs(2);

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

async fn keep(hosts: HostPool, store: Arc<Store>, lease: Duration) {
    let renew_every = lease / 6;
    let mut renewed = Instant::now();
    let mut last_ok = Instant::now();
    let mut failing = false;
    loop {
        tokio::time::sleep(TICK).await;
        let round = hosts.lease_round(IDLE);
        let quiet = round.want.is_empty() && round.release.is_empty();
        if quiet && renewed.elapsed() < renew_every {
            continue;
        }
        renewed = Instant::now();
        let synced = store
            .call(move |s| s.sync_hosts(&round.want, &round.keep, &round.release))
            .await;
        match synced {
            Ok(held) => {
                if failing {
                    info!("Host leases renewed again.");
                }
                failing = false;
                last_ok = Instant::now();
                hosts.leased(held);
            }
            Err(e) => {
                if !failing {
                    warn!(error = %e, "Cannot renew this node's host leases; retrying.");
                }
                failing = true;
                // Past two thirds of a lease without renewal, another node
                // may take the hosts soon: stop fetching from them first.
                if last_ok.elapsed() > lease * 2 / 3 {
                    hosts.leased(Vec::new());
                }
            }
        }
    }
}
