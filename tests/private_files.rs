//! What crawld creates is private whatever the umask, a path the user names
//! is written through (never replaced by something else), and a command
//! that fails or only reads leaves the state dir as it found it.
#![allow(clippy::disallowed_methods)] // polls a child process with thread sleeps

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use common::state::*;
use common::{shop, Site};

/// `crawld ARGS` under umask 022, as most shells start it.
fn crawld_022(args: &[&std::ffi::OsStr]) -> Process {
    let mut cmd = Process::new("sh");
    cmd.args(["-c", "umask 022 && exec \"$@\"", "sh"])
        .arg(assert_cmd::cargo::cargo_bin("crawld"))
        .args(args)
        .env_remove("CRAWLD_STATE")
        .env_remove("CRAWLD_CONFIGS")
        .env_remove("RUNTIME_DIRECTORY")
        .env_remove("RUST_LOG");
    cmd
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

/// Every directory under `dir` (itself too) is 0700 and every file 0600,
/// but the names in `except`.
fn assert_private(dir: &Path, except: &[&str]) {
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if except.contains(&name.as_str()) {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            assert_private(&path, except);
        } else {
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
}

fn wait_until(mut ok: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_crawl_under_umask_022_creates_a_private_state_dir() {
    let site = Site::start(shop(2, 3));
    let e = env(&site, TARGET);
    let out = crawld_022(&[
        "crawl".as_ref(),
        "shop".as_ref(),
        "--no-progress".as_ref(),
        "--configs".as_ref(),
        e.configs.as_os_str(),
        "--state".as_ref(),
        e.state.as_os_str(),
    ])
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_private(&e.state, &[]);

    // A backup to a new file is private too; an existing one keeps its mode.
    let fresh = e._tmp.path().join("fresh.backup");
    let kept = e._tmp.path().join("kept.backup");
    std::fs::write(&kept, "old").unwrap();
    std::fs::set_permissions(&kept, std::fs::Permissions::from_mode(0o640)).unwrap();
    for file in [&fresh, &kept] {
        let out = crawld_022(&[
            "store".as_ref(),
            "backup".as_ref(),
            file.as_os_str(),
            "--state".as_ref(),
            e.state.as_os_str(),
        ])
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(mode(&fresh), 0o600);
    assert_eq!(mode(&kept), 0o640);
    assert!(std::fs::read(&kept).unwrap().starts_with(b"CRAWLD-BACKUP"));
}

#[test]
fn a_daemon_under_umask_022_keeps_its_state_logs_and_last_good_configs_private() {
    let site = Site::start(shop(1, 2));
    let e = env(&site, TARGET);
    // A config that holds a secret, readable by its owner only.
    let secret = e.configs.join("shop.toml");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let logs = e._tmp.path().join("logs");
    let socket = e._tmp.path().join("ctl.sock");
    let mut child = crawld_022(&[
        "run".as_ref(),
        "--configs".as_ref(),
        e.configs.as_os_str(),
        "--state".as_ref(),
        e.state.as_os_str(),
        "--socket".as_ref(),
        socket.as_os_str(),
        "--log-dir".as_ref(),
        logs.as_os_str(),
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let status = || {
        crawld()
            .args(["status", "--socket"])
            .arg(&socket)
            .arg("--state")
            .arg(&e.state)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    wait_until(status, "the daemon answers");
    let last_good = e.state.join("last-good");
    wait_until(
        || last_good.join("shop.toml").exists(),
        "the configs are kept",
    );
    crawld()
        .args(["trigger", "shop", "--socket"])
        .arg(&socket)
        .arg("--state")
        .arg(&e.state)
        .assert()
        .success();
    wait_until(
        || std::fs::read_dir(&logs).is_ok_and(|mut d| d.next().is_some()),
        "a log file exists",
    );
    assert_eq!(mode(&socket) & 0o777, 0o660, "the socket is for the group");
    // SIGTERM: the daemon stops and settles the store.
    Process::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the daemon stops");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_private(&e.state, &[]);
    assert_private(&logs, &[]);
    assert_eq!(mode(&last_good.join("shop.toml")), 0o600);
}

#[test]
fn export_out_writes_through_a_symlink_and_keeps_a_files_mode() {
    let site = Site::start(shop(1, 3));
    let e = env(&site, TARGET);
    crawl(&e, true).success();
    let export = |out: &Path| {
        crawld()
            .args(["export", "shop", "--state"])
            .arg(&e.state)
            .arg("--out")
            .arg(out)
            .assert()
    };

    let real = e._tmp.path().join("real.jsonl");
    let link = e._tmp.path().join("link.jsonl");
    std::os::unix::fs::symlink("real.jsonl", &link).unwrap();
    export(&link).success();
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read_to_string(&real).unwrap().lines().count(), 3);

    let kept = e._tmp.path().join("kept.jsonl");
    std::fs::write(&kept, "old\n").unwrap();
    std::fs::set_permissions(&kept, std::fs::Permissions::from_mode(0o640)).unwrap();
    export(&kept).success();
    assert_eq!(mode(&kept), 0o640);
    assert_eq!(std::fs::read_to_string(&kept).unwrap().lines().count(), 3);

    // Another user's file keeps its owner (root only can make one).
    if rustix::process::geteuid().is_root() {
        let theirs = e._tmp.path().join("theirs.jsonl");
        std::fs::write(&theirs, "old\n").unwrap();
        std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        export(&theirs).success();
        let meta = std::fs::metadata(&theirs).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), mode(&theirs)),
            (65534, 65534, 0o600)
        );
    }
    let names: Vec<_> = std::fs::read_dir(e._tmp.path())
        .unwrap()
        .map(|d| d.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(names.is_empty(), "no temporary file is left: {names:?}");
}

#[test]
fn export_out_writes_a_fifo_in_place() {
    let site = Site::start(shop(1, 3));
    let e = env(&site, TARGET);
    crawl(&e, true).success();
    let fifo = e._tmp.path().join("pipe");
    assert!(Process::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    crawld()
        .args(["export", "shop", "--state"])
        .arg(&e.state)
        .arg("--out")
        .arg(&fifo)
        .assert()
        .success();
    // Before joining: a FIFO replaced by a file would leave the reader waiting.
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo(),
        "the FIFO was replaced"
    );
    assert_eq!(reader.join().unwrap().lines().count(), 3);
}

/// A device that always answers "no space left": our own node of /dev/full
/// where we may make one, so that nothing here can replace the real one.
fn full_device(dir: &Path) -> PathBuf {
    let node = dir.join("full");
    let made = Process::new("mknod")
        .arg(&node)
        .args(["c", "1", "7"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if made {
        node
    } else {
        PathBuf::from("/dev/full")
    }
}

#[test]
fn export_out_to_a_full_device_fails_and_leaves_the_device() {
    let site = Site::start(shop(1, 3));
    let e = env(&site, TARGET);
    crawl(&e, true).success();
    let full = full_device(e._tmp.path());
    crawld()
        .args(["export", "shop", "--state"])
        .arg(&e.state)
        .arg("--out")
        .arg(&full)
        .assert()
        .code(74)
        .stderr(predicates::str::contains(format!(
            "{}: No space left on device",
            full.display()
        )));
    assert!(std::fs::metadata(&full)
        .unwrap()
        .file_type()
        .is_char_device());
}

#[test]
fn a_failed_restore_or_a_bad_socket_or_http_creates_no_state_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.backup");
    std::fs::write(&bad, "not a backup").unwrap();
    let state = tmp.path().join("new/state");
    crawld()
        .args(["store", "restore"])
        .arg(&bad)
        .arg("--state")
        .arg(&state)
        .assert()
        .code(74);
    assert!(!tmp.path().join("new").exists(), "the restore left a dir");

    let configs = tmp.path().join("configs");
    std::fs::create_dir_all(&configs).unwrap();
    let long = tmp.path().join("s".repeat(120));
    let run = |extra: &[&std::ffi::OsStr]| {
        crawld()
            .args(["run", "--configs"])
            .arg(&configs)
            .arg("--state")
            .arg(&state)
            .args(extra)
            .assert()
            .code(78);
        assert!(!state.exists(), "{extra:?} left a state dir");
    };
    run(&["--socket".as_ref(), long.as_os_str()]);
    run(&["--http".as_ref(), "not-an-address".as_ref()]);
}

#[test]
fn a_reading_command_works_on_a_state_dir_it_cannot_write() {
    // Root reads and writes whatever the modes: the reader is `nobody`.
    let setpriv = Path::new("/usr/bin/setpriv");
    if !rustix::process::geteuid().is_root() || !setpriv.exists() {
        eprintln!("skipped: needs root and setpriv to read as another user");
        return;
    }
    let site = Site::start(shop(1, 3));
    let e = env(&site, TARGET);
    crawl(&e, true).success();
    // A read-only copy, as a snapshot of the state dir would be: readable
    // by everyone, writable by nobody but root.
    let copy = e._tmp.path().join("snapshot");
    assert!(Process::new("cp")
        .arg("-a")
        .arg(&e.state)
        .arg(&copy)
        .status()
        .unwrap()
        .success());
    assert!(Process::new("chmod")
        .args(["-R", "a+rX,a-w"])
        .arg(&copy)
        .status()
        .unwrap()
        .success());
    std::fs::set_permissions(e._tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let before = listing(&copy);
    let out = Process::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(assert_cmd::cargo::cargo_bin("crawld"))
        .args(["export", "shop", "--state"])
        .arg(&copy)
        .env_remove("CRAWLD_STATE")
        .env("TMPDIR", "/tmp")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    assert_eq!(listing(&copy), before, "the reader changed the state dir");
}

/// Every file under `dir` with its length and modification time.
fn listing(dir: &Path) -> Vec<(PathBuf, u64, i64)> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            all.extend(listing(&path));
        } else {
            all.push((path, meta.len(), meta.mtime_nsec()));
        }
    }
    all.sort();
    all
}
