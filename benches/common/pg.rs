//! The PostgreSQL side of the benchmarks (`BENCH_CLUSTER=URL`, a server URL
//! whose role may create databases): a fresh database for the runs, dropped
//! at the end; the server's CPU over a run; the database's size.
//!
//! The server's CPU is read from /proc, so it needs the server on this
//! machine (it is reported as unknown otherwise). Backends come and go
//! during a run, and an exited process's CPU is gone from /proc; but the
//! kernel adds a reaped child's CPU to its parent's `cutime`/`cstime`, and
//! every PostgreSQL process is a child of the postmaster. So the server's
//! CPU at an instant is the postmaster's own and reaped children's time
//! plus each live child's own: exact whoever exits in between, and
//! including the checkpointer, WAL writer and autovacuum, which work for
//! the run as much as its backends do. It is the whole server's, though: a
//! client of another database on the same server is counted too, so each
//! run also reports the transactions other databases committed meanwhile.
//! The WAL the server wrote during a run (`pg_current_wal_lsn`) is the
//! whole server's too.
//!
//! `BENCH_PG_WAITS=1` samples `pg_stat_activity` every 50 ms during each
//! run, from a session of its own (its small CPU is counted in the
//! server's), and reports what the database's sessions were doing: on CPU
//! (`active`, no wait event), waiting for crawld (`idle`, `Client:ClientRead`),
//! for the WAL flush of a commit (`IO:WALSync`, `LWLock:WALWrite`), etc.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Databases made by this process, to name each one apart.
static MADE: AtomicUsize = AtomicUsize::new(0);

/// A database made for a benchmark's runs; dropped with it.
pub struct Cluster {
    /// `BENCH_CLUSTER`: where databases are created and dropped from.
    admin: String,
    /// The database's name and URL, and the URL without its password.
    name: String,
    url: String,
    place: String,
    /// The server's postmaster, when it runs on this machine.
    postmaster: Option<i32>,
    /// The database's size when made.
    empty: u64,
}

/// `BENCH_PG_SETTINGS=name=value;...`: settings of the bench's databases
/// (`ALTER DATABASE ... SET`), to see what a setting changes, e.g.
/// `synchronous_commit=off` what waiting for the WAL's flush costs.
fn settings() -> Vec<String> {
    std::env::var("BENCH_PG_SETTINGS")
        .unwrap_or_default()
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `BENCH_CLUSTER`, if set.
pub fn cluster_url() -> Option<String> {
    std::env::var("BENCH_CLUSTER")
        .ok()
        .filter(|s| !s.is_empty())
}

impl Cluster {
    /// A fresh database on the server at `admin`, named after this process
    /// and `label` (so that one left by a killed bench is recognisable).
    pub fn create(admin: &str, label: &str) -> Cluster {
        let n = MADE.fetch_add(1, Ordering::Relaxed);
        let name = format!("crawld_bench_{}_{label}_{n}", std::process::id());
        let mut url = url::Url::parse(admin).expect("BENCH_CLUSTER: a postgres:// URL");
        url.set_path(&format!("/{name}"));
        execute(admin, &format!("CREATE DATABASE {name}"));
        for setting in settings() {
            execute(admin, &format!("ALTER DATABASE {name} SET {setting}"));
        }
        // Asked while the session is open: its backend is gone after.
        let postmaster = on_connection(admin, |client| {
            Box::pin(async move {
                let row = client.query_one("SELECT pg_backend_pid()", &[]).await?;
                Ok(postmaster_of(row.get(0)))
            })
        })
        .unwrap_or_else(|e| panic!("BENCH_CLUSTER: {e}"));
        if postmaster.is_none() {
            eprintln!(
                "bench: the PostgreSQL server is not on this machine: its CPU is not measured"
            );
        }
        let empty =
            query(admin, &format!("SELECT pg_database_size('{name}')"))[0].get::<_, i64>(0) as u64;
        let place = {
            let mut shown = url.clone();
            let _ = shown.set_password(None);
            shown.into()
        };
        Cluster {
            admin: admin.to_owned(),
            name,
            url: url.into(),
            place,
            postmaster,
            empty,
        }
    }

    /// The database's URL, for `CRAWLD_CLUSTER`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's URL without its password, for messages.
    pub fn place(&self) -> &str {
        &self.place
    }

    /// What a run is measured from: the server's CPU and the transactions
    /// committed in other databases, taken with no connection of ours open.
    pub fn sample(&self) -> Sample {
        let (commits, others, wal) = self.counters();
        Sample {
            cpu: self.postmaster.map(tree_cpu),
            commits,
            others,
            wal,
        }
    }

    /// Waits (up to 5 s) until no backend serves this database any more:
    /// a client that exited has closed its sessions, but their backends
    /// may still be ending, and their last CPU belongs to the run.
    pub fn settle(&self) {
        let Some(postmaster) = self.postmaster else {
            return;
        };
        let needle = format!(" {} ", self.name);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let busy = children(postmaster).any(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                    .unwrap_or(false)
            });
            if !busy {
                return;
            }
            #[allow(clippy::disallowed_methods)] // the bench's own thread
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The database's size on disk (`pg_database_size`), in bytes.
    pub fn size(&self) -> u64 {
        let rows = query(
            &self.admin,
            &format!("SELECT pg_database_size('{}')", self.name),
        );
        rows[0].get::<_, i64>(0) as u64
    }

    /// The size of the database when it was made (the catalogs of an
    /// empty database), in bytes.
    pub fn empty_size(&self) -> u64 {
        self.empty
    }

    /// crawld's tables with their rows and bytes on disk (indexes and TOAST
    /// included), largest first.
    pub fn tables(&self) -> Vec<(String, i64, u64)> {
        let sizes = query(
            &self.url,
            "SELECT c.relname::text, pg_total_relation_size(c.oid) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'crawld' AND c.relkind = 'r' \
             ORDER BY 2 DESC",
        );
        sizes
            .iter()
            .map(|r| {
                let table: String = r.get(0);
                // Counted, not the planner's estimate: it is -1 before an ANALYZE.
                let rows = query(&self.url, &format!("SELECT count(*) FROM crawld.{table}"));
                (table, rows[0].get(0), r.get::<_, i64>(1) as u64)
            })
            .collect()
    }

    /// Runs of the target `bench` recorded in the database: none after a
    /// run means crawld did not use it (a build without `CRAWLD_CLUSTER`).
    pub fn runs(&self) -> i64 {
        try_query(
            &self.url,
            "SELECT count(*) FROM crawld.runs WHERE target = 'bench'",
        )
        .map_or(0, |rows| rows[0].get(0))
    }

    /// With `BENCH_PG_WAITS=1`, starts sampling what this database's
    /// sessions do.
    pub fn watch_waits(&self) -> Option<Waits> {
        if std::env::var("BENCH_PG_WAITS").ok().as_deref() != Some("1") {
            return None;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (admin, name, stopped) = (self.admin.clone(), self.name.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let sql = "SELECT coalesce(state, '?'), \
                       coalesce(wait_event_type || ':' || wait_event, 'on CPU') \
                       FROM pg_stat_activity WHERE datname = $1";
            on_connection(&admin, |client| {
                Box::pin(async move {
                    let (mut samples, mut seen) = (0, BTreeMap::new());
                    while !stopped.load(Ordering::Relaxed) {
                        for row in client.query(sql, &[&name]).await? {
                            let (state, wait): (String, String) = (row.get(0), row.get(1));
                            *seen.entry(format!("{state} {wait}")).or_insert(0u64) += 1;
                        }
                        samples += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Ok((samples, seen))
                })
            })
            .unwrap_or_default()
        });
        Some(Waits { stop, thread })
    }

    /// Transactions committed in this database and in the others so far,
    /// and the WAL's position.
    fn counters(&self) -> (i64, i64, i64) {
        let rows = query(
            &self.admin,
            &format!(
                "SELECT coalesce(sum(xact_commit) FILTER (WHERE datname = '{0}'), 0)::bigint, \
                 coalesce(sum(xact_commit + xact_rollback) \
                     FILTER (WHERE datname IS DISTINCT FROM '{0}'), 0)::bigint, \
                 pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint \
                 FROM pg_stat_database",
                self.name
            ),
        );
        (rows[0].get(0), rows[0].get(1), rows[0].get(2))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // FORCE: a crawld stopped by the limits may have left a session.
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = try_execute(&self.admin, &sql) {
            eprintln!("bench: could not drop the database {}: {e}", self.name);
        }
    }
}

/// The sampling of `BENCH_PG_WAITS`.
pub struct Waits {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(u64, BTreeMap<String, u64>)>,
}

impl Waits {
    /// Stops sampling; the states seen, most seen first, as a line.
    pub fn finish(self) -> String {
        self.stop.store(true, Ordering::Relaxed);
        let (samples, seen) = self.thread.join().unwrap_or_default();
        let all: u64 = seen.values().sum();
        let mut seen: Vec<(String, u64)> = seen.into_iter().collect();
        seen.sort_by_key(|s| std::cmp::Reverse(s.1));
        let shares: Vec<String> = seen
            .iter()
            .map(|(what, n)| format!("{what} {:.0} %", *n as f64 / all.max(1) as f64 * 100.0))
            .collect();
        format!(
            "{samples} samples, {:.1} sessions on average: {}",
            all as f64 / samples.max(1) as f64,
            shares.join(", ")
        )
    }
}

/// The server's state at the start or end of a run.
pub struct Sample {
    /// The server's CPU seconds so far, when it is on this machine.
    cpu: Option<f64>,
    /// Transactions committed or rolled back in other databases so far
    /// (the statistics lag by up to a few seconds).
    others: i64,
    /// Transactions committed in this database so far (a session's count
    /// is complete once it has ended).
    commits: i64,
    /// The WAL's position, in bytes.
    wal: i64,
}

/// What the server did during one run.
pub struct ServerFigures {
    /// The server's CPU seconds, when it is on this machine.
    pub cpu: Option<f64>,
    /// Transactions of other databases meanwhile: another client's work
    /// would be in `cpu` too.
    pub other_transactions: i64,
    /// Transactions committed in the run's database.
    pub commits: i64,
    /// WAL written by the server meanwhile (by every database), in bytes.
    pub wal: u64,
    /// The database's size after the run, and what it grew since made.
    pub size: u64,
    pub grown: u64,
    /// With `BENCH_PG_WAITS=1`: what the sessions were doing.
    pub waits: Option<String>,
}

impl ServerFigures {
    pub fn between(before: &Sample, after: &Sample, db: &Cluster, waits: Option<String>) -> Self {
        let size = db.size();
        ServerFigures {
            grown: size.saturating_sub(db.empty),
            cpu: before.cpu.zip(after.cpu).map(|(b, a)| a - b),
            other_transactions: after.others - before.others,
            commits: after.commits - before.commits,
            wal: (after.wal - before.wal).max(0) as u64,
            size,
            waits,
        }
    }
}

/// The postmaster whose child `backend` is, if it runs on this machine.
fn postmaster_of(backend: i32) -> Option<i32> {
    let stat = stat(backend)?;
    let parent = stat.ppid;
    let comm = std::fs::read_to_string(format!("/proc/{parent}/comm")).ok()?;
    (comm.trim() == "postgres").then_some(parent)
}

/// The postmaster's CPU with its reaped children's, plus each live child's
/// own and reaped children's, in seconds.
fn tree_cpu(postmaster: i32) -> f64 {
    let ticks: u64 = std::iter::once(postmaster)
        .chain(children(postmaster))
        .filter_map(stat)
        .map(|s| s.cpu_ticks)
        .sum();
    // SAFETY: sysconf reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    ticks as f64 / hz as f64
}

/// The live children of `parent`.
fn children(parent: i32) -> impl Iterator<Item = i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(move |&pid| stat(pid).is_some_and(|s| s.ppid == parent))
}

struct Stat {
    ppid: i32,
    /// utime + stime + cutime + cstime, in clock ticks.
    cpu_ticks: u64,
}

fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name, which may hold spaces: state is field 3.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let num = |field: usize| fields.get(field - 3)?.parse::<u64>().ok();
    Some(Stat {
        ppid: num(4)? as i32,
        cpu_ticks: num(14)? + num(15)? + num(16)? + num(17)?,
    })
}

/// Runs `sql` on a connection of its own and returns its rows.
fn query(url: &str, sql: &str) -> Vec<tokio_postgres::Row> {
    try_query(url, sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn execute(url: &str, sql: &str) {
    try_execute(url, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
}

fn try_query(url: &str, sql: &str) -> Result<Vec<tokio_postgres::Row>, String> {
    let sql = sql.to_owned();
    on_connection(url, move |client| {
        Box::pin(async move { client.query(sql.as_str(), &[]).await })
    })
}

fn try_execute(url: &str, sql: &str) -> Result<(), String> {
    let sql = sql.to_owned();
    on_connection(url, move |client| {
        Box::pin(async move { client.batch_execute(sql.as_str()).await })
    })
}

type Work<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, tokio_postgres::Error>> + 'a>>;

/// Connects to `url`, does `work` and disconnects, on a runtime of its own
/// (the bench's thread has none).
fn on_connection<T>(
    url: &str,
    work: impl for<'a> FnOnce(&'a tokio_postgres::Client) -> Work<'a, T>,
) -> Result<T, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        let connection = tokio::spawn(connection);
        let out = work(&client).await.map_err(|e| match e.as_db_error() {
            Some(db) => db.message().to_owned(),
            None => e.to_string(),
        });
        drop(client);
        // Closed before returning: its backend's exit is then no run's.
        let _ = connection.await;
        out
    })
}
