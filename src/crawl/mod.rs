//! One run of one target: the loop that moves URLs from the frontier through
//! the host limiter and the fetcher to extraction, and results to the store.
//!
//! A single coordinator task owns the frontier and the run's counters; fetch
//! tasks run concurrently within the host limits; HTML is parsed on blocking
//! threads (at most one per core); a writer thread commits pages in batches.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, instrument, warn};

use url::Url;

mod hops;
mod outcome;

use outcome::{
    next_step, not_fetched, note_commit, process, record_outcome, sleep_until_opt, Failure, Next,
    Outcome, RetryEntry,
};

use crate::address::AddressPolicy;
use crate::config::Target;
use crate::fetcher::{FetchError, Fetcher, Validators};
use crate::frontier::{Frontier, QueuedUrl};
use crate::ids::HostKey;
use crate::limiter::HostPool;
use crate::store::{
    now_ms, CommitStats, PageCommit, RunCounts, RunMode, RunPolicy, RunRecord, RunStart, RunStatus,
    RunWriter, Store, StoreError,
};

/// Pages per store commit, at most.
pub const COMMIT_PAGES: usize = 64;
/// Time a fetched page may wait for its commit, at most.
pub const COMMIT_INTERVAL: Duration = Duration::from_millis(250);
/// Fetch tasks of one run in flight, at most, whatever the host limits.
const MAX_TASKS: usize = 512;

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
    let policy = RunPolicy {
        resume_within: target.resume_within,
        keep_versions: target.keep_versions,
        keep_runs: target.keep_runs,
    };
    // Everything the run reads is read before its record is written, so that
    // a store that cannot be read fails the command without changing it.
    let (start, prev_pages) = {
        let target = target.clone();
        blocking(&store, move |store| {
            // An incremental run needs every page's validators and links: one
            // scan, each record handed out (moved, not copied) as its URL comes up.
            // A full run reads them too, only to check that they can be read.
            let pages = store.pages(&target.id)?;
            let urls: Vec<String> = target.start_urls.iter().map(|u| u.to_string()).collect();
            let start = store.start_run(&target.id, mode, &urls, &policy)?;
            let pages = match start.run.mode {
                RunMode::Incremental => pages,
                RunMode::Full => HashMap::new(),
            };
            Ok::<_, StoreError>((start, pages))
        })
        .await??
    };
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
    let started = Instant::now();
    // Breaker pauses outlive the process.
    let pauses = blocking(&store, |store| store.host_pauses()).await??;
    hops::restore_pauses(&engine.hosts, pauses);
    let internal_ok = hops::internal_ok(&target, fetcher.policy()).await;
    let mut frontier = match &start.resume {
        Some(resume) => Frontier::resume(&target, &resume.entries),
        None => Frontier::new(&target),
    };
    if !internal_ok {
        frontier.guard(fetcher.policy().clone());
    }
    let (writer, status, counts, store_error) = crawl_loop(
        engine,
        &store,
        &target,
        &fetcher,
        internal_ok,
        prev_pages,
        &start,
        policy,
        &mut frontier,
        cancel,
        progress,
    )
    .await?;

    let error = store_error.as_ref().map(|e| e.to_string());
    let record = blocking(&store, move |_| {
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
        })
    })
    .await?;
    if let Some(e) = store_error {
        warn!(error = %e, "Run failed: the store could not be written.");
        return Err(e.into());
    }
    let record = record?;
    if let Some(template) = &target.changes_jsonl {
        let (record2, template) = (record.clone(), template.clone());
        match blocking(&store, move |store| {
            crate::export::write_run_changes(store, &record2, &template)
        })
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

/// Runs blocking store work off the async worker threads.
async fn blocking<T: Send + 'static>(
    store: &Arc<Store>,
    f: impl FnOnce(&Store) -> T + Send + 'static,
) -> Result<T, StoreError> {
    let path = store.path().to_path_buf();
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| StoreError::Io {
            what: "a store task stopped",
            path,
            source: std::io::Error::other(e.to_string()),
        })
}

type LoopEnd = (RunWriter, RunStatus, RunCounts, Option<StoreError>);

#[allow(clippy::too_many_arguments)]
async fn crawl_loop(
    engine: &Engine,
    store: &Arc<Store>,
    target: &Arc<Target>,
    fetcher: &Fetcher,
    internal_ok: bool,
    mut prev_pages: HashMap<String, crate::store::PageRecord>,
    start: &RunStart,
    policy: RunPolicy,
    frontier: &mut Frontier,
    cancel: CancellationToken,
    progress: &dyn ProgressSink,
) -> Result<LoopEnd, RunError> {
    // The writer thread commits batches and reports each commit back.
    let (batch_tx, mut batch_rx) = mpsc::unbounded_channel::<Vec<PageCommit>>();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Result<CommitStats, StoreError>>();
    let mut writer = RunWriter::new(store.clone(), start, policy, target.fingerprint.clone());
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

    let mut counts = RunCounts::default();
    let mut live = Progress::default();
    if let Some(resume) = &start.resume {
        live.committed = resume.counts.pages_committed;
    }
    let mut tasks: JoinSet<Outcome> = JoinSet::new();
    // What each task fetches, so that a task that panics is still accounted for.
    let mut in_flight: HashMap<tokio::task::Id, (Url, u32)> = HashMap::new();
    let hops = hops::Hops {
        fetcher: fetcher.clone(),
        hosts: engine.hosts.clone(),
        target: target.clone(),
        headers: Arc::new(target.headers.clone()),
        credential_hosts: Arc::new(target.start_urls.iter().filter_map(HostKey::of).collect()),
        internal_ok,
    };
    let mut freed = engine.hosts.subscribe();
    let mut pending: Vec<PageCommit> = Vec::new();
    let mut pending_since = Instant::now();
    let mut store_error: Option<StoreError> = None;
    let mut interrupted = false;
    // URLs waiting out their retry backoff, soonest first.
    let mut retry_later: std::collections::BinaryHeap<
        std::cmp::Reverse<(tokio::time::Instant, u64, RetryEntry)>,
    > = Default::default();
    let mut retry_seq = 0u64;
    // 429/503 answers in a row, per host.
    let mut throttles: HashMap<HostKey, u32> = HashMap::new();
    // robots.txt of each host, fetched once per run.
    let mut robots = crate::robots::Robots::default();
    let mut robots_tasks: JoinSet<(HostKey, crate::robots::Answer)> = JoinSet::new();

    loop {
        while tasks.len() < MAX_TASKS {
            let popped = frontier.pop_with(|host| {
                let profile = target.profile_for(host);
                if profile.respect_robots && !robots.ready(host) {
                    // Not even robots.txt is asked of a paused host.
                    if !engine.hosts.is_closed(host) {
                        robots.start(host, target, fetcher, internal_ok, &mut robots_tasks);
                    }
                    return None;
                }
                engine.hosts.try_acquire(host, profile)
            });
            let Some((queued, permit)) = popped else {
                break;
            };
            let decision = if target.profile_for(&queued.host).respect_robots {
                robots.decide(&queued.host, &queued.url)
            } else {
                crate::robots::Decision::Allowed
            };
            if decision != crate::robots::Decision::Allowed {
                drop(permit);
                if pending.is_empty() {
                    pending_since = Instant::now();
                }
                pending.push(not_fetched(decision, &queued, &mut counts, &mut live));
                continue;
            }
            // A page extracted under another configuration is fetched and parsed again.
            let prev = prev_pages
                .remove(queued.url.as_str())
                .filter(|p| p.config.as_deref() == Some(target.fingerprint.as_str()));
            let (hops, target, slots, robot) = (
                hops.clone(),
                target.clone(),
                engine.parse_slots.clone(),
                robots.rules(&queued.host),
            );
            let what = (queued.url.clone(), queued.depth);
            let handle = tasks.spawn(async move {
                let validators = Validators {
                    etag: prev.as_ref().and_then(|p| p.etag.as_deref()),
                    last_modified: prev.as_ref().and_then(|p| p.last_modified.as_deref()),
                };
                let (result, answers) = hops.fetch(&queued, permit, validators, robot).await;
                let result = match result {
                    Ok(response) => process(response, prev.as_ref(), target, slots).await,
                    Err(e) => Err(e),
                };
                Outcome {
                    queued,
                    prev,
                    result,
                    answers,
                }
            });
            in_flight.insert(handle.id(), what);
        }
        live.queued = (frontier.queued() + tasks.len() + retry_later.len()) as u64;
        progress.update(&live);
        if tasks.is_empty() && frontier.queued() == 0 && retry_later.is_empty() {
            break;
        }
        if !pending.is_empty() && pending.len() >= COMMIT_PAGES {
            let _ = batch_tx.send(std::mem::take(&mut pending));
        }
        let retry_at = retry_later.peek().map(|std::cmp::Reverse((at, _, _))| *at);
        let host_ready = [engine.hosts.next_ready(), robots.next_retry()]
            .into_iter()
            .flatten()
            .min();
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
            // A robots.txt task that panicked answers too: its host must not stay waiting.
            Some(joined) = robots_tasks.join_next_with_id() => {
                let Some((host, answer)) = robots.joined(joined) else { continue };
                if let Some(gap) = robots.finish(&host, answer, target.profile_for(&host), &engine.hosts) {
                    info!(%host, ?gap, "robots.txt Crawl-delay applies.");
                }
            }
            Some(joined) = tasks.join_next_with_id() => {
                let outcome = match joined {
                    Ok((id, outcome)) => {
                        in_flight.remove(&id);
                        outcome
                    }
                    Err(e) => {
                        // A bug in a fetch task must cost one URL, not the run.
                        let Some((url, depth)) = in_flight.remove(&e.id()) else { continue };
                        warn!(%url, "A fetch task panicked; the URL is counted as failed.");
                        let Some(host) = HostKey::of(&url) else { continue };
                        Outcome {
                            queued: QueuedUrl {
                                url,
                                host,
                                depth,
                                attempt: 0,
                                requeues: u32::MAX,
                            },
                            prev: None,
                            result: Err(Failure::Panic),
                            answers: hops::Answers::none(),
                        }
                    }
                };
                let host = outcome.queued.host.clone();
                let host_counts = counts.hosts.entry(host.to_string()).or_default();
                for status in &outcome.answers.statuses {
                    host_counts.answers.answer(*status);
                }
                if let Some(pause) = outcome.answers.tripped {
                    let until = now_ms() + pause.as_millis() as u64;
                    let key = host.clone();
                    if let Err(e) = blocking(store, move |s| s.set_host_pause(&key, until)).await.and_then(|r| r) {
                        warn!(%host, error = %e, "Could not keep the host's pause in the store.");
                    }
                }
                let streak = throttles.get(&host).copied().unwrap_or(0);
                match next_step(target.profile_for(&host), &outcome, streak, &mut counts) {
                    Next::RetryAfter(wait) => {
                        counts.retries += 1;
                        counts.hosts.entry(host.to_string()).or_default().retries += 1;
                        let mut q = outcome.queued;
                        q.attempt += 1;
                        retry_seq += 1;
                        retry_later.push(std::cmp::Reverse((tokio::time::Instant::now() + wait, retry_seq, RetryEntry(q))));
                        continue;
                    }
                    Next::Requeue(until) => {
                        counts.requeues += 1;
                        counts.hosts.entry(host.to_string()).or_default().requeues += 1;
                        *throttles.entry(host.clone()).or_default() += 1;
                        engine.hosts.block(&host, until);
                        debug!(%host, wait = ?until.saturating_duration_since(tokio::time::Instant::now()), "Host backs off.");
                        let mut q = outcome.queued;
                        q.requeues += 1;
                        frontier.requeue(q);
                        continue;
                    }
                    Next::Keep => {
                        throttles.remove(&host);
                    }
                }
                let page = record_outcome(target, frontier, &mut counts, &mut live, outcome);
                if pending.is_empty() {
                    pending_since = Instant::now();
                }
                pending.push(page);
                if pending.len() >= COMMIT_PAGES {
                    let _ = batch_tx.send(std::mem::take(&mut pending));
                }
            }
            _ = tokio::time::sleep_until(flush_at), if !pending.is_empty() => {
                let _ = batch_tx.send(std::mem::take(&mut pending));
            }
            _ = freed.changed() => {}
            _ = sleep_until_opt(retry_at), if retry_at.is_some() => {}
            _ = sleep_until_opt(host_ready), if host_ready.is_some() => {}
        }
        // Retries whose backoff is over go back to the frontier.
        let now = tokio::time::Instant::now();
        while retry_later
            .peek()
            .is_some_and(|std::cmp::Reverse((at, _, _))| *at <= now)
        {
            if let Some(std::cmp::Reverse((_, _, RetryEntry(q)))) = retry_later.pop() {
                frontier.requeue(q);
            }
        }
    }

    // Whatever was fetched is committed, also when the run was interrupted.
    // Pages still in flight are not: they stay queued in the stored frontier.
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
    hops::note_limits(&mut counts, &engine.hosts);
    counts.over_budget = frontier.over_budget();
    let status = match (&store_error, interrupted) {
        (Some(_), _) => RunStatus::Failed,
        (None, true) => RunStatus::Interrupted,
        (None, false) => RunStatus::Completed,
    };
    Ok((writer, status, counts, store_error))
}
