//! A real `crawld run` daemon process for tests, driven through the CLI.
#![allow(clippy::disallowed_methods)] // polls child processes with thread sleeps

use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use serde_json::Value;

/// A `crawld run` child process, killed when dropped.
pub struct Daemon {
    child: Child,
    pub state: PathBuf,
}

impl Daemon {
    pub fn start(configs: &Path, state: &Path, extra: &[&str]) -> Daemon {
        Self::start_logged(configs, state, extra, None)
    }

    /// Starts the daemon, its log going to `log` when given.
    pub fn start_logged(
        configs: &Path,
        state: &Path,
        extra: &[&str],
        log: Option<&Path>,
    ) -> Daemon {
        Self::launch(configs, state, extra, log, None)
    }

    /// Starts the daemon with its open-file limit (soft and hard) at `nofile`.
    pub fn start_with_open_files(
        configs: &Path,
        state: &Path,
        extra: &[&str],
        nofile: u64,
    ) -> Daemon {
        Self::launch(configs, state, extra, None, Some(nofile))
    }

    fn launch(
        configs: &Path,
        state: &Path,
        extra: &[&str],
        log: Option<&Path>,
        nofile: Option<u64>,
    ) -> Daemon {
        // The daemon logs to stdout.
        let stdout = match log {
            Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            None => Stdio::null(),
        };
        let mut cmd = Process::new(assert_cmd::cargo::cargo_bin("crawld"));
        // On the database registered for this state dir, if any.
        cmd.env_remove("CRAWLD_CLUSTER");
        if let Some(url) = super::state::database_of(state) {
            cmd.env("CRAWLD_CLUSTER", url);
        }
        cmd.args(["run", "--grace", "10s", "--configs"])
            .arg(configs)
            .arg("--state")
            .arg(state)
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("CRAWLD_TEST_RUST_LOG").unwrap_or_else(|_| "crawld=info".into()),
            )
            .stdout(stdout)
            .stderr(Stdio::null());
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            let limit = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            // SAFETY: setrlimit is async-signal-safe, and only the child calls it.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let child = cmd.spawn().unwrap();
        let d = Daemon {
            child,
            state: state.to_path_buf(),
        };
        wait_for(|| d.try_status().is_some(), "the daemon answers");
        d
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::cargo_bin("crawld").unwrap();
        cmd.env_remove("CRAWLD_STATE")
            .timeout(Duration::from_secs(30))
            .args(args)
            .arg("--state");
        cmd.arg(&self.state);
        cmd
    }

    pub fn try_status(&self) -> Option<Value> {
        let out = Command::cargo_bin("crawld")
            .unwrap()
            .args(["status", "--json", "--state"])
            .arg(&self.state)
            .output()
            .ok()?;
        // 78: the status, with configuration errors.
        matches!(out.status.code(), Some(0 | 78))
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    pub fn status(&self) -> Value {
        self.try_status().expect("status answers")
    }

    pub fn target(&self, name: &str) -> Option<Value> {
        self.status()["targets"]
            .as_array()?
            .iter()
            .find(|t| t["name"] == name)
            .cloned()
    }

    pub fn runs(&self, name: &str) -> Vec<Value> {
        let out = Command::cargo_bin("crawld")
            .unwrap()
            .args(["runs", name, "--json", "--state"])
            .arg(&self.state)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: a signal to our own child.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// SIGTERM, and the exit code.
    pub fn stop(mut self) -> Option<i32> {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "the daemon stops within its grace period"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `ok` until it holds; fails the test after 30 s.
pub fn wait_for(mut ok: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
