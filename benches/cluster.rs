//! Cluster benchmark: `BENCH_CLUSTER=URL cargo bench --bench cluster`.
//!
//! 1, 2 and 3 `crawld run --cluster` daemons on this machine, on a fresh
//! database each time, crawl three targets (three copies of the crawl
//! bench's shop config, `BENCH_PAGES` product pages each, default 3,000),
//! each triggered full on a different node (`t{i}` on node `i mod n`), and
//! the wall time until all three runs completed gives pages/s for the
//! cluster. Two layouts:
//! - **one site**: the three targets crawl one server (one host). One node
//!   at a time leases a host, so more nodes are not faster: the site's
//!   limits are the cluster's;
//! - **three sites**: each target has a server of its own (three hosts),
//!   and the nodes crawl them at once;
//! - **one target, three sites**: one target whose start URLs are on three
//!   servers, triggered on the first node: with two or three nodes its run
//!   is shared (the nodes claim its URLs from the database, a share of
//!   the hosts each).
//!
//! The figures are the cluster's pages/s (all three runs), the daemons'
//! CPU per page (from /proc, all nodes) and the database server's CPU per
//! page. On a machine with few cores the nodes, the servers and PostgreSQL
//! share them: the figures say what spreading targets costs and gains
//! here, not what separate machines would do.

#[allow(dead_code)] // shared with the crawl and scale benches: this one uses a part
mod common;
mod shop;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::pg::{self, Cluster};
use common::server::{self, Server, Site};
use common::{crawld_bin, env_num};

const TARGETS: usize = 3;

use shop::TARGET;

const PROFILE: &str = "[profiles.bench]\nextends = \"aggressive\"\nconcurrency = 64\ndelay = \"0ms\"\ntimeout = \"30s\"\n";

/// The shop, generated once and held in the server's memory.
struct Shop(HashMap<String, Bytes>);

impl Site for Shop {
    /// Known pages have one (the server answers 404 without).
    fn etag(&self, path: &str) -> Option<String> {
        self.0
            .get(path)
            .map(|b| format!("\"{:x}\"", xxhash_rust::xxh3::xxh3_64(b)))
    }

    fn body(&self, path: &str) -> Bytes {
        self.0.get(path).cloned().unwrap_or_default()
    }
}

fn shop_pages(total: usize) -> Shop {
    let lists = total.div_ceil(shop::PER_LIST);
    let mut pages = HashMap::new();
    for l in 1..=lists {
        pages.insert(
            format!("/list/{l}"),
            Bytes::from(shop::listing(l, lists, total)),
        );
    }
    for i in 0..total {
        pages.insert(format!("/p/{i}.html"), Bytes::from(shop::product(i, total)));
    }
    Shop(pages)
}

/// A `crawld run` node, killed when dropped.
struct Node {
    child: Child,
    state: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    fn cpu_secs(&self) -> f64 {
        proc_cpu_secs(self.child.id())
    }
}

fn proc_cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    // SAFETY: sysconf only reads a constant.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11).unwrap_or(0.0) + ticks(12).unwrap_or(0.0)) / per_sec
}

fn crawld(db: &Cluster, args: &[&str], state: &Path) -> std::process::Output {
    Command::new(crawld_bin())
        .args(args)
        .arg("--state")
        .arg(state)
        .env("CRAWLD_CLUSTER", db.url())
        .output()
        .expect("run crawld")
}

#[allow(clippy::disallowed_methods)] // the bench's own thread polls its children
fn start_node(db: &Cluster, configs: &Path, state: PathBuf) -> Node {
    let child = Command::new(crawld_bin())
        .args(["run", "--lease", "10s", "--max-runs", "4", "--configs"])
        .arg(configs)
        .arg("--state")
        .arg(&state)
        .env("CRAWLD_CLUSTER", db.url())
        .env("RUST_LOG", "crawld=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start crawld run");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !crawld(db, &["status"], &state).status.success() {
        assert!(Instant::now() < deadline, "the node did not answer");
        std::thread::sleep(Duration::from_millis(50));
    }
    Node { child, state }
}

/// Completed runs of `target` and their pages fetched.
fn completed(db: &Cluster, target: &str, state: &Path) -> Option<u64> {
    let out = crawld(db, &["runs", target, "--json"], state);
    let runs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).ok()?;
    let last = runs.last()?;
    (last["status"] == "completed").then(|| {
        runs.iter()
            .map(|r| r["counts"]["pages_fetched"].as_u64().unwrap_or(0))
            .sum()
    })
}

#[allow(clippy::disallowed_methods)] // the bench's own thread polls its children
fn run(admin: &str, servers: &[Server], nodes: usize, total: usize, label: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let configs = dir.path().join("configs");
    std::fs::create_dir_all(&configs).unwrap();
    std::fs::write(configs.join("p.toml"), PROFILE).unwrap();
    // One target over every server, or one target per server.
    let shared = label.starts_with("one target");
    let targets = if shared { 1 } else { TARGETS };
    for t in 0..targets {
        let server = &servers[t % servers.len()];
        let mut text = TARGET
            .replace("{addr}", &server.addr)
            .replace("{max_pages}", &(6 * total + 1000).to_string());
        if shared {
            let starts: Vec<String> = servers
                .iter()
                .map(|s| format!("\"http://{}/list/1\"", s.addr))
                .collect();
            text = text.replace(
                &format!("start_urls = [\"http://{}/list/1\"]", server.addr),
                &format!("start_urls = [{}]", starts.join(", ")),
            );
        }
        std::fs::write(configs.join(format!("t{t}.toml")), text).unwrap();
    }
    let db = Cluster::create(admin, &format!("nodes{nodes}"));
    let members: Vec<Node> = (0..nodes)
        .map(|i| start_node(&db, &configs, dir.path().join(format!("node{i}"))))
        .collect();
    let cpu_before: f64 = members.iter().map(Node::cpu_secs).sum();
    let server_before: f64 = servers.iter().map(Server::cpu_secs).sum();
    let db_before = db.sample();
    let started = Instant::now();
    for t in 0..targets {
        let node = &members[t % nodes];
        let out = crawld(&db, &["trigger", &format!("t{t}"), "--full"], &node.state);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut pages = 0;
    for t in 0..targets {
        let name = format!("t{t}");
        loop {
            if let Some(n) = completed(&db, &name, &members[0].state) {
                pages += n;
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(1800),
                "runs did not complete"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = members.iter().map(Node::cpu_secs).sum::<f64>() - cpu_before;
    let server_cpu = servers.iter().map(Server::cpu_secs).sum::<f64>() - server_before;
    db.settle();
    let figures = pg::ServerFigures::between(&db_before, &db.sample(), &db, None);
    let db_cpu = figures
        .cpu
        .map(|c| format!("{:.0} µs/page", c / pages as f64 * 1e6))
        .unwrap_or_else(|| "not measured".into());
    println!(
        "bench: {label}, {nodes} node(s): {pages} pages in {wall:.1} s = {:.0} pages/s; crawld CPU {:.0} µs/page (all nodes); sites' CPU {:.0} µs/page; PostgreSQL CPU {db_cpu}, {:.2} transactions/page",
        pages as f64 / wall,
        cpu / pages as f64 * 1e6,
        server_cpu / pages as f64 * 1e6,
        figures.commits as f64 / pages as f64,
    );
    drop(members);
}

fn main() {
    let total: usize = env_num("BENCH_PAGES", 3_000);
    if server::is_server() {
        server::serve(shop_pages(total));
        return;
    }
    let Some(admin) = pg::cluster_url() else {
        eprintln!("bench: set BENCH_CLUSTER to a PostgreSQL URL whose role may create databases");
        return;
    };
    let one: Vec<Server> = vec![Server::spawn(&[])];
    let three: Vec<Server> = (0..TARGETS).map(|_| Server::spawn(&[])).collect();
    for nodes in 1..=3 {
        run(&admin, &one, nodes, total, "one site");
    }
    for nodes in 1..=3 {
        run(&admin, &three, nodes, total, "three sites");
    }
    for nodes in 1..=3 {
        run(&admin, &three, nodes, total, "one target, three sites");
    }
}
