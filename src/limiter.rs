//! Per-host politeness, shared by every run of one engine (so by every
//! target of the daemon): at most `concurrency` requests in flight per host,
//! each slot held for the profile's `delay` after its response; host-wide
//! backoff windows after 429/503; AIMD concurrency; the 429/403 breaker.
//!
//! The order every request follows is fixed here: host slot → the host's
//! pause, backoff window and Crawl-delay gap → request → slot held for the
//! delay after the response.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::{DelayRange, Profile};
use crate::ids::{HostKey, ProfileName};
use crate::retry::{self, Signal};
use crate::store::AnswerCounts;

/// The limits that apply to one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostLimits {
    pub concurrency: u32,
    pub delay: DelayRange,
    pub adaptive: bool,
    /// 429/403 answers in a row that pause the host (0: never).
    pub pause_after: u32,
    pub pause_for: Duration,
}

impl HostLimits {
    pub fn of(profile: &Profile) -> Self {
        HostLimits {
            concurrency: profile.concurrency.max(1),
            delay: profile.delay,
            adaptive: profile.adaptive,
            pause_after: profile.pause_after,
            pause_for: profile.pause_for,
        }
    }

    /// The stricter of two profiles' limits, each limit on its own: the
    /// lower concurrency, the larger bound of each end of the delay range,
    /// the earlier breaker and the longer pause.
    pub fn stricter(self, o: HostLimits) -> HostLimits {
        let pause_after = match (self.pause_after, o.pause_after) {
            (0, n) | (n, 0) => n,
            (a, b) => a.min(b),
        };
        HostLimits {
            concurrency: self.concurrency.min(o.concurrency),
            delay: DelayRange {
                min: self.delay.min.max(o.delay.min),
                max: self.delay.max.max(o.delay.max),
            },
            adaptive: self.adaptive || o.adaptive,
            pause_after,
            pause_for: self.pause_for.max(o.pause_for),
        }
    }
}

/// One host as `crawld status` and run summaries show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostSnapshot {
    pub host: HostKey,
    pub in_flight: u32,
    pub concurrency: u32,
    /// AIMD's current limit (= `concurrency` when not adaptive or recovered).
    pub effective: u32,
    pub delay_ms: (u64, u64),
    /// Breaker pause end, milliseconds since the Unix epoch.
    pub paused_until_ms: Option<u64>,
    /// 429/503 backoff end, milliseconds since the Unix epoch.
    pub backoff_until_ms: Option<u64>,
    /// What the host's `Retry-After` asked for (ms), when `retry_after_max`
    /// cut it to the backoff above.
    pub backoff_asked_ms: Option<u64>,
    /// Answers since the engine started.
    pub counters: AnswerCounts,
}

struct Host {
    /// Set by the first request; made stricter by each further profile.
    limits: Option<HostLimits>,
    /// The limits of each profile (and version of it) that used the host lately.
    profiles: Vec<ProfileUse>,
    in_flight: u32,
    effective: u32,
    /// Successes since AIMD last changed `effective`.
    successes: u32,
    /// 429/403 answers in a row.
    refusals: u32,
    /// No request starts before this: a 429/503 backoff, a robots.txt pause.
    window: Option<Instant>,
    /// What the `Retry-After` that set the window asked for, when
    /// `retry_after_max` cut it (shown in status).
    window_cut: Option<Duration>,
    /// The breaker's pause.
    paused_until: Option<Instant>,
    /// Minimum gap between request starts (robots.txt Crawl-delay).
    gap: Duration,
    last_start: Option<Instant>,
    counters: AnswerCounts,
}

/// A profile's limits as one host saw them, and when.
struct ProfileUse {
    name: ProfileName,
    limits: HostLimits,
    last_used: Instant,
}

/// A profile unused this long on a host no longer shapes its limits: the
/// run that used it ended, or a reload changed or removed it.
const PROFILE_IDLE: Duration = Duration::from_secs(60);

impl Host {
    /// Merges the limits of `profile` into the host's: the stricter of
    /// each, over every profile (and version of one) used lately.
    fn note_profile(&mut self, host: &HostKey, profile: &Profile, now: Instant) {
        let mine = HostLimits::of(profile);
        let mut changed = false;
        match self
            .profiles
            .iter_mut()
            .find(|u| u.name == profile.name && u.limits == mine)
        {
            Some(u) => u.last_used = now,
            None => {
                if let Some(first) = self.profiles.iter().find(|u| u.name != profile.name) {
                    info!(%host, first = %first.name, other = %profile.name,
                        "Two profiles crawl one host: each limit takes the stricter value.");
                }
                self.profiles.push(ProfileUse {
                    name: profile.name.clone(),
                    limits: mine,
                    last_used: now,
                });
                changed = true;
            }
        }
        if self.profiles.len() > 1 {
            let before = self.profiles.len();
            self.profiles
                .retain(|u| now.duration_since(u.last_used) < PROFILE_IDLE);
            changed |= self.profiles.len() != before;
        }
        if !changed {
            return;
        }
        let limits = self
            .profiles
            .iter()
            .map(|u| u.limits)
            .reduce(HostLimits::stricter)
            .unwrap_or(mine);
        let was = self.limits.map_or(u32::MAX, |l| l.concurrency);
        // AIMD keeps its reduction; a host at full speed follows the new limit.
        self.effective = if self.effective >= was {
            limits.concurrency
        } else {
            self.effective.min(limits.concurrency)
        };
        self.limits = Some(limits);
    }

    fn new() -> Self {
        Host {
            limits: None,
            profiles: Vec::new(),
            in_flight: 0,
            effective: u32::MAX,
            successes: 0,
            refusals: 0,
            window: None,
            window_cut: None,
            paused_until: None,
            gap: Duration::ZERO,
            last_start: None,
            counters: AnswerCounts::default(),
        }
    }

    fn closed_until(&self) -> Option<Instant> {
        let gap = self
            .last_start
            .map(|t| t + self.gap)
            .filter(|_| !self.gap.is_zero());
        [self.window, self.paused_until, gap]
            .into_iter()
            .flatten()
            .max()
    }
}

/// Hosts idle this long are forgotten (their counters and AIMD state too),
/// so that a daemon that has met many hosts does not keep them all.
pub const IDLE_HOST: Duration = Duration::from_secs(3600);
/// Acquisitions between two sweeps for idle hosts.
const SWEEP_EVERY: u64 = 4096;

struct Inner {
    hosts: Mutex<HashMap<HostKey, Host>>,
    acquisitions: std::sync::atomic::AtomicU64,
    /// Bumped whenever a slot is freed, so dispatchers waiting for one wake up.
    freed: watch::Sender<u64>,
    /// In a cluster, the hosts this process may fetch from (see [`Gate`]).
    gate: Mutex<Option<Gate>>,
}

/// In a cluster, one node at a time fetches from a host, so that the
/// profile's limits hold cluster-wide: a host is open here only while this
/// node leases it. The leases are kept in the store by a task of the crawl
/// (`crawl::host_leases`), from what the dispatchers asked for.
#[derive(Default)]
struct Gate {
    held: std::collections::HashSet<HostKey>,
    /// Hosts a dispatcher asked for, and when it last did.
    asked: HashMap<HostKey, Instant>,
    /// Held hosts given up for another node's turn: closed here, released
    /// once nothing is in flight.
    yielding: std::collections::HashSet<HostKey>,
    /// Hosts given up for another node's turn, not asked for again before then.
    turn_ends: HashMap<HostKey, Instant>,
    /// Held hosts another node waits for: given up as soon as they idle.
    contested: std::collections::HashSet<HostKey>,
}

/// A held host another node waits for is given up after this without use.
const CONTESTED_IDLE: Duration = Duration::from_millis(300);

/// How long a host asked for and not held stays wanted without a new ask.
const ASK_KEPT: Duration = Duration::from_secs(5);

/// What the host lease keeper does in one round (see [`HostPool::lease_round`]).
#[derive(Debug, Default)]
pub struct LeaseRound {
    /// Asked for, not held.
    pub want: Vec<HostKey>,
    /// Held and still used.
    pub keep: Vec<HostKey>,
    /// Held, idle: given up, with the host's backoff end (ms since the
    /// epoch) for the next node.
    pub release: Vec<(HostKey, Option<u64>)>,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<HostKey, Host>> {
        self.hosts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn gate(&self) -> std::sync::MutexGuard<'_, Option<Gate>> {
        self.gate.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The registry of hosts of one engine. Not a global: two engines (two tests
/// in one process) never share budgets.
#[derive(Clone)]
pub struct HostPool {
    inner: Arc<Inner>,
}

impl Default for HostPool {
    fn default() -> Self {
        HostPool {
            inner: Arc::new(Inner {
                hosts: Mutex::new(HashMap::new()),
                acquisitions: std::sync::atomic::AtomicU64::new(0),
                freed: watch::channel(0).0,
                gate: Mutex::new(None),
            }),
        }
    }
}

impl HostPool {
    /// Takes a slot for `host` if one is free and the host is open. When a
    /// second profile uses a host, the host keeps the stricter of each limit.
    pub fn try_acquire(&self, host: &HostKey, profile: &Profile) -> Option<HostPermit> {
        self.attempt(host, profile).ok()
    }

    /// A slot, or why not: `Some(t)` when the host is closed until `t`,
    /// `None` when its slots are taken. Both decided under one lock.
    fn attempt(&self, host: &HostKey, profile: &Profile) -> Result<HostPermit, Option<Instant>> {
        let now = Instant::now();
        if let Some(gate) = self.inner.gate().as_mut() {
            match gate.asked.get_mut(host) {
                Some(at) => *at = now,
                None => {
                    gate.asked.insert(host.clone(), now);
                }
            }
            if !gate.held.contains(host) || gate.yielding.contains(host) {
                // The lease keeper asks for it; `freed` wakes the dispatchers.
                return Err(None);
            }
        }
        let mut hosts = self.inner.lock();
        let n = self
            .inner
            .acquisitions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n % SWEEP_EVERY == SWEEP_EVERY - 1 {
            sweep(&mut hosts, now);
        }
        // Looked up before inserting, so that the common case clones no key.
        if !hosts.contains_key(host) {
            hosts.insert(host.clone(), Host::new());
        }
        let Some(h) = hosts.get_mut(host) else {
            return Err(None);
        };
        h.note_profile(host, profile, now);
        let Some(limits) = h.limits else {
            return Err(None);
        };
        if h.in_flight >= h.effective.min(limits.concurrency) {
            return Err(None);
        }
        if let Some(t) = h.closed_until().filter(|&t| now < t) {
            return Err(Some(t));
        }
        h.in_flight += 1;
        h.last_start = Some(now);
        Ok(HostPermit {
            pool: Some(self.inner.clone()),
            host: host.clone(),
            delay: limits.delay,
        })
    }

    /// Waits for a slot of `host` (a redirect hop inside a fetch task).
    pub async fn acquire(&self, host: &HostKey, profile: &Profile) -> HostPermit {
        let mut freed = self.subscribe();
        loop {
            let opens = match self.attempt(host, profile) {
                Ok(permit) => return permit,
                Err(opens) => opens,
            };
            tokio::select! {
                _ = freed.changed() => {}
                _ = async {
                    match opens {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
        }
    }

    /// Whether `host` is paused or backing off now.
    pub fn is_closed(&self, host: &HostKey) -> bool {
        self.closed_until(host).is_some()
    }

    /// When a paused or backing-off host opens again.
    pub fn closed_until(&self, host: &HostKey) -> Option<Instant> {
        let now = Instant::now();
        self.inner
            .lock()
            .get(host)
            .and_then(|h| [h.window, h.paused_until].into_iter().flatten().max())
            .filter(|&t| now < t)
    }

    /// Keeps every request to `host` from starting before `until` (requests
    /// already on the wire complete).
    pub fn block(&self, host: &HostKey, until: Instant) {
        let mut hosts = self.inner.lock();
        let h = hosts.entry(host.clone()).or_insert_with(Host::new);
        if h.window.is_none_or(|w| until > w) {
            h.window = Some(until);
            h.window_cut = None;
        }
    }

    /// [`HostPool::block`] for a `Retry-After` that `retry_after_max` cut:
    /// status shows what the host asked for.
    pub fn block_cut(&self, host: &HostKey, until: Instant, asked: Duration) {
        self.block(host, until);
        if let Some(h) = self.inner.lock().get_mut(host) {
            h.window_cut = Some(asked);
        }
    }

    /// Pauses `host` until `until`: the breaker, or a pause kept in the store.
    pub fn pause(&self, host: &HostKey, until: Instant) {
        let mut hosts = self.inner.lock();
        let h = hosts.entry(host.clone()).or_insert_with(Host::new);
        h.paused_until = Some(h.paused_until.map_or(until, |p| p.max(until)));
    }

    /// Feeds an answer (`None`: a transport error, which says nothing about
    /// the host's mood) to AIMD and the breaker. Returns the pause when this
    /// answer trips the breaker.
    pub fn answered(&self, host: &HostKey, status: Option<u16>) -> Option<Duration> {
        let mut hosts = self.inner.lock();
        let h = hosts.get_mut(host)?;
        let limits = h.limits?;
        h.counters.answer(status);
        // What a status means for the host lives in the retry table.
        let signal = retry::for_status(status?).signal;
        if matches!(
            signal,
            Signal::Throttle | Signal::Refusal { throttle: true }
        ) {
            if limits.adaptive {
                h.effective = (h.effective.min(limits.concurrency) / 2).max(1);
            }
            h.successes = 0;
        } else if signal == Signal::Success {
            // Additive increase: one more slot after a window's worth of successes.
            h.successes += 1;
            if h.effective < limits.concurrency && h.successes >= h.effective {
                h.effective += 1;
                h.successes = 0;
                self.inner.freed.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
        // Answers to requests sent before a pause do not count towards the next.
        let paused = h.paused_until.is_some_and(|t| t > Instant::now());
        if matches!(signal, Signal::Refusal { .. }) && !paused {
            h.refusals += 1;
            if limits.pause_after > 0 && h.refusals >= limits.pause_after {
                h.refusals = 0;
                let until = Instant::now() + limits.pause_for;
                h.paused_until = Some(h.paused_until.map_or(until, |p| p.max(until)));
                warn!(%host, answers = limits.pause_after, pause = %humantime::format_duration(limits.pause_for),
                    "Host paused: too many 429/403 answers in a row.");
                return Some(limits.pause_for);
            }
        } else {
            h.refusals = 0;
        }
        None
    }

    /// Sets the minimum gap between request starts of a host.
    pub fn set_gap(&self, host: &HostKey, gap: Duration) {
        let mut hosts = self.inner.lock();
        let h = hosts.entry(host.clone()).or_insert_with(Host::new);
        h.gap = h.gap.max(gap);
    }

    /// The earliest future moment a closed host opens again.
    pub fn next_ready(&self) -> Option<Instant> {
        let now = Instant::now();
        let hosts = self.inner.lock();
        hosts
            .values()
            .filter_map(Host::closed_until)
            .filter(|&t| t > now)
            .min()
    }

    /// Opens a host only while this process leases it (a node of a
    /// cluster); returns false when the pool was gated already.
    pub fn gate(&self) -> bool {
        let mut gate = self.inner.gate();
        if gate.is_some() {
            return false;
        }
        *gate = Some(Gate::default());
        true
    }

    /// The next round of the host lease keeper: hosts asked for within
    /// `idle` and not held are wanted; held hosts with nothing in flight
    /// and not asked for within `idle` are given up (closed here at once).
    pub fn lease_round(&self, idle: Duration) -> LeaseRound {
        let now = Instant::now();
        let wall = crate::store::now_ms();
        let mut round = LeaseRound::default();
        let mut gate = self.inner.gate();
        let Some(gate) = gate.as_mut() else {
            return round;
        };
        // A host not held stays wanted while a dispatcher still asks for
        // it: dispatchers ask again when woken, and the keeper wakes them
        // (`nudge`) while it waits for a grant. One asked for by a run that
        // ended is forgotten.
        gate.asked
            .retain(|_, at| now.duration_since(*at) < idle.max(ASK_KEPT));
        let hosts = self.inner.lock();
        let mut released = Vec::new();
        gate.turn_ends.retain(|_, end| *end > now);
        for host in &gate.held {
            let h = hosts.get(host);
            let busy = h.is_some_and(|h| h.in_flight > 0);
            // A host another node waits for is idle sooner.
            let recent = gate.asked.get(host).is_some_and(|at| {
                !gate.contested.contains(host) || now.duration_since(*at) < CONTESTED_IDLE
            });
            let used = recent && !gate.yielding.contains(host);
            if busy || used {
                round.keep.push(host.clone());
            } else {
                let until = h
                    .and_then(Host::closed_until)
                    .filter(|&t| t > now)
                    .map(|t| wall + t.duration_since(now).as_millis() as u64);
                released.push(host.clone());
                round.release.push((host.clone(), until));
            }
        }
        for host in released {
            gate.held.remove(&host);
            gate.yielding.remove(&host);
            gate.contested.remove(&host);
        }
        round.want = gate
            .asked
            .keys()
            .filter(|h| !gate.held.contains(*h) && !gate.turn_ends.contains_key(*h))
            .cloned()
            .collect();
        round
    }

    /// The hosts this process leases now, after a round: the ones just
    /// taken are closed until the backoff end the last holder left.
    pub fn leased(&self, held: Vec<(HostKey, Option<u64>)>) {
        let wall = crate::store::now_ms();
        let now = Instant::now();
        let mut opened = false;
        {
            let mut gate = self.inner.gate();
            let Some(gate) = gate.as_mut() else {
                return;
            };
            let before = std::mem::take(&mut gate.held);
            let still: std::collections::HashSet<&HostKey> = held.iter().map(|(h, _)| h).collect();
            gate.yielding.retain(|h| still.contains(h));
            for (host, until) in held {
                if let Some(until) = until.filter(|&u| u > wall) {
                    self.block(&host, now + Duration::from_millis(until - wall));
                }
                if !before.contains(&host) {
                    opened = true;
                    // Granted now: idle only if not used for a while from now.
                    gate.asked.insert(host.clone(), now);
                }
                gate.held.insert(host);
            }
        }
        if opened {
            self.inner.freed.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Marks the held hosts another node waits for (the others are not).
    pub fn contested(&self, hosts: Vec<HostKey>) {
        if let Some(gate) = self.inner.gate().as_mut() {
            gate.contested = hosts.into_iter().collect();
        }
    }

    /// Gives up `hosts` for another node's turn: closed here at once,
    /// released once nothing is in flight, not asked for again for `turn`.
    pub fn yield_hosts(&self, hosts: Vec<HostKey>, turn: Duration) {
        let mut gate = self.inner.gate();
        let Some(gate) = gate.as_mut() else {
            return;
        };
        let end = Instant::now() + turn;
        for host in hosts {
            gate.turn_ends.insert(host.clone(), end);
            gate.yielding.insert(host);
        }
    }

    /// Wakes the dispatchers, so that those waiting for a host ask again.
    pub fn nudge(&self) {
        self.inner.freed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The hosts this process leases (a node of a cluster), sorted.
    pub fn leased_hosts(&self) -> Vec<HostKey> {
        let gate = self.inner.gate();
        let mut held: Vec<HostKey> = gate
            .as_ref()
            .map(|g| g.held.iter().cloned().collect())
            .unwrap_or_default();
        held.sort();
        held
    }

    /// A receiver that changes whenever any host frees a slot.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.freed.subscribe()
    }

    /// Every host's state, sorted by host.
    pub fn snapshot(&self) -> Vec<HostSnapshot> {
        let now = Instant::now();
        let wall = crate::store::now_ms();
        let at = |t: Option<Instant>| {
            t.filter(|&t| t > now)
                .map(|t| wall + t.duration_since(now).as_millis() as u64)
        };
        let hosts = self.inner.lock();
        let mut out: Vec<HostSnapshot> = hosts
            .iter()
            .filter_map(|(key, h)| {
                let l = h.limits?;
                Some(HostSnapshot {
                    host: key.clone(),
                    in_flight: h.in_flight,
                    concurrency: l.concurrency,
                    effective: h.effective.min(l.concurrency),
                    delay_ms: (
                        l.delay.min.as_millis() as u64,
                        l.delay.max.as_millis() as u64,
                    ),
                    paused_until_ms: at(h.paused_until),
                    backoff_until_ms: at(h.window),
                    backoff_asked_ms: at(h.window).and(h.window_cut).map(|d| d.as_millis() as u64),
                    counters: h.counters,
                })
            })
            .collect();
        out.sort_by(|a, b| a.host.cmp(&b.host));
        out
    }
}

/// Forgets hosts with nothing in flight, no pause or window ahead, and no
/// request for [`IDLE_HOST`].
fn sweep(hosts: &mut HashMap<HostKey, Host>, now: Instant) {
    hosts.retain(|_, h| {
        h.in_flight > 0
            // The Crawl-delay is set once per run: keep it.
            || !h.gap.is_zero()
            || h.closed_until().is_some_and(|t| t > now)
            || h.last_start
                .is_none_or(|t| now.duration_since(t) < IDLE_HOST)
    });
}

/// A request slot of one host. Dropping it frees the slot at once; call
/// [`HostPermit::release_after_delay`] once the response has arrived.
pub struct HostPermit {
    pool: Option<Arc<Inner>>,
    host: HostKey,
    delay: DelayRange,
}

impl HostPermit {
    /// Keeps the slot taken for the profile's delay, then frees it.
    pub fn release_after_delay(self) {
        let delay = self.delay.sample();
        if delay.is_zero() {
            return;
        }
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            drop(self);
        });
    }
}

impl Drop for HostPermit {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            if let Some(h) = pool.lock().get_mut(&self.host) {
                h.in_flight = h.in_flight.saturating_sub(1);
            }
            pool.freed.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

#[cfg(test)]
mod tests;
