//! Crawl throughput benchmark: `cargo bench --bench crawl`.
//!
//! Serves a generated shop of 10,000 product pages (15–30 KB each) and 100
//! listing pages from this process on 127.0.0.1, then runs the release
//! `crawld crawl` binary against it as a child process (concurrency 64, no
//! delay, 3 fields per product, every item stored) and reports wall time,
//! pages/s, CPU seconds per 1,000 pages and the crawler's peak RSS, read
//! from the kernel's accounting of the child (wait4), so the server's own
//! memory and CPU are not counted against the crawler.
//!
//! `BENCH_PAGES=N` changes the number of product pages; `BENCH_CRAWLD=PATH`
//! runs another crawld binary (an older build, to compare on one machine).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use bytes::Bytes;

const PER_LIST: usize = 100;
const WORDS: [&str; 16] = [
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "crawler",
    "catalogue",
    "edition",
    "hardcover",
    "review",
    "classic",
    "novel",
    "author",
    "chapter",
    "library",
    "shipping",
];

fn product(i: usize, total: usize) -> String {
    // Deterministic size between 15 and 30 KB.
    let target = 15_000 + (i * 7919) % 15_000;
    let mut s = String::with_capacity(target + 2048);
    let _ = write!(
        s,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Product {i} | Bench Shop</title>
<link rel="stylesheet" href="/static/site.css"></head><body>
<header><nav><a href="/list/1">Home</a> <a href="/list/{}">Back to list</a></nav></header>
<main><article class="product"><h1>Product number {i}</h1>
<p class="price">£{}.{:02}</p><table class="info"><tr><th>SKU</th><td class="sku">SKU-{i:06}</td></tr>
<tr><th>Stock</th><td>In stock ({} available)</td></tr></table>
<ul class="related">"#,
        i / PER_LIST + 1,
        10 + i % 90,
        i % 100,
        i % 37
    );
    for k in 1..=5 {
        let r = (i + k * 31) % total;
        let _ = write!(s, r#"<li><a href="/p/{r}.html">Related {r}</a></li>"#);
    }
    s.push_str(r#"</ul><div class="description">"#);
    let mut w = i;
    while s.len() < target {
        s.push_str("<p>");
        for _ in 0..40 {
            w = w
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            s.push_str(WORDS[w >> 60]);
            s.push(' ');
        }
        s.push_str("</p>\n");
    }
    s.push_str("</div></article></main><footer>Bench shop</footer></body></html>");
    s
}

fn listing(l: usize, lists: usize, total: usize) -> String {
    let mut s = format!(
        "<!DOCTYPE html><html><head><title>List {l}</title></head><body><h1>List {l}</h1><ul>"
    );
    for i in (l - 1) * PER_LIST..(l * PER_LIST).min(total) {
        let _ = write!(s, r#"<li><a href="/p/{i}.html">Product {i}</a></li>"#);
    }
    s.push_str("</ul>");
    if l < lists {
        let _ = write!(s, r#"<a class="next" href="/list/{}">next</a>"#, l + 1);
    }
    s.push_str("</body></html>");
    s
}

fn site(total: usize) -> HashMap<String, (Bytes, String)> {
    let lists = total.div_ceil(PER_LIST);
    let mut pages = HashMap::with_capacity(total + lists);
    for l in 1..=lists {
        pages.insert(format!("/list/{l}"), with_etag(listing(l, lists, total)));
    }
    for i in 0..total {
        pages.insert(format!("/p/{i}.html"), with_etag(product(i, total)));
    }
    pages
}

fn with_etag(body: String) -> (Bytes, String) {
    let etag = format!("\"{:x}\"", xxhash_rust::xxh3::xxh3_64(body.as_bytes()));
    (Bytes::from(body), etag)
}

const TARGET: &str = r#"
start_urls = ["http://{addr}/list/1"]
profile = "bench"
max_pages = 100000
[follow]
allow = ['^/list/', '^/p/']
max_depth = 1000
[items.product]
pages = '^/p/'
[items.product.fields]
title = { css = "article.product h1::text", required = true }
price = { css = "p.price::text", type = "number", required = true }
sku = "td.sku::text"
"#;

const PROFILE: &str = r#"
[profiles.bench]
extends = "aggressive"
concurrency = 64
delay = "0ms"
timeout = "30s"
"#;

// The crawler child is reaped by `wait4`, which also yields its rusage.
#[allow(clippy::zombie_processes)]
fn main() {
    let total: usize = std::env::var("BENCH_PAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    if std::env::var_os("BENCH_SERVE").is_some() {
        serve(total);
        return;
    }
    // The site lives in a child process: a crawler forked from a process
    // holding 200 MB of pages would have them counted in its peak RSS.
    let exe = std::env::current_exe().expect("own path");
    let mut server = std::process::Command::new(exe)
        .env("BENCH_SERVE", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the site server");
    let mut line = String::new();
    {
        use std::io::BufRead;
        let stdout = server.stdout.take().expect("server stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("server address");
    }
    let addr = line.trim().to_owned();

    let dir = tempfile::tempdir().expect("tempdir");
    let configs = dir.path().join("configs");
    std::fs::create_dir_all(&configs).expect("configs dir");
    std::fs::write(configs.join("bench.toml"), TARGET.replace("{addr}", &addr)).expect("write");
    std::fs::write(configs.join("profiles.toml"), PROFILE).expect("write");

    let state = dir.path().join("state");
    let crawl = |mode: &str| measure(&configs, &state, mode);

    println!("== full run (10,000 product pages) ==");
    let full = crawl("--full");
    full.report();
    println!("== incremental run over the unchanged site ==");
    let inc = crawl("");
    inc.report();
    println!(
        "bench: incremental / full: wall {:.0}%, CPU {:.0}%, bytes {:.1}%",
        inc.wall / full.wall * 100.0,
        inc.cpu / full.cpu * 100.0,
        inc.bytes as f64 / full.bytes.max(1) as f64 * 100.0
    );
    let runs: usize = std::env::var("BENCH_FULL_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    for _ in 1..runs {
        crawl("--full");
    }
    println!(
        "bench: store {:.1} MB on disk after {runs} full runs and 1 incremental run",
        dir_size(&state) as f64 / 1e6
    );
    let _ = server.kill();
    let _ = server.wait();
}

/// One `crawld crawl` as a child process, measured by the kernel.
struct Measure {
    wall: f64,
    cpu: f64,
    user: f64,
    sys: f64,
    max_rss_kb: i64,
    pages: u64,
    bytes: u64,
}

impl Measure {
    fn report(&self) {
        let pages = self.pages.max(1) as f64;
        println!(
            "bench: {} pages in {:.2}s wall, {:.0} pages/s",
            self.pages,
            self.wall,
            pages / self.wall
        );
        println!(
            "bench: {:.3} CPU s per 1,000 pages ({:.2}s user, {:.2}s sys)",
            self.cpu / pages * 1000.0,
            self.user,
            self.sys
        );
        println!(
            "bench: {:.1} MB of bodies received",
            self.bytes as f64 / 1e6
        );
        println!("bench: peak RSS {:.1} MB", self.max_rss_kb as f64 / 1024.0);
    }
}

#[allow(clippy::zombie_processes)] // reaped by wait4, which also yields its rusage
fn measure(configs: &std::path::Path, state: &std::path::Path, mode: &str) -> Measure {
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
    let child = cmd.spawn().expect("spawn crawld");
    let mut status = 0;
    // SAFETY: plain POSIX calls on a zeroed rusage and our own child's pid.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage);
        usage
    };
    let wall = started.elapsed().as_secs_f64();
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        eprintln!("crawld did not exit cleanly (status {status})");
        std::process::exit(1);
    }
    let runs = std::process::Command::new(crawld_bin())
        .args(["runs", "bench", "--json", "--state"])
        .arg(state)
        .output()
        .expect("crawld runs");
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).expect("runs JSON");
    let last = &runs[runs.as_array().map_or(0, |r| r.len().saturating_sub(1))];
    let cpu = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Measure {
        wall,
        cpu: cpu(usage.ru_utime) + cpu(usage.ru_stime),
        user: cpu(usage.ru_utime),
        sys: cpu(usage.ru_stime),
        max_rss_kb: usage.ru_maxrss,
        pages: last["counts"]["pages_fetched"].as_u64().unwrap_or(0),
        bytes: last["counts"]["bytes"].as_u64().unwrap_or(0),
    }
}

fn dir_size(dir: &std::path::Path) -> u64 {
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

/// Server role: generate the site, print the address, serve until killed.
fn serve(total: usize) {
    let t = Instant::now();
    let pages = Arc::new(site(total));
    let bytes: usize = pages.values().map(|(b, _)| b.len()).sum();
    eprintln!(
        "site: {} pages, {:.1} MB, generated in {:.1}s",
        pages.len(),
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let content_type =
        std::env::var("BENCH_CT").unwrap_or_else(|_| "text/html; charset=utf-8".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!("{}", listener.local_addr().expect("addr"));
        let app = axum::Router::new().fallback(move |req: Request<Body>| {
            let pages = pages.clone();
            let content_type = content_type.clone();
            async move {
                let inm = req
                    .headers()
                    .get("if-none-match")
                    .and_then(|v| v.to_str().ok());
                match pages.get(req.uri().path()) {
                    Some((_, etag)) if inm == Some(etag.as_str()) => Response::builder()
                        .status(StatusCode::NOT_MODIFIED)
                        .header("etag", etag)
                        .body(Body::empty())
                        .unwrap_or_default(),
                    Some((b, etag)) => Response::builder()
                        .header("content-type", content_type)
                        .header("etag", etag)
                        .body(Body::from(b.clone()))
                        .unwrap_or_default(),
                    None => Response::builder()
                        .status(StatusCode::NOT_FOUND)
                        .body(Body::empty())
                        .unwrap_or_default(),
                }
            }
        });
        let _ = axum::serve(listener, app).await;
    });
}

/// The crawld binary to measure: this build's, or `BENCH_CRAWLD`.
fn crawld_bin() -> std::ffi::OsString {
    std::env::var_os("BENCH_CRAWLD").unwrap_or_else(|| env!("CARGO_BIN_EXE_crawld").into())
}
