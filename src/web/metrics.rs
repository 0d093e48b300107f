//! `GET /metrics`: the daemon in the OpenMetrics text format, built with
//! `prometheus-client` from one [`Status`] and the run records the store
//! keeps, in a registry made for the scrape. Nothing is counted twice: a
//! per-target counter is the sum over the target's run records, so it equals
//! what `crawld runs TARGET --json` adds up to (pruning by `keep_runs` looks
//! like a counter reset, which `rate()` handles).
//!
//! Labels are targets, modes, statuses, outcomes, hosts (`host:port`, the
//! busiest only: [`super::busiest`]), item kinds, fields, monitors, classes
//! and channels, never URLs. Label values
//! are escaped here: `prometheus-client` writes them as they are, and a
//! field named in TOML may hold a quote.

use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::TypedMetric;
use prometheus_client::registry::{Registry, Unit};

use super::busiest::{Shown, OTHER};
use super::TargetRuns;
use crate::control::{HostStatus, Status, TargetStatus};
use crate::health::MonitorKind;
use crate::query::{mode_name, status_name};
use crate::store::{RunCounts, RunMode, RunRecord, RunStatus};

/// The content type of the answer (what `prometheus-client` writes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The content type of the classic Prometheus text format, for a scraper
/// that does not ask for OpenMetrics.
pub const CLASSIC_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether a scrape's `Accept` header asks for OpenMetrics: Prometheus does;
/// `promtool check metrics`, Telegraf and older agents do not, and read only
/// the classic format.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.to_ascii_lowercase()
            .contains("application/openmetrics-text")
    })
}

/// `openmetrics` (as [`encode`] writes it) in the classic text format
/// 0.0.4: no `# EOF` nor `# UNIT` line, and a counter's `# HELP` and
/// `# TYPE` lines name its samples, `_total` included, as 0.0.4 wants.
pub fn classic(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// A label value, escaped as the text format wants (`\`, `"`, newline).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Lv(String);

impl EncodeLabelValue for Lv {
    fn encode(&self, e: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        for c in self.0.chars() {
            match c {
                '\\' => e.write_str("\\\\")?,
                '"' => e.write_str("\\\"")?,
                '\n' => e.write_str("\\n")?,
                c => e.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// A label set: its names are this module's, its values escaped.
type Labels = Vec<(&'static str, Lv)>;

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (*k, Lv((*v).to_owned())))
        .collect()
}

type Float = Gauge<f64, AtomicU64>;

/// Registers a family and hands it back for filling.
fn family<M>(reg: &mut Registry, name: &str, help: &str, unit: Option<Unit>) -> Family<Labels, M>
where
    M: prometheus_client::encoding::EncodeMetric
        + TypedMetric
        + Default
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let f = Family::<Labels, M>::default();
    match unit {
        Some(u) => reg.register_with_unit(name, help, u, f.clone()),
        None => reg.register(name, help, f.clone()),
    }
    f
}

/// The text of one scrape. `now_ms` decides what "paused" means.
pub fn encode(status: &Status, runs: &TargetRuns, now_ms: u64) -> String {
    let mut reg = Registry::with_prefix("crawld");
    daemon(&mut reg, status, runs);
    let targets = Targets::new(&mut reg);
    for t in &status.targets {
        targets.status(t);
        if let Some(Ok(runs)) = runs.get(&t.name) {
            targets.runs(t, runs);
        }
    }
    let shown = Shown::pick(&status.hosts, runs);
    hosts(&mut reg, &status.hosts, &shown, now_ms);
    host_retries(&mut reg, runs, &shown);
    channels(&mut reg, status);
    members(&mut reg, status);
    let mut out = String::new();
    // Writing to a String cannot fail, and the label encoders above do not.
    let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
    out
}

fn daemon(reg: &mut Registry, status: &Status, runs: &TargetRuns) {
    let errors = status.errors.len();
    let unreadable = runs.values().filter(|r| r.is_err()).count();
    let figures = [
        ("config_errors", "Configuration errors, over all files (crawld status lists them)", errors),
        ("targets", "Targets the daemon runs", status.targets.len()),
        ("runs_in_progress", "Runs in progress", status.running),
        ("runs_queued", "Runs waiting for --max-runs", status.queued),
        ("store_read_errors", "Targets whose run records could not be read for this scrape (their counters are missing)", unreadable),
    ];
    for (name, help, v) in figures {
        let g = Gauge::<i64>::default();
        g.set(i64::try_from(v).unwrap_or(i64::MAX));
        reg.register(name, help, g);
    }
}

/// A figure of a run's counts.
type Get = fn(&RunCounts) -> u64;

/// Pages by outcome (they overlap: not a partition).
const PAGE_OUTCOMES: [(&str, Get); 9] = [
    ("fetched", |c| c.pages_fetched),
    ("committed", |c| c.pages_committed),
    ("failed", |c| c.pages_failed),
    ("not_modified", |c| c.pages_not_modified),
    ("unchanged", |c| c.pages_unchanged),
    ("unchanged_by_sitemap", |c| c.unchanged_by_sitemap),
    ("not_html", |c| c.pages_not_html),
    ("robots_disallowed", |c| c.robots_disallowed),
    ("over_budget", |c| c.over_budget),
];

const ITEM_OUTCOMES: [(&str, Get); 7] = [
    ("new", |c| c.items_new),
    ("changed", |c| c.items_changed),
    ("unchanged", |c| c.items_unchanged),
    ("kept", |c| c.items_kept),
    ("removed", |c| c.items_removed),
    ("invalid", |c| c.items_invalid),
    ("duplicate", |c| c.items_duplicate),
];

/// Counters with only a target label: name, help, unit, figure.
const PLAIN: [(&str, &str, Option<Unit>, Get); 5] = [
    (
        "retries",
        "Attempts made again after a failure, summed over the target's kept runs",
        None,
        |c| c.retries,
    ),
    (
        "requeues",
        "URLs put back after a 429/503 answer, summed over the target's kept runs",
        None,
        |c| c.requeues,
    ),
    (
        "throttled",
        "429 and 503 answers, summed over the target's kept runs",
        None,
        |c| c.throttled,
    ),
    (
        "received",
        "Body bytes received (after decompression), summed over the target's kept runs",
        Some(Unit::Bytes),
        |c| c.bytes,
    ),
    (
        "jsonld_invalid_pages",
        "Pages with malformed or oversized JSON-LD (blocks not read, pages kept), summed over the target's kept runs",
        None,
        |c| c.jsonld_invalid,
    ),
];

/// The per-target families of one scrape.
struct Targets {
    runs: Family<Labels, Counter>,
    pages: Family<Labels, Counter>,
    items: Family<Labels, Counter>,
    plain: Vec<Family<Labels, Counter>>,
    duration: Family<Labels, Float>,
    success: Family<Labels, Float>,
    next: Family<Labels, Float>,
    running: Family<Labels, Gauge>,
    firing: Family<Labels, Gauge>,
    coverage: Family<Labels, Float>,
}

impl Targets {
    fn new(reg: &mut Registry) -> Targets {
        Targets {
            runs: family(reg, "runs", "Finished runs the store keeps, by mode and status (a running run counts once it ends)", None),
            pages: family(reg, "pages", "Pages by outcome, summed over the target's kept runs (outcomes overlap: fetched includes not_modified and unchanged)", None),
            items: family(reg, "items", "Items by outcome, summed over the target's kept runs", None),
            plain: PLAIN.iter().map(|(name, help, unit, _)| family(reg, name, help, unit.clone())).collect(),
            duration: family(reg, "last_run_duration", "How long the target's last ended run took", Some(Unit::Seconds)),
            success: family(reg, "last_success_timestamp", "When the target's last completed run ended (Unix time)", Some(Unit::Seconds)),
            next: family(reg, "next_run_timestamp", "The target's next scheduled firing per mode (Unix time)", Some(Unit::Seconds)),
            running: family(reg, "running", "1 while the target has a run in progress", None),
            firing: family(reg, "monitor_firing", "1 while the monitor fires for the target (any of its subjects), else 0", None),
            coverage: family(reg, "field_coverage", "Share of items that had the field, in the target's last completed run of the mode (0 to 1)", None),
        }
    }

    /// What the status says of `t`: running, monitors, next firings.
    fn status(&self, t: &TargetStatus) {
        let target = t.name.as_str();
        self.running
            .get_or_create(&labels(&[("target", target)]))
            .set(i64::from(t.running.is_some()));
        for kind in MonitorKind::ALL {
            let on = t.monitors.iter().any(|m| m.monitor == kind && m.firing());
            self.firing
                .get_or_create(&labels(&[("target", target), ("monitor", kind.name())]))
                .set(i64::from(on));
        }
        for (mode, at) in [
            (RunMode::Incremental, &t.next_incremental),
            (RunMode::Full, &t.next_full),
        ] {
            if let Some(ms) = at.as_deref().and_then(super::html::rfc3339_ms) {
                self.next
                    .get_or_create(&labels(&[("target", target), ("mode", mode_name(mode))]))
                    .set(ms as f64 / 1000.0);
            }
        }
    }

    /// What `t`'s kept run records add up to.
    fn runs(&self, t: &TargetStatus, runs: &[RunRecord]) {
        let target = t.name.as_str();
        let tl = labels(&[("target", target)]);
        let mut sum = RunCounts::default();
        for r in runs {
            sum.add(&r.counts);
            if r.status != RunStatus::Running {
                let l = [
                    ("target", target),
                    ("mode", mode_name(r.mode)),
                    ("status", status_name(r.status)),
                ];
                self.runs.get_or_create(&labels(&l)).inc();
            }
        }
        for (family, outcomes) in [
            (&self.pages, &PAGE_OUTCOMES[..]),
            (&self.items, &ITEM_OUTCOMES[..]),
        ] {
            for (outcome, get) in outcomes {
                family
                    .get_or_create(&labels(&[("target", target), ("outcome", outcome)]))
                    .inc_by(get(&sum));
            }
        }
        for (f, (.., get)) in self.plain.iter().zip(PLAIN) {
            f.get_or_create(&tl).inc_by(get(&sum));
        }
        let ended = runs
            .iter()
            .rev()
            .find_map(|r| r.ended_ms.map(|e| (r.started_ms, e)));
        if let Some((start, end)) = ended {
            self.duration
                .get_or_create(&tl)
                .set(end.saturating_sub(start) as f64 / 1000.0);
        }
        if let Some(end) = last_completed(runs, None).and_then(|r| r.ended_ms) {
            self.success.get_or_create(&tl).set(end as f64 / 1000.0);
        }
        for mode in [RunMode::Incremental, RunMode::Full] {
            let Some(run) = last_completed(runs, Some(mode)) else {
                continue;
            };
            for (kind, cov) in &run.counts.coverage {
                for field in cov.fields.keys() {
                    let Some(share) = cov.share(field) else {
                        continue;
                    };
                    let l = [
                        ("target", target),
                        ("mode", mode_name(mode)),
                        ("kind", kind),
                        ("field", field),
                    ];
                    self.coverage.get_or_create(&labels(&l)).set(share);
                }
            }
        }
    }
}

/// The last completed run (of `mode`, when given).
fn last_completed(runs: &[RunRecord], mode: Option<RunMode>) -> Option<&RunRecord> {
    runs.iter()
        .rev()
        .find(|r| r.status == RunStatus::Completed && mode.is_none_or(|m| r.mode == m))
}

/// A host's gauge, from its status and the time now.
type HostGet = fn(&HostStatus, u64) -> i64;

/// The hosts' figures: each shown host's, then the sum of the others as
/// host `(other)` (its gauges count: how many are paused, in flight…).
fn hosts(reg: &mut Registry, hosts: &[HostStatus], shown: &Shown, now_ms: u64) {
    let requests: Family<Labels, Counter> = family(reg, "host_requests", "Answers and transport errors of the host since the daemon started, by class (2xx, 3xx, 4xx, 5xx, error: they add up to all requests)", None);
    let too_many: Family<Labels, Counter> = family(
        reg,
        "host_too_many_requests",
        "429 answers of the host since the daemon started (also counted in class 4xx)",
        None,
    );
    let forbidden: Family<Labels, Counter> = family(
        reg,
        "host_forbidden",
        "403 answers of the host since the daemon started (also counted in class 4xx)",
        None,
    );
    let gauges: [(&str, &str, HostGet); 5] = [
        (
            "host_in_flight",
            "Requests to the host in flight",
            |h, _| h.in_flight.into(),
        ),
        (
            "host_concurrency",
            "The host's configured concurrency",
            |h, _| h.concurrency.into(),
        ),
        (
            "host_effective_concurrency",
            "The host's concurrency now (adaptive limit)",
            |h, _| h.effective.into(),
        ),
        (
            "host_paused",
            "1 while the host's breaker pauses it",
            |h, now| i64::from(h.paused_until_ms.is_some_and(|u| u > now)),
        ),
        (
            "host_backoff",
            "1 while the host is in a 429/503 backoff",
            |h, now| i64::from(h.backoff_until_ms.is_some_and(|u| u > now)),
        ),
    ];
    let gauges: Vec<(Family<Labels, Gauge>, HostGet)> = gauges
        .into_iter()
        .map(|(name, help, get)| (family(reg, name, help, None), get))
        .collect();
    let (named, others) = shown.split(hosts);
    let groups = named
        .into_iter()
        .map(|h| (h.host.as_str(), vec![h]))
        .chain((!others.is_empty()).then_some((OTHER, others)));
    for (host, group) in groups {
        let sum = |get: fn(&HostStatus) -> u64| group.iter().map(|h| get(h)).sum::<u64>();
        for (class, n) in [
            ("2xx", sum(|h| h.counters.status_2xx)),
            ("3xx", sum(|h| h.counters.status_3xx)),
            ("4xx", sum(|h| h.counters.status_4xx)),
            ("5xx", sum(|h| h.counters.status_5xx)),
            ("error", sum(|h| h.counters.errors)),
        ] {
            requests
                .get_or_create(&labels(&[("host", host), ("class", class)]))
                .inc_by(n);
        }
        let hl = labels(&[("host", host)]);
        too_many
            .get_or_create(&hl)
            .inc_by(sum(|h| h.counters.status_429));
        forbidden
            .get_or_create(&hl)
            .inc_by(sum(|h| h.counters.status_403));
        for (f, get) in &gauges {
            f.get_or_create(&hl)
                .set(group.iter().map(|h| get(h, now_ms)).sum());
        }
    }
}

/// Retries and requeues per host, summed over every target's kept runs (the
/// limiter counts them per run, not since the daemon started).
fn host_retries(reg: &mut Registry, runs: &TargetRuns, shown: &Shown) {
    let retries: Family<Labels, Counter> = family(
        reg,
        "host_retries",
        "Attempts made again after a failure, per host, summed over every target's kept runs",
        None,
    );
    let requeues: Family<Labels, Counter> = family(
        reg,
        "host_requeues",
        "URLs put back after a 429 or 503, per host, summed over every target's kept runs",
        None,
    );
    for run in runs.values().flatten().flatten() {
        for (host, h) in &run.counts.hosts {
            let hl = labels(&[("host", shown.label(host))]);
            retries.get_or_create(&hl).inc_by(h.retries);
            requeues.get_or_create(&hl).inc_by(h.requeues);
        }
    }
}

fn channels(reg: &mut Registry, status: &Status) {
    let pending: Family<Labels, Gauge> = family(
        reg,
        "channel_pending",
        "Alerts waiting in the store's queue for the channel",
        None,
    );
    let delivered: Family<Labels, Counter> = family(
        reg,
        "channel_delivered",
        "Alerts the channel delivered since the daemon started",
        None,
    );
    let failed: Family<Labels, Counter> = family(
        reg,
        "channel_failed",
        "Failed delivery attempts of the channel since the daemon started (each retry counts)",
        None,
    );
    for ch in &status.channels {
        let l = labels(&[("channel", &ch.name)]);
        pending
            .get_or_create(&l)
            .set(i64::try_from(ch.pending).unwrap_or(i64::MAX));
        delivered.get_or_create(&l).inc_by(ch.delivered);
        failed.get_or_create(&l).inc_by(ch.failed);
    }
}

/// Live nodes with a series of their own, at most: whoever can write to
/// the database can add members.
const MAX_NODE_SERIES: usize = 32;

/// The cluster's nodes (`--cluster`): none on sled, so no series.
fn members(reg: &mut Registry, status: &Status) {
    if status.members.is_empty() {
        return;
    }
    let members: Family<Labels, Gauge> = family(
        reg,
        "cluster_members",
        "Nodes of the cluster, alive (heartbeat within their lease) or gone (listed for an hour)",
        None,
    );
    let runs: Family<Labels, Gauge> = family(
        reg,
        "cluster_node_runs",
        "Runs each live node of the cluster holds",
        None,
    );
    for state in ["alive", "gone"] {
        let n = status
            .members
            .iter()
            .filter(|m| m.alive == (state == "alive"))
            .count();
        members
            .get_or_create(&labels(&[("state", state)]))
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    // Gone nodes come and go with restarts: their series would not be
    // capped by anything crawld controls, so only live nodes get one.
    for m in status
        .members
        .iter()
        .filter(|m| m.alive)
        .take(MAX_NODE_SERIES)
    {
        runs.get_or_create(&labels(&[("node", &m.node)]))
            .set(i64::try_from(m.runs.len()).unwrap_or(i64::MAX));
    }
}
