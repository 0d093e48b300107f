//! Sessions per host: a cookie jar, and which identity and proxy the host's
//! requests use, rotated every `rotate_session_every` requests.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use reqwest::cookie::Jar;
use tracing::{debug, info, warn};

use crate::config::{Profile, ProxyUrl};
use crate::ids::{HostKey, TargetId};

/// A host's current session: its cookie jar, and which identity and proxy
/// it uses (the session number, modulo their counts). Identities, proxies
/// and the rotation period come from the first profile that used the host.
struct Session {
    number: usize,
    requests: u32,
    jar: Arc<Jar>,
    owner: Arc<Profile>,
    /// Another profile was told it uses the owner's identities.
    told: bool,
    last_used: std::time::Instant,
    /// When the owner profile last made a request here.
    owner_seen: std::time::Instant,
}

/// An owner profile unused this long on a host hands the session over to
/// the profile that uses it now (its run ended, or a reload changed it).
const OWNER_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// The sessions of one host: one shared by the targets without
/// credentials, one per target with them.
#[derive(Default)]
struct HostSessions {
    shared: Option<Session>,
    private: HashMap<TargetId, Session>,
}

impl Session {
    fn first(owner: &Arc<Profile>, now: std::time::Instant) -> Self {
        Session {
            number: 0,
            requests: 0,
            jar: Arc::new(Jar::default()),
            owner: owner.clone(),
            told: false,
            last_used: now,
            owner_seen: now,
        }
    }

    fn next(&self) -> Self {
        Session {
            number: self.number + 1,
            requests: 0,
            jar: Arc::new(Jar::default()),
            owner: self.owner.clone(),
            told: self.told,
            last_used: self.last_used,
            owner_seen: self.owner_seen,
        }
    }
}

/// Every host's sessions, and the failures of each proxy.
#[derive(Default)]
pub(super) struct Sessions {
    hosts: Mutex<HashMap<HostKey, HostSessions>>,
    /// Requests so far: every few thousand, idle sessions are dropped.
    requests: std::sync::atomic::AtomicU64,
    /// Failed requests per proxy (credentials hidden).
    proxy_failures: Mutex<BTreeMap<String, u64>>,
}

impl Sessions {
    /// The session of `host` for one more request: its jar, the profile
    /// whose identities and proxies it uses, and its number. `private`: the
    /// target keeps its own sessions (it sends credentials).
    pub(super) fn next(
        &self,
        host: &HostKey,
        private: Option<&TargetId>,
        profile: &Arc<Profile>,
    ) -> (Arc<Jar>, Arc<Profile>, usize) {
        let mut sessions = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        let now = std::time::Instant::now();
        let n = self
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n % 4096 == 4095 {
            sessions.retain(|_, h| {
                h.private
                    .retain(|_, s| now.duration_since(s.last_used) < crate::limiter::IDLE_HOST);
                h.shared
                    .take_if(|s| now.duration_since(s.last_used) >= crate::limiter::IDLE_HOST);
                h.shared.is_some() || !h.private.is_empty()
            });
        }
        // Looked up before inserting, so that the common case clones no key.
        if !sessions.contains_key(host) {
            sessions.insert(host.clone(), HostSessions::default());
        }
        let Some(h) = sessions.get_mut(host) else {
            return (Arc::new(Jar::default()), profile.clone(), 0);
        };
        let s = match private {
            Some(t) => {
                if !h.private.contains_key(t) {
                    h.private.insert(t.clone(), Session::first(profile, now));
                }
                h.private.get_mut(t)
            }
            None => Some(h.shared.get_or_insert_with(|| Session::first(profile, now))),
        };
        let Some(s) = s else {
            return (Arc::new(Jar::default()), profile.clone(), 0);
        };
        if Arc::ptr_eq(&s.owner, profile) || *s.owner == **profile {
            s.owner_seen = now;
        } else if now.duration_since(s.owner_seen) >= OWNER_IDLE {
            // The owner's runs are over, or a reload changed it: hand over.
            s.owner = profile.clone();
            s.owner_seen = now;
            s.told = false;
        } else if !s.told {
            s.told = true;
            info!(%host, owner = %s.owner.name, other = %profile.name,
                "Two profiles crawl one host: identities, proxies and sessions follow the first.");
        }
        let every = s.owner.rotate_session_every;
        if every > 0 && s.requests >= every {
            debug!(%host, session = s.number + 1, "Session rotated: fresh cookies, next identity.");
            *s = s.next();
        }
        s.requests += 1;
        s.last_used = now;
        (s.jar.clone(), s.owner.clone(), s.number)
    }

    /// A proxy failed in session `number`: count it, and move the host on to
    /// its next session (once, however many requests of the session fail).
    pub(super) fn proxy_failed(
        &self,
        host: &HostKey,
        private: Option<&TargetId>,
        number: usize,
        proxy: &ProxyUrl,
    ) {
        *self
            .proxy_failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(proxy.to_string())
            .or_default() += 1;
        let mut sessions = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        let s = sessions.get_mut(host).and_then(|h| match private {
            Some(t) => h.private.get_mut(t),
            None => h.shared.as_mut(),
        });
        if let Some(s) = s.filter(|s| s.number == number) {
            *s = s.next();
        }
        warn!(%host, %proxy, "Request through a proxy failed; the next one uses the next proxy.");
    }

    /// Failed requests per proxy since start (credentials hidden).
    pub(super) fn proxy_failures(&self) -> Vec<(String, u64)> {
        let f = self
            .proxy_failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// The session's turn in a list.
pub(super) fn pick<T>(list: &[T], session: usize) -> Option<&T> {
    list.get(session % list.len().max(1))
}
