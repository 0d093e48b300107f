//! `GET /`: the dashboard, one server-rendered page for a person who would
//! rather look than read. Every target is a row with its health light, last
//! run, next fire times, a run in progress, its monitors and charts of its
//! recent runs; then the firing monitors, the hosts, the alert channels and
//! the configuration errors ([`super::tables`]). No script, no external
//! asset: the page reloads itself every [`REFRESH_SECS`], and every string
//! from a config, a site or an error is escaped.

use std::fmt::Write;

use super::charts::{Chart, Series, Style, PALETTE};
use super::html::{count, duration, esc, rfc3339_ms, utc, when};
use super::{tables, TargetRuns};
use crate::control::{Status, TargetStatus};
use crate::query::{mode_name, status_name};
use crate::store::{RunRecord, RunStatus, StoreError};

/// How often the page reloads itself.
pub const REFRESH_SECS: u32 = 10;

/// The page's Content-Security-Policy: its own inline style, nothing else
/// (no script at all, so an injected one could not run even if escaping
/// failed).
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
                       base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const CSS: &str = include_str!("dashboard.css");

/// A target's health light.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Light {
    /// Its last run completed and no monitor fires.
    Green,
    /// A monitor fires, or its last run failed.
    Red,
    /// It runs now, runs its last good config, or its last run was stopped.
    Amber,
    /// It never ran.
    Grey,
}

impl Light {
    pub fn class(self) -> &'static str {
        match self {
            Light::Green => "green",
            Light::Red => "red",
            Light::Amber => "amber",
            Light::Grey => "grey",
        }
    }
}

/// A target's light and the word that says why.
pub fn health(t: &TargetStatus) -> (Light, &'static str) {
    let last = t.last_run.as_ref().map(|r| r.status);
    if t.monitors.iter().any(|m| m.firing()) {
        (Light::Red, "firing")
    } else if last == Some(RunStatus::Failed) {
        (Light::Red, "failed")
    } else if t.running.is_some() {
        (Light::Amber, "running")
    } else if t.stale {
        (Light::Amber, "config broken")
    } else if last == Some(RunStatus::Running) {
        // Recorded as running, not here: another process (a node of the
        // cluster, a `crawld crawl`) runs it.
        (Light::Amber, "running elsewhere")
    } else if matches!(last, Some(RunStatus::Interrupted | RunStatus::Abandoned)) {
        (Light::Amber, "interrupted")
    } else if last.is_none() {
        (Light::Grey, "never ran")
    } else {
        (Light::Green, "ok")
    }
}

/// The whole page for `status`, with the recent `runs` of its targets.
pub fn render(status: &Status, runs: &TargetRuns, now_ms: u64) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="{REFRESH_SECS}"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{}crawld</title><style>{CSS}</style></head><body>"#,
        title_prefix(status)
    );
    let _ = write!(
        out,
        r#"<header><h1>crawl<span>d</span></h1><div class="meta">pid {} · configs <code>{}</code> · state <code>{}</code>{}</div><div class="updated">updated {} · every {REFRESH_SECS} s</div></header><main>"#,
        status.pid,
        esc(&status.configs),
        esc(&status.state),
        status
            .database
            .as_deref()
            .map(|db| format!(" · store <code>{}</code>", esc(db)))
            .unwrap_or_default(),
        utc(now_ms)
    );
    tables::summary(&mut out, status);
    tables::firing(&mut out, status, now_ms);
    tables::config_errors(&mut out, status);
    tables::members(&mut out, status, now_ms);
    out.push_str(r#"<h2 class="section">Targets</h2>"#);
    if status.targets.is_empty() {
        out.push_str(r#"<div class="card empty">No targets: put a target file in the configs directory.</div>"#);
    }
    for t in &status.targets {
        target(&mut out, t, runs.get(&t.name), now_ms);
    }
    tables::hosts(&mut out, status, runs, now_ms);
    tables::channels(&mut out, &status.channels, now_ms);
    out.push_str(
        "<footer>Read-only. The same data as JSON: <code>/api/status</code>, \
         <code>/api/runs?target=NAME</code>; for Prometheus: <code>/metrics</code>.</footer>",
    );
    out.push_str("</main></body></html>\n");
    out
}

/// `(2 firing) ` in the tab's title, so a background tab says it.
fn title_prefix(status: &Status) -> String {
    let firing = status
        .targets
        .iter()
        .filter(|t| health(t).0 == Light::Red)
        .count();
    if firing == 0 {
        String::new()
    } else {
        format!("({firing} failing) ")
    }
}

fn target(
    out: &mut String,
    t: &TargetStatus,
    runs: Option<&Result<Vec<RunRecord>, StoreError>>,
    now_ms: u64,
) {
    let (light, word) = health(t);
    let name = esc(t.name.as_str());
    let _ = write!(
        out,
        r#"<section class="target {c}" id="target-{name}" data-target="{name}" data-health="{word}"><div class="info"><h3><span class="light {c}" title="{word}"></span>{name}<span class="state {c}">{word}</span></h3>"#,
        c = light.class()
    );
    let schedule = match (&t.schedule, &t.full_schedule) {
        (None, None) => "no schedule (runs on trigger)".to_owned(),
        (inc, full) => [("incremental", inc), ("full", full)]
            .iter()
            .filter_map(|(m, s)| s.as_ref().map(|s| format!("{m} <code>{}</code>", esc(s))))
            .collect::<Vec<_>>()
            .join(", "),
    };
    let _ = write!(
        out,
        r#"<div class="file">{} · {} ({})</div><dl class="facts">"#,
        esc(&t.file),
        schedule,
        esc(&t.timezone)
    );
    last_run(out, t, now_ms);
    next_fires(out, t, now_ms);
    out.push_str("</dl>");
    progress(out, t);
    monitors(out, t);
    out.push_str(r#"</div><div class="charts">"#);
    match runs {
        Some(Ok(runs)) => charts(out, runs),
        Some(Err(e)) => {
            let _ = write!(
                out,
                r#"<p class="bad">Its runs could not be read: {}</p>"#,
                esc(&e.to_string())
            );
        }
        None => charts(out, &[]),
    }
    out.push_str("</div></section>");
}

fn last_run(out: &mut String, t: &TargetStatus, now_ms: u64) {
    let Some(r) = &t.last_run else {
        let why = t
            .last_run_error
            .as_deref()
            .map(|e| format!(r#"<span class="bad">unreadable: {}</span>"#, esc(e)))
            .unwrap_or_else(|| r#"<span class="muted">never ran</span>"#.into());
        let _ = write!(out, "<dt>Last run</dt><dd>{why}</dd>");
        return;
    };
    let st = status_name(r.status);
    let _ = write!(
        out,
        r#"<dt>Last run</dt><dd><span class="status {st}">{st}</span> · {} run {} · "#,
        mode_name(r.mode),
        r.id
    );
    when(out, r.ended_ms.unwrap_or(r.started_ms), now_ms);
    if let Some(end) = r.ended_ms {
        let _ = write!(
            out,
            " · took {}",
            duration(end.saturating_sub(r.started_ms))
        );
    }
    if let Some(e) = &r.error {
        let _ = write!(out, r#"<br><span class="bad">{}</span>"#, esc(e));
    }
    let c = &r.counts;
    let failed = if c.pages_failed > 0 {
        format!(
            r#" · <span class="bad">{} failed</span>"#,
            count(c.pages_failed)
        )
    } else {
        " · 0 failed".into()
    };
    // Items on pages not parsed again (304): said only when there are some.
    let kept = if c.items_kept > 0 {
        format!(" · {} kept", count(c.items_kept))
    } else {
        String::new()
    };
    let _ = write!(
        out,
        r#"</dd><dt>Pages</dt><dd class="num">{} fetched{failed} · {} not modified</dd><dt>Items</dt><dd class="num"><span class="new">+{}</span> new · <span class="chg">~{}</span> changed · <span class="rem">−{}</span> removed · {} unchanged{kept}</dd>"#,
        count(c.pages_fetched),
        count(c.pages_not_modified),
        count(c.items_new),
        count(c.items_changed),
        count(c.items_removed),
        count(c.items_unchanged),
    );
}

fn next_fires(out: &mut String, t: &TargetStatus, now_ms: u64) {
    out.push_str("<dt>Next</dt><dd>");
    let mut any = false;
    for (mode, at) in [("incremental", &t.next_incremental), ("full", &t.next_full)] {
        if let Some(ms) = at.as_deref().and_then(rfc3339_ms) {
            if any {
                out.push_str(" · ");
            }
            let _ = write!(out, "{mode} ");
            when(out, ms, now_ms);
            any = true;
        }
    }
    if t.queued {
        out.push_str(if any { " · queued now" } else { "queued now" });
        any = true;
    }
    if !any {
        out.push_str(r#"<span class="muted">nothing scheduled</span>"#);
    }
    out.push_str("</dd>");
}

fn progress(out: &mut String, t: &TargetStatus) {
    let Some(r) = &t.running else { return };
    let total = r.done + r.queued;
    let pct = if total == 0 {
        0.0
    } else {
        r.done as f64 * 100.0 / total as f64
    };
    let id = r.run.map(|id| format!(" {id}")).unwrap_or_default();
    let _ = write!(
        out,
        r#"<div class="progress"><b>Running</b> {} run{id} for {} · <span class="num">{} of {} pages · {} items · {} failed</span><div class="bar"><i style="width:{pct:.1}%"></i></div></div>"#,
        mode_name(r.mode),
        duration(r.secs * 1000),
        count(r.done),
        count(total),
        count(r.items),
        count(r.failed)
    );
}

fn monitors(out: &mut String, t: &TargetStatus) {
    out.push_str(r#"<div class="monitors">"#);
    if t.monitors.is_empty() {
        out.push_str(r#"<span class="muted">no monitor data yet</span></div>"#);
        return;
    }
    for m in t.monitors.iter().filter(|m| m.firing()) {
        let subject = if m.subject.is_empty() {
            String::new()
        } else {
            format!(" {}", esc(&m.subject))
        };
        // The figure against its threshold, as `crawld status` writes it.
        let figures = match m.figures() {
            f if f.is_empty() => String::new(),
            f => format!(" · {}", esc(&f)),
        };
        let _ = write!(
            out,
            r#"<div class="alarm"><b>{}</b>{subject}{figures}<br>{}</div>"#,
            m.monitor,
            esc(&m.message)
        );
    }
    out.push_str(r#"<div class="ok-list">"#);
    for m in t.monitors.iter().filter(|m| !m.firing()) {
        // Pending: its condition holds, not yet for `fire_after` runs.
        let (class, mark) = if m.pending() {
            ("chip pending", "⧗")
        } else {
            ("chip", "✓")
        };
        let _ = write!(
            out,
            r#"<span class="{class}" title="{}">{mark} {}</span>"#,
            esc(&m.message),
            m.monitor
        );
    }
    out.push_str("</div></div>");
}

/// The four charts of a target's recent runs. A run in progress is not
/// drawn: its record holds no counts until it ends (its progress bar shows
/// it), and it would read as a run that found nothing.
fn charts(out: &mut String, runs: &[RunRecord]) {
    let runs: Vec<RunRecord> = runs
        .iter()
        .filter(|r| r.status != RunStatus::Running)
        .cloned()
        .collect();
    let runs = &runs[..];
    if runs.is_empty() {
        out.push_str(
            r#"<div class="no-runs">No runs yet: its charts start when its first run ends.</div>"#,
        );
        return;
    }
    let points: Vec<String> = runs
        .iter()
        .map(|r| {
            format!(
                "run {} · {} · {} · {}",
                r.id,
                mode_name(r.mode),
                status_name(r.status),
                utc(r.started_ms)
            )
        })
        .collect();
    let (first, last) = match (runs.first(), runs.last()) {
        (Some(a), Some(b)) => (format!("run {}", a.id), format!("run {}", b.id)),
        _ => Default::default(),
    };
    let series = |name: &str, color: &'static str, get: fn(&RunRecord) -> u64| Series {
        name: name.into(),
        color,
        values: runs.iter().map(|r| Some(get(r) as f64)).collect(),
    };
    let chart = |title, style, percent, series| Chart {
        title,
        style,
        percent,
        points: &points,
        ends: (&first, &last),
        empty: if percent {
            "no field coverage recorded yet"
        } else {
            "no data yet"
        },
        series,
    };
    let figures = [
        chart(
            "Pages",
            Style::Bars,
            false,
            vec![
                series("fetched", PALETTE[0], |r| r.counts.pages_fetched),
                series("failed", PALETTE[1], |r| r.counts.pages_failed),
            ],
        ),
        chart(
            "Items extracted",
            Style::Lines,
            false,
            vec![
                series("items", PALETTE[0], |r| {
                    r.counts.items_new + r.counts.items_changed + r.counts.items_unchanged
                }),
                series("invalid", PALETTE[3], |r| r.counts.items_invalid),
            ],
        ),
        chart(
            "Changes",
            Style::Stacked,
            false,
            vec![
                series("new", PALETTE[2], |r| r.counts.items_new),
                series("changed", PALETTE[3], |r| r.counts.items_changed),
                series("removed", PALETTE[1], |r| r.counts.items_removed),
            ],
        ),
        chart("Field coverage", Style::Lines, true, coverage(runs)),
    ];
    for f in figures {
        out.push_str(&f.render());
    }
}

/// One line per `kind.field` seen in the runs' coverage (just `field` when
/// the target has one kind): its share per run, a gap where the run had no
/// item of the kind.
fn coverage(runs: &[RunRecord]) -> Vec<Series> {
    let mut fields: Vec<(String, String)> = runs
        .iter()
        .flat_map(|r| r.counts.coverage.iter())
        .flat_map(|(kind, c)| c.fields.keys().map(move |f| (kind.clone(), f.clone())))
        .collect();
    fields.sort();
    fields.dedup();
    let kinds = {
        let mut k: Vec<&String> = fields.iter().map(|(k, _)| k).collect();
        k.dedup();
        k.len()
    };
    fields
        .iter()
        .enumerate()
        .map(|(i, (kind, field))| Series {
            name: if kinds > 1 {
                format!("{kind}.{field}")
            } else {
                field.clone()
            },
            color: PALETTE[i % PALETTE.len()],
            values: runs
                .iter()
                .map(|r| r.counts.coverage.get(kind).and_then(|c| c.share(field)))
                .collect(),
        })
        .collect()
}
