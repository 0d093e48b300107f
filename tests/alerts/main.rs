//! Alerts with real parts: loopback webhook and SMTP receivers, an exec
//! channel writing to a file, real stores in temp dirs, the `crawld` binary
//! and a daemon process. `cli` drives `crawld alert test` and the channel
//! config errors; `delivery` the queue's delivery, retries and rate limit;
//! `notify` the change notices of `[notify]`.

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod delivery;
mod end_to_end;
mod judgment;
mod notify;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use assert_cmd::Command;
use crawld::config::Channel;
use crawld::ids::ChannelName;

/// `crawld` with no configuration from the environment.
pub fn crawld() -> Command {
    common::crawld()
}

/// Writes `files` (name, text) into `dir`.
pub fn write(dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

/// The channels of a configs dir holding `alerts.toml` = `text`, which must load without errors.
pub fn channels(dir: &Path, text: &str) -> BTreeMap<ChannelName, Arc<Channel>> {
    write(dir, &[("alerts.toml", text)]);
    let report = crawld::config::load_dir(dir).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.all_errors());
    report.set.channels
}

/// What an exec channel wrote, one JSON object per line.
pub fn paged(file: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Triggers a full run of target `t` and waits until it ended; returns its id.
pub fn full_run(d: &common::daemon::Daemon) -> u64 {
    let before = d.runs("t").len();
    d.cmd(&["trigger", "t", "--full"]).assert().success();
    common::daemon::wait_for(
        || {
            let runs = d.runs("t");
            runs.len() > before && runs.last().is_some_and(|r| r["status"] != "running")
        },
        "the run ends",
    );
    d.runs("t").last().unwrap()["id"].as_u64().unwrap()
}
