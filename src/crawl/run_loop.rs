//! The coordinator of one run: a struct that owns the run's frontier,
//! robots.txt state, retry queue, commit buffer and counters, and one method
//! per event — a fetch task answered, a robots.txt task answered, the writer
//! committed, a timer fired. [`RunLoop::run`] only waits for the next event
//! and dispatches it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use url::Url;

use super::commits::Commits;
use super::hops::{self, Hops};
use super::outcome::{
    next_step, not_fetched, note_commit, process, sleep_until_opt, Next, Outcome, PageError,
    RetryEntry,
};
use super::prefetch::{self, Prefetch};
use super::record::record_outcome;
use super::share::{Claims, Part};
use super::{Engine, Progress, ProgressSink, Waiting, COMMIT_INTERVAL};
use crate::config::Target;
use crate::fetcher::{Fetcher, Validators};
use crate::frontier::{Frontier, QueuedUrl};
use crate::ids::HostKey;
use crate::limiter::HostPermit;
use crate::robots::{self, Decision, Robots};
use crate::store::{
    now_ms, CommitStats, PageCommit, RunCounts, RunPolicy, RunStart, RunStatus, RunWriter, Store,
    StoreError,
};

/// Fetch tasks of one run in flight, at most, whatever the host limits.
const MAX_TASKS: usize = 512;

/// How a run loop ended: the writer (to write the run's last record), the
/// run's status and figures, and the store error that ended it, if any.
pub(super) type LoopEnd = (RunWriter, RunStatus, RunCounts, Option<StoreError>);

/// What the loop waits for; each is handled by one method.
// An event is moved once, from the select into its handler: boxing the
// large outcome would cost an allocation per page for nothing.
#[allow(clippy::large_enum_variant)]
enum Event {
    Cancelled,
    Committed(Result<CommitStats, StoreError>),
    Robots(Result<(tokio::task::Id, (HostKey, robots::Answer)), JoinError>),
    Fetched(Result<(tokio::task::Id, Outcome), JoinError>),
    /// Page records were read ahead of their fetches.
    Prefetched(prefetch::Batch),
    /// A claim on a shared run's frontier answered.
    Claimed(super::share::Claimed),
    /// The commit buffer waited long enough.
    FlushDue,
    /// A host slot was freed, a retry or a host became due: look again.
    Woken,
}

/// One run's coordinator (see the module docs).
pub(super) struct RunLoop<'a> {
    engine: &'a Engine,
    target: &'a Arc<Target>,
    fetcher: &'a Fetcher,
    store: &'a Arc<Store>,
    internal_ok: bool,
    hops: Hops,
    frontier: &'a mut Frontier,
    /// Page records of the last runs, read ahead of the fetch of their URL.
    prefetch: Prefetch,
    robots: Robots,
    robots_tasks: JoinSet<(HostKey, robots::Answer)>,
    tasks: JoinSet<Outcome>,
    /// What each task fetches, so that a task that panics is still accounted for.
    in_flight: HashMap<tokio::task::Id, (Url, u32)>,
    /// URLs waiting out their retry backoff, soonest first.
    retry_later: BinaryHeap<Reverse<(tokio::time::Instant, u64, RetryEntry)>>,
    retry_seq: u64,
    /// 429/503 answers in a row, per host.
    throttles: HashMap<HostKey, u32>,
    commits: Commits,
    done_rx: mpsc::UnboundedReceiver<Result<CommitStats, StoreError>>,
    writer: JoinHandle<RunWriter>,
    freed: watch::Receiver<u64>,
    counts: RunCounts,
    live: Progress,
    progress: &'a dyn ProgressSink,
    store_error: Option<StoreError>,
    /// Queued pages their sitemap says are unchanged: recorded, not fetched.
    sitemap_unchanged: HashMap<String, crate::store::PageRecord>,
    /// Whether the run resumes an interrupted one (whose part counted the
    /// sitemaps already).
    resumed: bool,
    /// A shared run's claims on the database's frontier.
    claims: Option<Claims>,
}

/// What a run loop needs from the run that starts it.
pub(super) struct Setup<'a> {
    pub engine: &'a Engine,
    pub store: &'a Arc<Store>,
    pub target: &'a Arc<Target>,
    pub fetcher: &'a Fetcher,
    pub internal_ok: bool,
    pub start: &'a RunStart,
    pub policy: RunPolicy,
    pub frontier: &'a mut Frontier,
    pub progress: &'a dyn ProgressSink,
    /// A shared run: its frontier is the database's.
    pub share: Option<Part>,
}

impl<'a> RunLoop<'a> {
    /// A loop over `setup.frontier`, with its writer thread started.
    pub(super) fn new(setup: Setup<'a>) -> Self {
        let Setup {
            engine,
            store,
            target,
            fetcher,
            internal_ok,
            start,
            policy,
            frontier,
            progress,
            share,
        } = setup;
        // The writer thread commits batches and reports each commit back.
        let (tx, mut batch_rx) = mpsc::unbounded_channel::<Vec<PageCommit>>();
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let mut writer = RunWriter::new(store.clone(), start, policy, target.fingerprint.clone());
        if let Some(part) = share {
            writer = writer.shared(part.helper);
        }
        #[allow(
            clippy::disallowed_methods,
            reason = "the run writer is a thread of its own: its commits run in order; a panic is mapped by Store::panicked"
        )]
        let writer = tokio::task::spawn_blocking(move || {
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
        let mut live = Progress::default();
        if let Some(resume) = &start.resume {
            live.committed = resume.counts.pages_committed;
        }
        let hops = Hops {
            fetcher: fetcher.clone(),
            hosts: engine.hosts.clone(),
            target: target.clone(),
            headers: Arc::new(target.headers.clone()),
            credential_hosts: Arc::new(target.start_urls.iter().filter_map(HostKey::of).collect()),
            internal_ok,
        };
        RunLoop {
            engine,
            target,
            fetcher,
            store,
            internal_ok,
            hops,
            frontier,
            prefetch: Prefetch::new(
                start.run.mode == crate::store::RunMode::Incremental,
                target.id.clone(),
            ),
            robots: Robots::default(),
            robots_tasks: JoinSet::new(),
            tasks: JoinSet::new(),
            in_flight: HashMap::new(),
            retry_later: BinaryHeap::new(),
            retry_seq: 0,
            throttles: HashMap::new(),
            commits: Commits::new(tx),
            done_rx,
            writer,
            freed: engine.hosts.subscribe(),
            counts: RunCounts::default(),
            live,
            progress,
            store_error: None,
            sitemap_unchanged: HashMap::new(),
            resumed: start.resume.is_some(),
            claims: share.map(Claims::new),
        }
    }

    /// Runs until the frontier is done, the store fails or `cancel` fires;
    /// then commits what was fetched and hands back the writer.
    pub(super) async fn run(mut self, cancel: CancellationToken) -> Result<LoopEnd, StoreError> {
        let mut interrupted = false;
        // A node working on another's run leaves the sitemaps to the owner.
        if !self.claims.as_ref().is_some_and(|c| c.part.helper) {
            self.frontier.collect();
            self.read_sitemaps(&cancel).await;
            // On a shared run, the pages the sitemaps list go to the
            // database's frontier (the pages' commits carry the links).
            let found = self.frontier.collected();
            if let (Some(claims), false) = (&self.claims, found.is_empty()) {
                let crawl = claims.part.crawl;
                let admitted = self.store.call(move |s| s.admit_shared(crawl, &found));
                if let Err(e) = admitted.await {
                    self.store_error = Some(e);
                    return self.finish(false).await;
                }
            }
        }
        loop {
            self.dispatch();
            if let Some(claims) = &mut self.claims {
                // Nothing left here: what was fetched goes to the database
                // now, with the links it found, for the next claim.
                if self.tasks.is_empty() && self.frontier.queued() == 0 {
                    self.commits.send();
                }
                claims.claim_if_low(self.frontier, self.store);
            }
            self.prefetch.read_ahead(self.frontier, self.store);
            self.live.queued =
                (self.frontier.queued() + self.tasks.len() + self.retry_later.len()) as u64;
            self.progress.update(&self.live);
            if self.tasks.is_empty()
                && self.frontier.queued() == 0
                && self.retry_later.is_empty()
                && self.shared_drained()
            {
                break;
            }
            match self.next_event(&cancel).await {
                Event::Cancelled => {
                    interrupted = true;
                    break;
                }
                Event::Committed(Ok(stats)) => {
                    self.commits.answered();
                    note_commit(&mut self.live, stats);
                    if let Some(claims) = &mut self.claims {
                        claims.committed();
                    }
                }
                Event::Committed(Err(e)) => {
                    self.store_error = Some(e);
                    break;
                }
                Event::Robots(joined) => self.on_robots(joined),
                Event::Fetched(joined) => self.on_fetched(joined).await,
                Event::Prefetched(batch) => {
                    if let Err(e) = self.prefetch.on_read(batch) {
                        self.store_error = Some(e);
                        break;
                    }
                }
                Event::Claimed(claimed) => {
                    if let Some(claims) = &mut self.claims {
                        if let Err(e) =
                            claims.on_claimed(self.target, self.frontier, claimed, self.store)
                        {
                            self.store_error = Some(e);
                            break;
                        }
                    }
                }
                Event::FlushDue => self.commits.send(),
                Event::Woken => {}
            }
            self.on_timer();
        }
        self.finish(interrupted).await
    }

    /// Whether a shared run has no URL left anywhere (a run of its own: true).
    /// This node's pages must be committed first: they may add links.
    fn shared_drained(&self) -> bool {
        self.claims.as_ref().is_none_or(|c| {
            c.drained() && self.commits.pending.is_empty() && self.commits.in_writer == 0
        })
    }

    /// Reads the target's sitemaps (if it has any) before the first fetch:
    /// their pages join the start URLs in the frontier.
    async fn read_sitemaps(&mut self, cancel: &CancellationToken) {
        let reading = super::sitemaps::Reading {
            engine: self.engine,
            target: self.target,
            fetcher: self.fetcher,
            store: self.store,
            internal_ok: self.internal_ok,
            incremental: self.prefetch.enabled(),
            robots: &mut self.robots,
            robots_tasks: &mut self.robots_tasks,
            frontier: self.frontier,
            counts: &mut self.counts,
            live: &mut self.live,
        };
        let found = super::sitemaps::read(reading, cancel).await;
        for page in found.commits {
            self.commits.push(page);
        }
        self.sitemap_unchanged = found.queued;
        if self.resumed {
            // The sitemaps are read again, but the chain's totals add its
            // parts: the first part counted them (and gave their warnings).
            self.counts.sitemaps_read = 0;
            self.counts.sitemap_urls = 0;
            self.counts.sitemap_warnings.clear();
        }
    }

    /// Waits for the next event. Cancellation and the writer's answers come
    /// first, so that a failed store stops the run before more is fetched.
    async fn next_event(&mut self, cancel: &CancellationToken) -> Event {
        let retry_at = self.retry_later.peek().map(|Reverse((at, _, _))| *at);
        let host_ready = [self.engine.hosts.next_ready(), self.robots.next_retry()]
            .into_iter()
            .flatten()
            .min();
        let flush_at = tokio::time::Instant::from_std(self.commits.since + COMMIT_INTERVAL);
        let flush_due = !self.commits.pending.is_empty();
        let claim_at = self.claims.as_ref().and_then(Claims::wake_at);
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Event::Cancelled,
            Some(done) = self.done_rx.recv() => Event::Committed(done),
            // A robots.txt task that panicked answers too: its host must not stay waiting.
            Some(joined) = self.robots_tasks.join_next_with_id() => Event::Robots(joined),
            Some(joined) = self.tasks.join_next_with_id() => Event::Fetched(joined),
            Some(batch) = self.prefetch.joined() => Event::Prefetched(batch),
            Some(claimed) = claim_joined(&mut self.claims) => Event::Claimed(claimed),
            _ = tokio::time::sleep_until(flush_at), if flush_due => Event::FlushDue,
            _ = self.freed.changed() => Event::Woken,
            _ = sleep_until_opt(retry_at), if retry_at.is_some() => Event::Woken,
            _ = sleep_until_opt(claim_at), if claim_at.is_some() => Event::Woken,
            _ = sleep_until_opt(host_ready), if host_ready.is_some() => Event::Woken,
        }
    }

    /// Starts fetch tasks for every URL whose host has a free slot (and whose
    /// robots.txt is known), up to [`MAX_TASKS`], unless the writer is behind.
    fn dispatch(&mut self) {
        while self.tasks.len() < MAX_TASKS && !self.commits.behind() {
            let (target, engine, fetcher) = (self.target, self.engine, self.fetcher);
            let (robots, robots_tasks, internal_ok) =
                (&mut self.robots, &mut self.robots_tasks, self.internal_ok);
            let prefetch = &mut self.prefetch;
            let popped = self.frontier.pop_with(|host, next| {
                if !prefetch.ready(next.url.as_str()) {
                    return None;
                }
                let profile = target.profile_for(host);
                if profile.respect_robots && !robots.ready(host) {
                    // Not even robots.txt is asked of a paused host.
                    if !engine.hosts.is_closed(host) {
                        robots.start(host, target, fetcher, internal_ok, robots_tasks);
                    }
                    return None;
                }
                engine.hosts.try_acquire(host, profile)
            });
            let Some((queued, permit)) = popped else {
                break;
            };
            let decision = if target.profile_for(&queued.host).respect_robots {
                self.robots.decide(&queued.host, &queued.url)
            } else {
                Decision::Allowed
            };
            // robots.txt first: a page it now disallows is not kept as
            // unchanged by its sitemap (nor are its stored links followed).
            let unchanged = self.sitemap_unchanged.remove(queued.url.as_str());
            if let (Decision::Allowed, Some(prev)) = (decision, unchanged) {
                drop(permit);
                self.prefetch.take(queued.url.as_str());
                let page = super::sitemaps::keep(
                    self.frontier,
                    self.target,
                    &mut self.counts,
                    &mut self.live,
                    &queued.url,
                    queued.depth,
                    prev,
                );
                self.commits.push(page);
            } else if decision == Decision::Allowed {
                self.spawn_fetch(queued, permit);
            } else {
                drop(permit);
                self.prefetch.take(queued.url.as_str());
                let page = not_fetched(decision, &queued, &mut self.counts, &mut self.live);
                self.commits.push(page);
            }
        }
    }

    fn spawn_fetch(&mut self, queued: QueuedUrl, permit: HostPermit) {
        // A page extracted under another configuration is fetched and parsed again.
        let prev = self
            .prefetch
            .take(queued.url.as_str())
            .filter(|p| p.config.as_deref() == Some(self.target.fingerprint.as_str()));
        let (hops, target, slots, robot) = (
            self.hops.clone(),
            self.target.clone(),
            self.engine.parse_slots.clone(),
            self.robots.rules(&queued.host),
        );
        let what = (queued.url.clone(), queued.depth);
        let handle = self.tasks.spawn(async move {
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
        self.in_flight.insert(handle.id(), what);
    }

    /// A robots.txt task answered (or panicked).
    fn on_robots(
        &mut self,
        joined: Result<(tokio::task::Id, (HostKey, robots::Answer)), JoinError>,
    ) {
        let Some((host, answer)) = self.robots.joined(joined) else {
            return;
        };
        let profile = self.target.profile_for(&host);
        if let Some(gap) = self
            .robots
            .finish(&host, answer, profile, &self.engine.hosts)
        {
            info!(%host, ?gap, "robots.txt Crawl-delay applies.");
        }
    }

    /// A fetch task answered (or panicked): retry, requeue or record it.
    async fn on_fetched(&mut self, joined: Result<(tokio::task::Id, Outcome), JoinError>) {
        let Some(outcome) = self.outcome_of(joined) else {
            return;
        };
        let host = outcome.queued.host.clone();
        let host_counts = self.counts.hosts.entry(host.to_string()).or_default();
        for status in &outcome.answers.statuses {
            host_counts.answers.answer(*status);
        }
        if let Some(pause) = outcome.answers.tripped {
            self.keep_pause(&host, pause).await;
        }
        let streak = self.throttles.get(&host).copied().unwrap_or(0);
        let profile = self.target.profile_for(&host);
        match next_step(profile, &outcome, streak, &mut self.counts) {
            Next::RetryAfter(wait) => {
                self.counts.retries += 1;
                self.counts
                    .hosts
                    .entry(host.to_string())
                    .or_default()
                    .retries += 1;
                let mut q = outcome.queued;
                q.attempt += 1;
                self.retry_seq += 1;
                let at = tokio::time::Instant::now() + wait;
                self.retry_later
                    .push(Reverse((at, self.retry_seq, RetryEntry(q))));
            }
            Next::Requeue(backoff) => {
                self.counts.requeues += 1;
                self.counts
                    .hosts
                    .entry(host.to_string())
                    .or_default()
                    .requeues += 1;
                *self.throttles.entry(host.clone()).or_default() += 1;
                match backoff.asked.filter(|_| backoff.cut) {
                    Some(asked) => self.engine.hosts.block_cut(&host, backoff.until, asked),
                    None => self.engine.hosts.block(&host, backoff.until),
                }
                let wait = backoff
                    .until
                    .saturating_duration_since(tokio::time::Instant::now());
                debug!(%host, ?wait, "Host backs off.");
                self.live.waiting = Some(Waiting {
                    host: host.to_string(),
                    until: std::time::SystemTime::now() + wait,
                    asked: backoff.asked,
                    cut: backoff.cut,
                });
                let mut q = outcome.queued;
                q.requeues += 1;
                self.frontier.requeue(q);
            }
            Next::Keep => {
                self.throttles.remove(&host);
                let page = record_outcome(
                    self.target,
                    self.frontier,
                    &mut self.counts,
                    &mut self.live,
                    outcome,
                );
                if let Some(claims) = &mut self.claims {
                    claims.propose(&page.admitted);
                }
                self.commits.push(page);
            }
        }
    }

    /// The outcome of a fetch task; a task that panicked costs its URL, not the run.
    fn outcome_of(
        &mut self,
        joined: Result<(tokio::task::Id, Outcome), JoinError>,
    ) -> Option<Outcome> {
        match joined {
            Ok((id, outcome)) => {
                self.in_flight.remove(&id);
                Some(outcome)
            }
            Err(e) => {
                let (url, depth) = self.in_flight.remove(&e.id())?;
                warn!(%url, "A fetch task panicked; the URL is counted as failed.");
                let host = HostKey::of(&url)?;
                Some(Outcome {
                    queued: QueuedUrl {
                        url,
                        host,
                        depth,
                        attempt: 0,
                        requeues: u32::MAX,
                    },
                    prev: None,
                    result: Err(PageError::Panic),
                    answers: hops::Answers::none(),
                })
            }
        }
    }

    /// Keeps a breaker pause in the store, so that it outlives the process.
    async fn keep_pause(&self, host: &HostKey, pause: std::time::Duration) {
        let until = now_ms() + pause.as_millis() as u64;
        let key = host.clone();
        let kept = self.store.call(move |s| s.set_host_pause(&key, until));
        if let Err(e) = kept.await {
            warn!(%host, error = %e, "Could not keep the host's pause in the store.");
        }
    }

    /// Retries whose backoff is over go back to the frontier.
    fn on_timer(&mut self) {
        let now = tokio::time::Instant::now();
        while self
            .retry_later
            .peek()
            .is_some_and(|Reverse((at, _, _))| *at <= now)
        {
            if let Some(Reverse((_, _, RetryEntry(q)))) = self.retry_later.pop() {
                self.frontier.requeue(q);
            }
        }
    }

    /// Commits whatever was fetched, also when the run was interrupted. Pages
    /// still in flight are not: they stay queued in the stored frontier.
    async fn finish(mut self, interrupted: bool) -> Result<LoopEnd, StoreError> {
        self.tasks.abort_all();
        if self.store_error.is_none() {
            self.commits.send();
        }
        let RunLoop {
            commits,
            writer,
            mut done_rx,
            mut live,
            mut counts,
            mut store_error,
            engine,
            frontier,
            store,
            ..
        } = self;
        drop(commits);
        let writer = writer.await.map_err(|e| store.panicked(e))?;
        while let Ok(done) = done_rx.try_recv() {
            match done {
                Ok(stats) => note_commit(&mut live, stats),
                Err(e) => store_error = store_error.or(Some(e)),
            }
        }
        hops::note_limits(&mut counts, &engine.hosts);
        counts.over_budget = frontier.over_budget();
        counts.hosts_dropped = frontier.hosts_dropped();
        let status = match (&store_error, interrupted) {
            (Some(_), _) => RunStatus::Failed,
            (None, true) => RunStatus::Interrupted,
            (None, false) => RunStatus::Completed,
        };
        Ok((writer, status, counts, store_error))
    }
}

/// The answer of a shared run's claim under way, if any.
async fn claim_joined(claims: &mut Option<Claims>) -> Option<super::share::Claimed> {
    claims.as_mut()?.joined().await
}
