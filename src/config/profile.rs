//! Politeness profiles: the built-in presets, and user profiles resolved
//! through their `extends` chain into complete [`Profile`]s.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use toml::Spanned;

use super::error::{ConfigError, Source};
use super::identity::{Identity, ProxyUrl};
use super::raw::RawProfile;
use super::values;
use crate::ids::ProfileName;

mod overlay;
use overlay::Overlay;

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
    let mut cx = Resolve {
        declared,
        env,
        done: builtins(),
        failed: std::collections::BTreeSet::new(),
        chain: Vec::new(),
        errors,
    };
    for name in declared.keys() {
        cx.one(name);
    }
    cx.done
}

/// One resolution in progress: what is resolved, what failed, and the
/// `extends` chain being followed (to report a cycle).
struct Resolve<'a> {
    declared: &'a BTreeMap<String, Declared>,
    env: &'a dyn Fn(&str) -> Option<String>,
    done: BTreeMap<ProfileName, Arc<Profile>>,
    failed: std::collections::BTreeSet<String>,
    // Empty between top-level names: `one` pops what it pushes.
    chain: Vec<String>,
    errors: &'a mut Vec<ConfigError>,
}

impl Resolve<'_> {
    /// Resolves the profile `name` and its parents; `None` when it or a
    /// parent has errors (reported once, on first sight).
    fn one(&mut self, name: &str) -> Option<Arc<Profile>> {
        if let Some(p) = self.done.get(&ProfileName::new(name)) {
            return Some(p.clone());
        }
        if self.failed.contains(name) {
            return None;
        }
        let declared = self.declared;
        let decl = declared.get(name)?;
        self.chain.push(name.to_owned());
        let parent = self.parent(name, decl);
        self.chain.pop();
        let Some(parent) = parent else {
            self.failed.insert(name.to_owned());
            return None;
        };

        let before = self.errors.len();
        let mut p = (*parent).clone();
        p.name = ProfileName::new(name);
        let mut o = Overlay {
            name,
            decl,
            errors: &mut *self.errors,
        };
        o.concurrency(&mut p);
        o.values(&mut p);
        o.counts(&mut p);
        o.switches(&mut p);
        o.identities(&mut p);
        o.proxies(&mut p, self.env);
        o.coherence(&p);
        if self.errors.len() > before {
            self.failed.insert(name.to_owned());
            return None;
        }
        let p = Arc::new(p);
        self.done.insert(p.name.clone(), p.clone());
        Some(p)
    }

    /// The resolved parent of `name` (its `extends`, or the default
    /// profile); `None`, with an error, for a cycle or an unknown name.
    fn parent(&mut self, name: &str, decl: &Declared) -> Option<Arc<Profile>> {
        let raw = decl.raw.get_ref();
        let parent_name = raw
            .extends
            .as_ref()
            .map_or(DEFAULT_PROFILE, |e| e.get_ref().as_str());
        let span = || raw.extends.as_ref().map_or(decl.raw.span(), |e| e.span());
        let key = Some(format!("profiles.{name}.extends"));
        if self.chain.iter().any(|c| c == parent_name) {
            self.errors.push(decl.source.error(
                span(),
                key,
                format!(
                    "profile {name:?} extends itself through {}",
                    self.chain.join(" → ")
                ),
            ));
            None
        } else if self.declared.contains_key(parent_name)
            || self.done.contains_key(&ProfileName::new(parent_name))
        {
            self.one(parent_name)
        } else {
            self.errors.push(decl.source.error(
                span(),
                key,
                format!(
                    "unknown profile {parent_name:?}; known: {}",
                    known(self.declared, &self.done)
                ),
            ));
            None
        }
    }
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
