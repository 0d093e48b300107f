//! One fetch task: a URL and its redirects on the same host, hop by hop.
//! Each hop takes a slot of the host limiter and passes the follow rules,
//! robots.txt and the address policy; each answer feeds the host's backoff
//! window, AIMD and breaker. A redirect to another host ends the task: the
//! coordinator queues its target like a link.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderMap;
use url::Url;

use super::outcome::Failure;
use crate::config::Target;
use crate::fetcher::{FetchError, Fetcher, Request, Response, Validators, MAX_REDIRECTS};
use crate::frontier::{rules_refuse, QueuedUrl};
use crate::ids::HostKey;
use crate::limiter::{Answer, HostPermit, HostPool};
use crate::retry::{self, Verdict};

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

/// How a fetch ended.
pub(super) struct Hopped {
    pub(super) result: Result<Response, Failure>,
    /// The host that gave the last answer.
    pub(super) host: HostKey,
    /// When the last answer arrived: a 429's backoff window starts here.
    pub(super) at: tokio::time::Instant,
    /// Hosts whose breaker this fetch tripped, with the pause.
    pub(super) tripped: Vec<(HostKey, Duration)>,
    /// (host, status or `None` for an error) of every hop.
    pub(super) answers: Vec<(HostKey, Option<u16>)>,
}

impl Hops {
    /// Fetches `queued` (its slot already taken) and follows its redirects.
    pub(super) async fn fetch(
        &self,
        queued: &QueuedUrl,
        start_hosts: &HashSet<HostKey>,
        mut permit: HostPermit,
        validators: Validators<'_>,
        robot: Option<Arc<texting_robots::Robot>>,
    ) -> Hopped {
        let no_headers = HeaderMap::new();
        let mut url = queued.url.clone();
        let host = queued.host.clone();
        let mut visited: Vec<Url> = Vec::new();
        let mut out = Hopped {
            result: Err(Failure::Panic),
            host: host.clone(),
            at: tokio::time::Instant::now(),
            tripped: Vec::new(),
            answers: Vec::new(),
        };
        loop {
            let profile = self.target.profile_for(&host).clone();
            let headers = if self.credential_hosts.contains(&host) {
                &*self.headers
            } else {
                &no_headers
            };
            // A 429 may have closed the host since this slot was taken: the
            // last moment to hold back a request that is not on the wire yet.
            if let Some(until) = self.hosts.closed_until(&host) {
                tokio::time::sleep_until(until).await;
            }
            let result = self
                .fetcher
                .get(Request {
                    url: &url,
                    profile: &profile,
                    headers,
                    validators: if visited.is_empty() {
                        validators
                    } else {
                        Validators::default()
                    },
                    internal_ok: self.internal_ok,
                    private_session: (!self.target.headers.is_empty()).then_some(&self.target.id),
                })
                .await;
            let at = tokio::time::Instant::now();
            let status = result.as_ref().ok().map(|r| r.status);
            out.answers.push((host.clone(), status));
            let refused = matches!(result, Err(FetchError::Refused { .. }));
            if !refused {
                let answer = status.map_or(Answer::Error, Answer::Status);
                if let Some(pause) = self.hosts.answered(&host, answer) {
                    out.tripped.push((host.clone(), pause));
                }
            }
            // A 429/503 closes the host at once, before the coordinator hears
            // of it; the coordinator then extends the window as the table says.
            if let Ok(r) = &result {
                if retry::for_status(r.status) == Verdict::Requeue {
                    let asked = retry::retry_after(r.retry_after.as_deref(), chrono::Utc::now());
                    let wait =
                        asked.map_or(profile.backoff_429, |a| a.min(profile.retry_after_max));
                    self.hosts.block(&host, at + wait);
                }
            }
            // The slot stays taken for the delay after the response.
            permit.release_after_delay();
            out.host = host.clone();
            out.at = at;
            let response = match result {
                Ok(r) => r,
                Err(e) => {
                    out.result = Err(Failure::Fetch(e));
                    return out;
                }
            };
            let Some(next) = response.location.clone() else {
                out.result = Ok(response);
                return out;
            };
            // Another host: the coordinator queues the target, so that its
            // host's robots.txt and limits apply like any URL's.
            if HostKey::of(&next).as_ref() != Some(&host) {
                out.result = Ok(response);
                return out;
            }
            visited.push(url);
            if visited.len() > MAX_REDIRECTS || visited.contains(&next) {
                out.result = Err(Failure::Fetch(FetchError::Redirect {
                    url: queued.url.clone(),
                }));
                return out;
            }
            // A start URL may redirect anywhere (its host becomes a start
            // host); any other redirect only where a link could lead.
            if queued.depth > 0 && rules_refuse(&self.target, start_hosts, &next).is_some() {
                out.result = Err(Failure::Redirect(next));
                return out;
            }
            if let Some(why) = (!self.internal_ok)
                .then(|| self.fetcher.policy().refuses(&next))
                .flatten()
            {
                out.result = Err(Failure::Fetch(FetchError::Refused {
                    url: next,
                    why: format!("a redirect to {why}"),
                }));
                return out;
            }
            if robot.as_ref().is_some_and(|r| !r.allowed(next.as_str())) {
                out.result = Err(Failure::Robots(next));
                return out;
            }
            permit = self
                .hosts
                .acquire(&host, self.target.profile_for(&host))
                .await;
            url = next;
        }
    }
}
