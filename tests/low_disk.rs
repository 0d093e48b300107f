//! The daemon short of disk space, on a real small tmpfs (the tests run as
//! root, as CI does): started so, it waits for space instead of exiting
//! with a status systemd's unit does not restart; running so, a run the
//! full disk fails fires `run_failed` in the status, `overdue` fires there
//! too, and the monitors that cannot be recorded are said once, not every
//! second.
#![allow(clippy::disallowed_methods)] // polls child processes with thread sleeps

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use common::daemon::{wait_for, Daemon};
use common::{write_configs, Resource, Site};

/// A tmpfs of `mib` MiB at `dir`, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, mib: u64) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Process::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(ok.success(), "mounting a tmpfs needs root");
        Tmpfs(dir.to_path_buf())
    }

    /// Bytes free on it.
    fn free(&self) -> u64 {
        let path = std::ffi::CString::new(self.0.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: statvfs is plain integers, for which zero is a value.
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: a NUL-terminated path and a struct for statvfs to fill.
        assert_eq!(unsafe { libc::statvfs(path.as_ptr(), &mut s) }, 0);
        s.f_bavail * s.f_frsize
    }

    /// Fills it up to `left` bytes free, with a file that [`Tmpfs::drain`] removes.
    fn fill(&self, left: u64) {
        let size = self.free().saturating_sub(left);
        std::fs::write(self.0.join("filler"), vec![1u8; size as usize]).unwrap();
        assert!(self.free() < 8 << 20, "{} bytes free", self.free());
    }

    fn drain(&self) {
        std::fs::remove_file(self.0.join("filler")).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Process::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn count(log: &Path, needle: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches(needle)
        .count()
}

fn crawld_status(state: &Path) -> Option<serde_json::Value> {
    let out = Process::new(assert_cmd::cargo::cargo_bin("crawld"))
        .args(["status", "--json", "--state"])
        .arg(state)
        .output()
        .ok()?;
    matches!(out.status.code(), Some(0 | 78))
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

/// Fails the test at once if the daemon has exited.
fn alive(child: &mut Child, log: &Path) {
    if let Some(status) = child.try_wait().unwrap() {
        panic!(
            "the daemon exited ({status}):\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
}

const WAITING: &str = "Waiting for free space before opening the store";

#[test]
fn a_daemon_started_short_of_space_waits_for_space_then_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&tmp.path().join("small"), 16);
    let state = disk.0.join("state");
    let configs = tmp.path().join("configs");
    write_configs(
        &configs,
        "",
        &[(
            "shop.toml",
            "start_urls = [\"http://127.0.0.1:9/\"]\nschedule = \"0 0 0 1 1 *\"\n",
        )],
    );
    disk.fill(4 << 20);
    let log = tmp.path().join("daemon.log");
    let mut child = Process::new(assert_cmd::cargo::cargo_bin("crawld"))
        .args(["run", "--configs"])
        .arg(&configs)
        .arg("--state")
        .arg(&state)
        .env("RUST_LOG", "crawld=info")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        || {
            alive(&mut child, &log);
            count(&log, WAITING) == 1
        },
        "the daemon says it waits for space",
    );
    // It stays, and says it once.
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        alive(&mut child, &log);
        assert_eq!(count(&log, WAITING), 1);
        std::thread::sleep(Duration::from_millis(100));
    }

    // The admin frees space: the daemon starts.
    disk.drain();
    wait_for(
        || {
            alive(&mut child, &log);
            crawld_status(&state).is_some()
        },
        "the daemon answers once there is room",
    );
    assert_eq!(count(&log, "Free space is back"), 1);
    // SAFETY: a signal to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_run_failed_by_a_full_disk_fires_run_failed_and_the_monitors_warn_once() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&tmp.path().join("small"), 32);
    let mut pages = HashMap::new();
    pages.insert("/".to_owned(), Resource::html("<title>home</title>"));
    let site = Site::start(pages);
    let configs = tmp.path().join("configs");
    // Every 5 s: the clock monitors tick every second.
    let target = "start_urls = [\"{base}/\"]\nschedule = \"*/5 * * * * *\"\n";
    write_configs(&configs, &site.url(""), &[("shop.toml", target)]);
    let log = tmp.path().join("daemon.log");
    let d = Daemon::start_logged(&configs, &disk.0.join("state"), &[], Some(&log));

    disk.fill(4 << 20);
    d.cmd(&["trigger", "shop"]).assert().success();
    let run_failed = || {
        d.target("shop").and_then(|t| {
            t["monitors"]
                .as_array()?
                .iter()
                .find(|m| m["monitor"] == "run_failed" && m["state"] == "firing")
                .cloned()
        })
    };
    wait_for(|| run_failed().is_some(), "run_failed fires");
    let state = run_failed().unwrap();
    assert!(
        state["message"]
            .as_str()
            .unwrap()
            .contains("not enough free space"),
        "{state}"
    );
    // The clock monitors fail to record at every tick: said once.
    let end = Instant::now() + Duration::from_secs(4);
    while Instant::now() < end {
        let warned = count(&log, "cannot be recorded") + count(&log, "were not recorded");
        assert!(
            warned <= 1,
            "{warned} warnings:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // No run completes: overdue fires, and the status shows it, though
    // its state cannot be recorded.
    wait_for(
        || {
            d.target("shop").is_some_and(|t| {
                t["monitors"].as_array().is_some_and(|ms| {
                    ms.iter()
                        .any(|m| m["monitor"] == "overdue" && m["state"] == "firing")
                })
            })
        },
        "overdue fires in the status",
    );
    let warned = count(&log, "cannot be recorded") + count(&log, "were not recorded");
    assert_eq!(warned, 1);

    disk.drain();
    wait_for(
        || count(&log, "Monitor states are recorded again.") == 1,
        "the recovery is said",
    );
    assert_eq!(d.stop(), Some(0));
}
