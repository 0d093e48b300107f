//! Several `crawld run --cluster` daemons on one PostgreSQL database, as
//! an operator runs them: firings taken once, a run owned by one node and
//! resumed by another when that node is killed or stops, `trigger` and
//! `stop-run` from any node, and `status` listing the members.
//!
//! Each node has its own state dir (its socket and files) and the same
//! configs directory; all share the test's database. Skipped without a
//! database (see tests/common/postgres.rs).
#![allow(clippy::disallowed_methods)] // these tests poll child processes with thread sleeps

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::daemon::{wait_for, Daemon};
use common::postgres::TestDatabase;
use common::state::{assert_all_products_once, use_database};
use common::{shop, write_configs, Site};
use serde_json::Value;

/// The nodes' lease in these tests: a killed node's run is resumed within
/// a few seconds (the default is 30 s).
const LEASE: &str = "3s";

const PROFILE: &str = r#"
[profiles.quick]
concurrency = 4
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
max_depth = 10000
[items.product]
pages = '^/p/'
[items.product.fields]
name = {{ css = "h1::text", required = true }}
"#
    )
}

/// A site of `lists` × `per_list` product pages, each taking `delay`.
fn site(lists: usize, per_list: usize, delay: Duration) -> Site {
    let mut pages = shop(lists, per_list);
    for r in pages.values_mut() {
        r.delay = delay;
    }
    Site::start(pages)
}

/// A cluster of `n` nodes on `db`, sharing one configs dir.
struct Cluster {
    _tmp: tempfile::TempDir,
    nodes: Vec<Option<Daemon>>,
    states: Vec<PathBuf>,
}

impl Cluster {
    fn start(db: &TestDatabase, site: &Site, shop_toml: &str, n: usize) -> Cluster {
        Cluster::with_files(
            db,
            site,
            &[("shop.toml", shop_toml), ("p.toml", PROFILE)],
            n,
        )
    }

    fn with_files(db: &TestDatabase, site: &Site, files: &[(&str, &str)], n: usize) -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let configs = tmp.path().join("configs");
        write_configs(&configs, &site.url(""), files);
        let states: Vec<PathBuf> = (0..n)
            .map(|i| tmp.path().join(format!("node{i}")))
            .collect();
        let nodes = states
            .iter()
            .enumerate()
            .map(|(i, state)| {
                use_database(state, db.url());
                let log = std::env::var_os("CRAWLD_TEST_LOGS")
                    .map(|d| PathBuf::from(d).join(format!("node{i}.log")));
                Some(Daemon::start_logged(
                    &configs,
                    state,
                    &["--lease", LEASE],
                    log.as_deref(),
                ))
            })
            .collect();
        Cluster {
            _tmp: tmp,
            nodes,
            states,
        }
    }

    fn node(&self, i: usize) -> &Daemon {
        self.nodes[i].as_ref().expect("a live node")
    }

    fn live(&self) -> impl Iterator<Item = (usize, &Daemon)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, d)| d.as_ref().map(|d| (i, d)))
    }

    /// The node whose status shows the shop target running.
    fn running_node(&self) -> Option<usize> {
        self.live()
            .find(|(_, d)| d.target("shop").is_some_and(|t| t["running"].is_object()))
            .map(|(i, _)| i)
    }

    fn state(&self, i: usize) -> &Path {
        &self.states[i]
    }

    /// Waits until the last run of `target`, read through node `i`, completed.
    fn wait_completed(&self, i: usize, target: &str, what: &str) {
        wait_for(
            || {
                self.node(i)
                    .runs(target)
                    .last()
                    .is_some_and(|r| r["status"] == "completed")
            },
            what,
        );
    }
}

/// Three nodes on a schedule of every 2 s: each firing starts one run,
/// cluster-wide, and the runs do not pile up.
#[test]
fn three_nodes_start_one_run_per_firing() {
    let Some(db) = common::postgres::database() else {
        return;
    };
    let site = site(1, 4, Duration::ZERO);
    let c = Cluster::start(&db, &site, &target("*/2 * * * * *"), 3);
    wait_for(|| c.node(0).runs("shop").len() >= 4, "four firings ran");
    let runs = c.node(1).runs("shop");
    let starts: Vec<u64> = runs
        .iter()
        .map(|r| r["started_ms"].as_u64().unwrap())
        .collect();
    for pair in starts.windows(2) {
        assert!(
            pair[1] - pair[0] >= 1_000,
            "two runs for one firing (started {} ms apart): {runs:#?}",
            pair[1] - pair[0]
        );
    }
    assert!(
        runs.iter().all(|r| r["status"] == "completed"
            || (r["status"] == "running" && r == runs.last().unwrap())),
        "{runs:#?}"
    );
}

/// Three shops of `lists` × `per_list` products, on three hosts. Each
/// product links to the next, and each list to the next: the crawl is deep
/// as well as wide.
fn three_sites(lists: usize, per_list: usize, delay: Duration) -> Vec<Site> {
    (0..3).map(|_| site(lists, per_list, delay)).collect()
}

/// The shop target over `sites`, with `extra` top-level settings.
fn three_host_target(sites: &[Site], extra: &str) -> String {
    let starts: Vec<String> = sites
        .iter()
        .map(|s| format!("\"{}\"", s.url("/")))
        .collect();
    target("0 0 0 1 1 *").replace(
        r#"start_urls = ["{base}/"]"#,
        &format!(
            "start_urls = [{}]\nstrip_params = [\"utm_*\"]\n{extra}",
            starts.join(", ")
        ),
    )
}

/// A 3,000-page target on three hosts, triggered on one node of three:
/// the run's frontier is the database's, every node claims URLs of it from
/// the hosts it was given, and every node fetches a share. The run
/// completes once, with every page fetched once and every item once.
#[test]
fn a_run_is_shared_by_every_node() {
    let Some(db) = common::postgres::database() else {
        return;
    };
    let (lists, per_list) = (10, 100);
    let sites = three_sites(lists, per_list, Duration::from_millis(5));
    let shop = three_host_target(&sites, "");
    let c = Cluster::start(&db, &sites[0], &shop, 3);
    let began = std::time::Instant::now();
    c.node(0)
        .cmd(&["trigger", "shop", "--full"])
        .assert()
        .success();
    c.wait_completed(1, "shop", "the shared run completes");
    let secs = began.elapsed().as_secs_f64();
    let pages = 3 * (lists + lists * per_list);
    let runs = c.node(2).runs("shop");
    assert_eq!(runs.len(), 1, "one run for one firing: {runs:#?}");
    let counts = &runs[0]["counts"];
    let nodes = counts["nodes"].as_object().expect("per-node figures");
    let requests: Vec<usize> = sites.iter().map(|s| s.stats.page_requests()).collect();
    eprintln!("{pages} pages on 3 hosts by 3 nodes in {secs:.1} s: {nodes:?}, requests {requests:?}, fetched {}", counts["pages_fetched"]);
    assert_eq!(counts["pages_fetched"], pages, "{counts:#?}");
    assert_eq!(nodes.len(), 3, "every node worked on the run: {nodes:?}");
    for (node, n) in nodes {
        let n = n.as_u64().unwrap() as usize;
        assert!(n >= pages / 20, "{node} fetched only {n} of {pages} pages");
    }
    assert_eq!(
        requests.iter().sum::<usize>(),
        pages,
        "every page fetched once"
    );
    assert_all_products_once(c.state(2), 3 * lists * per_list);
}

/// A shared run's `max_pages` is counted in the database: nodes admit
/// links at once, and the run fetches exactly that many pages.
#[test]
fn a_shared_run_keeps_max_pages() {
    let Some(db) = common::postgres::database() else {
        return;
    };
    // Slow pages: the other nodes join before the budget is spent.
    let sites = three_sites(4, 100, Duration::from_millis(150));
    let shop = three_host_target(&sites, "max_pages = 300");
    let c = Cluster::start(&db, &sites[0], &shop, 3);
    c.node(1)
        .cmd(&["trigger", "shop", "--full"])
        .assert()
        .success();
    c.wait_completed(0, "shop", "the shared run completes");
    let requests: usize = sites.iter().map(|s| s.stats.page_requests()).sum();
    let runs = c.node(0).runs("shop");
    eprintln!(
        "max_pages 300: {requests} requests, {}",
        runs[0]["counts"]["nodes"]
    );
    assert_eq!(requests, 300, "max_pages holds across the nodes");
    assert_eq!(runs[0]["counts"]["pages_fetched"], 300);
    let nodes = runs[0]["counts"]["nodes"].as_object().unwrap();
    let working = nodes.values().filter(|n| n.as_u64() > Some(0)).count();
    assert!(working >= 2, "the budget was shared: {nodes:?}");
}

/// `kill -9` of the busiest node of a shared run (its owner) at a random
/// moment: the others go on with its hosts once its URL leases expire, the
/// run completes (resumed by one of them), every item is stored once, and
/// the pages fetched twice are at most what the dead node held.
#[test]
fn a_shared_run_survives_kill_9_of_its_busiest_node() {
    let Some(db) = common::postgres::database() else {
        return;
    };
    let (lists, per_list) = (10, 100);
    let sites = three_sites(lists, per_list, Duration::from_millis(5));
    let pages = 3 * (lists + lists * per_list);
    let shop = three_host_target(&sites, "");
    let mut c = Cluster::start(&db, &sites[0], &shop, 3);
    c.node(0)
        .cmd(&["trigger", "shop", "--full"])
        .assert()
        .success();
    let fetched = || sites.iter().map(|s| s.stats.page_requests()).sum::<usize>();
    let at = pages * rand::random_range(20..60) / 100;
    wait_for(|| fetched() >= at, "part of the pages are fetched");
    let before = fetched();
    c.nodes[0] = None; // kill -9 of the run's owner, which fetches the most
    c.wait_completed(1, "shop", "the run completes on the other nodes");
    let duplicates = fetched().saturating_sub(pages);
    eprintln!("kill -9 after {before} of {pages} pages: {duplicates} fetched twice");
    assert_all_products_once(c.state(1), 3 * lists * per_list);
    // What the dead node held: a claim of URLs per host at most.
    assert!(duplicates <= 3 * 256, "{duplicates} pages fetched twice");
}

/// `kill -9` of the node running a run: another node resumes the run once
/// the dead node's lease expires, and every item is stored exactly once.
#[test]
fn a_run_survives_kill_9_of_its_node() {
    let Some(db) = common::postgres::database() else {
        return;
    };
    let (lists, per_list) = (10, 60);
    let products = lists * per_list;
    let site = site(lists, per_list, Duration::from_millis(10));
    let mut c = Cluster::start(&db, &site, &target("0 0 0 1 1 *"), 3);
    // Triggered on one node: it runs there (the lease is the trigger's node's).
    c.node(2)
        .cmd(&["trigger", "shop", "--full"])
        .assert()
        .success();
    wait_for(|| c.running_node().is_some(), "the run is in progress");
    let owner = c.running_node().unwrap();
    assert_eq!(owner, 2, "a triggered run runs on the node asked");
    wait_for(
        || site.stats.status_count(200) >= products / 4,
        "a quarter of the pages are fetched",
    );
    // The status of every node lists the members and who runs the target.
    let members = c.node(0).status()["members"].as_array().unwrap().clone();
    assert_eq!(members.len(), 3, "{members:#?}");
    let running: Vec<&Value> = members
        .iter()
        .filter(|m| m["runs"].as_array().is_some_and(|r| !r.is_empty()))
        .collect();
    assert_eq!(running.len(), 1, "{members:#?}");
    let owner_node = running[0]["node"].as_str().unwrap().to_owned();
    assert!(
        owner_node.contains(&format!("-{}-", c.node(2).pid())),
        "{owner_node}"
    );
    let before = site.stats.page_requests();
    c.nodes[owner] = None; // kill -9
    let killed_at = std::time::Instant::now();
    wait_for(
        || c.running_node().is_some(),
        "another node resumes the run",
    );
    let resumed_after = killed_at.elapsed();
    c.wait_completed(0, "shop", "the run completes");
    assert_all_products_once(c.state(0), products);
    let runs = c.node(1).runs("shop");
    assert_eq!(runs.len(), 2, "{runs:#?}");
    assert_eq!(runs[0]["status"], "interrupted");
    assert_eq!(runs[1]["resumed_from"], runs[0]["id"]);
    let site_pages = products + lists;
    // Requests, not answers: a request the kill cut short was still sent.
    let fetched = site.stats.page_requests();
    let duplicates = fetched.saturating_sub(site_pages);
    eprintln!(
        "kill -9 after {before} pages: resumed after {:.1} s, {duplicates} page(s) fetched twice",
        resumed_after.as_secs_f64()
    );
    assert!(
        resumed_after >= Duration::from_secs(2),
        "resumed before the lease expired: {resumed_after:?}"
    );
    // The dead node's in-flight pages and its last uncommitted batch.
    assert!(
        duplicates <= 4 + 64,
        "{duplicates} duplicate fetches for one kill"
    );
    // Every live node shows the run's monitors, judged where it ran.
    for (i, d) in c.live() {
        wait_for(
            || {
                d.target("shop")
                    .is_some_and(|t| t["monitors"].as_array().is_some_and(|m| !m.is_empty()))
            },
            &format!("node {i} shows the monitors of the run"),
        );
    }
    // The dead node is listed as gone.
    let members = c.node(0).status()["members"].as_array().unwrap().clone();
    assert!(
        members
            .iter()
            .any(|m| m["node"] == owner_node.as_str() && m["alive"] == false),
        "{members:#?}"
    );
}

/// `trigger` on a node while another runs the target is refused, naming
/// that node; `stop-run` on any node stops the run where it runs.
#[test]
fn trigger_and_stop_run_work_from_any_node() {
    let Some(db) = common::postgres::database() else {
        return;
    };
    let site = site(4, 50, Duration::from_millis(20));
    let c = Cluster::start(&db, &site, &target("0 0 0 1 1 *"), 2);
    c.node(0).cmd(&["trigger", "shop"]).assert().success();
    wait_for(|| c.running_node() == Some(0), "the run is in progress");
    let refused = c.node(1).cmd(&["trigger", "shop"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("is running on cluster node") && said.contains(&c.node(0).pid().to_string()),
        "{said}"
    );
    let stop = c.node(1).cmd(&["stop-run", "shop"]).output().unwrap();
    assert!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    assert!(
        String::from_utf8_lossy(&stop.stdout).contains("asked cluster node"),
        "{}",
        String::from_utf8_lossy(&stop.stdout)
    );
    wait_for(
        || c.node(0).target("shop").unwrap()["running"].is_null(),
        "the run stops on its node",
    );
    let runs = c.node(1).runs("shop");
    assert_eq!(runs.last().unwrap()["status"], "interrupted");
    // Stopped, not handed over: no node resumes it on its own.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(c.node(1).runs("shop").len(), runs.len());
    assert!(c.running_node().is_none());
}

/// A node that stops (SIGTERM) hands its run over: another node resumes
/// it at once, without waiting for the lease, and it completes.
#[test]
fn a_stopping_node_hands_its_run_over() {
    let Some(db) = common::postgres::database() else {
        return;
    };
    let (lists, per_list) = (6, 50);
    let site = site(lists, per_list, Duration::from_millis(15));
    let mut c = Cluster::start(&db, &site, &target("0 0 0 1 1 *"), 2);
    c.node(0)
        .cmd(&["trigger", "shop", "--full"])
        .assert()
        .success();
    wait_for(|| c.running_node() == Some(0), "the run is in progress");
    wait_for(
        || site.stats.status_count(200) >= 40,
        "some pages are fetched",
    );
    let stopped = std::time::Instant::now();
    assert_eq!(c.nodes[0].take().unwrap().stop(), Some(0));
    wait_for(
        || c.running_node() == Some(1),
        "the other node resumes the run",
    );
    let resumed_after = stopped.elapsed();
    c.wait_completed(1, "shop", "the run completes");
    assert_all_products_once(c.state(1), lists * per_list);
    let runs = c.node(1).runs("shop");
    assert_eq!(runs.len(), 2, "{runs:#?}");
    assert_eq!(runs[1]["resumed_from"], runs[0]["id"]);
    assert_eq!(runs[1]["mode"], "full", "the resumed run keeps its mode");
    eprintln!("handed over in {:.1} s", resumed_after.as_secs_f64());
}

/// Two targets on one host, run by two nodes at once: the profile's limits
/// hold for the host across the cluster, since one node at a time leases
/// the host (the in-flight maximum is the profile's concurrency, not twice
/// it, and the request rate stays within concurrency / (latency + delay)).
#[test]
fn per_host_limits_hold_across_nodes() {
    let Some(db) = common::postgres::database() else {
        return;
    };
    let (latency, delay) = (Duration::from_millis(20), Duration::from_millis(50));
    let site = site(2, 20, latency);
    let profile = r#"
[profiles.quick]
concurrency = 2
delay = "50ms"
timeout = "30s"
"#;
    let shop = target("0 0 0 1 1 *");
    let c = Cluster::with_files(
        &db,
        &site,
        &[
            ("shop.toml", &shop),
            ("shop2.toml", &shop),
            ("p.toml", profile),
        ],
        2,
    );
    let began = std::time::Instant::now();
    c.node(0).cmd(&["trigger", "shop"]).assert().success();
    c.node(1).cmd(&["trigger", "shop2"]).assert().success();
    for (node, name) in [(0, "shop"), (1, "shop2")] {
        c.wait_completed(node, name, "both runs complete");
    }
    let elapsed = began.elapsed();
    let pages = 2 * (2 * 20 + 2);
    assert_eq!(
        site.stats.page_requests(),
        pages,
        "each target fetched every page once"
    );
    let max = site.stats.max_in_flight();
    assert!(
        max <= 2,
        "{max} requests in flight on one host, with concurrency 2"
    );
    let starts = site.stats.page_starts();
    let span = starts
        .last()
        .unwrap()
        .duration_since(starts[0])
        .as_secs_f64();
    let rate = (starts.len() - 1) as f64 / span;
    let bound = 2.0 / (latency + delay).as_secs_f64();
    eprintln!("{pages} requests in {span:.2} s ({:.1} s in all): {rate:.1} req/s, bound {bound:.1}, max in flight {max}", elapsed.as_secs_f64());
    assert!(
        rate <= bound * 1.1,
        "{rate:.1} requests/s on one host, above {bound:.1}"
    );
}

/// The database goes away during a run (its connections cut and new ones
/// refused, as in a server restart) for longer than the nodes' lease: when
/// it is back, the run completes (on its node, or on the other one if that
/// one took it over first: fencing stops the first), every item once.
#[test]
fn a_run_completes_across_a_database_outage_longer_than_the_lease() {
    let Some(db) = common::postgres::database() else {
        return;
    };
    let (lists, per_list) = (6, 50);
    let site = site(lists, per_list, Duration::from_millis(15));
    let c = Cluster::start(&db, &site, &target("0 0 0 1 1 *"), 2);
    c.node(0)
        .cmd(&["trigger", "shop", "--full"])
        .assert()
        .success();
    wait_for(|| c.running_node() == Some(0), "the run is in progress");
    wait_for(
        || site.stats.page_requests() >= 40,
        "some pages are fetched",
    );
    let (name, admin) = (db.name().to_owned(), db.admin_url().to_owned());
    common::postgres::sql(
        &admin,
        &format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false"),
    );
    common::postgres::sql(
        &admin,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        ),
    );
    // Longer than the 3 s lease: both nodes see the lease expired when the
    // database is back.
    std::thread::sleep(Duration::from_secs(5));
    common::postgres::sql(
        &admin,
        &format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true"),
    );
    c.wait_completed(1, "shop", "the run completes");
    assert_all_products_once(c.state(1), lists * per_list);
    let runs = c.node(1).runs("shop");
    eprintln!(
        "after the outage: {} run(s): {}",
        runs.len(),
        runs.iter()
            .map(|r| format!("{} {}", r["id"], r["status"]))
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert!(
        runs.iter().all(|r| r["status"] != "running"),
        "no run left running: {runs:#?}"
    );
    let site_pages = lists * per_list + lists;
    let fetched = site.stats.page_requests();
    assert!(
        fetched <= site_pages + 2 * (4 + 64),
        "{fetched} requests for {site_pages} pages"
    );
}
