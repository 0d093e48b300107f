//! The real `crawld run` daemon, driven as an operator would: schedules,
//! hot reload (rename-over edits, broken edits, deletions), the control
//! socket, signals.
#![allow(clippy::disallowed_methods)] // these tests poll child processes with thread sleeps

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use common::daemon::{wait_for, Daemon};
use common::{shop, write_configs, Site};

const PROFILE: &str = r#"
[profiles.quick]
concurrency = 2
delay = "0ms"
timeout = "30s"
"#;

fn target(schedule: &str) -> String {
    format!(
        r#"
start_urls = ["{{base}}/"]
profile = "quick"
schedule = "{schedule}"
[follow]
allow = ['^/$', '^/list/', '^/p/']
[items.product]
pages = '^/p/'
[items.product.fields]
name = {{ css = "h1::text", required = true }}
"#
    )
}

/// A temp dir with a configs dir holding `files` and the `quick` profile.
fn setup(site: &Site, files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let configs = tmp.path().join("configs");
    let mut all = files.to_vec();
    all.push(("p.toml", PROFILE));
    write_configs(&configs, &site.url(""), &all);
    (tmp, configs)
}

/// Writes a file the way editors do: a temporary file renamed over it.
fn rename_over(path: &Path, text: &str) {
    let tmp = path.with_file_name(format!(
        ".{}.swp",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn slow_site(delay_ms: u64) -> Site {
    let mut pages = shop(1, 8);
    for r in pages.values_mut() {
        r.delay = Duration::from_millis(delay_ms);
    }
    Site::start(pages)
}

#[test]
fn a_frequent_schedule_runs_repeatedly_and_never_overlaps() {
    let site = slow_site(150);
    // Every second, while a run takes longer: firings during a run are skipped.
    let (tmp, configs) = setup(&site, &[("shop.toml", &target("* * * * * *"))]);
    let d = Daemon::start(&configs, &tmp.path().join("state"), &[]);
    wait_for(
        || {
            d.runs("shop")
                .iter()
                .filter(|r| r["status"] == "completed")
                .count()
                >= 3
        },
        "three runs completed",
    );
    let runs = d.runs("shop");
    for pair in runs.windows(2) {
        let ended = pair[0]["ended_ms"].as_u64().unwrap();
        assert!(
            pair[1]["started_ms"].as_u64().unwrap() >= ended,
            "one run of a target at a time: {pair:?}"
        );
    }
    assert!(site.stats.max_in_flight() <= 2, "the profile's limit holds");
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn hot_reload_adds_changes_breaks_and_deletes_targets() {
    let site = slow_site(0);
    let (tmp, configs) = setup(&site, &[]);
    let d = Daemon::start(&configs, &tmp.path().join("state"), &[]);
    assert_eq!(d.status()["targets"], serde_json::json!([]));

    // A file dropped in is scheduled without a restart.
    let yearly = target("0 0 0 1 1 *").replace("{base}", &site.url(""));
    rename_over(&configs.join("shop.toml"), &yearly);
    wait_for(|| d.target("shop").is_some(), "the new target is scheduled");
    assert!(d.target("shop").unwrap()["next_incremental"]
        .as_str()
        .unwrap()
        .contains("-01-01T00:00:00"));

    // An edit written with rename-over changes the schedule.
    let frequent = target("*/2 * * * * *").replace("{base}", &site.url(""));
    rename_over(&configs.join("shop.toml"), &frequent);
    wait_for(|| d.runs("shop").len() >= 2, "the new schedule fires");

    // A broken edit keeps the last good version running and is reported.
    let broken = frequent.replace(
        "profile = \"quick\"",
        "profile = \"quick\"\nmax_pages = \"many\"",
    );
    rename_over(&configs.join("shop.toml"), &broken);
    wait_for(
        || {
            d.status()["errors"]
                .as_array()
                .is_some_and(|e| !e.is_empty())
        },
        "the error is reported",
    );
    let status = d.status();
    // Typed: file, line, column and key each a field of its own.
    let error = &status["errors"][0];
    assert!(
        error["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("shop.toml")),
        "{status}"
    );
    assert_eq!(
        (&error["line"], &error["column"], &error["key"]),
        (&4.into(), &13.into(), &"max_pages".into()),
        "{status}"
    );
    assert_eq!(d.target("shop").unwrap()["stale"], true);
    let before = d.runs("shop").len();
    wait_for(
        || d.runs("shop").len() > before,
        "the last good version keeps running",
    );

    // Other files' valid changes still apply meanwhile.
    rename_over(&configs.join("other.toml"), &yearly);
    wait_for(
        || d.target("other").is_some(),
        "a valid new file next to a broken one is scheduled",
    );

    // ... also after a restart.
    let state = d.state.clone();
    assert_eq!(d.stop(), Some(0));
    let d = Daemon::start(&configs, &state, &[]);
    let text = d.cmd(&["status"]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("last good version") && text.contains("shop.toml:4:13"),
        "{text}"
    );
    let before = d.runs("shop").len();
    wait_for(
        || d.runs("shop").len() > before,
        "the last good version runs after a restart",
    );

    // Deleting the file unschedules the target.
    std::fs::remove_file(configs.join("shop.toml")).unwrap();
    wait_for(|| d.target("shop").is_none(), "the target is unscheduled");
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn trigger_stop_run_and_resume_through_the_socket() {
    trigger_stop_run_and_resume(None);
}

/// The same with the daemon's store in PostgreSQL (`crawld run` with
/// CRAWLD_CLUSTER): reading commands on its state dir go through it.
#[test]
fn trigger_stop_run_and_resume_on_postgres() {
    if let Some(db) = common::postgres::database() {
        trigger_stop_run_and_resume(Some(db.url()));
    }
}

fn trigger_stop_run_and_resume(database_url: Option<&str>) {
    let site = slow_site(400);
    let (tmp, configs) = setup(&site, &[("shop.toml", &target("0 0 0 1 1 *"))]);
    let state = tmp.path().join("state");
    if let Some(url) = database_url {
        common::state::use_database(&state, url);
    }
    let d = Daemon::start(&configs, &state, &[]);
    // The status says where the store is, without the password.
    let database = d.status()["database"].as_str().map(str::to_owned);
    assert_eq!(database.is_some(), database_url.is_some(), "{database:?}");
    if let Some(shown) = database {
        assert!(shown.starts_with("postgres://crawld@"), "{shown}");
        assert!(!shown.contains("crawld:crawld@"), "no password: {shown}");
    }

    d.cmd(&["trigger", "shop", "--full"]).assert().success();
    wait_for(
        || d.target("shop").unwrap()["running"].is_object(),
        "the run is in progress",
    );
    assert_eq!(d.target("shop").unwrap()["running"]["mode"], "full");
    // A second trigger is refused, naming the running run.
    d.cmd(&["trigger", "shop"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("is running run"));
    wait_for(
        || site.stats.status_count(200) >= 2,
        "some pages are fetched",
    );
    d.cmd(&["stop-run", "shop"]).assert().success();
    wait_for(
        || d.target("shop").unwrap()["running"].is_null(),
        "the run stops",
    );
    let runs = d.runs("shop");
    assert_eq!(runs[0]["status"], "interrupted");

    // An incremental trigger resumes the interrupted full run, which stays
    // full: the answer names the mode the run really has.
    let resumed = d.cmd(&["trigger", "shop"]).output().unwrap();
    assert!(resumed.status.success());
    let said = String::from_utf8_lossy(&resumed.stdout);
    assert!(
        said.contains(&format!(
            "shop: full run {} started, continuing run {}, which did not finish",
            runs[0]["id"].as_u64().unwrap() + 1,
            runs[0]["id"]
        )),
        "{said}"
    );
    wait_for(
        || d.runs("shop").last().unwrap()["status"] == "completed",
        "the resumed run completes",
    );
    let runs = d.runs("shop");
    assert_eq!(
        runs[1]["resumed_from"], runs[0]["id"],
        "stop-run then trigger resumes"
    );
    assert_eq!(runs[1]["mode"], "full");
    // `crawld crawl` refuses while the daemon owns the state dir. On a
    // database it is one more node of the cluster, and runs a target no
    // node runs (tests/cluster.rs covers one that runs elsewhere).
    let mut crawl = common::state::crawld_on(&d.state);
    crawl
        .args(["crawl", "shop", "--configs"])
        .arg(&configs)
        .arg("--state")
        .arg(&d.state);
    if database_url.is_some() {
        crawl.assert().success();
    } else {
        crawl
            .assert()
            .code(75)
            .stderr(predicates::str::contains("crawld trigger shop"));
    }

    // Reading commands go through the daemon.
    let items = d.cmd(&["export", "shop"]).output().unwrap();
    assert!(items.status.success());
    assert_eq!(String::from_utf8_lossy(&items.stdout).lines().count(), 8);
    d.cmd(&["trigger", "nope"]).assert().code(2);
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn sigterm_checkpoints_the_run_and_sighup_reloads() {
    let site = slow_site(400);
    let (tmp, configs) = setup(&site, &[("shop.toml", &target("0 0 0 1 1 *"))]);
    let state = tmp.path().join("state");
    let d = Daemon::start(&configs, &state, &["--no-watch"]);

    // SIGHUP reloads (the watcher is off here).
    let other = target("0 0 0 1 1 *").replace("{base}", &site.url(""));
    std::fs::write(configs.join("other.toml"), other).unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        d.target("other").is_none(),
        "no watcher: nothing happens by itself"
    );
    d.signal(libc::SIGHUP);
    wait_for(|| d.target("other").is_some(), "SIGHUP reloads");

    d.cmd(&["trigger", "shop"]).assert().success();
    wait_for(|| site.stats.status_count(200) >= 2, "the run is under way");
    let started = Instant::now();
    assert_eq!(d.stop(), Some(0), "a graceful stop exits 0");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "within the grace period"
    );
    assert!(
        !state.join("control.sock").exists(),
        "the socket is removed"
    );
    Command::cargo_bin("crawld")
        .unwrap()
        .args(["status", "--state"])
        .arg(&state)
        .assert()
        .code(1)
        .stderr(predicates::str::contains("no daemon is running"));

    let d = Daemon::start(&configs, &state, &["--no-watch"]);
    assert_eq!(d.runs("shop")[0]["status"], "interrupted");
    d.cmd(&["trigger", "shop"]).assert().success();
    wait_for(
        || d.runs("shop").last().unwrap()["status"] == "completed",
        "the run resumes and completes",
    );
    assert!(d.runs("shop")[1]["resumed_from"].is_u64());
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn store_commands_refuse_at_once_while_the_daemon_runs() {
    let site = slow_site(0);
    let (tmp, configs) = setup(&site, &[("shop.toml", &target("0 0 0 1 1 *"))]);
    let d = Daemon::start(&configs, &tmp.path().join("state"), &[]);
    let pid = d.status()["pid"].clone();
    let asked = Instant::now();
    d.cmd(&["store", "check"])
        .assert()
        .code(75)
        .stderr(predicates::str::contains(format!(
            "is in use by the crawld daemon (pid {pid}): this command needs the state dir to itself; stop the daemon first"
        )));
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "a store command does not wait for the daemon"
    );
    // The reading commands go through the daemon instead.
    d.cmd(&["runs", "shop"]).assert().success();
    // Refusals are typed, each with its exit code.
    d.cmd(&["stop-run", "shop"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains(
            "target shop has no run in progress",
        ));
    d.cmd(&["stop-run", "nope"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("no target nope"));
    assert_eq!(d.stop(), Some(0));
}

fn yearly_full(extra: &str) -> String {
    format!(
        r#"
start_urls = ["{{base}}/"]
profile = "quick"
schedule = "0 0 0 1 1 *"
full_schedule = "0 0 3 * * *"
{extra}
[items.product]
pages = '^/p/'
[items.product.fields]
name = {{ css = "h1::text", required = true }}
"#
    )
}

#[test]
fn new_targets_get_a_first_full_run_within_max_runs() {
    let site = slow_site(150);
    let (tmp, configs) = setup(
        &site,
        &[
            ("a.toml", &yearly_full("")),
            ("b.toml", &yearly_full("")),
            ("c.toml", &yearly_full("catch_up = \"skip\"")),
        ],
    );
    let d = Daemon::start(&configs, &tmp.path().join("state"), &["--max-runs", "1"]);
    let s = d.status();
    assert_eq!(s["running"], 1, "--max-runs 1: {s}");
    assert_eq!(s["queued"], 1, "the other first full run waits: {s}");
    wait_for(
        || {
            ["a", "b"]
                .iter()
                .all(|t| d.runs(t).iter().any(|r| r["status"] == "completed"))
        },
        "both first full runs",
    );
    assert_eq!(d.runs("a")[0]["mode"], "full");
    assert!(
        d.runs("c").is_empty(),
        "catch_up = \"skip\" waits for the schedule"
    );
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn a_full_run_missed_while_down_runs_once_at_start_up() {
    let site = slow_site(0);
    let (tmp, configs) = setup(&site, &[("a.toml", &yearly_full(""))]);
    let state = tmp.path().join("state");
    // A completed full run, and a daily full firing last seen two days ago.
    Command::cargo_bin("crawld")
        .unwrap()
        .args(["crawl", "a", "--full", "--configs"])
        .arg(&configs)
        .arg("--state")
        .arg(&state)
        .assert()
        .success();
    {
        let store = crawld::store::Store::open(&state).unwrap();
        let two_days_ago = chrono::Utc::now() - chrono::Duration::days(2);
        store
            .set_last_fired(
                &crawld::ids::TargetId::new("a"),
                crawld::store::RunMode::Full,
                two_days_ago,
            )
            .unwrap();
    }
    let d = Daemon::start(&configs, &state, &[]);
    wait_for(
        || d.runs("a").len() == 2 && d.runs("a")[1]["status"] == "completed",
        "the missed full run",
    );
    assert_eq!(d.runs("a")[1]["mode"], "full");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.runs("a").len(), 2, "once");
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn max_duration_stops_a_run_and_the_next_start_resumes_it() {
    let site = slow_site(300);
    let t = target("0 0 0 1 1 *").replace(
        "profile = \"quick\"",
        "profile = \"quick\"\nmax_duration = \"700ms\"",
    );
    let (tmp, configs) = setup(&site, &[("shop.toml", &t)]);
    let d = Daemon::start(&configs, &tmp.path().join("state"), &[]);
    d.cmd(&["trigger", "shop"]).assert().success();
    wait_for(
        || {
            d.runs("shop")
                .first()
                .is_some_and(|r| r["status"] == "interrupted")
        },
        "max_duration stops the run",
    );
    // The run record says "interrupted" as the run checkpoints; the daemon
    // lets the target go a moment later, and only then takes a trigger.
    wait_for(|| d.status()["running"] == 0, "the stopped run lets go");
    d.cmd(&["trigger", "shop"]).assert().success();
    wait_for(
        || d.runs("shop").len() == 2 && d.runs("shop")[1]["status"] != "running",
        "the second run ends",
    );
    assert_eq!(d.runs("shop")[1]["resumed_from"], d.runs("shop")[0]["id"]);
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn deleting_a_running_targets_file_stops_and_checkpoints_its_run() {
    let site = slow_site(400);
    let (tmp, configs) = setup(&site, &[("shop.toml", &target("0 0 0 1 1 *"))]);
    let d = Daemon::start(&configs, &tmp.path().join("state"), &[]);
    d.cmd(&["trigger", "shop"]).assert().success();
    wait_for(|| site.stats.status_count(200) >= 2, "the run is under way");
    std::fs::remove_file(configs.join("shop.toml")).unwrap();
    wait_for(|| d.target("shop").is_none(), "the target is unscheduled");
    wait_for(|| d.status()["running"] == 0, "its run stops");
    assert_eq!(
        d.runs("shop")[0]["status"],
        "interrupted",
        "checkpointed, resumable if the file comes back"
    );
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn a_full_firing_during_an_incremental_run_starts_right_after_it() {
    let site = slow_site(250);
    // Incremental every second, runs of about a second: full firings land in them.
    let t = target("* * * * * *").replace(
        "[follow]",
        "full_schedule = \"*/3 * * * * *\"\ncatch_up = \"skip\"\n[follow]",
    );
    let (tmp, configs) = setup(&site, &[("shop.toml", &t)]);
    let log = tmp.path().join("daemon.log");
    let d = Daemon::start_logged(&configs, &tmp.path().join("state"), &[], Some(&log));
    let deferred = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("Full firing during an incremental run")
    };
    wait_for(deferred, "a full firing lands in an incremental run");
    wait_for(
        || {
            d.runs("shop")
                .iter()
                .filter(|r| r["mode"] == "full" && r["status"] == "completed")
                .count()
                >= 1
        },
        "the full run",
    );
    let runs = d.runs("shop");
    for pair in runs.windows(2) {
        assert!(
            pair[1]["started_ms"].as_u64() >= pair[0]["ended_ms"].as_u64(),
            "never two at once: {pair:?}"
        );
    }
    assert_eq!(d.stop(), Some(0));
}

/// A daemon on PostgreSQL started while the database refuses connections
/// (a server still starting, say) waits for it instead of exiting with a
/// status systemd would not restart, and starts once it answers.
#[test]
#[allow(clippy::disallowed_methods)] // the outage's length, on a plain thread
fn a_daemon_waits_for_its_database_at_start_up() {
    let Some(db) = common::postgres::database() else {
        return;
    };
    let site = slow_site(0);
    let (tmp, configs) = setup(&site, &[("shop.toml", &target("0 0 0 1 1 *"))]);
    let state = tmp.path().join("state");
    common::state::use_database(&state, db.url());
    let name = db.name().to_owned();
    let admin = db.admin_url().to_owned();
    common::postgres::sql(
        &admin,
        &format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false"),
    );
    let outage = Duration::from_millis(1500);
    let back = std::thread::spawn(move || {
        std::thread::sleep(outage);
        common::postgres::sql(
            &admin,
            &format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true"),
        );
    });
    let began = Instant::now();
    let d = Daemon::start(&configs, &state, &[]);
    assert!(
        began.elapsed() >= outage,
        "the daemon answered before its database did"
    );
    back.join().unwrap();
    d.cmd(&["trigger", "shop"]).assert().success();
    wait_for(
        || {
            d.runs("shop")
                .last()
                .is_some_and(|r| r["status"] == "completed")
        },
        "a run completes on the database",
    );
    assert_eq!(d.stop(), Some(0));
}
