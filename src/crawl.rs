//! One run of one target: the loop that moves URLs from the frontier through
//! the host limiter and the fetcher to extraction, and results to the store.
//!
//! A single coordinator task owns the frontier and the run's counters; fetch
//! tasks run concurrently within the host limits; HTML is parsed on blocking
//! threads (at most one per core); a writer thread commits pages in batches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, instrument, warn};

use crate::config::Target;
use crate::extract::{self, Kinds, PageExtract};
use crate::fetcher::{FetchError, Fetcher, Response};
use crate::frontier::{Frontier, QueuedUrl};
use crate::limiter::{HostLimits, HostPool};
use crate::store::{
    now_ms, CommitStats, PageCommit, RunCounts, RunMode, RunRecord, RunStatus, RunWriter, Store,
    StoreError,
};

/// Pages per store commit, at most.
pub const COMMIT_PAGES: usize = 64;
/// Time a fetched page may wait for its commit, at most.
pub const COMMIT_INTERVAL: Duration = Duration::from_millis(250);
/// Fetch tasks of one run in flight, at most, whatever the host limits.
const MAX_TASKS: usize = 512;

/// What runs share: the per-host limits and the parse threads.
pub struct Engine {
    pub hosts: HostPool,
    parse_slots: Arc<Semaphore>,
}

impl Default for Engine {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Engine {
            hosts: HostPool::default(),
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

/// Live figures of a run, for progress display.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub fetched: u64,
    pub queued: u64,
    pub items: u64,
    pub failed: u64,
    pub committed: u64,
}

/// Receives progress updates; the CLI draws them, the daemon ignores them.
pub trait ProgressSink: Send + Sync {
    fn update(&self, progress: &Progress);
}

impl ProgressSink for () {
    fn update(&self, _: &Progress) {}
}

/// The result of one fetch task.
struct Outcome {
    queued: QueuedUrl,
    result: Result<Fetched, Failure>,
}

/// A page that produced nothing to store.
enum Failure {
    Fetch(FetchError),
    /// The parser panicked on this page; the run goes on without it.
    Parse,
}

impl Failure {
    fn kind(&self) -> &'static str {
        match self {
            Failure::Fetch(e) => e.kind(),
            Failure::Parse => "parse",
        }
    }
}

struct Fetched {
    response: Response,
    body_hash: Option<String>,
    extract: Option<PageExtract>,
}

/// Runs `target` once and returns its final run record. Cancelling `cancel`
/// stops the run; it is then recorded as interrupted.
#[instrument(skip_all, fields(target = %target.id))]
pub async fn run(
    engine: &Engine,
    store: Arc<Store>,
    target: Arc<Target>,
    mode: RunMode,
    cancel: CancellationToken,
    progress: &dyn ProgressSink,
) -> Result<RunRecord, RunError> {
    let fetcher = Fetcher::new(&target.profile)?;
    let record = store.begin_run(&target.id, mode)?;
    info!(run = %record.id, ?mode, "Run started.");
    let started = Instant::now();

    // The writer thread commits batches and reports each commit back.
    let (batch_tx, mut batch_rx) = mpsc::unbounded_channel::<Vec<PageCommit>>();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Result<CommitStats, StoreError>>();
    let mut writer = RunWriter::new(store.clone(), record);
    let writer_task = tokio::task::spawn_blocking(move || {
        while let Some(batch) = batch_rx.blocking_recv() {
            let result = writer.commit(batch);
            let failed = result.is_err();
            let _ = done_tx.send(result);
            if failed {
                break;
            }
        }
        writer
    });

    let limits = HostLimits::of(&target.profile);
    let mut frontier = Frontier::new(&target);
    let mut counts = RunCounts::default();
    let mut live = Progress::default();
    let mut tasks: JoinSet<Outcome> = JoinSet::new();
    let mut freed = engine.hosts.subscribe();
    let mut pending: Vec<PageCommit> = Vec::new();
    let mut pending_since = Instant::now();
    let mut store_error: Option<StoreError> = None;
    let mut interrupted = false;

    loop {
        while tasks.len() < MAX_TASKS {
            let Some((queued, permit)) =
                frontier.pop_with(|host| engine.hosts.try_acquire(host, limits))
            else {
                break;
            };
            let (fetcher, target, slots) =
                (fetcher.clone(), target.clone(), engine.parse_slots.clone());
            tasks.spawn(async move {
                let result = fetcher.get(&queued.url, &target.headers).await;
                // The slot stays taken for the delay after the response, parse or not.
                permit.release_after_delay();
                let result = match result {
                    Ok(response) => process(response, target, slots).await,
                    Err(e) => Err(Failure::Fetch(e)),
                };
                Outcome { queued, result }
            });
        }
        live.queued = frontier.queued() as u64;
        progress.update(&live);
        if tasks.is_empty() && frontier.queued() == 0 {
            break;
        }
        let flush_at = tokio::time::Instant::from_std(pending_since + COMMIT_INTERVAL);
        tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                interrupted = true;
                break;
            }
            Some(done) = done_rx.recv() => match done {
                Ok(stats) => note_commit(&mut live, stats),
                Err(e) => {
                    store_error = Some(e);
                    break;
                }
            },
            Some(joined) = tasks.join_next() => {
                let Ok(outcome) = joined else { continue };
                if let Some(page) = record_outcome(&target, &mut frontier, &mut counts, &mut live, outcome) {
                    if pending.is_empty() {
                        pending_since = Instant::now();
                    }
                    pending.push(page);
                }
                if pending.len() >= COMMIT_PAGES {
                    let _ = batch_tx.send(std::mem::take(&mut pending));
                }
            }
            _ = tokio::time::sleep_until(flush_at), if !pending.is_empty() => {
                let _ = batch_tx.send(std::mem::take(&mut pending));
            }
            _ = freed.changed() => {}
        }
    }

    // Whatever was fetched is committed, also when the run was interrupted.
    tasks.abort_all();
    if !pending.is_empty() && store_error.is_none() {
        let _ = batch_tx.send(pending);
    }
    drop(batch_tx);
    let writer = writer_task.await.map_err(|e| StoreError::Io {
        what: "the store writer stopped",
        path: store.path().to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?;
    while let Ok(done) = done_rx.try_recv() {
        match done {
            Ok(stats) => note_commit(&mut live, stats),
            Err(e) => store_error = store_error.or(Some(e)),
        }
    }
    let status = match (&store_error, interrupted) {
        (Some(_), _) => RunStatus::Failed,
        (None, true) => RunStatus::Interrupted,
        (None, false) => RunStatus::Completed,
    };
    let error = store_error.as_ref().map(|e| e.to_string());
    let record = writer.finish(|run| {
        run.status = status;
        run.error = error;
        let committed = std::mem::take(&mut run.counts);
        run.counts = RunCounts {
            pages_committed: committed.pages_committed,
            items_new: committed.items_new,
            items_changed: committed.items_changed,
            items_unchanged: committed.items_unchanged,
            items_duplicate: committed.items_duplicate,
            ..counts
        };
    });
    if let Some(e) = store_error {
        warn!(error = %e, "Run failed: the store could not be written.");
        return Err(e.into());
    }
    let record = record?;
    info!(
        run = %record.id,
        status = ?record.status,
        pages = record.counts.pages_fetched,
        secs = started.elapsed().as_secs_f64(),
        "Run finished."
    );
    Ok(record)
}

/// Hashes the body and, for HTML, extracts on a parse thread.
async fn process(
    response: Response,
    target: Arc<Target>,
    slots: Arc<Semaphore>,
) -> Result<Fetched, Failure> {
    let ok = (200..300).contains(&response.status);
    let body_hash = (!response.body.is_empty())
        .then(|| format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&response.body)));
    if !ok || !response.is_html() {
        return Ok(Fetched {
            response,
            body_hash,
            extract: None,
        });
    }
    // The semaphore is never closed; a closed one would only mean no limit.
    let _slot = slots.acquire_owned().await.ok();
    let joined = tokio::task::spawn_blocking(move || {
        let page = extract::extract(&target, &response.text(), &response.url, Kinds::Matching);
        (response, page)
    })
    .await;
    match joined {
        Ok((response, page)) => Ok(Fetched {
            response,
            body_hash,
            extract: Some(page),
        }),
        Err(_) => Err(Failure::Parse),
    }
}

/// Counts an outcome, feeds its links to the frontier and returns what to commit.
fn record_outcome(
    target: &Target,
    frontier: &mut Frontier,
    counts: &mut RunCounts,
    live: &mut Progress,
    outcome: Outcome,
) -> Option<PageCommit> {
    let Outcome { queued, result } = outcome;
    let fetched = match result {
        Ok(f) => f,
        Err(e) => {
            if let Failure::Fetch(e) = &e {
                debug!(url = %queued.url, error = %e, "Fetch failed.");
            } else {
                warn!(url = %queued.url, "The HTML parser panicked on this page; skipped.");
            }
            counts.pages_failed += 1;
            *counts.errors.entry(e.kind().to_owned()).or_default() += 1;
            live.failed += 1;
            return None;
        }
    };
    let Fetched {
        response,
        body_hash,
        extract,
    } = fetched;
    counts.pages_fetched += 1;
    live.fetched += 1;
    counts.bytes += response.body.len() as u64;
    if response.url != queued.url {
        frontier.mark_seen(&response.url);
    }
    let mut links = Vec::new();
    let mut items = Vec::new();
    if !(200..300).contains(&response.status) {
        debug!(url = %queued.url, status = response.status, "HTTP error.");
        counts.pages_failed += 1;
        live.failed += 1;
        *counts
            .errors
            .entry(format!("http_{}", response.status))
            .or_default() += 1;
    } else if let Some(page) = extract {
        counts.items_invalid += page.invalid.len() as u64;
        live.items += page.items.len() as u64;
        for link in page.links {
            links.push(link.as_str().to_owned());
            let _ = frontier.offer(target, link, queued.depth + 1);
        }
        items = page.items;
    } else {
        counts.pages_not_html += 1;
    }
    Some(PageCommit {
        url: queued.url.into(),
        status: response.status,
        etag: response.etag,
        last_modified: response.last_modified,
        body_hash,
        links,
        depth: queued.depth,
        items,
        fetched_ms: now_ms(),
    })
}

fn note_commit(live: &mut Progress, stats: CommitStats) {
    live.committed += stats.pages;
}
