//! Scale benchmark: `cargo bench --bench scale`.
//!
//! Does the per-page cost stay flat as a target grows? For each size in
//! `BENCH_SIZES` (product pages; default 10000,100000,1000000) a site is
//! served from a child process that generates every page from its path on
//! the fly (nothing held in memory, whatever the size): listing pages of 100
//! product links and a next-page link, and small product pages (1–2 KB, one
//! item of 3 fields) with 3–5 related links to products anywhere in the
//! site, so that a breadth-first crawl holds many URLs in its frontier at
//! once, as on a real site. Every page has a deterministic ETag, and a
//! matching `If-None-Match` is answered 304.
//!
//! On a fresh state dir per size, the release `crawld crawl` runs a full run
//! and then an incremental run (all 304), each measured like the crawl
//! benchmark (wait4: wall, pages/s, CPU, peak RSS), then the store's size on
//! disk is taken. A final table compares the sizes with the first.
//!
//! Knobs: `BENCH_SIZES=N,N,...`; `BENCH_CRAWLD=PATH` runs another crawld
//! binary; `BENCH_MAX_RSS_MB` (default 6144) and `BENCH_MAX_SECS` (default
//! none) stop a run that passes them (SIGTERM, then SIGKILL), and the table
//! marks it; `BENCH_LATENCY_MS=N` delays every answer.
//!
//! PostgreSQL: `BENCH_CLUSTER=URL` (a server whose role may create
//! databases) runs each size on a fresh database instead of sled
//! (`CRAWLD_CLUSTER`), dropped after it; each run also reports the database
//! server's CPU, and a second table gives crawld's peak RSS and the
//! database's size on disk, per page, at each size. `BENCH_PG_WAITS` and
//! `BENCH_PG_SETTINGS` work as in `crawl`.

mod common;

use std::fmt::Write as _;

use bytes::Bytes;
use common::pg::{self, Cluster};
use common::server::{self, Server, Site};
use common::{measure, Limits, Measure};

const PER_LIST: usize = 100;
/// Bumped when the pages change, so that their ETags change with them.
const VERSION: u64 = 1;

const TARGET: &str = r#"
start_urls = ["http://{addr}/list/1"]
profile = "bench"
max_pages = {max_pages}
[follow]
allow = ['^/list/', '^/p/']
max_depth = 10000000
[items.product]
pages = '^/p/'
[items.product.fields]
title = { css = "h1.title::text", required = true }
price = { css = "p.price::text", type = "number", required = true }
sku = "p.sku::text"
"#;

const PROFILE: &str = r#"
[profiles.bench]
extends = "aggressive"
concurrency = 64
delay = "0ms"
timeout = "30s"
"#;

/// A site of `total` products whose pages are made from their paths.
struct Generated {
    total: usize,
}

fn mix(a: u64, b: u64) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(&a.to_le_bytes(), b)
}

impl Generated {
    fn lists(&self) -> usize {
        self.total.div_ceil(PER_LIST)
    }

    /// The page a path names: `Listing(l)` from 1, `Product(i)` from 0.
    fn page(&self, path: &str) -> Option<Page> {
        if let Some(l) = path.strip_prefix("/list/") {
            let l: usize = l.parse().ok()?;
            return (1..=self.lists()).contains(&l).then_some(Page::Listing(l));
        }
        let i: usize = path
            .strip_prefix("/p/")?
            .strip_suffix(".html")?
            .parse()
            .ok()?;
        (i < self.total).then_some(Page::Product(i))
    }

    fn listing(&self, l: usize) -> String {
        let mut s = format!(
            "<!DOCTYPE html><html><head><title>Products, page {l}</title></head><body><h1>Products, page {l}</h1><ul class=\"products\">\n"
        );
        for i in (l - 1) * PER_LIST..(l * PER_LIST).min(self.total) {
            let _ = writeln!(s, r#"<li><a href="/p/{i}.html">Item {i}</a></li>"#);
        }
        s.push_str("</ul>");
        if l < self.lists() {
            let _ = write!(
                s,
                r#"<a class="next" rel="next" href="/list/{}">Next</a>"#,
                l + 1
            );
        }
        s.push_str("</body></html>\n");
        s
    }

    fn product(&self, i: usize) -> String {
        let h = mix(i as u64, VERSION);
        let mut s = format!(
            r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Item {i} | Scale Shop</title></head><body>
<header><a href="/list/1">Scale Shop</a></header><main><h1 class="title">Item {i}</h1><p class="price">£{}.{:02}</p><p class="sku">SKU-{i:07}</p>
<p class="desc">"#,
            5 + h % 500,
            (h >> 16) % 100
        );
        // 1–2 KB in all: a description of 40–130 words.
        const WORDS: [&str; 8] = [
            "sturdy", "compact", "design", "quality", "with", "the", "for", "everyday",
        ];
        for k in 0..40 + (h >> 24) % 90 {
            s.push_str(WORDS[(mix(k, h) % 8) as usize]);
            s.push(' ');
        }
        s.push_str("</p><ul class=\"related\">");
        for k in 0..3 + (h >> 40) % 3 {
            let r = mix(i as u64 * 8 + k, VERSION + 1) % self.total as u64;
            let _ = write!(s, r#"<li><a href="/p/{r}.html">Item {r}</a></li>"#);
        }
        s.push_str("</ul></main><footer>Scale Shop</footer></body></html>\n");
        s
    }
}

enum Page {
    Listing(usize),
    Product(usize),
}

impl Site for Generated {
    fn etag(&self, path: &str) -> Option<String> {
        // From the path, the size and the version: a 304 costs no page.
        self.page(path)?;
        let h = xxhash_rust::xxh3::xxh3_64_with_seed(
            path.as_bytes(),
            self.total as u64 ^ (VERSION << 48),
        );
        Some(format!("\"{h:016x}\""))
    }

    fn body(&self, path: &str) -> Bytes {
        match self.page(path) {
            Some(Page::Listing(l)) => self.listing(l).into(),
            Some(Page::Product(i)) => self.product(i).into(),
            None => Bytes::new(),
        }
    }
}

/// One size's figures.
struct Row {
    size: usize,
    full: Measure,
    /// None when the full run was stopped: its incremental would be too.
    inc: Option<Measure>,
    store_mb: f64,
    /// On PostgreSQL: crawld's tables, with their rows and bytes, and the
    /// database's size when made, empty.
    tables: Option<Vec<(String, i64, u64)>>,
    empty_mb: f64,
}

fn main() {
    if server::is_server() {
        server::serve(Generated {
            total: common::env_num("BENCH_PAGES", 10_000),
        });
        return;
    }
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "10000,100000,1000000".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("BENCH_SIZES: numbers separated by commas")
        })
        .collect();
    let limits = Limits::from_env();
    let admin = pg::cluster_url();
    let mut rows = Vec::new();
    for size in sizes {
        let server = Server::spawn(&[("BENCH_PAGES", size.to_string())]);
        let dir = tempfile::tempdir().expect("tempdir");
        let lists = size.div_ceil(PER_LIST);
        let target = TARGET
            .replace("{addr}", &server.addr)
            .replace("{max_pages}", &(size + lists + 1000).to_string());
        let configs = common::write_configs(dir.path(), &target, PROFILE);
        let state = dir.path().join("state");
        let db = admin
            .as_deref()
            .map(|url| Cluster::create(url, &size.to_string()));
        let crawl = |mode| measure(&configs, &state, mode, &server, &limits, db.as_ref());
        println!("== {size} product pages + {lists} listings: full run ==");
        let full = crawl("--full");
        full.report();
        let inc = full.stopped.is_none().then(|| {
            println!("== {size}: incremental run (all 304) ==");
            let inc = crawl("");
            inc.report();
            inc
        });
        let store_mb = match &db {
            Some(db) => db.size() as f64 / 1e6,
            None => common::dir_size(&state) as f64 / 1e6,
        };
        println!("bench: store {store_mb:.1} MB on disk");
        let tables = db.as_ref().map(Cluster::tables);
        let empty_mb = db.as_ref().map_or(0.0, |db| db.empty_size() as f64 / 1e6);
        for (table, rows, bytes) in tables.iter().flatten() {
            println!(
                "bench:   crawld.{table}: {rows} rows, {:.1} MB",
                *bytes as f64 / 1e6
            );
        }
        rows.push(Row {
            size,
            full,
            inc,
            store_mb,
            tables,
            empty_mb,
        });
    }
    table(&rows);
    if admin.is_some() {
        cluster_table(&rows);
    }
}

/// On PostgreSQL: crawld's memory and the database's size at each size.
fn cluster_table(rows: &[Row]) {
    println!();
    println!(
        "| pages | pages fetched (full + incr) | full peak RSS MB | incr peak RSS MB | database MB | bytes per page (over the empty database) | largest tables MB | server CPU µs/page full | server CPU µs/page incr |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let cell = |m: Option<&Measure>, f: &dyn Fn(&Measure) -> String| match m {
        Some(m) if m.stopped.is_some() => format!("{} (stopped)", f(m)),
        Some(m) => f(m),
        None => "–".to_owned(),
    };
    let server = |m: &Measure| {
        m.db.as_ref()
            .and_then(|f| f.cpu)
            .map_or("?".to_owned(), |cpu| {
                format!("{:.1}", cpu / m.pages().max(1) as f64 * 1e6)
            })
    };
    for r in rows {
        let (full, inc) = (Some(&r.full), r.inc.as_ref());
        let largest: Vec<String> = r
            .tables
            .iter()
            .flatten()
            .take(3)
            .map(|(t, _, b)| format!("{t} {:.0}", *b as f64 / 1e6))
            .collect();
        println!(
            "| {} | {} + {} | {} | {} | {:.1} | {:.0} | {} | {} | {} |",
            r.size,
            r.full.pages(),
            inc.map_or(0, Measure::pages),
            cell(full, &|m| format!("{:.1}", m.rss_mb())),
            cell(inc, &|m| format!("{:.1}", m.rss_mb())),
            r.store_mb,
            (r.store_mb - r.empty_mb) * 1e6 / r.full.pages().max(1) as f64,
            largest.join(", "),
            cell(full, &server),
            cell(inc, &server),
        );
    }
}

fn table(rows: &[Row]) {
    let Some(base) = rows.first() else { return };
    println!();
    println!(
        "| pages | full pages/s | incr pages/s | full CPU µs/page | incr CPU µs/page | full peak RSS MB | incr peak RSS MB | store MB | full vs {0} | incr vs {0} |",
        base.size
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    // A stopped run is marked; a run not made is "–".
    let cell = |m: Option<&Measure>, f: &dyn Fn(&Measure) -> String| match m {
        Some(m) if m.stopped.is_some() => format!("{} (stopped)", f(m)),
        Some(m) => f(m),
        None => "–".to_owned(),
    };
    let base_inc = base.inc.as_ref().map_or(f64::NAN, Measure::pages_per_s);
    for r in rows {
        let (full, inc) = (Some(&r.full), r.inc.as_ref());
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.1} | {} | {} |",
            r.size,
            cell(full, &|m| format!("{:.0}", m.pages_per_s())),
            cell(inc, &|m| format!("{:.0}", m.pages_per_s())),
            cell(full, &|m| format!("{:.1}", m.cpu_us_per_page())),
            cell(inc, &|m| format!("{:.1}", m.cpu_us_per_page())),
            cell(full, &|m| format!("{:.1}", m.rss_mb())),
            cell(inc, &|m| format!("{:.1}", m.rss_mb())),
            r.store_mb,
            cell(full, &|m| format!(
                "{:.0} %",
                m.pages_per_s() / base.full.pages_per_s() * 100.0
            )),
            cell(inc, &|m| format!(
                "{:.0} %",
                m.pages_per_s() / base_inc * 100.0
            )),
        );
    }
}
