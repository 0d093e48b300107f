//! What a foreground run shows a person: a progress bar on a terminal,
//! periodic log lines otherwise, and a summary at the end.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::crawl::{Progress, ProgressSink, Waiting};
use crate::store::{FailureRecord, HostRunCounts, RunRecord};

/// How often progress is logged when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Progress display for `crawld crawl` and `crawld demo`.
pub struct ProgressView {
    bar: Option<ProgressBar>,
    started: Instant,
    last_log: Mutex<Instant>,
    /// The end of the last backoff said in a log line.
    said_wait: Mutex<Option<std::time::SystemTime>>,
}

impl ProgressView {
    /// A bar when stderr is a terminal and `enabled`, log lines otherwise.
    pub fn new(enabled: bool) -> Self {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(0);
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} pages · {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        ProgressView {
            bar,
            started: Instant::now(),
            last_log: Mutex::new(Instant::now()),
            said_wait: Mutex::new(None),
        }
    }

    /// Removes the bar before the summary is printed.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl ProgressSink for ProgressView {
    fn update(&self, p: &Progress) {
        let rate = p.fetched as f64 / self.started.elapsed().as_secs_f64().max(0.001);
        let waiting = p.waiting.as_ref().and_then(waiting_note);
        match &self.bar {
            Some(bar) => {
                bar.set_length(p.done + p.queued);
                bar.set_position(p.done);
                bar.set_message(format!(
                    "{} items · {} errors · {:.0} pages/s{}",
                    p.items,
                    p.failed,
                    rate,
                    waiting.map(|w| format!(" · {w}")).unwrap_or_default()
                ));
            }
            None => {
                let Ok(mut last) = self.last_log.lock() else {
                    return;
                };
                // A new long wait is said at once: the crawl may be quiet until it ends.
                let Ok(mut said) = self.said_wait.lock() else {
                    return;
                };
                let new_wait = p.waiting.as_ref().map(|w| w.until);
                if let (Some(note), true) = (&waiting, new_wait != *said) {
                    *said = new_wait;
                    eprintln!("progress: {}", crate::printable::text(note));
                }
                if last.elapsed() >= LOG_EVERY {
                    *last = Instant::now();
                    eprintln!(
                        "progress: {} fetched, {} queued, {} items, {} errors, {} committed, {:.0} pages/s",
                        p.fetched, p.queued, p.items, p.failed, p.committed, rate
                    );
                }
            }
        }
    }
}

/// Backoffs shorter than this go unmentioned: they pass before anyone
/// would wonder.
const QUIET_WAIT: Duration = Duration::from_secs(5);

/// What a person should know of a host-wide backoff still running: which
/// host, until when, and why.
pub fn waiting_note(w: &Waiting) -> Option<String> {
    let left = w
        .until
        .duration_since(std::time::SystemTime::now())
        .ok()
        .filter(|d| *d >= QUIET_WAIT)?;
    let until = chrono::DateTime::<chrono::Local>::from(w.until).format("%H:%M:%S");
    let left = humantime::format_duration(Duration::from_secs(left.as_secs()));
    let why = match (w.asked, w.cut) {
        (Some(asked), true) => format!(
            "it asked for {} (Retry-After), cut to retry_after_max",
            humantime::format_duration(asked)
        ),
        (Some(_), false) => "as its Retry-After asks".to_owned(),
        (None, _) => "after 429/503 answers".to_owned(),
    };
    Some(format!(
        "waiting for {} until {until} ({left}): {why}",
        w.host
    ))
}

/// The end-of-run summary, several lines, with the first few failed URLs.
pub fn summary(run: &RunRecord, failures: &[FailureRecord]) -> String {
    let c = &run.counts;
    let secs = run.ended_ms.map_or(0.0, |end| {
        end.saturating_sub(run.started_ms) as f64 / 1000.0
    });
    let rate = c.pages_fetched as f64 / secs.max(0.001);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Run {} of {} ({}): {} in {:.1}s",
        run.id,
        run.target,
        format!("{:?}", run.mode).to_lowercase(),
        format!("{:?}", run.status).to_lowercase(),
        secs
    );
    let _ = writeln!(
        s,
        "  pages   {} fetched, {} committed, {} failed, {} not HTML ({:.1} pages/s)",
        c.pages_fetched, c.pages_committed, c.pages_failed, c.pages_not_html, rate
    );
    // An incremental run whose pages answered 304 parsed nothing: say what
    // the target still holds rather than "0 new, 0 changed, 0 unchanged".
    let kept = if c.items_kept > 0 {
        format!("{} kept (on pages not parsed again), ", c.items_kept)
    } else {
        String::new()
    };
    let _ = writeln!(
        s,
        "  items   {kept}{} new, {} changed, {} unchanged, {} invalid, {} duplicate",
        c.items_new, c.items_changed, c.items_unchanged, c.items_invalid, c.items_duplicate
    );
    if !c.errors.is_empty() {
        let errors: Vec<String> = c.errors.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
        let _ = writeln!(s, "  errors  {}", errors.join(", "));
    }
    let _ = writeln!(s, "  data    {} received", bytesize::ByteSize(c.bytes));
    if c.over_budget > 0 {
        let _ = writeln!(
            s,
            "  budget  max_pages reached: {} new link(s) not followed (raise `max_pages` to crawl them)",
            c.over_budget
        );
    }
    if c.links_dropped + c.hosts_dropped > 0 {
        let _ = writeln!(
            s,
            "  capped  {} link(s) past follow.max_links on their page, {} host(s) past follow.max_hosts: not followed",
            c.links_dropped, c.hosts_dropped
        );
    }
    if c.jsonld_invalid > 0 {
        let _ = writeln!(
            s,
            "  jsonld  {} page(s) with malformed or oversized JSON-LD: those blocks not read (the URLs are in the log's warnings)",
            c.jsonld_invalid
        );
    }
    if c.pages_not_modified + c.pages_unchanged > 0 {
        let _ = writeln!(
            s,
            "  reused  {} not modified (304), {} with an unchanged body: not parsed again",
            c.pages_not_modified, c.pages_unchanged
        );
    }
    if c.sitemaps_read + c.sitemaps_failed > 0 {
        let _ = writeln!(
            s,
            "  sitemap {} file(s) read, {} failed, {} URL(s) named, {} unchanged by lastmod (not requested)",
            c.sitemaps_read, c.sitemaps_failed, c.sitemap_urls, c.unchanged_by_sitemap
        );
    }
    for w in &c.sitemap_warnings {
        let _ = writeln!(s, "  warning {w}");
    }
    if c.items_removed > 0 {
        let _ = writeln!(
            s,
            "  removed {} item(s) no longer on their pages",
            c.items_removed
        );
    }
    if c.retries + c.requeues + c.throttled > 0 {
        let _ = writeln!(
            s,
            "  retried {} retries, {} requeues after {} 429/503 answers",
            c.retries, c.requeues, c.throttled
        );
    }
    for (host, h) in &c.hosts {
        let _ = writeln!(s, "  host    {}", host_line(host, h));
    }
    for f in failures {
        let _ = writeln!(s, "  failed  {} ({})", f.url, f.detail);
    }
    if (failures.len() as u64) < c.pages_failed {
        let _ = writeln!(
            s,
            "  …and {} more: crawld failures {} --run {}",
            c.pages_failed - failures.len() as u64,
            run.target,
            run.id
        );
    }
    if let Some(e) = &run.error {
        let _ = writeln!(s, "  error   {e}");
    }
    s
}

/// One host's figures in a run's summary.
fn host_line(host: &str, h: &HostRunCounts) -> String {
    let a = &h.answers;
    let paused = h
        .paused_until_ms
        .and_then(|ms| chrono::DateTime::from_timestamp_millis(ms as i64))
        .map(|t| {
            format!(
                ", paused until {}",
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )
        })
        .unwrap_or_default();
    format!(
        "{host}: {} req (2xx {}, 3xx {}, 4xx {}, 5xx {}, 429 {}, errors {}), {} retries, {} requeues, concurrency {}/{}, delay {}–{} ms{paused}",
        a.requests,
        a.status_2xx,
        a.status_3xx,
        a.status_4xx,
        a.status_5xx,
        a.status_429,
        a.errors,
        h.retries,
        h.requeues,
        h.effective_concurrency,
        h.concurrency,
        h.delay_ms.0,
        h.delay_ms.1,
    )
}
