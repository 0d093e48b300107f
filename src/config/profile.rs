//! Politeness profiles: the built-in presets, and user profiles resolved
//! through their `extends` chain into complete [`Profile`]s.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use toml::Spanned;

use super::error::{ConfigError, Source};
use super::identity::{identity, user_agent, Identity, ProxyUrl};
use super::raw::RawProfile;
use super::values;
use crate::ids::ProfileName;

/// The profile of targets and profiles that name none.
pub const DEFAULT_PROFILE: &str = "balanced";

/// Honest default identity: who we are and where to read about us.
pub const DEFAULT_USER_AGENT: &str = concat!(
    "crawld/",
    env!("CARGO_PKG_VERSION"),
    " (+https://github.com/crawld/crawld)"
);

/// The built-in profiles, one row each: name, concurrency per host, delay
/// range in milliseconds, timeout in seconds. README's profile table mirrors it.
pub const BUILTIN_PROFILES: [(&str, u32, (u64, u64), u64); 3] = [
    ("conservative", 5, (500, 1000), 30),
    ("balanced", 10, (300, 700), 30),
    ("aggressive", 20, (200, 500), 20),
];
/// Connect timeout of every built-in profile.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Body cap of every built-in profile, counted after decompression.
pub const DEFAULT_MAX_BODY: u64 = 10 * 1024 * 1024;
/// Retry settings of the built-in profiles, one row each: name, retries,
/// backoff base, backoff cap, 429/503 backoff base (milliseconds),
/// max requeues per URL. README's profile table mirrors it.
pub const BUILTIN_RETRIES: [(&str, u32, u64, u64, u64, u32); 3] = [
    ("conservative", 3, 2_000, 120_000, 5_000, 20),
    ("balanced", 3, 1_000, 60_000, 2_000, 20),
    ("aggressive", 2, 500, 30_000, 1_000, 10),
];
/// Longest Retry-After honoured by every built-in profile; longer ones are cut.
pub const DEFAULT_RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);
/// Adaptive settings of the built-in profiles, one row each: name, adaptive
/// (AIMD) concurrency, 429/403 answers in a row that pause the host (0:
/// never), the pause in seconds, requests per session (0: one session for
/// the whole life of the daemon). README's profile table mirrors it.
pub const BUILTIN_ADAPTIVE: [(&str, bool, u32, u64, u32); 3] = [
    ("conservative", true, 3, 1_800, 0),
    ("balanced", true, 5, 600, 0),
    ("aggressive", true, 10, 300, 0),
];

/// A complete set of politeness settings for the hosts of a target.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: ProfileName,
    /// Max requests in flight per host.
    pub concurrency: u32,
    /// How long a request's slot stays taken after its response.
    pub delay: DelayRange,
    /// Total time for one request, body included.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Body cap in bytes, after decompression.
    pub max_body: u64,
    /// Header sets sent together, one per session, in turn; never empty.
    pub identities: Vec<Identity>,
    /// Proxies, one per session, in turn; empty: direct connections.
    pub proxies: Vec<ProxyUrl>,
    /// Fresh cookie jar, next identity and proxy every this many requests
    /// to a host (0: never).
    pub rotate_session_every: u32,
    /// AIMD: halve a host's effective concurrency on 429/503, add one back
    /// after a run of successes.
    pub adaptive: bool,
    /// 429/403 answers in a row that pause the host (0: never).
    pub pause_after: u32,
    pub pause_for: Duration,
    /// Further attempts after a failure (errors and 5xx other than 503).
    pub retries: u32,
    /// Base of the exponential backoff between attempts (full jitter).
    pub backoff: Duration,
    pub backoff_max: Duration,
    /// Base of the host-wide backoff after a 429 or 503.
    pub backoff_429: Duration,
    /// Requeues per URL after 429/503 answers, apart from retries.
    pub max_requeues: u32,
    /// A longer Retry-After is cut to this.
    pub retry_after_max: Duration,
    pub respect_robots: bool,
}

impl Profile {
    /// The first identity's User-Agent: the one robots.txt rules are matched with.
    pub fn user_agent(&self) -> &str {
        self.identities
            .first()
            .map_or(DEFAULT_USER_AGENT, |i| i.user_agent.as_str())
    }
}

/// A fixed delay (`min == max`) or a uniform random one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelayRange {
    pub min: Duration,
    pub max: Duration,
}

impl DelayRange {
    /// A delay drawn uniformly from the range.
    pub fn sample(&self) -> Duration {
        if self.max <= self.min {
            return self.min;
        }
        rand::rng().random_range(self.min..=self.max)
    }
}

/// The built-in profiles.
pub fn builtins() -> BTreeMap<ProfileName, Arc<Profile>> {
    BUILTIN_PROFILES
        .iter()
        .map(|&(name, concurrency, (lo, hi), timeout)| {
            let (_, retries, backoff, backoff_max, backoff_429, max_requeues) = BUILTIN_RETRIES
                .iter()
                .copied()
                .find(|r| r.0 == name)
                .unwrap_or(BUILTIN_RETRIES[1]);
            let (_, adaptive, pause_after, pause_for, rotate) = BUILTIN_ADAPTIVE
                .iter()
                .copied()
                .find(|r| r.0 == name)
                .unwrap_or(BUILTIN_ADAPTIVE[1]);
            let p = Profile {
                name: ProfileName::new(name),
                retries,
                backoff: Duration::from_millis(backoff),
                backoff_max: Duration::from_millis(backoff_max),
                backoff_429: Duration::from_millis(backoff_429),
                max_requeues,
                retry_after_max: DEFAULT_RETRY_AFTER_MAX,
                respect_robots: true,
                concurrency,
                delay: DelayRange {
                    min: Duration::from_millis(lo),
                    max: Duration::from_millis(hi),
                },
                timeout: Duration::from_secs(timeout),
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                max_body: DEFAULT_MAX_BODY,
                identities: vec![Identity::plain(DEFAULT_USER_AGENT)],
                proxies: Vec::new(),
                rotate_session_every: rotate,
                adaptive,
                pause_after,
                pause_for: Duration::from_secs(pause_for),
            };
            (p.name.clone(), Arc::new(p))
        })
        .collect()
}

/// A user profile as found in a file, before resolution.
pub struct Declared {
    pub raw: Spanned<RawProfile>,
    pub source: Source,
}

/// Resolves every declared profile against the built-ins and each other.
/// Profiles with errors are left out; their errors are pushed to `errors`.
/// `${VAR}` in proxy URLs is read from `env`, so that credentials can stay
/// out of the files.
pub fn resolve(
    declared: &BTreeMap<String, Declared>,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) -> BTreeMap<ProfileName, Arc<Profile>> {
    let mut done = builtins();
    let mut failed = std::collections::BTreeSet::new();
    let cx = Resolve { declared, env };
    for name in declared.keys() {
        let mut chain = Vec::new();
        resolve_one(name, &cx, &mut done, &mut failed, &mut chain, errors);
    }
    done
}

struct Resolve<'a> {
    declared: &'a BTreeMap<String, Declared>,
    env: &'a dyn Fn(&str) -> Option<String>,
}

fn resolve_one(
    name: &str,
    cx: &Resolve,
    done: &mut BTreeMap<ProfileName, Arc<Profile>>,
    failed: &mut std::collections::BTreeSet<String>,
    chain: &mut Vec<String>,
    errors: &mut Vec<ConfigError>,
) -> Option<Arc<Profile>> {
    if let Some(p) = done.get(&ProfileName::new(name)) {
        return Some(p.clone());
    }
    if failed.contains(name) {
        return None;
    }
    let declared = cx.declared;
    let decl = declared.get(name)?;
    let raw = decl.raw.get_ref();
    let key = |k: &str| Some(format!("profiles.{name}.{k}"));
    chain.push(name.to_owned());
    let parent_name = raw
        .extends
        .as_ref()
        .map_or(DEFAULT_PROFILE, |e| e.get_ref().as_str());
    let parent = if chain.iter().any(|c| c == parent_name) {
        let span = raw.extends.as_ref().map_or(decl.raw.span(), |e| e.span());
        errors.push(decl.source.error(
            span,
            key("extends"),
            format!(
                "profile {name:?} extends itself through {}",
                chain.join(" → ")
            ),
        ));
        None
    } else if declared.contains_key(parent_name)
        || done.contains_key(&ProfileName::new(parent_name))
    {
        resolve_one(parent_name, cx, done, failed, chain, errors)
    } else {
        let span = raw.extends.as_ref().map_or(decl.raw.span(), |e| e.span());
        errors.push(decl.source.error(
            span,
            key("extends"),
            format!(
                "unknown profile {parent_name:?}; known: {}",
                known(declared, done)
            ),
        ));
        None
    };
    chain.pop();
    let Some(parent) = parent else {
        failed.insert(name.to_owned());
        return None;
    };

    let before = errors.len();
    let mut p = (*parent).clone();
    p.name = ProfileName::new(name);
    if let Some(c) = &raw.concurrency {
        match u32::try_from(*c.get_ref()) {
            Ok(n) if (1..=1024).contains(&n) => p.concurrency = n,
            _ => errors.push(decl.source.error(
                c.span(),
                key("concurrency"),
                "concurrency must be between 1 and 1024",
            )),
        }
    }
    let mut set =
        |v: &Option<Spanned<String>>, k: &str, f: &mut dyn FnMut(&str) -> Result<(), String>| {
            if let Some(v) = v {
                if let Err(e) = f(v.get_ref()) {
                    errors.push(decl.source.error(v.span(), key(k), e));
                }
            }
        };
    set(&raw.delay, "delay", &mut |s| {
        values::delay(s)
            .and_then(|d| duration_cap(d.max).map(|_| d))
            .map(|d| p.delay = d)
    });
    set(&raw.timeout, "timeout", &mut |s| {
        duration(s).map(|d| p.timeout = d)
    });
    set(&raw.connect_timeout, "connect_timeout", &mut |s| {
        duration(s).map(|d| p.connect_timeout = d)
    });
    set(&raw.max_body, "max_body", &mut |s| {
        values::size(s).map(|b| p.max_body = b)
    });
    set(&raw.backoff, "backoff", &mut |s| {
        duration(s).map(|d| p.backoff = d)
    });
    set(&raw.backoff_max, "backoff_max", &mut |s| {
        duration(s).map(|d| p.backoff_max = d)
    });
    set(&raw.backoff_429, "backoff_429", &mut |s| {
        duration(s).map(|d| p.backoff_429 = d)
    });
    set(&raw.retry_after_max, "retry_after_max", &mut |s| {
        duration(s).map(|d| p.retry_after_max = d)
    });
    set(&raw.pause_for, "pause_for", &mut |s| {
        duration(s).map(|d| p.pause_for = d)
    });
    set(&raw.user_agent, "user_agent", &mut |s| {
        p.identities = vec![Identity::plain(&user_agent(s)?)];
        Ok(())
    });
    for (v, k, field, max) in [
        (&raw.retries, "retries", &mut p.retries, 100),
        (&raw.max_requeues, "max_requeues", &mut p.max_requeues, 100),
        (&raw.pause_after, "pause_after", &mut p.pause_after, 10_000),
        (
            &raw.rotate_session_every,
            "rotate_session_every",
            &mut p.rotate_session_every,
            1_000_000,
        ),
    ] {
        if let Some(v) = v {
            match u32::try_from(*v.get_ref()) {
                Ok(n) if n <= max => *field = n,
                _ => errors.push(decl.source.error(
                    v.span(),
                    key(k),
                    format!("{k} must be between 0 and {max}"),
                )),
            }
        }
    }
    if let Some(r) = raw.respect_robots {
        p.respect_robots = r;
    }
    if let Some(a) = raw.adaptive {
        p.adaptive = a;
    }
    if let Some(ids) = &raw.identities {
        if let Some(ua) = &raw.user_agent {
            errors.push(decl.source.error(
                ua.span(),
                key("user_agent"),
                "set either user_agent or identities, not both (user_agent = \"…\" is shorthand for one identity)",
            ));
        }
        if ids.get_ref().is_empty() {
            errors.push(decl.source.error(
                ids.span(),
                key("identities"),
                "identities is empty: give at least one { user_agent = \"…\" }",
            ));
        }
        let mut list = Vec::new();
        for (i, id) in ids.get_ref().iter().enumerate() {
            match identity(id.get_ref()) {
                Ok(identity) => list.push(identity),
                Err(e) => errors.push(decl.source.error(
                    id.span(),
                    Some(format!("profiles.{name}.identities[{i}]")),
                    e,
                )),
            }
        }
        p.identities = list;
    }
    if let Some(proxies) = &raw.proxies {
        p.proxies = Vec::new();
        for v in proxies.get_ref() {
            match super::compile::expand_env(v.get_ref(), cx.env)
                .and_then(|url| ProxyUrl::parse(&url))
            {
                Ok(u) => p.proxies.push(u),
                Err(e) => errors.push(decl.source.error(v.span(), key("proxies"), e)),
            }
        }
    }
    if p.pause_after > 0 && p.pause_for < Duration::from_secs(1) {
        let span = raw.pause_for.as_ref().map_or(decl.raw.span(), |v| v.span());
        errors.push(decl.source.error(
            span,
            key("pause_for"),
            "pause_for must be at least 1s when pause_after is set (pause_after = 0 turns the breaker off)",
        ));
    }
    if p.backoff > p.backoff_max {
        errors.push(decl.source.error(
            decl.raw.span(),
            key("backoff"),
            "backoff is larger than backoff_max",
        ));
    }
    if errors.len() > before {
        failed.insert(name.to_owned());
        return None;
    }
    let p = Arc::new(p);
    done.insert(p.name.clone(), p.clone());
    Some(p)
}

/// Longest duration a profile accepts: longer ones are typos, and would
/// overflow clock arithmetic.
pub const MAX_PROFILE_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

fn duration(s: &str) -> Result<Duration, String> {
    values::duration(s).and_then(duration_cap)
}

fn duration_cap(d: Duration) -> Result<Duration, String> {
    if d > MAX_PROFILE_DURATION {
        return Err("durations in a profile may be at most 7 days".into());
    }
    Ok(d)
}

fn known(
    declared: &BTreeMap<String, Declared>,
    done: &BTreeMap<ProfileName, Arc<Profile>>,
) -> String {
    let mut names: Vec<&str> = done.keys().map(|n| n.as_str()).collect();
    names.extend(declared.keys().map(String::as_str));
    names.sort_unstable();
    names.dedup();
    names.join(", ")
}
