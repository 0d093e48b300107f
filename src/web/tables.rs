//! The dashboard's sections beside the targets: the summary counts, the
//! firing monitors, the configuration errors, the hosts and the alert
//! channels. Every string is escaped.

use std::collections::HashMap;
use std::fmt::Write;

use super::busiest::Shown;
use super::dashboard::{health, Light};
use super::html::{count, duration, esc, when};
use super::TargetRuns;
use crate::control::status::ChannelStatus;
use crate::control::{HostStatus, Status};
use crate::health::MonitorKind;

/// One figure per light, and the configuration errors.
pub fn summary(out: &mut String, status: &Status) {
    let lights: Vec<Light> = status.targets.iter().map(|t| health(t).0).collect();
    let n = |l: Light| lights.iter().filter(|x| **x == l).count();
    let errors = status.errors.len();
    let pills = [
        ("", status.targets.len(), "targets"),
        ("green", n(Light::Green), "healthy"),
        ("red", n(Light::Red), "failing"),
        ("amber", n(Light::Amber), "running or stale"),
        ("grey", n(Light::Grey), "never ran"),
        (
            if errors > 0 { "red" } else { "" },
            errors,
            "configuration errors",
        ),
    ];
    out.push_str(r#"<div class="pills">"#);
    for (class, value, what) in pills {
        let _ = write!(
            out,
            r#"<div class="pill {class}"><b>{value}</b><span>{what}</span></div>"#
        );
    }
    let _ = write!(
        out,
        r#"<div class="pill"><b>{}</b><span>runs in progress · {} queued</span></div></div>"#,
        status.running, status.queued
    );
}

/// Every firing monitor of every target.
pub fn firing(out: &mut String, status: &Status, now_ms: u64) {
    out.push_str(r#"<h2 class="section">Firing monitors</h2><div class="card">"#);
    if status.targets.iter().all(|t| t.monitors.is_empty()) {
        out.push_str(r#"<div class="empty">No monitor data yet.</div></div>"#);
        return;
    }
    let firing: Vec<_> = status
        .targets
        .iter()
        .flat_map(|t| t.monitors.iter())
        .filter(|m| m.firing())
        .collect();
    if firing.is_empty() {
        out.push_str(r#"<div class="empty">No monitor fires.</div></div>"#);
        return;
    }
    out.push_str(
        r#"<table><tr><th>Target</th><th>Monitor</th><th>Subject</th><th class="r">Figure</th><th>Message</th><th>Since</th></tr>"#,
    );
    for m in firing {
        let _ = write!(
            out,
            r##"<tr><td><a href="#target-{t}">{t}</a></td><td><b class="bad">{}</b></td><td>{}</td><td class="r num nw">{}</td><td>{}</td><td class="nw">"##,
            m.monitor,
            esc(&m.subject),
            esc(&m.figures()),
            esc(&m.message),
            t = esc(m.target.as_str()),
        );
        if m.since_ms > 0 {
            when(out, m.since_ms, now_ms);
        }
        out.push_str("</td></tr>");
    }
    out.push_str("</table></div>");
}

/// Configuration errors by file, as `crawld check` prints them.
pub fn config_errors(out: &mut String, status: &Status) {
    if status.errors.is_empty() {
        return;
    }
    out.push_str(r#"<h2 class="section">Configuration errors</h2><div class="card errors">"#);
    // One block per file, as `crawld check` groups them.
    for (file, errors) in &crate::config::errors_by_file(&status.errors) {
        let _ = write!(
            out,
            "<h4>{}</h4><pre>{}</pre>",
            esc(file),
            esc(&errors.join("\n"))
        );
    }
    out.push_str("</div>");
}

/// The hosts the daemon met, with their answers since it started: the
/// busiest by name ([`Shown`]), the others summed in one last row.
pub fn hosts(out: &mut String, status: &Status, runs: &TargetRuns, now_ms: u64) {
    let hosts = &status.hosts;
    out.push_str(r#"<h2 class="section">Hosts</h2><div class="card">"#);
    if hosts.is_empty() {
        out.push_str(r#"<div class="empty">No host contacted yet.</div></div>"#);
        return;
    }
    out.push_str(
        r#"<table><tr><th>Host</th><th class="r">In flight</th><th class="r">Concurrency</th><th class="r">Requests</th><th class="r">2xx</th><th class="r">3xx</th><th class="r">4xx</th><th class="r">5xx</th><th class="r">403</th><th class="r">429</th><th class="r">Errors</th><th>Delay</th><th>State</th></tr>"#,
    );
    // The hosts a firing `host_blocked` monitor names, with its message.
    let blocked: HashMap<&str, &str> = status
        .targets
        .iter()
        .flat_map(|t| &t.monitors)
        .filter(|m| m.monitor == MonitorKind::HostBlocked && m.firing())
        .map(|m| (m.subject.as_str(), m.message.as_str()))
        .collect();
    let (named, others) = Shown::pick(hosts, runs).split(hosts);
    for h in named {
        let c = &h.counters;
        let warn = |n: u64| {
            if n > 0 {
                format!(r#"<span class="bad">{}</span>"#, count(n))
            } else {
                "0".into()
            }
        };
        let _ = write!(
            out,
            r#"<tr><td><code>{}</code></td><td class="r num">{}</td><td class="r num">{} / {}</td><td class="r num">{}</td><td class="r num">{}</td><td class="r num">{}</td><td class="r num">{}</td><td class="r num">{}</td><td class="r num">{}</td><td class="r num">{}</td><td class="r num">{}</td><td class="nw">{}</td><td class="nw">"#,
            esc(h.host.as_str()),
            h.in_flight,
            h.effective,
            h.concurrency,
            count(c.requests),
            count(c.status_2xx),
            count(c.status_3xx),
            warn(c.status_4xx),
            warn(c.status_5xx),
            warn(c.status_403),
            warn(c.status_429),
            warn(c.errors),
            delay(h.delay_ms),
        );
        host_state(out, h, blocked.get(h.host.as_str()).copied(), now_ms);
        out.push_str("</td></tr>");
    }
    others_row(out, &others, now_ms);
    out.push_str("</table></div>");
}

/// One row for the hosts not shown by name: their sums.
fn others_row(out: &mut String, others: &[&HostStatus], now_ms: u64) {
    if others.is_empty() {
        return;
    }
    let sum = |get: fn(&HostStatus) -> u64| count(others.iter().map(|h| get(h)).sum::<u64>());
    let paused = others
        .iter()
        .filter(|h| h.paused_until_ms.is_some_and(|u| u > now_ms))
        .count();
    let backoff = others
        .iter()
        .filter(|h| h.backoff_until_ms.is_some_and(|u| u > now_ms))
        .count();
    let _ = write!(
        out,
        r#"<tr class="others"><td>{} {} more hosts</td><td class="r num">{}</td><td class="r num">—</td><td class="r num">{}</td><td class="r num">{}</td><td class="r num">{}</td><td class="r num">{}</td><td class="r num">{}</td><td class="r num">{}</td><td class="r num">{}</td><td class="r num">{}</td><td>—</td><td class="nw">{paused} paused · {backoff} in backoff</td></tr>"#,
        super::busiest::OTHER,
        count(others.len() as u64),
        sum(|h| u64::from(h.in_flight)),
        sum(|h| h.counters.requests),
        sum(|h| h.counters.status_2xx),
        sum(|h| h.counters.status_3xx),
        sum(|h| h.counters.status_4xx),
        sum(|h| h.counters.status_5xx),
        sum(|h| h.counters.status_403),
        sum(|h| h.counters.status_429),
        sum(|h| h.counters.errors),
    );
}

fn delay((least, most): (u64, u64)) -> String {
    if least == most {
        duration(least)
    } else if most < 1000 {
        format!("{least}–{most} ms")
    } else {
        format!("{}–{}", duration(least), duration(most))
    }
}

fn host_state(out: &mut String, h: &HostStatus, blocked: Option<&str>, now_ms: u64) {
    let mut any = false;
    if let Some(why) = blocked {
        let _ = write!(
            out,
            r#"<span class="state red" title="{}">blocked</span> "#,
            esc(why)
        );
        any = true;
    }
    if let Some(until) = h.paused_until_ms.filter(|u| *u > now_ms) {
        out.push_str(r#"<span class="state red">paused</span> until "#);
        when(out, until, now_ms);
        any = true;
    }
    if let Some(until) = h.backoff_until_ms.filter(|u| *u > now_ms) {
        out.push_str(r#" <span class="state amber">backoff</span> until "#);
        when(out, until, now_ms);
        any = true;
    }
    if !any {
        out.push_str(r#"<span class="state green">ok</span>"#);
    }
}

/// The alert channels and their deliveries.
pub fn channels(out: &mut String, channels: &[ChannelStatus], now_ms: u64) {
    out.push_str(r#"<h2 class="section">Alert channels</h2><div class="card">"#);
    if channels.is_empty() {
        out.push_str(r#"<div class="empty">No alert channel configured.</div></div>"#);
        return;
    }
    out.push_str(
        r#"<table><tr><th>Channel</th><th>Kind</th><th class="r">Pending</th><th class="r">Delivered</th><th class="r">Failed</th><th>Last delivery</th><th>Last error</th></tr>"#,
    );
    for ch in channels {
        let _ = write!(
            out,
            r#"<tr><td><b>{}</b></td><td>{}</td><td class="r num">{}</td><td class="r num">{}</td><td class="r num">{}</td><td>"#,
            esc(&ch.name),
            esc(&ch.kind),
            count(ch.pending),
            count(ch.delivered),
            if ch.failed > 0 {
                format!(r#"<span class="bad">{}</span>"#, count(ch.failed))
            } else {
                "0".into()
            },
        );
        match ch.last_delivered_ms {
            Some(at) => when(out, at, now_ms),
            None => out.push_str(r#"<span class="muted">never</span>"#),
        }
        let _ = write!(
            out,
            r#"</td><td class="bad">{}</td></tr>"#,
            esc(ch.last_error.as_deref().unwrap_or(""))
        );
    }
    out.push_str("</table></div>");
}

/// The cluster's nodes, when the store is a database (`--cluster`).
pub fn members(out: &mut String, status: &Status, now_ms: u64) {
    if status.members.is_empty() && status.members_error.is_none() {
        return;
    }
    out.push_str(r#"<h2 class="section">Cluster</h2><div class="card">"#);
    if let Some(e) = &status.members_error {
        let _ = write!(
            out,
            r#"<div class="bad">Members cannot be read: {}</div>"#,
            esc(e)
        );
    }
    out.push_str(
        r#"<table><tr><th>Node</th><th>State</th><th>Version</th><th>Last heartbeat</th><th>Runs</th><th>Hosts</th><th>Configs</th></tr>"#,
    );
    for m in &status.members {
        let _ = write!(
            out,
            r#"<tr><td><b>{}</b>{}</td><td>{}</td><td>{}</td><td>"#,
            esc(&m.node),
            if m.this {
                r#" <span class="muted">(this node)</span>"#
            } else {
                ""
            },
            if m.alive {
                "alive"
            } else {
                r#"<span class="bad">gone</span>"#
            },
            esc(&m.version),
        );
        when(out, m.heartbeat_ms, now_ms);
        let mut runs: Vec<String> = m
            .runs
            .iter()
            .map(|(t, r)| match r {
                Some(r) => format!("{} (run {r})", esc(t.as_str())),
                None => esc(t.as_str()).to_string(),
            })
            .collect();
        runs.extend(m.helps.iter().map(|(t, r)| {
            format!(
                r#"{} (run {r}) <span class="muted">with its owner</span>"#,
                esc(t.as_str())
            )
        }));
        let hosts: Vec<String> = m
            .hosts
            .iter()
            .map(|h| esc(h.as_str()).to_string())
            .collect();
        let _ = write!(
            out,
            r#"</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            if runs.is_empty() {
                r#"<span class="muted">idle</span>"#.to_owned()
            } else {
                runs.join(", ")
            },
            hosts.join(", "),
            if m.config_differs.is_empty() {
                "same".to_owned()
            } else {
                let names: Vec<String> = m
                    .config_differs
                    .iter()
                    .map(|t| esc(t.as_str()).to_string())
                    .collect();
                format!(r#"<span class="bad">differ: {}</span>"#, names.join(", "))
            },
        );
    }
    out.push_str("</table></div>");
}
