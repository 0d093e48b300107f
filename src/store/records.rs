//! The records crawld keeps, as they are encoded in the store. Every record
//! carries a format version `v` so that a later release can read old stores.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::failure::Failure;
use crate::ids::{RunId, TargetId};

/// Current format version of every record.
pub const FORMAT: u8 = 1;

/// Incremental runs fetch conditionally; full runs refetch everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunMode {
    Incremental,
    Full,
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Completed,
    Interrupted,
    Failed,
    Abandoned,
}

/// One run of one target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub v: u8,
    pub id: RunId,
    pub target: TargetId,
    pub mode: RunMode,
    pub status: RunStatus,
    /// Milliseconds since the Unix epoch.
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
    /// The interrupted run this one continues.
    pub resumed_from: Option<RunId>,
    /// The first run of a chain of resumed runs: it names the shared frontier.
    pub crawl: RunId,
    pub counts: RunCounts,
    /// Why the run failed, for `crawld runs`.
    pub error: Option<String>,
    /// The monitors whose condition held when the run was judged, as
    /// `monitor` or `monitor SUBJECT` (firing or pending): a baseline leaves
    /// the run out for them, so that a fault never becomes the normal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub breached: Vec<String>,
}

/// What a run did, for summaries and `crawld runs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunCounts {
    /// Responses received (any status).
    pub pages_fetched: u64,
    /// Pages whose results are durably in the store.
    pub pages_committed: u64,
    /// Pages that ended in a transport error or an HTTP error status.
    pub pages_failed: u64,
    /// Responses that were not HTML and so were not parsed.
    pub pages_not_html: u64,
    pub items_new: u64,
    pub items_changed: u64,
    pub items_unchanged: u64,
    /// Items dropped because a required field was missing.
    pub items_invalid: u64,
    /// Items whose key was already seen in this run (the first one is kept).
    pub items_duplicate: u64,
    /// Body bytes received, after decompression.
    pub bytes: u64,
    /// Failures by kind (`http_404`, `timeout`, `too_large`, …).
    pub errors: BTreeMap<Failure, u64>,
    /// Conditional requests answered 304 Not Modified.
    pub pages_not_modified: u64,
    /// Pages fetched whose body hash was unchanged, so not re-extracted.
    pub pages_unchanged: u64,
    /// Items marked removed by this run.
    pub items_removed: u64,
    /// Items the target keeps from pages not parsed again (304 or an
    /// unchanged body): still there, neither new nor changed nor unchanged.
    pub items_kept: u64,
    /// Attempts made again after a failure.
    pub retries: u64,
    /// URLs put back after a 429/503 answer.
    pub requeues: u64,
    /// 429 and 503 answers.
    pub throttled: u64,
    /// URLs that robots.txt disallows: counted, not fetched.
    pub robots_disallowed: u64,
    /// New URLs not followed because the run had admitted `max_pages`
    /// already: the run stopped short of the site.
    pub over_budget: u64,
    /// Links past `follow.max_links` on a page, not taken.
    pub links_dropped: u64,
    /// Distinct hosts refused because the run had taken `follow.max_hosts`.
    pub hosts_dropped: u64,
    /// Sitemap files read (indexes included); 0 in runs of older versions.
    pub sitemaps_read: u64,
    /// Sitemap files that could not be fetched or read (each also a
    /// `sitemap` failure record).
    pub sitemaps_failed: u64,
    /// Page URLs the sitemaps named (before the follow rules).
    pub sitemap_urls: u64,
    /// URLs skipped without a request because their sitemap `<lastmod>` is
    /// not later than their last fetch (incremental runs): kept like a 304.
    pub unchanged_by_sitemap: u64,
    /// What a person should know of the sitemaps (a file cut at the
    /// sitemaps.org limits, too many files): a few lines, each naming its file.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sitemap_warnings: Vec<String>,
    /// Pages with JSON-LD blocks that were malformed or past the reader's
    /// caps (read only for `jsonld` fields): a warning, the pages were kept.
    pub jsonld_invalid: u64,
    /// Figures per host (`host:port`).
    pub hosts: BTreeMap<String, HostRunCounts>,
    /// Per item kind: how many items were extracted and, per field, how many
    /// of them had it: the baseline of the `field_coverage` monitor.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub coverage: BTreeMap<String, KindCoverage>,
    /// In a cluster, the responses each node received for a shared run.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub nodes: BTreeMap<String, u64>,
}

/// Field coverage of one item kind in one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KindCoverage {
    /// Items extracted (valid or not: a missing required field is coverage too).
    pub items: u64,
    /// Per field, the items where it was present.
    pub fields: BTreeMap<String, u64>,
}

impl KindCoverage {
    /// The share of items that had `field`, `None` without items.
    pub fn share(&self, field: &str) -> Option<f64> {
        (self.items > 0)
            .then(|| self.fields.get(field).copied().unwrap_or(0) as f64 / self.items as f64)
    }
}

/// A host's answers by class: what run summaries keep and the limiter
/// shows live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AnswerCounts {
    /// Answers and transport errors (each redirect hop counts).
    pub requests: u64,
    pub status_2xx: u64,
    pub status_3xx: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
    pub status_429: u64,
    /// 403 Forbidden answers (also in `status_4xx`), for `host_blocked`.
    pub status_403: u64,
    pub errors: u64,
}

impl AnswerCounts {
    /// Counts one answer (`None`: a transport error).
    pub fn answer(&mut self, status: Option<u16>) {
        self.requests += 1;
        match status {
            None => self.errors += 1,
            Some(200..=299) => self.status_2xx += 1,
            Some(300..=399) => self.status_3xx += 1,
            Some(400..=499) => self.status_4xx += 1,
            Some(_) => self.status_5xx += 1,
        }
        match status {
            Some(429) => self.status_429 += 1,
            Some(403) => self.status_403 += 1,
            _ => {}
        }
    }

    fn add(&mut self, o: &AnswerCounts) {
        self.requests += o.requests;
        self.status_2xx += o.status_2xx;
        self.status_3xx += o.status_3xx;
        self.status_4xx += o.status_4xx;
        self.status_5xx += o.status_5xx;
        self.status_429 += o.status_429;
        self.status_403 += o.status_403;
        self.errors += o.errors;
    }
}

/// One host's figures in a run: its answers, and its limiter's state when
/// the run ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostRunCounts {
    #[serde(flatten)]
    pub answers: AnswerCounts,
    pub retries: u64,
    pub requeues: u64,
    pub concurrency: u32,
    /// AIMD's limit when the run ended.
    pub effective_concurrency: u32,
    pub delay_ms: (u64, u64),
    pub paused_until_ms: Option<u64>,
}

impl RunCounts {
    /// Adds another run's counters (a resumed chain's totals).
    pub fn add(&mut self, o: &RunCounts) {
        self.pages_fetched += o.pages_fetched;
        self.pages_committed += o.pages_committed;
        self.pages_failed += o.pages_failed;
        self.pages_not_html += o.pages_not_html;
        self.items_new += o.items_new;
        self.items_changed += o.items_changed;
        self.items_unchanged += o.items_unchanged;
        self.items_invalid += o.items_invalid;
        self.items_duplicate += o.items_duplicate;
        self.bytes += o.bytes;
        self.pages_not_modified += o.pages_not_modified;
        self.pages_unchanged += o.pages_unchanged;
        self.items_removed += o.items_removed;
        self.items_kept += o.items_kept;
        self.retries += o.retries;
        self.requeues += o.requeues;
        self.throttled += o.throttled;
        self.robots_disallowed += o.robots_disallowed;
        self.over_budget += o.over_budget;
        self.links_dropped += o.links_dropped;
        self.hosts_dropped += o.hosts_dropped;
        self.sitemaps_read += o.sitemaps_read;
        self.sitemaps_failed += o.sitemaps_failed;
        self.sitemap_urls += o.sitemap_urls;
        self.unchanged_by_sitemap += o.unchanged_by_sitemap;
        self.sitemap_warnings
            .extend(o.sitemap_warnings.iter().cloned());
        self.jsonld_invalid += o.jsonld_invalid;
        for (node, n) in &o.nodes {
            *self.nodes.entry(node.clone()).or_default() += n;
        }
        for (k, n) in &o.errors {
            *self.errors.entry(*k).or_default() += n;
        }
        for (kind, c) in &o.coverage {
            let mine = self.coverage.entry(kind.clone()).or_default();
            mine.items += c.items;
            for (field, n) in &c.fields {
                *mine.fields.entry(field.clone()).or_default() += n;
            }
        }
        for (host, h) in &o.hosts {
            let mine = self.hosts.entry(host.clone()).or_default();
            mine.answers.add(&h.answers);
            mine.retries += h.retries;
            mine.requeues += h.requeues;
            // The limiter's state is the latest run's.
            mine.concurrency = h.concurrency;
            mine.effective_concurrency = h.effective_concurrency;
            mine.delay_ms = h.delay_ms;
            mine.paused_until_ms = h.paused_until_ms;
        }
    }
}

/// The last fetch of one URL of a target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PageRecord {
    pub v: u8,
    pub url: String,
    pub run: RunId,
    pub fetched_ms: u64,
    pub status: u16,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// xxh3-128 of the body, hex; `None` when no body was read.
    pub body_hash: Option<String>,
    /// Outgoing links (normalised), so an unchanged page's links can be followed without a parse.
    pub links: Vec<String>,
    /// `kind\0key` of every item this page yielded.
    pub items: Vec<String>,
    pub depth: u32,
    /// Fingerprint of the target configuration the page was extracted with;
    /// a page extracted under another one is fetched and parsed again.
    #[serde(default)]
    pub config: Option<String>,
}

/// A URL that failed in a run, with why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailureRecord {
    pub v: u8,
    pub url: String,
    pub run: RunId,
    pub at_ms: u64,
    /// `timeout`, `connect`, `http_503`, …
    pub kind: Failure,
    pub detail: String,
    pub status: Option<u16>,
}

/// A URL of a crawl's frontier, as rebuilt from its journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontierEntry {
    pub depth: u32,
    pub done: bool,
}

/// One commit's worth of frontier transitions: the URLs it admitted and the
/// URLs it finished. Written in the same batch as those pages, so the
/// frontier never disagrees with the pages; one record per commit rather than
/// one per URL keeps the write volume low. Deleted when the crawl completes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FrontierChunk {
    pub v: u8,
    /// (url, depth)
    pub admitted: Vec<(String, u32)>,
    pub done: Vec<String>,
}

/// What happened to an item in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Changed,
    Removed,
}

/// One entry of the change feed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChangeEvent {
    pub v: u8,
    pub run: RunId,
    pub change: ChangeKind,
    pub kind: String,
    pub key: String,
    /// The fields whose values changed (for `changed`).
    pub fields: Vec<String>,
    /// The new value (the last one, for `removed`).
    pub value: Map<String, Value>,
    /// For `changed`: the values the changed fields had before (a field
    /// that was absent is null). Empty in events recorded before it existed.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub old: Map<String, Value>,
    pub page: String,
    pub at_ms: u64,
}

/// The current state of one item, with its recent history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ItemRecord {
    pub v: u8,
    pub kind: String,
    pub key: String,
    /// The page it was last seen on.
    pub page: String,
    pub value: Map<String, Value>,
    /// xxh3-128 of the value with keys sorted, hex.
    pub hash: String,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
    pub last_changed_ms: u64,
    /// The run that last saw it.
    pub run: RunId,
    /// The run that made its current value (records written before this
    /// field existed lack it: see [`ItemRecord::made_by`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_run: Option<RunId>,
    /// Set when a full run found the item gone (a tombstone, not a deletion).
    pub removed_ms: Option<u64>,
    /// Earlier versions, newest last.
    pub history: VecDeque<ItemVersion>,
}

impl ItemRecord {
    /// The run that made the current value: the run that last changed it, or
    /// for an old record that did not say, the run that last saw it.
    pub fn made_by(&self) -> RunId {
        self.changed_run.unwrap_or(self.run)
    }
}

/// A past value of an item.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ItemVersion {
    pub value: Map<String, Value>,
    pub hash: String,
    pub run: RunId,
    pub at_ms: u64,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Order-independent content hash of an item value.
pub fn value_hash(value: &Map<String, Value>) -> String {
    let mut fields: Vec<(&String, &Value)> = value.iter().collect();
    fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let bytes = serde_json::to_vec(&fields).unwrap_or_default();
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&bytes))
}
