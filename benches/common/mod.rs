//! What the crawl and scale benchmarks share: the site server in a child
//! process (`server`), and one `crawld crawl` run as a child process,
//! measured by the kernel (`wait4`), so that neither the server's memory
//! nor its CPU is counted against the crawler. With `BENCH_CLUSTER`, the
//! run's store is a PostgreSQL database (`pg`) instead of sled.

pub mod pg;
pub mod server;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// An environment knob parsed as a number, or its default.
pub fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Writes a configs directory with the target `bench` and its profile.
pub fn write_configs(dir: &Path, target: &str, profile: &str) -> PathBuf {
    let configs = dir.join("configs");
    std::fs::create_dir_all(&configs).expect("configs dir");
    std::fs::write(configs.join("bench.toml"), target).expect("write the target");
    std::fs::write(configs.join("profiles.toml"), profile).expect("write the profile");
    configs
}

/// Limits past which a run is stopped (SIGTERM, then SIGKILL): a build that
/// needs gigabytes at a million pages must not take the machine down.
pub struct Limits {
    pub max_rss_mb: u64,
    pub max_secs: Option<u64>,
}

impl Limits {
    /// `BENCH_MAX_RSS_MB` (default 6144) and `BENCH_MAX_SECS` (default none).
    pub fn from_env() -> Self {
        Limits {
            max_rss_mb: env_num("BENCH_MAX_RSS_MB", 6144),
            max_secs: std::env::var("BENCH_MAX_SECS")
                .ok()
                .and_then(|v| v.parse().ok()),
        }
    }
}

/// One `crawld crawl` as a child process, measured by the kernel, with the
/// counts of its run record.
pub struct Measure {
    pub wall: f64,
    pub cpu: f64,
    pub user: f64,
    pub sys: f64,
    pub max_rss_kb: i64,
    /// The run's `counts` from `crawld runs --json`.
    pub counts: serde_json::Value,
    /// Why the run was stopped early, if it was.
    pub stopped: Option<String>,
    /// The site server's CPU seconds during the run.
    pub server_cpu: f64,
    /// On PostgreSQL: what the database server did, and its size after.
    pub db: Option<pg::ServerFigures>,
}

impl Measure {
    pub fn count(&self, name: &str) -> u64 {
        self.counts[name].as_u64().unwrap_or(0)
    }

    pub fn pages(&self) -> u64 {
        self.count("pages_fetched")
    }

    pub fn pages_per_s(&self) -> f64 {
        self.pages() as f64 / self.wall
    }

    /// Crawl CPU per page fetched, in µs.
    pub fn cpu_us_per_page(&self) -> f64 {
        self.cpu / self.pages().max(1) as f64 * 1e6
    }

    pub fn rss_mb(&self) -> f64 {
        self.max_rss_kb as f64 / 1024.0
    }

    pub fn report(&self) {
        if let Some(why) = &self.stopped {
            println!("bench: STOPPED EARLY: {why}");
        }
        let pages = self.pages().max(1) as f64;
        println!(
            "bench: {} pages in {:.2}s wall, {:.0} pages/s",
            self.pages(),
            self.wall,
            self.pages_per_s()
        );
        println!(
            "bench: {:.3} CPU s per 1,000 pages, {:.1} µs per page ({:.2}s user, {:.2}s sys)",
            self.cpu / pages * 1000.0,
            self.cpu_us_per_page(),
            self.user,
            self.sys
        );
        println!(
            "bench: {:.1} MB of bodies received; {} answered 304, {} failed; items new {}, changed {}, unchanged {}, invalid {}",
            self.count("bytes") as f64 / 1e6,
            self.count("pages_not_modified"),
            self.count("pages_failed"),
            self.count("items_new"),
            self.count("items_changed"),
            self.count("items_unchanged"),
            self.count("items_invalid"),
        );
        println!("bench: peak RSS {:.1} MB", self.rss_mb());
        println!(
            "bench: site server {:.2} CPU s, {:.0} % of one core over the run",
            self.server_cpu,
            self.server_cpu / self.wall * 100.0
        );
        if let Some(db) = &self.db {
            match db.cpu {
                Some(cpu) => println!(
                    "bench: PostgreSQL server {:.2} CPU s: {:.3} CPU s per 1,000 pages, {:.1} µs per page, {:.0} % of one core over the run",
                    cpu,
                    cpu / pages * 1000.0,
                    cpu / pages * 1e6,
                    cpu / self.wall * 100.0
                ),
                None => println!("bench: PostgreSQL server CPU unknown (not on this machine)"),
            }
            println!(
                "bench: database {:.1} MB after the run ({:.1} MB more than when it was made, empty); WAL {:.1} MB, {:.0} bytes per page; {} transactions in its database ({:.2} per page; each statement or prepare outside a BEGIN counts), {} in others meanwhile",
                db.size as f64 / 1e6,
                db.grown as f64 / 1e6,
                db.wal as f64 / 1e6,
                db.wal as f64 / pages,
                db.commits,
                db.commits as f64 / pages,
                db.other_transactions
            );
            if let Some(waits) = &db.waits {
                println!("bench: database sessions (pg_stat_activity): {waits}");
            }
        }
    }
}

/// Runs `crawld crawl bench` (`mode`: `--full` or empty) and measures it;
/// its store is `cluster`'s database when given (crawld's `CRAWLD_CLUSTER`;
/// `state` still holds what is the node's own), sled in `state` otherwise.
#[allow(clippy::zombie_processes)] // reaped by wait4, which also yields its rusage
pub fn measure(
    configs: &Path,
    state: &Path,
    mode: &str,
    server: &server::Server,
    limits: &Limits,
    cluster: Option<&pg::Cluster>,
) -> Measure {
    let db_before = cluster.map(pg::Cluster::sample);
    let server_before = server.cpu_secs();
    let started = Instant::now();
    let mut cmd = std::process::Command::new(crawld_bin());
    cmd.args(["crawl", "bench", "--no-progress", "--configs"])
        .arg(configs)
        .arg("--state")
        .arg(state)
        .stdout(std::process::Stdio::null());
    if !mode.is_empty() {
        cmd.arg(mode);
    }
    use_store(&mut cmd, cluster);
    let waits = cluster.and_then(pg::Cluster::watch_waits);
    let child = cmd.spawn().expect("spawn crawld");
    let (status, usage, stopped) = wait(child.id() as libc::pid_t, started, limits);
    let wall = started.elapsed().as_secs_f64();
    let waits = waits.map(pg::Waits::finish);
    let server_cpu = server.cpu_secs() - server_before;
    let db_after = cluster.map(|c| {
        c.settle();
        c.sample()
    });
    // A panic, not an exit: unwinding drops (and so kills) the server.
    assert!(
        stopped.is_some() || (libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0),
        "crawld did not exit cleanly (status {status})"
    );
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let db = cluster
        .zip(db_before.zip(db_after))
        .map(|(c, (before, after))| {
            assert!(
                stopped.is_some() || c.runs() > 0,
                "crawld recorded no run in {}: a build that ignores CRAWLD_CLUSTER?",
                c.place()
            );
            pg::ServerFigures::between(&before, &after, c, waits)
        });
    Measure {
        wall,
        cpu: secs(usage.ru_utime) + secs(usage.ru_stime),
        user: secs(usage.ru_utime),
        sys: secs(usage.ru_stime),
        max_rss_kb: usage.ru_maxrss,
        counts: last_run_counts(state, cluster),
        stopped,
        server_cpu,
        db,
    }
}

/// Waits for the crawler, stopping it past the limits. Polls (`WNOHANG`)
/// rather than blocking in `wait4` so that the same thread can watch its
/// RSS, and so that no other thread ever signals a pid already reaped.
#[allow(clippy::disallowed_methods)] // the bench's own thread, not an async worker
fn wait(
    pid: libc::pid_t,
    started: Instant,
    limits: &Limits,
) -> (i32, libc::rusage, Option<String>) {
    let mut stopped: Option<String> = None;
    let mut killed_at: Option<Instant> = None;
    let mut next_note = Duration::from_secs(60);
    let mut polls = 0u64;
    loop {
        let mut status = 0;
        // SAFETY: plain POSIX calls on a zeroed rusage and our own child's pid.
        let (reaped, usage) = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            let r = libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage);
            (r, usage)
        };
        if reaped == pid {
            return (status, usage, stopped);
        }
        if reaped < 0 {
            panic!("wait4 failed: {}", std::io::Error::last_os_error());
        }
        polls += 1;
        // RSS every 100 ms; the 2 ms poll keeps the wall time exact.
        if polls.is_multiple_of(50) {
            let rss_mb = rss_kb(pid) / 1024;
            let elapsed = started.elapsed();
            if elapsed >= next_note {
                eprintln!("bench: ... {:.0}s, RSS {rss_mb} MB", elapsed.as_secs_f64());
                next_note += Duration::from_secs(60);
            }
            let why = if rss_mb > limits.max_rss_mb {
                Some(format!("RSS {rss_mb} MB passed {} MB", limits.max_rss_mb))
            } else if limits.max_secs.is_some_and(|s| elapsed.as_secs() >= s) {
                Some(format!("still running after {:.0}s", elapsed.as_secs_f64()))
            } else {
                None
            };
            if stopped.is_none() && why.is_some() {
                stopped = why;
                // SAFETY: our own child, not yet reaped.
                unsafe { libc::kill(pid, libc::SIGTERM) };
                killed_at = Some(Instant::now());
            }
        }
        if killed_at.is_some_and(|t| t.elapsed() > Duration::from_secs(20)) {
            // SAFETY: our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed_at = None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A live process's resident set, from /proc (0 if it cannot be read).
fn rss_kb(pid: libc::pid_t) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The last run's counts, from `crawld runs bench --json`.
fn last_run_counts(state: &Path, cluster: Option<&pg::Cluster>) -> serde_json::Value {
    let mut cmd = std::process::Command::new(crawld_bin());
    cmd.args(["runs", "bench", "--json", "--state"]).arg(state);
    use_store(&mut cmd, cluster);
    let runs = cmd.output().expect("crawld runs");
    // A run stopped by SIGKILL may have left no record: its counts are null.
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap_or_default();
    let last = runs.as_array().and_then(|r| r.last()).cloned();
    last.map_or(serde_json::Value::Null, |r| r["counts"].clone())
}

/// Points a crawld command at `cluster`'s database, or at sled in its
/// state dir whatever the bench's own environment says.
fn use_store(cmd: &mut std::process::Command, cluster: Option<&pg::Cluster>) {
    match cluster {
        Some(c) => cmd.env("CRAWLD_CLUSTER", c.url()),
        None => cmd.env_remove("CRAWLD_CLUSTER"),
    };
}

/// Bytes of every file under `dir`.
pub fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// The crawld binary to measure: this build's, or `BENCH_CRAWLD`.
pub fn crawld_bin() -> std::ffi::OsString {
    std::env::var_os("BENCH_CRAWLD").unwrap_or_else(|| env!("CARGO_BIN_EXE_crawld").into())
}
