//! Per-host politeness, shared by every run of one engine: at most
//! `concurrency` requests in flight per host, each slot held for the
//! profile's `delay` after its response.
//!
//! The order every request follows is fixed here: host permit → (later: the
//! host's backoff/pause window) → request → permit held for the delay.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use std::time::Duration;

use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config::{DelayRange, Profile};
use crate::ids::HostKey;

/// The limits that apply to one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostLimits {
    pub concurrency: u32,
    pub delay: DelayRange,
}

impl HostLimits {
    pub fn of(profile: &Profile) -> Self {
        HostLimits {
            concurrency: profile.concurrency,
            delay: profile.delay,
        }
    }
}

struct Host {
    /// Made on the first request, with the limits of the profile that makes it.
    slots: Option<(Arc<Semaphore>, HostLimits)>,
    /// No request starts before this (a 429/503 backoff, a robots.txt pause).
    window: Option<Instant>,
    /// Minimum gap between request starts (robots.txt Crawl-delay).
    gap: Duration,
    last_start: Option<Instant>,
}

impl Host {
    fn new() -> Self {
        Host {
            slots: None,
            window: None,
            gap: Duration::ZERO,
            last_start: None,
        }
    }
}

/// The registry of hosts of one engine. Not a global: two engines (two tests
/// in one process) never share budgets.
pub struct HostPool {
    hosts: Mutex<HashMap<HostKey, Host>>,
    /// Bumped whenever a slot is freed, so dispatchers waiting for one wake up.
    freed: watch::Sender<u64>,
}

impl Default for HostPool {
    fn default() -> Self {
        HostPool {
            hosts: Mutex::new(HashMap::new()),
            freed: watch::channel(0).0,
        }
    }
}

impl HostPool {
    /// Takes a slot for `host` if one is free. The first profile that names a
    /// host sets its limits.
    /// Order: the host's slot, then its backoff window and Crawl-delay gap;
    /// a request that may not start yet gives its slot back at once.
    pub fn try_acquire(&self, host: &HostKey, limits: HostLimits) -> Option<HostPermit> {
        let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        let h = hosts.entry(host.clone()).or_insert_with(Host::new);
        let (slots, limits) = h
            .slots
            .get_or_insert_with(|| {
                (
                    Arc::new(Semaphore::new(limits.concurrency.max(1) as usize)),
                    limits,
                )
            })
            .clone();
        let permit = slots.try_acquire_owned().ok()?;
        let now = Instant::now();
        if h.window.is_some_and(|w| now < w) || h.last_start.is_some_and(|t| now < t + h.gap) {
            return None;
        }
        h.last_start = Some(now);
        drop(hosts);
        Some(HostPermit {
            permit: Some(permit),
            delay: limits.delay,
            freed: self.freed.clone(),
        })
    }

    /// Keeps every request to `host` from starting before `until` (requests
    /// already on the wire complete).
    pub fn block(&self, host: &HostKey, until: Instant) {
        let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        let h = hosts.entry(host.clone()).or_insert_with(Host::new);
        h.window = Some(h.window.map_or(until, |w| w.max(until)));
    }

    /// Sets the minimum gap between request starts of a host.
    pub fn set_gap(&self, host: &HostKey, gap: Duration) {
        let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        let h = hosts.entry(host.clone()).or_insert_with(Host::new);
        h.gap = h.gap.max(gap);
    }

    /// The earliest future moment a blocked or gapped host may start a request.
    pub fn next_ready(&self) -> Option<Instant> {
        let now = Instant::now();
        let hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        hosts
            .values()
            .flat_map(|h| {
                [
                    h.window,
                    h.last_start.map(|t| t + h.gap).filter(|_| !h.gap.is_zero()),
                ]
            })
            .flatten()
            .filter(|&t| t > now)
            .min()
    }

    /// A receiver that changes whenever any host frees a slot.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.freed.subscribe()
    }
}

/// A request slot of one host. Dropping it frees the slot at once; call
/// [`HostPermit::release_after_delay`] once the response has arrived.
pub struct HostPermit {
    permit: Option<OwnedSemaphorePermit>,
    delay: DelayRange,
    freed: watch::Sender<u64>,
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
        if self.permit.take().is_some() {
            self.freed.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn slots_are_held_for_the_delay() {
        let pool = HostPool::default();
        let host = HostKey::new("a:80");
        let limits = HostLimits {
            concurrency: 2,
            delay: DelayRange {
                min: Duration::from_millis(500),
                max: Duration::from_millis(500),
            },
        };
        let a = pool.try_acquire(&host, limits).unwrap();
        let _b = pool.try_acquire(&host, limits).unwrap();
        assert!(
            pool.try_acquire(&host, limits).is_none(),
            "only 2 in flight"
        );
        assert!(
            pool.try_acquire(&HostKey::new("b:80"), limits).is_some(),
            "hosts are independent"
        );
        let mut freed = pool.subscribe();
        a.release_after_delay();
        tokio::time::sleep(Duration::from_millis(499)).await;
        assert!(
            pool.try_acquire(&host, limits).is_none(),
            "still held during the delay"
        );
        freed.changed().await.unwrap();
        assert!(
            pool.try_acquire(&host, limits).is_some(),
            "free after the delay"
        );
    }
}

#[cfg(test)]
mod window_tests {
    use super::*;
    use crate::config::DelayRange;

    #[tokio::test(start_paused = true)]
    async fn a_backoff_window_blocks_the_host_until_it_ends() {
        let pool = HostPool::default();
        let host = HostKey::new("a:80");
        let limits = HostLimits {
            concurrency: 4,
            delay: DelayRange {
                min: Duration::ZERO,
                max: Duration::ZERO,
            },
        };
        drop(pool.try_acquire(&host, limits).unwrap());
        pool.block(&host, Instant::now() + Duration::from_secs(2));
        assert!(pool.try_acquire(&host, limits).is_none());
        assert_eq!(
            pool.next_ready(),
            Some(Instant::now() + Duration::from_secs(2))
        );
        tokio::time::advance(Duration::from_millis(1999)).await;
        assert!(
            pool.try_acquire(&host, limits).is_none(),
            "not a millisecond early"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(pool.try_acquire(&host, limits).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn crawl_delay_spaces_request_starts() {
        let pool = HostPool::default();
        let host = HostKey::new("a:80");
        let limits = HostLimits {
            concurrency: 4,
            delay: DelayRange {
                min: Duration::ZERO,
                max: Duration::ZERO,
            },
        };
        let _a = pool.try_acquire(&host, limits).unwrap();
        pool.set_gap(&host, Duration::from_millis(500));
        assert!(
            pool.try_acquire(&host, limits).is_none(),
            "a free slot, but too soon"
        );
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(pool.try_acquire(&host, limits).is_some());
    }
}
