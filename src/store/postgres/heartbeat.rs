//! This process as a node: its member row and the heartbeat that renews
//! it and the runs' leases it holds.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;

use super::cluster::Node;
use super::errors::database_error;
use super::{StoreError, Tables};

/// Heartbeats per lease: a node renews its leases this many times before
/// they would expire, so a few slow or lost beats do not lose them.
const BEATS_PER_LEASE: u32 = 6;

/// How long a gone node stays listed among the members.
const GONE_LISTED: &str = "1 hour";

/// This machine's name, as member rows record it.
pub(super) fn this_host() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

/// This process's PID namespace (`pid:[4026531836]`), or "" when unknown:
/// containers sharing a host name have pids of their own.
pub(super) fn pid_namespace() -> String {
    std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Whether process `pid` of this machine exists (one of another user's
/// counts: it may be a crawld).
pub(super) fn alive(pid: i32) -> bool {
    let Some(pid) = rustix::process::Pid::from_raw(pid) else {
        return false;
    };
    !matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

/// Inserts (or refreshes) this node's member row.
pub(super) async fn register(
    client: &tokio_postgres::Client,
    node: &Node,
) -> Result<(), tokio_postgres::Error> {
    let host = this_host();
    let pid = std::process::id() as i32;
    client
        .execute(
            "INSERT INTO crawld.members \
               (node, hostname, pid, version, started, heartbeat, expires, pid_ns) \
             VALUES ($1, $2, $3, $4, now(), now(), now() + make_interval(secs => $5), $6) \
             ON CONFLICT (node) DO UPDATE SET heartbeat = now(), expires = EXCLUDED.expires",
            &[
                &node.id,
                &host,
                &pid,
                &env!("CARGO_PKG_VERSION"),
                &node.secs(),
                &pid_namespace(),
            ],
        )
        .await?;
    Ok(())
}

/// Renews this node's membership and run leases every lease / 6, until the
/// backend's runtime stops. A beat that fails is tried again at the next;
/// the first failure and the recovery are logged.
pub(super) async fn heartbeat(pool: Pool, place: String, node: Arc<Node>) {
    let every = node.lease / BEATS_PER_LEASE;
    let mut failing = false;
    loop {
        tokio::time::sleep(every).await;
        let beat = async {
            let client = Tables::client(&pool, &place, "connecting to").await?;
            let failed = |e: tokio_postgres::Error| database_error(&place, "writing to", &e);
            register(&client, &node).await.map_err(failed)?;
            // Only the runs this process still works on: a lease it forgot
            // (a run that ended without recording it) expires, and another
            // node takes it.
            let held: Vec<String> = node.leases().keys().cloned().collect();
            client
                .execute(
                    "UPDATE crawld.run_leases SET expires = now() + make_interval(secs => $2) \
                     WHERE node = $1 AND target = ANY($3)",
                    &[&node.id, &node.secs(), &held],
                )
                .await
                .map_err(failed)?;
            // The URLs and hosts of the shared runs this node works on
            // now: what it holds in a run it left expires.
            let crawls: Vec<i64> = node.crawls().iter().copied().collect();
            if !crawls.is_empty() {
                for sql in [
                    "UPDATE crawld.frontier SET expires = now() + make_interval(secs => $2) \
                     WHERE holder = $1 AND state = 1 AND crawl = ANY($3)",
                    "UPDATE crawld.run_hosts SET expires = now() + make_interval(secs => $2) \
                     WHERE holder = $1 AND crawl = ANY($3)",
                ] {
                    client
                        .execute(sql, &[&node.id, &node.secs(), &crawls])
                        .await
                        .map_err(failed)?;
                }
            }
            client
                .batch_execute(&format!(
                    "DELETE FROM crawld.members WHERE expires < now() - interval '{GONE_LISTED}'; \
                     DELETE FROM crawld.stop_requests WHERE asked < now() - interval '1 minute'"
                ))
                .await
                .map_err(failed)?;
            Ok::<_, StoreError>(())
        };
        match tokio::time::timeout(every.max(Duration::from_secs(1)) * 2, beat).await {
            Ok(Ok(())) => {
                if failing {
                    tracing::info!(node = %node.id, "Heartbeats go through again.");
                }
                failing = false;
            }
            Ok(Err(e)) => {
                if !failing {
                    tracing::warn!(node = %node.id, error = %e, "A heartbeat failed: this node's runs are taken over by others if this lasts past the lease.");
                }
                failing = true;
            }
            Err(_) => {
                if !failing {
                    tracing::warn!(node = %node.id, "A heartbeat got no answer in time.");
                }
                failing = true;
            }
        }
    }
}
