//! This node's side of a shared run (see `share`): working on a run
//! another node owns ([`help`]), and the owner's leaving at its end, when
//! it adds the other nodes' parts of the run to its record.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{info, instrument, warn};

use super::run_loop::{self, RunLoop};
use super::{host_leases, prepare, run_policy, share, shared_frontier, Engine, RunError};
use crate::config::Target;
use crate::store::{RunCounts, Store};

/// How long the owner of a shared run waits, at its end, for the other
/// nodes to record their parts of it.
const PARTS_WAIT: Duration = Duration::from_secs(3);

/// The owner of a shared run leaves it (what it still holds goes back to
/// the others, for a run that stops) and, when it completed, reads the
/// other nodes' parts of its chain once they have all left (or after
/// [`PARTS_WAIT`]). A run that stops leaves them to the run that resumes
/// it, which adds them once.
pub(super) async fn leave_shared(
    store: &Arc<Store>,
    part: share::Part,
    chain: &[crate::ids::RunId],
    completed: bool,
) -> Vec<RunCounts> {
    let left = store.call(move |s| s.leave_run(part.crawl, part.run, None));
    if let Err(e) = left.await {
        warn!(error = %e, "Could not give this node's URLs of the run back.");
    }
    if !completed {
        return Vec::new();
    }
    let until = Instant::now() + PARTS_WAIT;
    loop {
        let chain = chain.to_vec();
        match store.call(move |s| s.run_parts(&chain)).await {
            Ok((parts, all_left)) if all_left || Instant::now() >= until => return parts,
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => {
                warn!(error = %e, "Could not read the other nodes' parts of the run.");
                return Vec::new();
            }
        }
    }
}

/// A node works on a run another node of the cluster owns: it claims URLs
/// of the run's frontier, fetches them from the hosts the run gave it, and
/// commits what it found, until no URL is left (or `cancel` fires, or the
/// run ends). Returns this node's part of the run's figures.
#[instrument(skip_all, fields(target = %target.id, run = %shared.run))]
pub async fn help(
    engine: &Engine,
    store: Arc<Store>,
    target: Arc<Target>,
    shared: crate::store::SharedRun,
    cancel: CancellationToken,
) -> Result<RunCounts, RunError> {
    let fetcher = engine.fetcher.clone();
    host_leases::start(&engine.hosts, &store);
    let start = store.call(move |s| s.join_run(&shared)).await?;
    let part = share::Part {
        crawl: start.run.crawl,
        run: start.run.id,
        helper: true,
    };
    info!("Working on a run another node of the cluster started.");
    let internal_ok = prepare(engine, &store, &target).await?;
    let mut frontier = shared_frontier(&store, &target);
    if !internal_ok {
        frontier.guard(fetcher.policy().clone());
    }
    let policy = run_policy(&target);
    let looped = RunLoop::new(run_loop::Setup {
        engine,
        store: &store,
        target: &target,
        fetcher: &fetcher,
        internal_ok,
        start: &start,
        policy,
        frontier: &mut frontier,
        progress: &(),
        share: Some(part),
    })
    .run(cancel)
    .await;
    let (counts, store_error) = match looped {
        Ok((writer, _, mut counts, store_error)) => {
            let committed = writer.part();
            counts.pages_committed = committed.pages_committed;
            counts.items_new = committed.items_new;
            counts.items_changed = committed.items_changed;
            counts.items_unchanged = committed.items_unchanged;
            counts.items_duplicate = committed.items_duplicate;
            if let Some(node) = store.node_id() {
                counts.nodes.insert(node, counts.pages_fetched);
            }
            (Some(counts), store_error)
        }
        Err(e) => (None, Some(e)),
    };
    let mine = counts.clone();
    let left = store.call(move |s| s.leave_run(part.crawl, part.run, mine.as_ref()));
    if let Err(e) = left.await {
        warn!(error = %e, "Could not leave the run: what this node held expires with its lease.");
    }
    if let Some(e) = store_error {
        return Err(e.into());
    }
    let counts = counts.unwrap_or_default();
    info!(
        pages = counts.pages_fetched,
        items = counts.items_new + counts.items_changed + counts.items_unchanged,
        "Done with the shared run."
    );
    Ok(counts)
}
