//! robots.txt, fetched once per host per run and cached (RFC 9309): a 4xx
//! allows everything; a 5xx or an unreachable host disallows everything for
//! now and is asked again after a backoff; `Crawl-delay` becomes a minimum
//! gap between request starts on the host. Only the first [`MAX_ROBOTS`]
//! bytes are read and honoured. Parsing is texting_robots', in the fetch
//! task, so that a parser bug costs a host's robots.txt, not the run.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::{JoinError, JoinSet};
use tracing::warn;
use url::Url;

use crate::config::{Profile, Target};
use crate::fetcher::{FetchError, Fetcher};
use crate::ids::HostKey;
use crate::limiter::HostPool;

/// Largest robots.txt read; RFC 9309 asks crawlers to read at least 500 KiB.
/// What lies beyond is not read, and ignored.
pub const MAX_ROBOTS: usize = 512 * 1024;
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
pub enum Answer {
    /// A 2xx body, parsed.
    Rules(Parsed),
    /// 4xx: no rules.
    Missing,
    /// 5xx or transport error: ask again later.
    Unavailable,
    /// A TLS failure: another attempt would fail the same way, so the host
    /// is closed at once.
    Failed(FetchError),
    /// The address policy refuses the host.
    Refused,
}

/// A robots.txt as parsed: its rules, and what of it could not be parsed.
pub struct Parsed {
    /// `None`: everything allowed.
    robot: Option<texting_robots::Robot>,
    trouble: Option<Trouble>,
}

/// Why some lines of a robots.txt, or all of it, were ignored.
struct Trouble {
    /// The parser's error on the whole file.
    error: anyhow::Error,
    /// Lines that did not parse on their own, and were dropped.
    dropped: usize,
    /// Whether the other lines parsed (else everything is allowed).
    rules_kept: bool,
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
    /// The host of each fetch task, so that a task that panics is still answered.
    in_flight: HashMap<tokio::task::Id, HostKey>,
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
        let user_agent = profile.user_agent().to_owned();
        let private = (!target.headers.is_empty()).then(|| target.id.clone());
        let key = host.clone();
        let task = tasks.spawn(async move {
            let request = crate::fetcher::Request {
                url: &url,
                profile: &profile,
                headers: &Default::default(),
                validators: Default::default(),
                internal_ok,
                private_session: private.as_ref(),
            };
            // One byte more than honoured tells a longer file from one of exactly MAX_ROBOTS.
            let limit = MAX_ROBOTS as u64 + 1;
            let answer = match fetcher.get_prefix_following(request, limit).await {
                Ok(r) if (200..300).contains(&r.status) => {
                    Answer::Rules(parse_body(&user_agent, &r.body))
                }
                Ok(r) if (400..500).contains(&r.status) => Answer::Missing,
                Err(FetchError::Refused { .. }) => Answer::Refused,
                Err(e @ FetchError::Tls { .. }) => Answer::Failed(e),
                _ => Answer::Unavailable,
            };
            (host, answer)
        });
        self.in_flight.insert(task.id(), key);
    }

    /// The host and answer of a finished fetch task. A task that panicked
    /// (a bug in the fetcher or the parser) or was cancelled answers
    /// `Unavailable` for its host: asked again, then closed, never left
    /// waiting. `None` for a task this run did not start.
    pub fn joined(
        &mut self,
        joined: Result<(tokio::task::Id, (HostKey, Answer)), JoinError>,
    ) -> Option<(HostKey, Answer)> {
        match joined {
            Ok((id, done)) => {
                self.in_flight.remove(&id);
                Some(done)
            }
            Err(e) => {
                let host = self.in_flight.remove(&e.id())?;
                let how = if e.is_panic() {
                    "panicked"
                } else {
                    "was cancelled"
                };
                warn!(%host, "The robots.txt task {how}; robots.txt counts as unavailable.");
                Some((host, Answer::Unavailable))
            }
        }
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
            Answer::Rules(parsed) => {
                let gap = parsed.crawl_delay();
                let Parsed { robot, trouble } = parsed;
                if let Some(t) = trouble {
                    t.log(host);
                }
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
            Answer::Failed(e) => {
                warn!(%host, error = %e, "robots.txt cannot be fetched: the host is skipped in this run.");
                self.hosts.insert(host.clone(), State::Closed);
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
                    let wait = crate::retry::host_backoff(profile, None, *n - 1).wait;
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

/// Parses a fetched robots.txt body as a run does: only its honoured part
/// (see [`MAX_ROBOTS`]), for the product token of `user_agent`. Public so
/// that the fuzz target and the property tests drive the path crawld uses.
pub fn parse_body(user_agent: &str, body: &[u8]) -> Parsed {
    parse(&agent(user_agent), honoured(body))
}

impl Parsed {
    /// Whether these rules let `url` be fetched (what [`Robots::decide`] asks).
    pub fn allowed(&self, url: &str) -> bool {
        self.robot.as_ref().is_none_or(|r| r.allowed(url))
    }

    /// The `Crawl-delay` honoured: a finite, positive one, at most an hour.
    pub fn crawl_delay(&self) -> Option<Duration> {
        self.robot
            .as_ref()
            .and_then(|r| r.delay)
            .filter(|d| d.is_finite() && *d > 0.0)
            .map(|d| Duration::from_secs_f32(d.min(3600.0)))
    }
}

/// The part of a body that is honoured: all of it up to [`MAX_ROBOTS`],
/// else its first `MAX_ROBOTS` bytes cut back to the last whole line (a rule
/// cut short could disallow more, or allow more, than its line).
fn honoured(body: &[u8]) -> &[u8] {
    if body.len() <= MAX_ROBOTS {
        return body;
    }
    let head = &body[..MAX_ROBOTS];
    match head.iter().rposition(|&b| b == b'\n' || b == b'\r') {
        Some(end) => &head[..=end],
        None => &[],
    }
}

/// Parses a robots.txt for `agent`. texting_robots rejects a whole file for
/// one rule it cannot compile (a pattern over its regex size limit), while
/// RFC 9309 §2.2 asks crawlers to use the rules they can parse: such lines
/// are dropped and the rest parsed again. Should even that fail, nothing
/// is disallowed (as for a missing file), and the log says so.
fn parse(agent: &str, body: &[u8]) -> Parsed {
    let error = match texting_robots::Robot::new(agent, body) {
        Ok(robot) => {
            return Parsed {
                robot: Some(robot),
                trouble: None,
            }
        }
        Err(e) => e,
    };
    let mut dropped = 0;
    let mut kept = Vec::with_capacity(body.len());
    for line in body.split(|&b| matches!(b, b'\n' | b'\r' | 0)) {
        if texting_robots::Robot::new(agent, line).is_ok() {
            kept.extend_from_slice(line);
            kept.push(b'\n');
        } else {
            dropped += 1;
        }
    }
    let robot = texting_robots::Robot::new(agent, &kept).ok();
    Parsed {
        trouble: Some(Trouble {
            error,
            dropped,
            rules_kept: robot.is_some(),
        }),
        robot,
    }
}

impl Trouble {
    /// One WARN line: robots.txt is parsed once per host and run.
    fn log(&self, host: &HostKey) {
        // The parser's message quotes the rule, which may be kilobytes long:
        // keep its start and the root cause.
        let mut error = self.error.to_string();
        if let Some((cut, _)) = error.char_indices().nth(120) {
            error.truncate(cut);
            error.push('…');
        }
        if self.error.chain().count() > 1 {
            error = format!("{error}: {}", self.error.root_cause());
        }
        if self.rules_kept {
            warn!(%host, %error, dropped = self.dropped, "robots.txt has lines that cannot be parsed: they are ignored, the other rules apply.");
        } else {
            warn!(%host, %error, "robots.txt cannot be parsed: nothing is disallowed on this host.");
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A rule texting_robots cannot compile: its pattern passes the regex size limit.
    fn monster_rule() -> String {
        format!("Disallow: /{}$\n", "x*".repeat(5000))
    }

    fn allowed(parsed: &Parsed, path: &str) -> bool {
        parsed
            .robot
            .as_ref()
            .is_none_or(|r| r.allowed(&format!("https://a.example{path}")))
    }

    #[test]
    fn an_unparsable_rule_is_dropped_and_the_other_rules_apply() {
        let body = format!(
            "User-agent: *\nDisallow: /private\n{}Allow: /\n",
            monster_rule()
        );
        assert!(texting_robots::Robot::new("crawld", body.as_bytes()).is_err());
        let parsed = parse("crawld", body.as_bytes());
        let trouble = parsed.trouble.as_ref().expect("the parse error is kept");
        assert_eq!(trouble.dropped, 1);
        assert!(trouble.rules_kept);
        assert!(!allowed(&parsed, "/private/a"));
        assert!(allowed(&parsed, "/public"));
    }

    /// Defect: a robots.txt task that panicked left its host `Fetching`, and
    /// the run waiting for it forever. No input is known to panic the fetch or
    /// the parser, so the task here panics by hand; the join is the code under test.
    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_answers_unavailable_until_the_host_is_closed() {
        let host = HostKey::of(&Url::parse("https://a.example/").unwrap()).unwrap();
        let profiles = crate::config::builtins();
        let profile = profiles.values().next().unwrap();
        let (mut robots, pool) = (Robots::default(), HostPool::default());
        let mut tasks: JoinSet<(HostKey, Answer)> = JoinSet::new();
        for attempt in 1..=MAX_ROBOTS_ATTEMPTS {
            robots.hosts.insert(host.clone(), State::Fetching);
            let task = tasks.spawn(async { panic!("a bug in the fetcher or the parser") });
            robots.in_flight.insert(task.id(), host.clone());
            let joined = tasks.join_next_with_id().await.unwrap();
            assert!(joined.as_ref().is_err_and(|e| e.is_panic()));
            let (answered, answer) = robots.joined(joined).expect("the panic answers");
            assert_eq!(answered, host);
            assert!(matches!(answer, Answer::Unavailable));
            robots.finish(&host, answer, profile, &pool);
            let closed = attempt == MAX_ROBOTS_ATTEMPTS;
            assert_eq!(robots.ready(&host), closed, "attempt {attempt}");
        }
        let url = Url::parse("https://a.example/page").unwrap();
        assert_eq!(robots.decide(&host, &url), Decision::Unavailable);
        assert!(robots.in_flight.is_empty());
    }

    #[test]
    fn a_good_file_parses_without_trouble() {
        let parsed = parse("crawld", b"User-agent: *\nDisallow: /private\n");
        assert!(parsed.trouble.is_none());
        assert!(!allowed(&parsed, "/private"));
    }

    #[test]
    fn a_long_file_is_cut_back_to_its_last_whole_line() {
        let short = b"Disallow: /a\n".repeat(10);
        assert_eq!(honoured(&short), &short[..]);
        let mut long = b"Disallow: /a\n".repeat(MAX_ROBOTS / 13);
        long.extend_from_slice(b"Allow: /abcdefghijklmnop\n");
        let kept = honoured(&long);
        assert!(kept.len() <= MAX_ROBOTS);
        assert!(kept.ends_with(b"Disallow: /a\n"), "no rule cut short");
        assert_eq!(honoured(&vec![b'x'; MAX_ROBOTS + 1]), b"");
    }
}
