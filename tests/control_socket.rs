//! The control socket between daemons and clients: a daemon never takes over
//! another daemon's socket nor deletes what is not a socket, removes only
//! its own at exit, and a client never waits forever for an answer.
#![allow(clippy::disallowed_methods)] // polls child processes with thread sleeps

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use common::daemon::{wait_for, Daemon};
use common::{shop, write_configs, Site};

const TARGET: &str = r#"
start_urls = ["{base}/"]
profile = "quick"
[follow]
allow = ['^/$', '^/list/', '^/p/']
[items.product]
pages = '^/p/'
[items.product.fields]
name = { css = "h1::text", required = true }
"#;

const PROFILE: &str = r#"
[profiles.quick]
concurrency = 2
delay = "0ms"
timeout = "30s"
"#;

fn configs(dir: &Path, site: &Site) -> std::path::PathBuf {
    let configs = dir.join("configs");
    write_configs(
        &configs,
        &site.url(""),
        &[("shop.toml", TARGET), ("p.toml", PROFILE)],
    );
    configs
}

fn crawld() -> Command {
    let mut cmd = Command::cargo_bin("crawld").unwrap();
    cmd.env_remove("CRAWLD_STATE")
        .env_remove("CRAWLD_SOCKET")
        .env_remove("CRAWLD_SOCKET_TIMEOUT")
        .env_remove("RUNTIME_DIRECTORY")
        .timeout(Duration::from_secs(60));
    cmd
}

/// The state dir the daemon on `socket` reports.
fn status_on(socket: &Path, state: &Path) -> serde_json::Value {
    let out = crawld()
        .args(["status", "--json", "--socket"])
        .arg(socket)
        .arg("--state")
        .arg(state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A daemon on its own `--socket`, killed when dropped.
struct OnSocket {
    child: std::process::Child,
}

impl OnSocket {
    fn start(configs: &Path, state: &Path, socket: &Path) -> OnSocket {
        let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("crawld"))
            .args(["run", "--configs"])
            .arg(configs)
            .arg("--state")
            .arg(state)
            .arg("--socket")
            .arg(socket)
            .env_remove("RUNTIME_DIRECTORY")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let d = OnSocket { child };
        wait_for(
            || {
                crawld()
                    .args(["status", "--socket"])
                    .arg(socket)
                    .arg("--state")
                    .arg(state)
                    .output()
                    .is_ok_and(|o| o.status.success())
            },
            "the daemon answers",
        );
        d
    }

    /// SIGTERM, and the exit code.
    fn stop(mut self) -> Option<i32> {
        // SAFETY: a signal to our own child.
        assert_eq!(
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) },
            0
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "the daemon stops");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for OnSocket {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_second_daemon_on_a_live_socket_is_refused_and_the_first_keeps_it() {
    let site = Site::start(shop(1, 2));
    let tmp = tempfile::tempdir().unwrap();
    let configs = configs(tmp.path(), &site);
    let socket = tmp.path().join("ctl.sock");
    let first = OnSocket::start(&configs, &tmp.path().join("state-a"), &socket);
    let id = |p: &Path| {
        let m = std::fs::symlink_metadata(p).unwrap();
        (m.dev(), m.ino())
    };
    let bound = id(&socket);
    let second = tmp.path().join("state-b");
    crawld()
        .args(["run", "--configs"])
        .arg(&configs)
        .arg("--state")
        .arg(&second)
        .arg("--socket")
        .arg(&socket)
        .assert()
        .code(75)
        .stderr(predicates::str::contains(format!(
            "another crawld daemon answers on the control socket {}",
            socket.display()
        )));
    assert!(!second.exists(), "the refused daemon created its state dir");
    assert_eq!(id(&socket), bound, "the first daemon's socket is untouched");
    status_on(&socket, &tmp.path().join("state-a"));
    assert_eq!(first.stop(), Some(0));
    assert!(!socket.exists(), "the first daemon removes its own socket");
}

#[test]
fn a_file_at_the_socket_path_is_kept_and_a_stale_socket_replaced() {
    let site = Site::start(shop(1, 2));
    let tmp = tempfile::tempdir().unwrap();
    let configs = configs(tmp.path(), &site);
    let path = tmp.path().join("ctl.sock");
    std::fs::write(&path, "precious").unwrap();
    crawld()
        .args(["run", "--configs"])
        .arg(&configs)
        .arg("--state")
        .arg(tmp.path().join("state"))
        .arg("--socket")
        .arg(&path)
        .assert()
        .code(78)
        .stderr(predicates::str::contains("is not a socket"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");

    // A socket nobody listens on any more: a dead daemon's.
    std::fs::remove_file(&path).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(std::fs::symlink_metadata(&path)
        .unwrap()
        .file_type()
        .is_socket());
    let d = OnSocket::start(&configs, &tmp.path().join("state"), &path);
    status_on(&path, &tmp.path().join("state"));
    drop(d);
}

#[test]
fn a_daemon_removes_at_exit_only_the_socket_it_bound() {
    let site = Site::start(shop(1, 2));
    let tmp = tempfile::tempdir().unwrap();
    let configs = configs(tmp.path(), &site);
    let socket = tmp.path().join("ctl.sock");
    let d = OnSocket::start(&configs, &tmp.path().join("state"), &socket);
    // Someone else's socket now lives at the path (as a second daemon's
    // would, after ours was removed by hand).
    std::fs::remove_file(&socket).unwrap();
    let theirs = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    assert_eq!(d.stop(), Some(0));
    assert!(
        std::fs::symlink_metadata(&socket).is_ok(),
        "the daemon removed a socket it did not bind"
    );
    drop(theirs);
}

/// A listener that accepts every connection and never answers: a stopped
/// or hung daemon, as a client sees it.
fn silent_listener(path: &Path) -> std::thread::JoinHandle<()> {
    let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            match conn {
                Ok(c) => held.push(c),
                Err(_) => return,
            }
        }
    })
}

#[test]
fn clients_give_up_on_a_daemon_that_does_not_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("ctl.sock");
    let _listener = silent_listener(&socket);
    let state = tmp.path().join("state");
    for args in [
        vec!["status"],
        vec!["trigger", "shop"],
        vec!["export", "shop"],
    ] {
        let started = Instant::now();
        let out = crawld()
            .args(&args)
            .arg("--socket")
            .arg(&socket)
            .arg("--state")
            .arg(&state)
            .env("CRAWLD_SOCKET_TIMEOUT", "2s")
            .timeout(Duration::from_secs(30))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(&format!(
                "the daemon did not answer on {} within 2s",
                socket.display()
            )),
            "{args:?}: {err}"
        );
        assert!(err.contains("restart it"), "{args:?}: {err}");
        assert!(started.elapsed() < Duration::from_secs(20), "{args:?}");
    }
}

#[test]
fn a_stopped_daemon_times_out_its_clients_and_answers_once_continued() {
    let site = Site::start(shop(1, 2));
    let tmp = tempfile::tempdir().unwrap();
    let configs = configs(tmp.path(), &site);
    let d = Daemon::start(&configs, &tmp.path().join("state"), &[]);
    d.signal(libc::SIGSTOP);
    d.cmd(&["status"])
        .env("CRAWLD_SOCKET_TIMEOUT", "2s")
        .env_remove("RUNTIME_DIRECTORY")
        .assert()
        .code(1)
        .stderr(predicates::str::contains("did not answer"));
    d.signal(libc::SIGCONT);
    wait_for(|| d.try_status().is_some(), "the daemon answers again");
}

#[test]
fn store_backup_goes_through_a_running_daemon_and_restores() {
    let mut pages = shop(2, 10);
    for (path, page) in pages.iter_mut() {
        if path.starts_with("/p/") {
            page.delay = Duration::from_millis(30);
        }
    }
    let site = Site::start(pages);
    let tmp = tempfile::tempdir().unwrap();
    let configs = configs(tmp.path(), &site);
    let d = Daemon::start(&configs, &tmp.path().join("state"), &[]);
    let restored = |name: &str| {
        let file = tmp.path().join(format!("{name}.backup"));
        d.cmd(&["store", "backup", file.to_str().unwrap()])
            .assert()
            .success()
            .stdout(predicates::str::contains("by the daemon"));
        let into = tmp.path().join(name);
        crawld()
            .args(["store", "restore"])
            .arg(&file)
            .arg("--state")
            .arg(&into)
            .assert()
            .success();
        // Consistent, though taken while the run wrote.
        crawld()
            .args(["store", "check", "--state"])
            .arg(&into)
            .assert()
            .success();
        into
    };
    d.cmd(&["trigger", "shop"]).assert().success();
    restored("during");
    wait_for(
        || {
            d.runs("shop")
                .last()
                .is_some_and(|r| r["status"] == "completed")
        },
        "the run completes",
    );
    let after = restored("after");
    let export = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let live = export(&mut d.cmd(&["export", "shop"]));
    let copy = export(crawld().args(["export", "shop", "--state"]).arg(&after));
    assert!(String::from_utf8_lossy(&copy).lines().count() > 10);
    assert_eq!(live, copy, "the restored store holds the daemon's items");
    assert_eq!(d.stop(), Some(0));
}
