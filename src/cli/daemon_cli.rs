//! `status`, `trigger`, `stop-run` and `reload`: requests to the running daemon.

use serde_json::Value;

use super::{fail, StateArg};
use crate::daemon::control::{self, ClientError};
use crate::error::Exit;

async fn ask(state: &StateArg, method: &str, uri: &str) -> Result<Value, Exit> {
    let dir = state.dir();
    let socket = control::socket_path(state.socket.as_deref(), &dir);
    match control::call(&socket, method, uri, None).await {
        Ok(answer) => {
            let value: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
            if answer.status >= 400 {
                let msg = value["error"]
                    .as_str()
                    .unwrap_or("the daemon refused")
                    .to_owned();
                let exit = if answer.status == 404 {
                    Exit::Usage
                } else {
                    Exit::Failed
                };
                return Err(fail(exit, msg));
            }
            Ok(value)
        }
        Err(e @ ClientError::NoDaemon(_)) => Err(fail(
            Exit::Failed,
            format!("{e}; start one with `crawld run`"),
        )),
        Err(e) => Err(fail(Exit::Failed, e)),
    }
}

fn query(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub(super) async fn status(state: &StateArg, json: bool) -> Exit {
    let v = match ask(state, "GET", "/status").await {
        Ok(v) => v,
        Err(exit) => return exit,
    };
    // Configuration errors are a problem to act on, as for `check`: exit 78
    // after the whole status, so scripts and monitors see them.
    let exit = match v["errors"].as_object() {
        Some(errors) if !errors.is_empty() => Exit::Config,
        _ => Exit::Ok,
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return exit;
    }
    outln!(
        "crawld pid {} · {} run(s) in progress, {} queued",
        v["pid"],
        v["running"],
        v["queued"]
    );
    if let Some(targets) = v["targets"].as_array() {
        for t in targets {
            outln!(
                "\n{}  ({})",
                t["name"].as_str().unwrap_or("?"),
                t["file"].as_str().unwrap_or("")
            );
            if t["stale"].as_bool() == Some(true) {
                outln!("  running its last good version: its file has errors (below)");
            }
            let show = |v: &Value| v.as_str().map(str::to_owned).unwrap_or_else(|| "-".into());
            outln!(
                "  next incremental {}   next full {}",
                show(&t["next_incremental"]),
                show(&t["next_full"])
            );
            if let Some(run) = t["running"].as_object() {
                outln!(
                    "  running: {} run, {} pages done, {} queued, {} items, {} errors",
                    run.get("mode").and_then(Value::as_str).unwrap_or("?"),
                    run.get("done").cloned().unwrap_or_default(),
                    run.get("queued").cloned().unwrap_or_default(),
                    run.get("items").cloned().unwrap_or_default(),
                    run.get("failed").cloned().unwrap_or_default()
                );
            }
            if let Some(last) = t["last_run"].as_object() {
                outln!(
                    "  last run {}: {} {}, {} pages",
                    last.get("id").cloned().unwrap_or_default(),
                    last.get("mode").and_then(Value::as_str).unwrap_or("?"),
                    last.get("status").and_then(Value::as_str).unwrap_or("?"),
                    last.get("counts")
                        .and_then(|c| c.get("pages_fetched"))
                        .cloned()
                        .unwrap_or_default()
                );
            }
        }
    }
    if let Some(hosts) = v["hosts"].as_array().filter(|h| !h.is_empty()) {
        outln!("\nhosts (since the daemon started):");
        for h in hosts {
            outln!("  {}", host_line(h));
        }
    }
    if let Some(proxies) = v["proxy_failures"].as_array().filter(|p| !p.is_empty()) {
        for p in proxies {
            outln!(
                "  proxy {} failed {} time(s)",
                p[0].as_str().unwrap_or("?"),
                p[1]
            );
        }
    }
    if let Some(errors) = v["errors"].as_object() {
        if !errors.is_empty() {
            outln!("\nconfiguration errors:");
            for lines in errors.values() {
                for e in lines.as_array().into_iter().flatten() {
                    outln!("error: {}", e.as_str().unwrap_or(""));
                }
            }
        }
    }
    exit
}

/// One host of `status`: its limits now and what it answered.
fn host_line(h: &Value) -> String {
    let c = &h["counters"];
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let mut line = format!(
        "{}  {} req (2xx {}, 3xx {}, 4xx {}, 5xx {}, 429 {}, errors {})  concurrency {}/{} in flight {}  delay {}–{} ms",
        h["host"].as_str().unwrap_or("?"),
        n(&c["requests"]),
        n(&c["status_2xx"]),
        n(&c["status_3xx"]),
        n(&c["status_4xx"]),
        n(&c["status_5xx"]),
        n(&c["status_429"]),
        n(&c["errors"]),
        n(&h["effective"]),
        n(&h["concurrency"]),
        n(&h["in_flight"]),
        n(&h["delay_ms"][0]),
        n(&h["delay_ms"][1]),
    );
    let at = |ms: u64| {
        chrono::DateTime::from_timestamp_millis(ms as i64)
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    };
    if let Some(ms) = h["paused_until_ms"].as_u64() {
        line.push_str(&format!("  PAUSED until {}", at(ms)));
    }
    if let Some(ms) = h["backoff_until_ms"].as_u64() {
        line.push_str(&format!("  backing off until {}", at(ms)));
        if let Some(asked) = h["backoff_asked_ms"].as_u64() {
            line.push_str(&format!(
                " (its Retry-After asked for {}, cut to retry_after_max)",
                humantime::format_duration(std::time::Duration::from_secs(asked / 1000))
            ));
        }
    }
    line
}

pub(super) async fn trigger(state: &StateArg, target: &str, full: bool) -> Exit {
    let uri = format!("/trigger?target={}&full={full}", query(target));
    match ask(state, "POST", &uri).await {
        Ok(v) => {
            outln!("{}", v["message"].as_str().unwrap_or("requested"));
            Exit::Ok
        }
        Err(exit) => exit,
    }
}

pub(super) async fn stop_run(state: &StateArg, target: &str) -> Exit {
    let uri = format!("/stop-run?target={}", query(target));
    match ask(state, "POST", &uri).await {
        Ok(v) => {
            outln!("{}", v["message"].as_str().unwrap_or("stopping"));
            Exit::Ok
        }
        Err(exit) => exit,
    }
}

pub(super) async fn reload(state: &StateArg) -> Exit {
    match ask(state, "POST", "/reload").await {
        Ok(v) => {
            outln!("{}", v["message"].as_str().unwrap_or("reloaded"));
            Exit::Ok
        }
        Err(exit) => exit,
    }
}
