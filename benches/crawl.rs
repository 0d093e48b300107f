//! Crawl throughput benchmark: `cargo bench --bench crawl`.
//!
//! Serves a generated shop (`shop`: 10,000 product pages of 17–31 KB with
//! the markup of a real shop, and 100 listing pages of 100 products each)
//! from a child process on 127.0.0.1, then runs the release `crawld crawl`
//! binary against it as a child process (concurrency 64, no delay, 8 fields
//! per product, every item stored): a full run on an empty store, an
//! incremental run over the unchanged site (all 304), then more full runs.
//! Each run reports wall time, pages/s, CPU per page and per 1,000 pages
//! and the crawler's peak RSS, from the kernel's accounting of the child
//! (wait4), so the server's memory and CPU are not counted.
//!
//! The floor: the same pages, every one of the run's, generated in this
//! process and parsed and extracted with the target's compiled config
//! (`crawld::extract::extract`: items and links, no HTTP, no store), timed
//! by this thread's CPU clock around the extraction only. The headline is
//! the ratio of the full run's CPU per page to the floor's.
//!
//! The sitemap variant (after the 304 run; `BENCH_SITEMAP=0` leaves it
//! out): the target gets `sitemaps = [...]`, a sitemap naming every page of
//! the run with a `<lastmod>` older than the full run, served from a second
//! small server in this process; an incremental run of the unchanged site
//! then asks for no page at all (each skipped as `unchanged_by_sitemap`),
//! and is reported beside the 304 run. The config is put back after it.
//!
//! Cleaning: the floor again with the product's values cleaned (`re`,
//! `replace`, `strip`, `integer`) with the same queries, in turns with a
//! plain one, to report what value processing costs (`BENCH_CLEANED=0`
//! leaves it out).
//!
//! Knobs: `BENCH_PAGES=N` product pages; `BENCH_FULL_RUNS=N` full runs in
//! all (default 10); `BENCH_CRAWLD=PATH` runs another crawld binary (an
//! older build, to compare on one machine); `BENCH_LATENCY_MS=N` makes the
//! server wait N ms before each answer, and each run then reports its
//! pages/s against the ceiling, concurrency / latency.
//!
//! PostgreSQL: `BENCH_CLUSTER=URL` (a server whose role may create
//! databases) creates a fresh database, runs every crawl with
//! `CRAWLD_CLUSTER` pointing at it, and drops it at the end. Each run then
//! also reports the database server's CPU (all its processes, per 1,000
//! pages like the crawler's) and the database's size; the store's size at
//! the end is the database's, table by table. `BENCH_COMPARE_SLED=1` with
//! it measures only full runs, sled and PostgreSQL in turns
//! (`BENCH_COMPARE_RUNS` each, default 3, on a store of each that grows as
//! in the plain bench), and compares their medians. `BENCH_PG_WAITS=1`
//! also samples what the database's sessions wait for, and
//! `BENCH_PG_SETTINGS='name=value;...'` sets settings on the database
//! (e.g. `synchronous_commit=off`), see `common/pg.rs`.

mod common;
mod shop;

use std::collections::HashMap;

use bytes::Bytes;
use common::pg::{self, Cluster};
use common::server::{self, Server, Site};
use common::{env_num, measure, Limits, Measure};

/// Requests in flight (the profile's `concurrency`).
const CONCURRENCY: u32 = 64;

use shop::TARGET;

/// Fields per product in `TARGET`, to check that the floor found them all.
const FIELDS: u64 = 8;

/// `TARGET`'s product with the same queries, their values cleaned as a real
/// config cleans them (`re`, `replace`, `strip`, `integer`): what cleaning
/// adds to the floor is reported beside it.
const CLEANED: &str = r#"
start_urls = ["http://{addr}/list/1"]
[items.product]
pages = '^/p/'
[items.product.fields]
title = { css = "main h1.product-title::text", required = true, strip = ".!" }
price = { css = "div.price-block p.price span.amount::text", re = '[\d.,]+', type = "number", required = true }
sku = { css = "div.product-meta span.sku::text", re = '^BS-(\d+)$', type = "integer" }
availability = { css = "div.availability-block p.availability::text", replace = [['(?i)^in stock.*$', 'in_stock'], ['(?i)^out of stock.*$', 'out_of_stock']] }
rating = { css = "div.rating-summary span.rating-value::text", re = '[\d.]+', type = "number" }
review_count = { css = "div.rating-summary a.review-count::text", re = '(\d+) reviews?', type = "integer" }
weight = { css = "section.specifications table.specs tr[data-spec='weight'] > td::text", re = '(?P<value>[\d.]+) kg', type = "number" }
image = { css = "section.gallery figure.main img::attr(src)", type = "url" }
"#;

fn profile() -> String {
    format!(
        "[profiles.bench]\nextends = \"aggressive\"\nconcurrency = {CONCURRENCY}\ndelay = \"0ms\"\ntimeout = \"30s\"\n"
    )
}

/// The shop, generated once and held in the server's memory.
struct Shop(HashMap<String, (Bytes, String)>);

impl Shop {
    fn new(total: usize) -> Self {
        let t = std::time::Instant::now();
        let mut pages = HashMap::with_capacity(total + total / shop::PER_LIST + 1);
        for_each_page(total, |path, body| {
            let etag = format!("\"{:x}\"", xxhash_rust::xxh3::xxh3_64(body.as_bytes()));
            pages.insert(path, (Bytes::from(body), etag));
        });
        let sizes: Vec<usize> = (0..total)
            .map(|i| pages[&product_path(i)].0.len())
            .collect();
        let all: usize = pages.values().map(|(b, _)| b.len()).sum();
        eprintln!(
            "site: {} pages, {:.1} MB, generated in {:.1}s; product pages {}–{} bytes, mean {}",
            pages.len(),
            all as f64 / 1e6,
            t.elapsed().as_secs_f64(),
            sizes.iter().min().unwrap_or(&0),
            sizes.iter().max().unwrap_or(&0),
            sizes.iter().sum::<usize>() / sizes.len().max(1),
        );
        Shop(pages)
    }
}

impl Site for Shop {
    fn etag(&self, path: &str) -> Option<String> {
        self.0.get(path).map(|(_, etag)| etag.clone())
    }

    fn body(&self, path: &str) -> Bytes {
        self.0.get(path).map(|(b, _)| b.clone()).unwrap_or_default()
    }
}

fn product_path(i: usize) -> String {
    format!("/p/{i}.html")
}

/// Every page of the shop, listings first, with its path.
fn for_each_page(total: usize, mut f: impl FnMut(String, String)) {
    let lists = total.div_ceil(shop::PER_LIST);
    for l in 1..=lists {
        f(format!("/list/{l}"), shop::listing(l, lists, total));
    }
    for i in 0..total {
        f(product_path(i), shop::product(i, total));
    }
}

fn main() {
    let total: usize = env_num("BENCH_PAGES", 10_000);
    if server::is_server() {
        server::serve(Shop::new(total));
        return;
    }
    let server = Server::spawn(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let target = TARGET
        .replace("{addr}", &server.addr)
        .replace("{max_pages}", &(2 * total + 1000).to_string());
    let configs = common::write_configs(dir.path(), &target, &profile());
    let state = dir.path().join("state");
    let limits = Limits::from_env();
    let admin = pg::cluster_url();
    if let Some(url) = admin
        .as_deref()
        .filter(|_| env_num("BENCH_COMPARE_SLED", 0) == 1)
    {
        compare(&configs, dir.path(), &server, &limits, url);
        return;
    }
    let cluster = admin.map(|url| Cluster::create(&url, "crawl"));
    let crawl = |mode: &str| measure(&configs, &state, mode, &server, &limits, cluster.as_ref());

    let floor = floor::measure(&configs, &server.addr, total);
    floor.report();
    if env_num("BENCH_CLEANED", 1) == 1 {
        let cleaned_dir = dir.path().join("cleaned");
        let cleaned = CLEANED.replace("{addr}", &server.addr);
        let cleaned = common::write_configs(&cleaned_dir, &cleaned, &profile());
        // Measured in turns, three times each, and the medians compared:
        // the machine's speed drifts more between two runs than cleaning costs.
        let (mut plain, mut with) = (Vec::new(), Vec::new());
        let mut present = (0, 0);
        for _ in 0..3 {
            plain.push(floor::measure(&configs, &server.addr, total).us_per_page());
            let m = floor::measure(&cleaned, &server.addr, total);
            present = (m.fields(), m.items() * FIELDS);
            with.push(m.us_per_page());
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (p, w) = (median(&mut plain), median(&mut with));
        println!(
            "bench: cleaning: floor with re/replace/strip/integer on 7 of 8 fields {w:.1} µs per page, without {p:.1} µs (medians of 3 in turns): {:+.1} % ({} of {} fields present)",
            (w / p - 1.0) * 100.0,
            present.0,
            present.1
        );
    }
    println!("== full run ({total} product pages) ==");
    let full = crawl("--full");
    full.report();
    ceiling(&full);
    println!(
        "bench: ratio: crawl CPU per page / floor CPU per page = {:.2} ({:.1} µs / {:.1} µs)",
        full.cpu_us_per_page() / floor.us_per_page(),
        full.cpu_us_per_page(),
        floor.us_per_page()
    );
    println!("== incremental run over the unchanged site ==");
    let inc = crawl("");
    inc.report();
    ceiling(&inc);
    println!(
        "bench: incremental / full: wall {:.0}%, CPU {:.0}%, bytes {:.1}%",
        inc.wall / full.wall * 100.0,
        inc.cpu / full.cpu * 100.0,
        inc.count("bytes") as f64 / full.count("bytes").max(1) as f64 * 100.0
    );
    if env_num("BENCH_SITEMAP", 1) == 1 {
        sitemap_run(&configs, &target, total, &server.addr, &inc, &crawl);
    }
    let runs: usize = env_num("BENCH_FULL_RUNS", 10);
    for n in 2..=runs {
        let m = crawl("--full");
        println!(
            "bench: full run {n}: {:.0} pages/s, {:.1} µs CPU per page, peak RSS {:.1} MB{}",
            m.pages_per_s(),
            m.cpu_us_per_page(),
            m.rss_mb(),
            server_cpu(&m)
        );
    }
    match &cluster {
        Some(db) => {
            let size = db.size();
            println!(
                "bench: database {:.1} MB on disk after {runs} full runs and 1 incremental run ({:.1} MB when made, empty)",
                size as f64 / 1e6,
                db.empty_size() as f64 / 1e6
            );
            for (table, rows, bytes) in db.tables() {
                println!(
                    "bench:   crawld.{table}: {rows} rows, {:.1} MB",
                    bytes as f64 / 1e6
                );
            }
        }
        None => println!(
            "bench: store {:.1} MB on disk after {runs} full runs and 1 incremental run",
            common::dir_size(&state) as f64 / 1e6
        ),
    }
}

/// `BENCH_COMPARE_SLED=1`: full runs on sled and on PostgreSQL in turns,
/// the first of each pair alternating, so that the machine's drift falls
/// on both alike; their medians compared.
fn compare(
    configs: &std::path::Path,
    dir: &std::path::Path,
    server: &Server,
    limits: &Limits,
    admin: &str,
) {
    let rounds: usize = env_num("BENCH_COMPARE_RUNS", 3);
    let db = Cluster::create(admin, "compare");
    let (sled_state, pg_state) = (dir.join("sled"), dir.join("pg"));
    let mut sled: Vec<Measure> = Vec::new();
    let mut postgres: Vec<Measure> = Vec::new();
    println!("== sled vs PostgreSQL: {rounds} full runs each, in turns ==");
    for round in 1..=rounds {
        for on_pg in [round % 2 == 0, round % 2 == 1] {
            let (store, state, name) = if on_pg {
                (Some(&db), &pg_state, "PostgreSQL")
            } else {
                (None, &sled_state, "sled")
            };
            let m = measure(configs, state, "--full", server, limits, store);
            println!(
                "bench: round {round}, {name}: {} pages, {:.0} pages/s, {:.1} µs crawld CPU per page, peak RSS {:.1} MB{}",
                m.pages(),
                m.pages_per_s(),
                m.cpu_us_per_page(),
                m.rss_mb(),
                server_cpu(&m)
            );
            if let Some(waits) = m.db.as_ref().and_then(|f| f.waits.as_ref()) {
                println!("bench: database sessions (pg_stat_activity): {waits}");
            }
            if let Some(why) = &m.stopped {
                println!("bench: STOPPED EARLY: {why}");
            }
            if on_pg { &mut postgres } else { &mut sled }.push(m);
        }
    }
    let median = |runs: &[Measure], f: &dyn Fn(&Measure) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (s, p) = (
        median(&sled, &Measure::pages_per_s),
        median(&postgres, &Measure::pages_per_s),
    );
    let cpu = |runs: &[Measure]| median(runs, &Measure::cpu_us_per_page);
    let server_cpu = median(&postgres, &|m| {
        m.db.as_ref().and_then(|f| f.cpu).unwrap_or(f64::NAN) / m.pages().max(1) as f64 * 1e6
    });
    println!(
        "bench: medians: sled {s:.0} pages/s, PostgreSQL {p:.0} pages/s: PostgreSQL at {:.0} % of sled (goal ≥ 60 %)",
        p / s * 100.0
    );
    println!(
        "bench: medians: crawld CPU per page sled {:.1} µs, PostgreSQL {:.1} µs; PostgreSQL server {server_cpu:.1} µs per page",
        cpu(&sled),
        cpu(&postgres),
    );
    println!(
        "bench: sled store {:.1} MB, database {:.1} MB after {rounds} full runs each",
        common::dir_size(&sled_state) as f64 / 1e6,
        db.size() as f64 / 1e6
    );
}

/// On PostgreSQL, the database server's CPU per 1,000 pages of a run, for
/// its one-line report.
fn server_cpu(m: &Measure) -> String {
    m.db.as_ref()
        .and_then(|f| f.cpu)
        .map(|cpu| {
            format!(
                ", PostgreSQL server {:.3} CPU s per 1,000 pages",
                cpu / m.pages().max(1) as f64 * 1000.0
            )
        })
        .unwrap_or_default()
}

/// The sitemap variant (see the module docs), reported beside `inc`, the
/// incremental run answered 304.
fn sitemap_run(
    configs: &std::path::Path,
    target: &str,
    total: usize,
    addr: &str,
    inc: &Measure,
    crawl: &dyn Fn(&str) -> Measure,
) {
    let mut xml = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">"#,
    );
    for_each_page(total, |path, _| {
        xml.push_str(&format!(
            "<url><loc>http://{addr}{path}</loc><lastmod>2020-01-01</lastmod></url>"
        ));
    });
    xml.push_str("</urlset>");
    let sitemaps = serve_sitemap(xml.into_bytes());
    let with = target.replacen(
        "profile = ",
        &format!("sitemaps = [\"http://{sitemaps}/sitemap.xml\"]\nprofile = "),
        1,
    );
    let file = configs.join("bench.toml");
    std::fs::write(&file, with).expect("write the sitemap target");
    println!("== incremental run over the unchanged site, with a sitemap carrying lastmods ==");
    let m = crawl("");
    // Not `report()`: its per-page figures divide by the pages fetched, none here.
    println!(
        "bench: {:.2}s wall, {:.2} CPU s ({:.2}s user, {:.2}s sys), peak RSS {:.1} MB, {:.1} MB of bodies received (the sitemap), site server {:.2} CPU s",
        m.wall,
        m.cpu,
        m.user,
        m.sys,
        m.rss_mb(),
        m.count("bytes") as f64 / 1e6,
        m.server_cpu
    );
    let requests: u64 = m.counts["hosts"]
        .as_object()
        .map(|hosts| hosts.values().filter_map(|h| h["requests"].as_u64()).sum())
        .unwrap_or(0);
    println!(
        "bench: sitemap: {} pages unchanged by sitemap, {} page responses, {} requests in all (the sitemap's included, robots.txt aside); {} sitemap file(s), {} URLs",
        m.count("unchanged_by_sitemap"),
        m.count("pages_fetched"),
        requests,
        m.count("sitemaps_read"),
        m.count("sitemap_urls"),
    );
    println!(
        "bench: sitemap run vs 304 run: wall {:.2}s vs {:.2}s ({:.0}%), CPU {:.2}s vs {:.2}s ({:.0}%), page responses {} vs {}",
        m.wall,
        inc.wall,
        m.wall / inc.wall * 100.0,
        m.cpu,
        inc.cpu,
        m.cpu / inc.cpu * 100.0,
        m.pages(),
        inc.pages()
    );
    std::fs::write(&file, target).expect("put the target back");
}

/// Serves `body` at `/sitemap.xml` from a thread of this process, on its
/// own port (another host for the crawler, so that its robots.txt and
/// limits are its own); returns `127.0.0.1:PORT`.
fn serve_sitemap(body: Vec<u8>) -> String {
    let body = Bytes::from(body);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr").to_string())
                .expect("send the address");
            let app = axum::Router::new().route(
                "/sitemap.xml",
                axum::routing::get(move || {
                    let body = body.clone();
                    async move { body }
                }),
            );
            let _ = axum::serve(listener, app).await;
        });
    });
    rx.recv().expect("the sitemap server's address")
}

/// With `BENCH_LATENCY_MS`, the run's pages/s against concurrency / latency.
fn ceiling(m: &Measure) {
    let latency = server::latency();
    if latency.is_zero() {
        return;
    }
    let ceiling = f64::from(CONCURRENCY) / latency.as_secs_f64();
    println!(
        "bench: latency {} ms: ceiling {ceiling:.0} pages/s ({CONCURRENCY} / {} ms), measured {:.0} pages/s = {:.1} % of it",
        latency.as_millis(),
        latency.as_millis(),
        m.pages_per_s(),
        m.pages_per_s() / ceiling * 100.0
    );
}

mod floor {
    //! The floor: what parsing and extracting the run's pages costs alone.

    use std::path::Path;

    use crawld::extract::{extract, is_present, Kinds};

    /// Pages generated, then extracted, at a time: the timed loop sees
    /// only extraction, and memory stays small.
    const BATCH: usize = 256;

    pub struct Floor {
        pages: u64,
        cpu: f64,
        items: u64,
        fields: u64,
        links: u64,
        bytes: u64,
    }

    impl Floor {
        pub fn fields(&self) -> u64 {
            self.fields
        }

        pub fn items(&self) -> u64 {
            self.items
        }

        pub fn us_per_page(&self) -> f64 {
            self.cpu / self.pages.max(1) as f64 * 1e6
        }

        pub fn report(&self) {
            println!(
                "bench: floor: {} pages ({:.1} MB, every page of the run) parsed and extracted in {:.3} s of thread CPU: {:.1} µs per page",
                self.pages,
                self.bytes as f64 / 1e6,
                self.cpu,
                self.us_per_page()
            );
            println!(
                "bench: floor: {} items, {} of {} fields present, {} links",
                self.items,
                self.fields,
                self.items * super::FIELDS,
                self.links
            );
        }
    }

    /// Loads the bench target from `configs` and extracts every page of the
    /// shop, as the crawler would see it at `addr`.
    pub fn measure(configs: &Path, addr: &str, total: usize) -> Floor {
        let report = crawld::config::load_dir(configs).expect("load the configs");
        assert!(
            report.errors.is_empty(),
            "config errors: {:?}",
            report.all_errors()
        );
        let target = report
            .set
            .targets
            .get(&crawld::ids::TargetId::new("bench"))
            .expect("the bench target")
            .clone();
        let mut floor = Floor {
            pages: 0,
            cpu: 0.0,
            items: 0,
            fields: 0,
            links: 0,
            bytes: 0,
        };
        let mut batch: Vec<(url::Url, String)> = Vec::with_capacity(BATCH);
        let mut run = |batch: &mut Vec<(url::Url, String)>| {
            let started = thread_cpu();
            for (url, html) in batch.iter() {
                let page = extract(&target, html, url, Kinds::Matching).expect("not too deep");
                floor.items += page.items.len() as u64;
                floor.fields += page
                    .items
                    .iter()
                    .map(|i| i.value.values().filter(|v| is_present(v)).count() as u64)
                    .sum::<u64>();
                floor.links += page.links.len() as u64;
                floor.pages += 1;
                floor.bytes += html.len() as u64;
                drop(std::hint::black_box(page));
            }
            floor.cpu += thread_cpu() - started;
            batch.clear();
        };
        super::for_each_page(total, |path, html| {
            let url = url::Url::parse(&format!("http://{addr}{path}")).expect("page URL");
            batch.push((url, html));
            if batch.len() == BATCH {
                run(&mut batch);
            }
        });
        run(&mut batch);
        floor
    }

    /// This thread's CPU time, in seconds.
    fn thread_cpu() -> f64 {
        // SAFETY: clock_gettime fills the timespec it is given.
        let ts = unsafe {
            let mut ts: libc::timespec = std::mem::zeroed();
            libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
            ts
        };
        ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
    }
}
