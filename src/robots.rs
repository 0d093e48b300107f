//! robots.txt, fetched once per host per run and cached (RFC 9309): a 4xx
//! allows everything; a 5xx or an unreachable host disallows everything for
//! now and is asked again after a backoff; `Crawl-delay` becomes a minimum
//! gap between request starts on the host. Parsing is texting_robots'.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use url::Url;

use crate::config::{Profile, Target};
use crate::fetcher::Fetcher;
use crate::ids::HostKey;
use crate::limiter::HostPool;

/// Largest robots.txt read; RFC 9309 asks crawlers to read at least 500 KiB.
const MAX_ROBOTS: usize = 512 * 1024;
/// Times a 5xx or unreachable robots.txt is asked again before the host is given up.
const MAX_ROBOTS_ATTEMPTS: u32 = 3;

/// Whether a URL may be fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// robots.txt disallows it: counted, not fetched.
    Disallowed,
    /// robots.txt could not be had (5xx, unreachable): the host is not crawled.
    Unavailable,
    /// The host is on an internal address the target may not reach.
    Refused,
}

/// What fetching a robots.txt gave.
#[derive(Debug)]
pub enum Answer {
    /// A 2xx body.
    Rules(Vec<u8>),
    /// 4xx: no rules.
    Missing,
    /// 5xx or transport error: ask again later.
    Unavailable,
    /// The address policy refuses the host.
    Refused,
}

enum State {
    Fetching,
    /// `None`: everything allowed.
    Ready(Option<Arc<texting_robots::Robot>>),
    /// Given up after repeated failures: nothing allowed.
    Closed,
    /// On an internal address: nothing fetched.
    Refused,
    /// Waiting to ask again, not before this instant.
    Retry(tokio::time::Instant),
}

/// The robots.txt state of every host of a run.
#[derive(Default)]
pub struct Robots {
    hosts: HashMap<HostKey, State>,
    attempts: HashMap<HostKey, u32>,
}

impl Robots {
    /// Whether the host's rules are known (URLs of it may be decided).
    pub fn ready(&self, host: &HostKey) -> bool {
        matches!(
            self.hosts.get(host),
            Some(State::Ready(_) | State::Closed | State::Refused)
        )
    }

    /// Starts fetching a host's robots.txt, unless that is under way.
    pub fn start(
        &mut self,
        host: &HostKey,
        target: &Target,
        fetcher: &Fetcher,
        internal_ok: bool,
        tasks: &mut JoinSet<(HostKey, Answer)>,
    ) {
        match self.hosts.get(host) {
            Some(State::Fetching | State::Ready(_) | State::Closed | State::Refused) => return,
            Some(State::Retry(at)) if tokio::time::Instant::now() < *at => return,
            _ => {}
        }
        // The scheme of a start URL on this host, else of the first one.
        let Some(url) = target
            .start_urls
            .iter()
            .find(|u| HostKey::of(u).as_ref() == Some(host))
            .or(target.start_urls.first())
            .and_then(|u| robots_url(u, host))
        else {
            self.hosts.insert(host.clone(), State::Ready(None));
            return;
        };
        self.hosts.insert(host.clone(), State::Fetching);
        let (fetcher, host) = (fetcher.clone(), host.clone());
        let profile = target.profile_for(&host).clone();
        let private = (!target.headers.is_empty()).then(|| target.id.clone());
        tasks.spawn(async move {
            let request = crate::fetcher::Request {
                url: &url,
                profile: &profile,
                headers: &Default::default(),
                validators: Default::default(),
                internal_ok,
                private_session: private.as_ref(),
            };
            let answer = match fetcher.get_following(request).await {
                Ok(r) if (200..300).contains(&r.status) => {
                    let mut body = r.body.to_vec();
                    body.truncate(MAX_ROBOTS);
                    Answer::Rules(body)
                }
                Ok(r) if (400..500).contains(&r.status) => Answer::Missing,
                Err(crate::fetcher::FetchError::Refused { .. }) => Answer::Refused,
                _ => Answer::Unavailable,
            };
            (host, answer)
        });
    }

    /// Records a fetched robots.txt; returns the Crawl-delay it set, if any.
    pub fn finish(
        &mut self,
        host: &HostKey,
        answer: Answer,
        profile: &Profile,
        hosts: &HostPool,
    ) -> Option<Duration> {
        match answer {
            Answer::Rules(body) => {
                let robot = texting_robots::Robot::new(&agent(profile.user_agent()), &body).ok();
                let gap = robot
                    .as_ref()
                    .and_then(|r| r.delay)
                    .filter(|d| d.is_finite() && *d > 0.0)
                    .map(|d| Duration::from_secs_f32(d.min(3600.0)));
                if let Some(gap) = gap {
                    hosts.set_gap(host, gap);
                }
                self.hosts
                    .insert(host.clone(), State::Ready(robot.map(Arc::new)));
                gap
            }
            Answer::Refused => {
                self.hosts.insert(host.clone(), State::Refused);
                None
            }
            Answer::Missing => {
                self.hosts.insert(host.clone(), State::Ready(None));
                None
            }
            Answer::Unavailable => {
                let n = self.attempts.entry(host.clone()).or_default();
                *n += 1;
                if *n >= MAX_ROBOTS_ATTEMPTS {
                    tracing::warn!(%host, "robots.txt stays unavailable: the host is skipped in this run.");
                    self.hosts.insert(host.clone(), State::Closed);
                } else {
                    // Disallow everything for now: close the host, then ask again.
                    let wait =
                        crate::retry::exponential(profile.backoff_429, profile.backoff_max, *n);
                    let at = tokio::time::Instant::now() + wait;
                    hosts.block(host, at);
                    self.hosts.insert(host.clone(), State::Retry(at));
                }
                None
            }
        }
    }

    /// When a host's robots.txt is to be asked again, the soonest.
    pub fn next_retry(&self) -> Option<tokio::time::Instant> {
        self.hosts
            .values()
            .filter_map(|s| match s {
                State::Retry(at) => Some(*at),
                _ => None,
            })
            .min()
    }

    /// A host's parsed rules, for checking its redirect hops inside a fetch.
    pub fn rules(&self, host: &HostKey) -> Option<Arc<texting_robots::Robot>> {
        match self.hosts.get(host) {
            Some(State::Ready(Some(robot))) => Some(robot.clone()),
            _ => None,
        }
    }

    /// What robots.txt says about fetching `url`.
    pub fn decide(&self, host: &HostKey, url: &Url) -> Decision {
        match self.hosts.get(host) {
            Some(State::Ready(Some(robot))) if !robot.allowed(url.as_str()) => Decision::Disallowed,
            Some(State::Closed) => Decision::Unavailable,
            Some(State::Refused) => Decision::Refused,
            _ => Decision::Allowed,
        }
    }
}

fn robots_url(base: &Url, host: &HostKey) -> Option<Url> {
    let mut url = base.join("/robots.txt").ok()?;
    if HostKey::of(&url).as_ref() != Some(host) {
        let (name, port) = host.as_str().rsplit_once(':')?;
        url.set_host(Some(name)).ok()?;
        url.set_port(port.parse().ok()).ok()?;
    }
    Some(url)
}

/// The product token of a user agent (`crawld/0.1 (+…)` → `crawld`).
fn agent(user_agent: &str) -> String {
    user_agent
        .split(['/', ' '])
        .next()
        .unwrap_or("crawld")
        .to_owned()
}
