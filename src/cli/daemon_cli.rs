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
    if json {
        outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Exit::Ok;
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
    Exit::Ok
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
