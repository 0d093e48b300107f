//! One run of one target: the loop that moves URLs from the frontier through
//! the host limiter and the fetcher to extraction, and results to the store.
//!
//! A single coordinator ([`run_loop`]) owns the frontier and the run's
//! counters and handles one event at a time; fetch tasks ([`hops`]) run
//! concurrently within the host limits; what becomes of each answer is
//! decided in [`outcome`] by the retry table; HTML is parsed in the fetch
//! task (big pages on blocking threads, at most one per core); a writer
//! thread commits pages in batches, and an incremental run reads the page
//! records its fetches need a window ahead ([`prefetch`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{info, instrument, warn};

mod commits;
mod helper;
mod hops;
pub mod host_leases;
mod outcome;
mod prefetch;
mod record;
mod run_loop;
mod share;
mod sitemaps;

pub use helper::help;
use helper::leave_shared;
use run_loop::RunLoop;

use crate::address::AddressPolicy;
use crate::config::Target;
use crate::error::Exit;
use crate::fetcher::{FetchError, Fetcher};
use crate::frontier::Frontier;
use crate::limiter::HostPool;
use crate::store::{RunCounts, RunMode, RunPolicy, RunRecord, RunStart, Store, StoreError};

/// Pages per store commit, at most.
pub const COMMIT_PAGES: usize = 64;
/// Time a fetched page may wait for its commit, at most.
pub const COMMIT_INTERVAL: Duration = Duration::from_millis(250);

/// What runs share: the per-host limits, the HTTP clients and sessions,
/// and the parse threads.
pub struct Engine {
    pub hosts: HostPool,
    pub fetcher: Fetcher,
    parse_slots: Arc<Semaphore>,
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new(AddressPolicy::default())
    }
}

impl Engine {
    /// An engine that tells internal addresses by `policy`.
    pub fn new(policy: AddressPolicy) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Engine {
            hosts: HostPool::default(),
            fetcher: Fetcher::new(policy),
            parse_slots: Arc::new(Semaphore::new(cores)),
        }
    }
}

/// Why a run could not complete.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

impl RunError {
    /// How a process that ran this run ends: a held state dir 75, any other
    /// store error 74, a fetch error that ends the run 1.
    pub fn exit(&self) -> Exit {
        match self {
            RunError::Store(e) => Exit::from(e),
            RunError::Fetch(_) => Exit::Failed,
        }
    }
}

/// Live figures of a run, for progress display.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// URLs finished, whatever their outcome.
    pub done: u64,
    /// URLs waiting in the frontier or in flight.
    pub queued: u64,
    /// Responses received.
    pub fetched: u64,
    /// URLs that ended in an error (transport or HTTP status).
    pub failed: u64,
    pub items: u64,
    pub committed: u64,
    /// The last host-wide backoff a 429/503 started (shown while it lasts).
    pub waiting: Option<Waiting>,
}

/// A host-wide backoff: the crawl may be quiet until it ends.
#[derive(Debug, Clone)]
pub struct Waiting {
    pub host: String,
    pub until: std::time::SystemTime,
    /// What the host's `Retry-After` asked for.
    pub asked: Option<Duration>,
    /// Whether `retry_after_max` cut what the host asked for.
    pub cut: bool,
}

/// Receives progress updates; the CLI draws them, the daemon ignores them.
pub trait ProgressSink: Send + Sync {
    fn update(&self, progress: &Progress);
}

impl ProgressSink for () {
    fn update(&self, _: &Progress) {}
}

/// Runs `target` once and returns its final run record. An interrupted
/// crawl of the target is resumed (see [`Store::start_run`]). Cancelling
/// `cancel` stops the run: what was fetched is committed, the frontier stays
/// in the store, and the run is recorded as interrupted.
#[instrument(skip_all, fields(target = %target.id, run = tracing::field::Empty))]
pub async fn run(
    engine: &Engine,
    store: Arc<Store>,
    target: Arc<Target>,
    mode: RunMode,
    cancel: CancellationToken,
    progress: &dyn ProgressSink,
) -> Result<RunRecord, RunError> {
    let fetcher = engine.fetcher.clone();
    let policy = run_policy(&target);
    // In a cluster, a host is fetched from by one node at a time.
    host_leases::start(&engine.hosts, &store);
    let start = begin(&store, &target, mode, policy).await?;
    // However the run ends (an error before its end was recorded, a panic),
    // its lease is no longer renewed: the run waits for a node to resume it.
    let _lease = LeaseGuard {
        store: store.clone(),
        target: target.id.clone(),
    };
    let started = Instant::now();
    // Breaker pauses outlive the process.
    let internal_ok = prepare(engine, &store, &target).await?;
    // In a cluster whose other nodes have the target, the run is shared:
    // its frontier is the database's, and they work on it too.
    let shared = match store.shares_runs() {
        true => {
            let (run, config) = (start.run.clone(), target.fingerprint.clone());
            store.call(move |s| s.should_share(&run, &config)).await?
        }
        false => false,
    };
    let share = shared.then_some(share::Part {
        crawl: start.run.crawl,
        run: start.run.id,
        helper: false,
    });
    let mut frontier = match share {
        Some(_) => {
            let (run, max, config) = (
                start.run.clone(),
                target.max_pages,
                target.fingerprint.clone(),
            );
            store.call(move |s| s.share_run(&run, max, &config)).await?;
            shared_frontier(&store, &target)
        }
        None => frontier(&store, &target, &start).await?,
    };
    if !internal_ok {
        frontier.guard(fetcher.policy().clone());
    }
    let end = RunLoop::new(run_loop::Setup {
        engine,
        store: &store,
        target: &target,
        fetcher: &fetcher,
        internal_ok,
        start: &start,
        policy,
        frontier: &mut frontier,
        progress,
        share,
    })
    .run(cancel)
    .await?;
    let parts = match share {
        Some(part) => {
            let completed = end.1 == crate::store::RunStatus::Completed;
            leave_shared(&store, part, &start.chain, completed).await
        }
        None => Vec::new(),
    };
    let record = end_run(&store, end, parts).await?;
    if let Some(template) = &target.changes_jsonl {
        let (record2, template) = (record.clone(), template.clone());
        match store
            .call_any(move |store| crate::export::write_run_changes(store, &record2, &template))
            .await
        {
            Ok(Ok(path)) => info!(path = %path.display(), "Changes written."),
            Ok(Err(e)) | Err(e) => warn!(error = %e, "Could not write the run's changes file."),
        }
    }
    info!(
        run = %record.id,
        status = ?record.status,
        pages = record.counts.pages_fetched,
        secs = started.elapsed().as_secs_f64(),
        "Run finished."
    );
    Ok(record)
}

/// What a run's figures are kept by: the target's retention settings.
fn run_policy(target: &Target) -> RunPolicy {
    RunPolicy {
        resume_within: target.resume_within,
        keep_versions: target.keep_versions,
        keep_runs: target.keep_runs,
    }
}

/// Before a run's (or a part's) first fetch: the host pauses kept in the
/// store (breaker pauses outlive the process), and whether the target may
/// reach internal addresses.
async fn prepare(engine: &Engine, store: &Arc<Store>, target: &Target) -> Result<bool, RunError> {
    let pauses = store.call(|store| store.host_pauses()).await?;
    hops::restore_pauses(&engine.hosts, pauses);
    Ok(hops::internal_ok(target, engine.fetcher.policy()).await)
}

/// An empty frontier of a shared run, its queues going on in files of the
/// state directory as a run's own do.
fn shared_frontier(store: &Store, target: &Target) -> Frontier {
    let mut frontier = Frontier::shared(target);
    frontier.spill_in(store.state_dir().to_path_buf());
    frontier
}

/// Forgets the run's lease when the run's task ends (see [`run`]).
struct LeaseGuard {
    store: Arc<Store>,
    target: crate::ids::TargetId,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.store.forget_lease(&self.target);
    }
}

/// Reads what the run needs, then records it as running (resuming an
/// interrupted crawl when there is one). Everything is read before the run's
/// record is written, so that a store that cannot be read fails the command
/// without changing it.
async fn begin(
    store: &Arc<Store>,
    target: &Arc<Target>,
    mode: RunMode,
    policy: RunPolicy,
) -> Result<RunStart, RunError> {
    let target = target.clone();
    let start = store
        .call(move |store| {
            // The run reads page and item records as it goes (see `prefetch`):
            // both are scanned first, without decoding or keeping them, so that a
            // store whose records cannot be read fails before the run records itself.
            store.check_readable(&target.id)?;
            let urls: Vec<String> = target.start_urls.iter().map(|u| u.to_string()).collect();
            store.start_run(&target.id, mode, &urls, &policy)
        })
        .await?;
    let mode = start.run.mode;
    // Every line of the run carries its id from here on.
    tracing::Span::current().record("run", start.run.id.0);
    if let Some(old) = start.abandoned {
        info!(run = %old, "Interrupted run abandoned: too old, or replaced by a full run.");
    }
    match start.run.resumed_from {
        Some(from) => info!(run = %start.run.id, %from, ?mode, "Run started, resuming."),
        None => info!(run = %start.run.id, ?mode, "Run started."),
    }
    Ok(start)
}

/// The run's frontier: its start URLs, or what the interrupted crawl it
/// resumes had admitted (read back from the store off the async threads).
async fn frontier(
    store: &Arc<Store>,
    target: &Arc<Target>,
    start: &RunStart,
) -> Result<Frontier, RunError> {
    let Some(resume) = &start.resume else {
        let mut frontier = Frontier::new(target);
        frontier.spill_in(store.state_dir().to_path_buf());
        return Ok(frontier);
    };
    let (target, crawl) = (target.clone(), resume.crawl);
    let frontier = store
        .call(move |store| {
            let mut frontier = Frontier::resuming(&target);
            frontier.spill_in(store.state_dir().to_path_buf());
            store.replay_frontier(&target.id, crawl, |url, entry| {
                frontier.restore(&target, url, entry);
            })?;
            Ok(frontier)
        })
        .await?;
    Ok(frontier)
}

/// Writes the run's last record: its status, the loop's figures (with the
/// other nodes' parts of a shared run) and the store error that ended it,
/// which it then returns.
async fn end_run(
    store: &Arc<Store>,
    end: run_loop::LoopEnd,
    parts: Vec<RunCounts>,
) -> Result<RunRecord, RunError> {
    let (writer, status, mut counts, store_error) = end;
    if !parts.is_empty() || store.shares_runs() {
        if let Some(node) = store.node_id() {
            counts.nodes.insert(node, counts.pages_fetched);
        }
    }
    let error = store_error.as_ref().map(|e| e.to_string());
    let record = store
        .call_any(move |_| {
            writer.finish(status, error, |run| {
                let committed = std::mem::take(&mut run.counts);
                run.counts = RunCounts {
                    pages_committed: committed.pages_committed,
                    items_new: committed.items_new,
                    items_changed: committed.items_changed,
                    items_unchanged: committed.items_unchanged,
                    items_duplicate: committed.items_duplicate,
                    ..counts
                };
                // The other nodes' parts: what they fetched and committed.
                for part in &parts {
                    run.counts.add(part);
                }
            })
        })
        .await?;
    if let Some(e) = store_error {
        warn!(error = %e, "Run failed: the store could not be written.");
        return Err(e.into());
    }
    Ok(record?)
}
