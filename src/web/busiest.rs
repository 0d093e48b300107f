//! Which hosts the metrics and the dashboard show by name. A target that
//! links thousands of hosts must not turn `/metrics` into tens of thousands
//! of series, nor the page into megabytes: each target's [`PER_TARGET`]
//! busiest hosts (by requests over its kept runs) are shown, and the
//! daemon's [`PER_TARGET`] busiest (by requests since it started, which
//! covers a run in progress); every other host is summed into one
//! [`OTHER`] row or series.

use std::collections::{BTreeMap, HashSet};

use super::TargetRuns;
use crate::control::HostStatus;

/// Hosts shown by name per target (and for the daemon as a whole).
pub const PER_TARGET: usize = 20;

/// The name of the sum of the hosts not shown by name.
pub const OTHER: &str = "(other)";

/// The hosts shown by name.
#[derive(Debug, Default)]
pub struct Shown(HashSet<String>);

impl Shown {
    /// The busiest hosts of each target's `runs`, and of `hosts`.
    pub fn pick(hosts: &[HostStatus], runs: &TargetRuns) -> Shown {
        let mut shown = HashSet::new();
        for list in runs.values().flatten() {
            let mut requests: BTreeMap<&str, u64> = BTreeMap::new();
            for run in list {
                for (host, h) in &run.counts.hosts {
                    *requests.entry(host.as_str()).or_default() += h.answers.requests;
                }
            }
            shown.extend(top(requests).map(str::to_owned));
        }
        let daemon = hosts.iter().map(|h| (h.host.as_str(), h.counters.requests));
        shown.extend(top(daemon).map(str::to_owned));
        Shown(shown)
    }

    /// `host` if it is shown by name, else [`OTHER`].
    pub fn label<'a>(&self, host: &'a str) -> &'a str {
        if self.0.contains(host) {
            host
        } else {
            OTHER
        }
    }

    /// `hosts` split into those shown by name and the rest.
    pub fn split<'a>(&self, hosts: &'a [HostStatus]) -> (Vec<&'a HostStatus>, Vec<&'a HostStatus>) {
        hosts.iter().partition(|h| self.0.contains(h.host.as_str()))
    }
}

/// The [`PER_TARGET`] names with the most requests (ties by name, so that
/// the choice is the same from one scrape to the next).
fn top<'a>(requests: impl IntoIterator<Item = (&'a str, u64)>) -> impl Iterator<Item = &'a str> {
    let mut v: Vec<(&str, u64)> = requests.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    v.into_iter().take(PER_TARGET).map(|(h, _)| h)
}
