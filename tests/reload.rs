//! The daemon's config reloads, as an operator sees them in its log and in
//! `crawld status`: an idle daemon does not reload, a broken file's errors are
//! logged once per change, a fix is logged, and `status` exits 78 while the
//! configs have errors.
#![allow(clippy::disallowed_methods)] // these tests poll child processes with thread sleeps

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::daemon::{wait_for, Daemon};
use common::write_configs;

/// A target that never fires during a test and has no catch-up run: nothing
/// is fetched, so no site is needed.
const GOOD: &str = r#"
start_urls = ["http://127.0.0.1:9/"]
schedule = "0 0 0 1 1 *"
"#;

const BROKEN: &str = r#"
start_urls = ["http://127.0.0.1:9/"]
schedule = "0 0 0 1 1 *"
max_pages = "many"
"#;

/// A temp dir with `configs/` holding `files`, and the daemon's log path.
fn setup(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let configs = tmp.path().join("configs");
    write_configs(&configs, "", files);
    let log = tmp.path().join("daemon.log");
    (tmp, configs, log)
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

/// How often `needle` occurs in the daemon's log so far.
fn count(log: &Path, needle: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches(needle)
        .count()
}

/// Watches the log for `window` and fails as soon as `needle` occurs more
/// than `max` times. Asserting that something does NOT repeat needs an
/// observation window rather than a poll for a condition; before the fix the
/// daemon reloaded twice a second, so 3 s shows about six repeats.
fn stays_at_most(log: &Path, needle: &str, max: usize, window: Duration) {
    let end = Instant::now() + window;
    while Instant::now() < end {
        let n = count(log, needle);
        assert!(
            n <= max,
            "{needle:?} logged {n} times, at most {max} expected:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

const ERROR: &str = "Config error: ";
const RELOADED: &str = "Configs reloaded.";

#[test]
fn an_idle_daemon_does_not_reload_and_logs_a_broken_file_once() {
    let (tmp, configs, log) = setup(&[("good.toml", GOOD), ("broken.toml", BROKEN)]);
    let d = Daemon::start_logged(&configs, &tmp.path().join("state"), &[], Some(&log));
    wait_for(
        || count(&log, "Daemon started.") == 1,
        "the daemon logs its start",
    );
    assert_eq!(count(&log, ERROR), 1, "the error is logged at start");
    assert_eq!(count(&log, "broken.toml:4:13: max_pages"), 1);

    // One reload that no file change caused: it reads every file, and the
    // daemon's own reads must not set off the next reload, nor repeat the error.
    d.signal(libc::SIGHUP);
    wait_for(|| count(&log, RELOADED) == 1, "SIGHUP reloads");
    stays_at_most(&log, RELOADED, 1, Duration::from_secs(3));
    assert_eq!(count(&log, ERROR), 1);
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn a_broken_file_is_logged_once_per_change_and_its_fix_is_logged() {
    let (tmp, configs, log) = setup(&[("good.toml", GOOD), ("shop.toml", GOOD)]);
    let d = Daemon::start_logged(&configs, &tmp.path().join("state"), &[], Some(&log));
    wait_for(
        || count(&log, "Daemon started.") == 1,
        "the daemon logs its start",
    );
    assert_eq!(count(&log, ERROR), 0);

    // Broken: one reload, one error.
    rename_over(&configs.join("shop.toml"), BROKEN);
    wait_for(|| count(&log, ERROR) == 1, "the error is logged");
    wait_for(|| count(&log, RELOADED) >= 1, "the reload is logged");
    assert!(count(&log, "shop.toml:4:13: max_pages") == 1);

    // Fixed: said once.
    rename_over(&configs.join("shop.toml"), GOOD);
    wait_for(
        || count(&log, "Config file fixed") == 1,
        "the fix is logged",
    );
    let fixed = std::fs::read_to_string(&log).unwrap();
    assert!(fixed.contains("shop.toml"), "{fixed}");
    wait_for(|| count(&log, RELOADED) >= 2, "the fix's reload is logged");

    // Broken again: logged once more, and not repeated while idle.
    let before = count(&log, RELOADED);
    rename_over(&configs.join("shop.toml"), BROKEN);
    wait_for(|| count(&log, ERROR) == 2, "the new error is logged");
    // The reload's own line follows its error line: wait for it, or the
    // count below would miss it and see it as a repeat.
    wait_for(|| count(&log, RELOADED) > before, "the reload is logged");
    let reloads = count(&log, RELOADED);
    stays_at_most(&log, RELOADED, reloads, Duration::from_secs(2));
    assert_eq!(count(&log, ERROR), 2);

    // A reload asked for (SIGHUP) with the same errors does not repeat them.
    d.signal(libc::SIGHUP);
    wait_for(|| count(&log, RELOADED) > reloads, "SIGHUP reloads");
    assert_eq!(count(&log, ERROR), 2);
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn status_exits_78_while_the_configs_have_errors() {
    let (tmp, configs, log) = setup(&[("shop.toml", GOOD)]);
    let d = Daemon::start_logged(&configs, &tmp.path().join("state"), &[], Some(&log));
    d.cmd(&["status"]).assert().success();

    rename_over(&configs.join("shop.toml"), BROKEN);
    wait_for(|| count(&log, ERROR) == 1, "the error is logged");
    // Still the whole status, and the error, then exit 78.
    let out = d.cmd(&["status"]).assert().code(78).get_output().clone();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("last good version") && text.contains("shop.toml:4:13: max_pages"),
        "{text}"
    );
    let out = d
        .cmd(&["status", "--json"])
        .assert()
        .code(78)
        .get_output()
        .clone();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["targets"][0]["stale"], true, "{json}");

    rename_over(&configs.join("shop.toml"), GOOD);
    wait_for(
        || count(&log, "Config file fixed") == 1,
        "the fix is logged",
    );
    d.cmd(&["status"]).assert().success();
    assert_eq!(d.stop(), Some(0));
}

/// Status of target `name`, once it is listed.
fn target(d: &Daemon, name: &str) -> Option<serde_json::Value> {
    d.try_status()?["targets"]
        .as_array()?
        .iter()
        .find(|t| t["name"] == name)
        .cloned()
}

#[test]
fn a_replaced_configs_dir_is_watched_from_then_on() {
    let (tmp, configs, log) = setup(&[("good.toml", GOOD)]);
    let d = Daemon::start_logged(&configs, &tmp.path().join("state"), &[], Some(&log));
    wait_for(|| target(&d, "good").is_some(), "good is listed");

    // mv configs configs.old; mkdir configs: the new directory is what counts.
    std::fs::rename(&configs, tmp.path().join("configs.old")).unwrap();
    std::fs::create_dir(&configs).unwrap();
    wait_for(
        || count(&log, "Target removed") == 1,
        "the empty new directory is loaded",
    );
    // A file written in the new directory is seen.
    rename_over(&configs.join("shop.toml"), GOOD);
    wait_for(
        || target(&d, "shop").is_some(),
        "shop, in the new directory, is loaded",
    );
    // And its change too, by the same watch.
    rename_over(&configs.join("shop.toml"), BROKEN);
    wait_for(
        || count(&log, "shop.toml:4:13: max_pages") == 1,
        "the new file's error is logged",
    );
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn a_configmap_data_swap_is_a_reload() {
    // Kubernetes' layout: books.toml -> ..data/books.toml, ..data -> ..v1/.
    let tmp = tempfile::tempdir().unwrap();
    let configs = tmp.path().join("configs");
    let log = tmp.path().join("daemon.log");
    std::fs::create_dir_all(configs.join("..v1")).unwrap();
    std::fs::write(configs.join("..v1/books.toml"), GOOD).unwrap();
    std::os::unix::fs::symlink("..v1", configs.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/books.toml", configs.join("books.toml")).unwrap();
    let d = Daemon::start_logged(&configs, &tmp.path().join("state"), &[], Some(&log));
    wait_for(|| target(&d, "books").is_some(), "books is listed");

    // The update: a new version's directory, a new ..data renamed over the old.
    std::fs::create_dir(configs.join("..v2")).unwrap();
    std::fs::write(configs.join("..v2/books.toml"), BROKEN).unwrap();
    std::os::unix::fs::symlink("..v2", configs.join("..data_tmp")).unwrap();
    std::fs::rename(configs.join("..data_tmp"), configs.join("..data")).unwrap();
    std::fs::remove_dir_all(configs.join("..v1")).unwrap();
    wait_for(
        || count(&log, "books.toml:4:13: max_pages") == 1,
        "the new version is loaded",
    );
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn an_unreadable_entry_keeps_the_last_good_version_of_its_target() {
    let (tmp, configs, log) = setup(&[("good.toml", GOOD), ("shop.toml", GOOD)]);
    let d = Daemon::start_logged(&configs, &tmp.path().join("state"), &[], Some(&log));
    wait_for(|| target(&d, "shop").is_some(), "shop is listed");

    // shop.toml becomes a dangling symlink: an error, and shop keeps running.
    std::fs::remove_file(configs.join("shop.toml")).unwrap();
    std::os::unix::fs::symlink("nowhere.toml", configs.join("shop.toml")).unwrap();
    wait_for(|| count(&log, ERROR) == 1, "the error is logged");
    assert!(
        count(
            &log,
            "shop.toml: a symlink to nowhere.toml, which does not exist"
        ) == 1
    );
    let shop = target(&d, "shop").expect("shop still runs");
    assert_eq!(shop["stale"], true, "{shop}");
    assert_eq!(count(&log, "Target removed"), 0);

    // A loop: the same.
    std::fs::remove_file(configs.join("shop.toml")).unwrap();
    std::os::unix::fs::symlink("shop.toml", configs.join("shop.toml")).unwrap();
    wait_for(|| count(&log, ERROR) == 2, "the loop's error is logged");
    assert_eq!(target(&d, "shop").expect("shop still runs")["stale"], true);
    assert_eq!(count(&log, "Target removed"), 0);
    assert_eq!(d.stop(), Some(0));
}

/// A configs dir that vanishes (removed, or moved away and not replaced)
/// is a configuration error in `status` (exit 78), and the targets keep
/// running as they were loaded.
#[test]
fn a_vanished_configs_dir_is_an_error_in_status_and_the_targets_keep_running() {
    let (tmp, configs, log) = setup(&[("good.toml", GOOD)]);
    let d = Daemon::start_logged(&configs, &tmp.path().join("state"), &[], Some(&log));
    wait_for(|| target(&d, "good").is_some(), "good is listed");
    std::fs::rename(&configs, tmp.path().join("elsewhere")).unwrap();
    wait_for(
        || {
            d.status()["errors"]
                .to_string()
                .contains("cannot read the configs directory")
        },
        "status shows that the configs dir cannot be read",
    );
    assert!(target(&d, "good").is_some(), "the target keeps running");
    d.cmd(&["status"]).assert().code(78);
    assert_eq!(d.stop(), Some(0));
}
