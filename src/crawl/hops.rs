//! How a run reaches hosts. One fetch task: a URL and its redirects on the
//! same host, hop by hop; each hop takes a slot of the host limiter and
//! passes the follow rules and robots.txt (the fetcher checks the address
//! policy); each answer feeds the host's backoff window, AIMD and breaker.
//! A redirect to another host ends the task: the coordinator queues its
//! target like a link. Also: breaker pauses restored at the start of a run,
//! and whether the run may reach internal addresses.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderMap;
use tracing::info;
use url::Url;

use super::outcome::PageError;
use crate::address::AddressPolicy;
use crate::config::Target;
use crate::fetcher::{FetchError, Fetcher, Request, Response, Validators, MAX_REDIRECTS};
use crate::frontier::{path_refused, QueuedUrl};
use crate::ids::HostKey;
use crate::limiter::{HostPermit, HostPool};
use crate::retry::{self, Verdict};
use crate::store::RunCounts;

/// What every fetch task of a run shares.
#[derive(Clone)]
pub(super) struct Hops {
    pub(super) fetcher: Fetcher,
    pub(super) hosts: HostPool,
    pub(super) target: Arc<Target>,
    /// The target's headers (credentials): sent to the hosts of its start
    /// URLs only, never to hosts a redirect adds.
    pub(super) headers: Arc<HeaderMap>,
    pub(super) credential_hosts: Arc<HashSet<HostKey>>,
    pub(super) internal_ok: bool,
}

/// What the host answered during one fetch task.
pub(super) struct Answers {
    /// When the last answer arrived: a 429's backoff window starts here.
    pub(super) at: tokio::time::Instant,
    /// The pause, when an answer tripped the host's breaker.
    pub(super) tripped: Option<Duration>,
    /// The status of every hop (`None`: a transport error).
    pub(super) statuses: Vec<Option<u16>>,
}

impl Answers {
    /// No answer (yet): a task that never got one.
    pub(super) fn none() -> Self {
        Answers {
            at: tokio::time::Instant::now(),
            tripped: None,
            statuses: Vec::new(),
        }
    }
}

impl Hops {
    /// Fetches `queued` (its slot already taken) and follows its redirects
    /// on the same host.
    pub(super) async fn fetch(
        &self,
        queued: &QueuedUrl,
        mut permit: HostPermit,
        validators: Validators<'_>,
        robot: Option<Arc<texting_robots::Robot>>,
    ) -> (Result<Response, PageError>, Answers) {
        let host = &queued.host;
        let profile = self.target.profile_for(host);
        let no_headers = HeaderMap::new();
        let headers = if self.credential_hosts.contains(host) {
            &*self.headers
        } else {
            &no_headers
        };
        let private_session = (!self.target.headers.is_empty()).then_some(&self.target.id);
        let mut url = queued.url.clone();
        let mut visited: Vec<Url> = Vec::new();
        let mut answers = Answers::none();
        loop {
            // A 429 may have closed the host since this slot was taken: the
            // last moment to hold back a request that is not on the wire yet.
            if let Some(until) = self.hosts.closed_until(host) {
                tokio::time::sleep_until(until).await;
            }
            let result = self
                .fetcher
                .get(Request {
                    url: &url,
                    profile,
                    headers,
                    validators: if visited.is_empty() {
                        validators
                    } else {
                        Validators::default()
                    },
                    internal_ok: self.internal_ok,
                    private_session,
                })
                .await;
            answers.at = tokio::time::Instant::now();
            let status = result.as_ref().ok().map(|r| r.status);
            answers.statuses.push(status);
            if !matches!(result, Err(FetchError::Refused { .. })) {
                answers.tripped = answers.tripped.or(self.hosts.answered(host, status));
            }
            // A 429/503 closes the host at once, before the coordinator hears
            // of it; the coordinator then extends the window as the table says.
            if let Ok(r) = &result {
                if retry::for_status(r.status).verdict == Verdict::Requeue {
                    let asked = retry::retry_after(r.retry_after.as_deref(), chrono::Utc::now());
                    // The first step of the streak; the coordinator knows the streak.
                    let wait = retry::host_backoff(profile, asked, 0).wait;
                    self.hosts.block(host, answers.at + wait);
                }
            }
            // The slot stays taken for the delay after the response.
            permit.release_after_delay();
            let response = match result {
                Ok(r) => r,
                Err(e) => return (Err(PageError::Fetch(e)), answers),
            };
            // No redirect, or one to another host: the coordinator queues
            // that target, so that its host's robots.txt and limits apply.
            let Some(next) = response
                .location
                .clone()
                .filter(|next| HostKey::of(next).as_ref() == Some(host))
            else {
                return (Ok(response), answers);
            };
            visited.push(url);
            if visited.len() > MAX_REDIRECTS || visited.contains(&next) {
                let loop_error = FetchError::Redirect {
                    url: queued.url.clone(),
                };
                return (Err(PageError::Fetch(loop_error)), answers);
            }
            // A start URL may redirect anywhere on its host; any other page
            // only where a link could lead.
            if queued.depth > 0 && path_refused(&self.target, &next).is_some() {
                return (Err(PageError::Redirect(next)), answers);
            }
            if robot.as_ref().is_some_and(|r| !r.allowed(next.as_str())) {
                return (Err(PageError::Robots(next)), answers);
            }
            permit = self.hosts.acquire(host, profile).await;
            url = next;
        }
    }
}

/// Puts the breaker pauses kept in the store (end in wall-clock ms) back
/// into the limiter, so that a restart does not end them.
pub(super) fn restore_pauses(hosts: &HostPool, pauses: Vec<(HostKey, u64)>) {
    let (now_wall, now) = (crate::store::now_ms(), tokio::time::Instant::now());
    for (host, until) in pauses.into_iter().filter(|(_, until)| *until > now_wall) {
        info!(%host, secs = (until - now_wall) / 1000, "Host still paused by the breaker.");
        hosts.pause(&host, now + Duration::from_millis(until - now_wall));
    }
}

/// Whether a run of `target` may reach internal addresses: when it says so,
/// or when a start URL is on one.
pub(super) async fn internal_ok(target: &Target, policy: &AddressPolicy) -> bool {
    let mut ok = target.allow_private_networks;
    for url in &target.start_urls {
        ok = ok || policy.url_is_internal(url).await;
    }
    if !ok && target.profiles().any(|p| !p.proxies.is_empty()) {
        info!("Behind a proxy only raw-IP URLs can be checked for internal addresses: the proxy resolves names.");
    }
    ok
}

/// Adds the limiter's view of each host the run touched, as it ends.
pub(super) fn note_limits(counts: &mut RunCounts, hosts: &HostPool) {
    for snap in hosts.snapshot() {
        if let Some(h) = counts.hosts.get_mut(snap.host.as_str()) {
            h.concurrency = snap.concurrency;
            h.effective_concurrency = snap.effective;
            h.delay_ms = snap.delay_ms;
            h.paused_until_ms = snap.paused_until_ms;
        }
    }
}
