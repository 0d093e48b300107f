//! One declared profile's keys laid over a copy of its parent: each key
//! checked, its errors collected in the order of the checks.

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::{duration, duration_cap, Declared, Profile};
use crate::config::error::ConfigError;
use crate::config::identity::{identity, user_agent, Identity, ProxyUrl};
use crate::config::values;

/// Lays one declared profile's settings over a copy of its parent,
/// collecting the errors of its keys in the order of the checks.
pub(super) struct Overlay<'a> {
    pub(super) name: &'a str,
    pub(super) decl: &'a Declared,
    pub(super) errors: &'a mut Vec<ConfigError>,
}

impl Overlay<'_> {
    /// The dotted key of a setting of this profile.
    fn key(&self, k: &str) -> Option<String> {
        Some(format!("profiles.{}.{k}", self.name))
    }

    /// Records an error at `span`, under the key `k` of this profile.
    fn err(&mut self, span: Range<usize>, k: &str, msg: impl Into<String>) {
        let e = self.decl.source.error(span, self.key(k), msg);
        self.errors.push(e);
    }

    /// `concurrency`, within 1..=1024.
    pub(super) fn concurrency(&mut self, p: &mut Profile) {
        if let Some(c) = &self.decl.raw.get_ref().concurrency {
            match u32::try_from(*c.get_ref()) {
                Ok(n) if (1..=1024).contains(&n) => p.concurrency = n,
                _ => self.err(
                    c.span(),
                    "concurrency",
                    "concurrency must be between 1 and 1024",
                ),
            }
        }
    }

    /// The settings written as strings: delays, timeouts, sizes, and the
    /// `user_agent` shorthand.
    pub(super) fn values(&mut self, p: &mut Profile) {
        let raw = self.decl.raw.get_ref();
        let mut set = |v: &Option<Spanned<String>>,
                       k: &str,
                       f: &mut dyn FnMut(&str) -> Result<(), String>| {
            if let Some(v) = v {
                if let Err(e) = f(v.get_ref()) {
                    self.err(v.span(), k, e);
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
    }

    /// The counts, each from 0 to its own maximum.
    pub(super) fn counts(&mut self, p: &mut Profile) {
        let raw = self.decl.raw.get_ref();
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
                    _ => self.err(v.span(), k, format!("{k} must be between 0 and {max}")),
                }
            }
        }
    }

    /// The booleans, which cannot be wrong once parsed.
    pub(super) fn switches(&self, p: &mut Profile) {
        let raw = self.decl.raw.get_ref();
        if let Some(r) = raw.respect_robots {
            p.respect_robots = r;
        }
        if let Some(a) = raw.adaptive {
            p.adaptive = a;
        }
    }

    /// `identities`: not empty, not with `user_agent`, each one valid.
    pub(super) fn identities(&mut self, p: &mut Profile) {
        let raw = self.decl.raw.get_ref();
        let Some(ids) = &raw.identities else {
            return;
        };
        if let Some(ua) = &raw.user_agent {
            self.err(
                ua.span(),
                "user_agent",
                "set either user_agent or identities, not both (user_agent = \"…\" is shorthand for one identity)",
            );
        }
        if ids.get_ref().is_empty() {
            self.err(
                ids.span(),
                "identities",
                "identities is empty: give at least one { user_agent = \"…\" }",
            );
        }
        let mut list = Vec::new();
        for (i, id) in ids.get_ref().iter().enumerate() {
            match identity(id.get_ref()) {
                Ok(identity) => list.push(identity),
                Err(e) => self.errors.push(self.decl.source.error(
                    id.span(),
                    Some(format!("profiles.{}.identities[{i}]", self.name)),
                    e,
                )),
            }
        }
        p.identities = list;
    }

    /// `proxies`, with `${VAR}` read from `env`.
    pub(super) fn proxies(&mut self, p: &mut Profile, env: &dyn Fn(&str) -> Option<String>) {
        let Some(proxies) = &self.decl.raw.get_ref().proxies else {
            return;
        };
        p.proxies = Vec::new();
        for v in proxies.get_ref() {
            match values::expand_env(v.get_ref(), env).and_then(|url| ProxyUrl::parse(&url)) {
                Ok(u) => p.proxies.push(u),
                Err(e) => self.err(v.span(), "proxies", e),
            }
        }
    }

    /// Settings that are valid alone but not together.
    pub(super) fn coherence(&mut self, p: &Profile) {
        let raw = self.decl.raw.get_ref();
        if p.pause_after > 0 && p.pause_for < Duration::from_secs(1) {
            let span = raw
                .pause_for
                .as_ref()
                .map_or(self.decl.raw.span(), |v| v.span());
            self.err(
                span,
                "pause_for",
                "pause_for must be at least 1s when pause_after is set (pause_after = 0 turns the breaker off)",
            );
        }
        if p.backoff > p.backoff_max {
            self.err(
                self.decl.raw.span(),
                "backoff",
                "backoff is larger than backoff_max",
            );
        }
    }
}
