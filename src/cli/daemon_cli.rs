//! `status`, `trigger`, `stop-run` and `reload`: requests to the running
//! daemon through the typed client of [`crate::control`]; a refusal's kind
//! decides the exit code.

use super::{fail, StateArg};
use crate::control::client::{Client, ClientError};
use crate::control::{socket_path, HostStatus, Status, StopRunRequest, TriggerRequest};
use crate::error::Exit;
use crate::ids::TargetId;
use crate::query::{mode_name, status_name};

fn client(state: &StateArg) -> Client {
    Client::new(&socket_path(state.socket.as_deref(), &state.dir()))
}

/// Prints why the daemon could not be asked, and returns the exit code.
fn failed(e: ClientError) -> Exit {
    match e {
        ClientError::Refused(e) => fail(e.exit(), e),
        e @ ClientError::NoDaemon(_) => {
            fail(Exit::Failed, format!("{e}; start one with `crawld run`"))
        }
        e => fail(Exit::Failed, e),
    }
}

pub(super) async fn status(state: &StateArg, json: bool) -> Exit {
    let s = match client(state).status().await {
        Ok(s) => s,
        Err(e) => return failed(e),
    };
    // Configuration errors are a problem to act on, as for `check`: exit 78
    // after the whole status, so scripts and monitors see them.
    let exit = if s.errors.is_empty() {
        Exit::Ok
    } else {
        Exit::Config
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
    } else {
        print_status(&s);
    }
    exit
}

/// The cluster's nodes, when the store is a database.
fn print_members(s: &Status) {
    if let Some(db) = &s.database {
        outln!("store {db}");
    }
    if let Some(e) = &s.members_error {
        outln!("cluster members: cannot be read: {e}");
    }
    if s.members.is_empty() {
        return;
    }
    outln!("\ncluster members:");
    for m in &s.members {
        let runs: Vec<String> = m
            .runs
            .iter()
            .map(|(t, r)| match r {
                Some(r) => format!("{t} (run {r})"),
                None => t.to_string(),
            })
            .collect();
        outln!(
            "  {}{}  {}  crawld {}  {}",
            m.node,
            if m.this { " (this node)" } else { "" },
            if m.alive {
                "alive"
            } else {
                "GONE (no heartbeat)"
            },
            m.version,
            if runs.is_empty() {
                "idle".to_owned()
            } else {
                format!("running {}", runs.join(", "))
            }
        );
        if !m.helps.is_empty() {
            let runs: Vec<String> = m
                .helps
                .iter()
                .map(|(t, r)| format!("{t} (run {r})"))
                .collect();
            outln!("    works on {} with its owner", runs.join(", "));
        }
        if !m.hosts.is_empty() {
            let names: Vec<&str> = m.hosts.iter().map(|h| h.as_str()).collect();
            outln!("    fetches from {}", names.join(", "));
        }
        if !m.config_differs.is_empty() {
            let names: Vec<&str> = m.config_differs.iter().map(|t| t.as_str()).collect();
            outln!(
                "    configs differ from the running node's for: {} (deploy the same configs directory to every node)",
                names.join(", ")
            );
        }
    }
}

fn print_status(s: &Status) {
    outln!(
        "crawld pid {} · {} run(s) in progress, {} queued",
        s.pid,
        s.running,
        s.queued
    );
    if let Some(addr) = &s.http {
        outln!("dashboard http://{addr}/ · metrics http://{addr}/metrics");
    }
    print_firing(s);
    print_members(s);
    for t in &s.targets {
        outln!("\n{}  ({})", t.name, t.file);
        if t.stale {
            outln!("  running its last good version: its file has errors (below)");
        }
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        outln!(
            "  next incremental {}   next full {}",
            show(&t.next_incremental),
            show(&t.next_full)
        );
        if let Some(run) = &t.running {
            let id = run.run.map(|id| format!(" {id}")).unwrap_or_default();
            let resumed = run
                .resumed_from
                .map(|from| format!(" (resuming run {from})"))
                .unwrap_or_default();
            outln!(
                "  running: {} run{id}{resumed}, {} pages done, {} queued, {} items, {} errors",
                mode_name(run.mode),
                run.done,
                run.queued,
                run.items,
                run.failed
            );
        }
        if let Some(last) = &t.last_run {
            outln!(
                "  last run {}: {} {}, {} pages",
                last.id,
                mode_name(last.mode),
                status_name(last.status),
                last.counts.pages_fetched
            );
        }
        if let Some(e) = &t.last_run_error {
            outln!("  last run: cannot be read: {e}");
        }
        for line in crate::monitor::render(&t.monitors).lines() {
            outln!("  {line}");
        }
    }
    if !s.hosts.is_empty() {
        outln!("\nhosts (since the daemon started):");
        for h in &s.hosts {
            outln!("  {}", host_line(h));
        }
    }
    for (proxy, n) in &s.proxy_failures {
        outln!("  proxy {proxy} failed {n} time(s)");
    }
    if !s.channels.is_empty() {
        outln!("\nalert channels (since the daemon started):");
        for c in &s.channels {
            let error = c
                .last_error
                .as_ref()
                .map(|e| format!("  last error: {e}"))
                .unwrap_or_default();
            outln!(
                "  {} ({})  pending {}  delivered {}  failed {}{error}",
                c.name,
                c.kind,
                c.pending,
                c.delivered,
                c.failed
            );
        }
    }
    if !s.errors.is_empty() {
        outln!("\nconfiguration errors:");
        for e in &s.errors {
            outln!("error: {e}");
        }
    }
}

/// Every firing monitor first: what needs a person.
fn print_firing(s: &Status) {
    let firing: Vec<_> = s
        .targets
        .iter()
        .flat_map(|t| t.monitors.iter().filter(|m| m.firing()))
        .collect();
    if firing.is_empty() {
        return;
    }
    outln!("\n{} monitor(s) firing:", firing.len());
    for m in firing {
        let figures = m.figures();
        let sep = if figures.is_empty() { "" } else { "  " };
        outln!("  {} {}{sep}{figures}: {}", m.target, m.label(), m.message);
    }
}

/// One host of `status`: its limits now and what it answered.
fn host_line(h: &HostStatus) -> String {
    let c = &h.counters;
    let mut line = format!(
        "{}  {} req (2xx {}, 3xx {}, 4xx {}, 5xx {}, 429 {}, errors {})  concurrency {}/{} in flight {}  delay {}–{} ms",
        h.host,
        c.requests,
        c.status_2xx,
        c.status_3xx,
        c.status_4xx,
        c.status_5xx,
        c.status_429,
        c.errors,
        h.effective,
        h.concurrency,
        h.in_flight,
        h.delay_ms.0,
        h.delay_ms.1,
    );
    let at = |ms: u64| {
        chrono::DateTime::from_timestamp_millis(ms as i64)
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    };
    if let Some(ms) = h.paused_until_ms {
        line.push_str(&format!("  PAUSED until {}", at(ms)));
    }
    if let Some(ms) = h.backoff_until_ms {
        line.push_str(&format!("  backing off until {}", at(ms)));
        if let Some(asked) = h.backoff_asked_ms {
            line.push_str(&format!(
                " (its Retry-After asked for {}, cut to retry_after_max)",
                humantime::format_duration(std::time::Duration::from_secs(asked / 1000))
            ));
        }
    }
    line
}

pub(super) async fn trigger(state: &StateArg, target: &str, full: bool) -> Exit {
    let req = TriggerRequest {
        target: TargetId::new(target),
        full,
    };
    match client(state).trigger(&req).await {
        Ok(t) => {
            outln!("{t}");
            Exit::Ok
        }
        Err(e) => failed(e),
    }
}

pub(super) async fn stop_run(state: &StateArg, target: &str) -> Exit {
    let req = StopRunRequest {
        target: TargetId::new(target),
    };
    match client(state).stop_run(&req).await {
        Ok(s) => {
            outln!("{s}");
            Exit::Ok
        }
        Err(e) => failed(e),
    }
}

pub(super) async fn reload(state: &StateArg) -> Exit {
    match client(state).reload().await {
        Ok(r) => {
            outln!("{r}");
            Exit::Ok
        }
        Err(e) => failed(e),
    }
}
