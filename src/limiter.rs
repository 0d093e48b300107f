//! Per-host politeness, shared by every run of one engine: at most
//! `concurrency` requests in flight per host, each slot held for the
//! profile's `delay` after its response.
//!
//! The order every request follows is fixed here: host permit → (later: the
//! host's backoff/pause window) → request → permit held for the delay.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

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
    slots: Arc<Semaphore>,
    limits: HostLimits,
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
    pub fn try_acquire(&self, host: &HostKey, limits: HostLimits) -> Option<HostPermit> {
        let (slots, limits) = {
            let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
            let h = hosts.entry(host.clone()).or_insert_with(|| Host {
                slots: Arc::new(Semaphore::new(limits.concurrency.max(1) as usize)),
                limits,
            });
            (h.slots.clone(), h.limits)
        };
        let permit = slots.try_acquire_owned().ok()?;
        Some(HostPermit {
            permit: Some(permit),
            delay: limits.delay,
            freed: self.freed.clone(),
        })
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
    use std::time::Duration;

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
