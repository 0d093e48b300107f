//! Politeness under a throttling site: `cargo bench --bench politeness`.
//!
//! Serves, from this process on 127.0.0.1, an index linking 20 listing pages
//! of 100 product pages each (2,000 products). Every answer takes 50 ms;
//! about 5% of them are 429 with `Retry-After: 1` and about 2% are 500,
//! decided by a hash of (path, how many times that path was asked), so a run
//! is reproducible whatever the order of requests. robots.txt is a plain 404.
//!
//! The release `crawld crawl` binary crawls it as a child process with
//! concurrency 8, delay 20ms..40ms, retries 3, backoff 100ms..2s,
//! backoff_429 1s and max_requeues 20. The server records when each request
//! started and when each was answered, and the report checks that no request
//! started inside a Retry-After window: (answer of a 429 + grace, answer + 1 s).
//! The grace (5 ms) leaves out requests already on the wire when the 429 was
//! answered; the strict count (no grace) is reported as well.
//!
//! `BENCH_PAGES=N` changes the number of product pages.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, Response};

const PER_LIST: usize = 100;
const LATENCY: Duration = Duration::from_millis(50);
/// Out of 1,000 answers (robots.txt aside): 429s, then 500s.
const PER_MILLE_429: u64 = 50;
const PER_MILLE_500: u64 = 20;
const RETRY_AFTER: Duration = Duration::from_secs(1);
const GRACE: Duration = Duration::from_millis(5);

const TARGET: &str = r#"
start_urls = ["http://{addr}/"]
profile = "polite"
max_pages = 100000
[follow]
allow = ['^/$', '^/list/', '^/p/']
max_depth = 10
[items.product]
pages = '^/p/'
[items.product.fields]
title = { css = "h1::text", required = true }
price = { css = "p.price::text", type = "number", required = true }
"#;

/// Keys left out (adaptive, pause_after, pause_for, …) come from `balanced`:
/// AIMD is on, so the effective concurrency drops below 8 after 429s.
const PROFILE: &str = r#"
[profiles.polite]
concurrency = 8
delay = "20ms..40ms"
timeout = "30s"
retries = 3
backoff = "100ms"
backoff_max = "2s"
backoff_429 = "1s"
max_requeues = 20
"#;

/// One request as the server saw it.
#[derive(Clone)]
struct Seen {
    path: String,
    started: Instant,
    answered: Instant,
    status: u16,
}

#[derive(Default)]
struct Server {
    pages: HashMap<String, String>,
    /// Requests so far per path, for the reproducible fault draw.
    asked: Mutex<HashMap<String, u64>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    log: Mutex<Vec<Seen>>,
}

fn site(total: usize) -> HashMap<String, String> {
    let lists = total.div_ceil(PER_LIST);
    let mut pages = HashMap::new();
    let mut index = String::from("<!DOCTYPE html><html><body><h1>Shop</h1><ul>");
    for l in 1..=lists {
        let _ = write!(index, r#"<li><a href="/list/{l}">List {l}</a></li>"#);
        let mut s = format!("<!DOCTYPE html><html><body><h1>List {l}</h1><ul>");
        for i in (l - 1) * PER_LIST..(l * PER_LIST).min(total) {
            let _ = write!(s, r#"<li><a href="/p/{i}.html">Product {i}</a></li>"#);
        }
        s.push_str(r#"</ul><a href="/">home</a></body></html>"#);
        pages.insert(format!("/list/{l}"), s);
    }
    index.push_str("</ul></body></html>");
    pages.insert("/".into(), index);
    for i in 0..total {
        pages.insert(
            format!("/p/{i}.html"),
            format!(
                r#"<!DOCTYPE html><html><body><div class="product"><h1>Product {i}</h1>
<p class="price">£{}.{:02}</p><a href="/list/{}">back</a>
<a href="/p/{}.html">next</a></div></body></html>"#,
                10 + i % 90,
                i % 100,
                i / PER_LIST + 1,
                (i + 1) % total
            ),
        );
    }
    pages
}

/// The answer to the `n`th request (from 0) for `path`: 429, 500 or normal.
fn fault(path: &str, n: u64) -> Option<u16> {
    if path == "/robots.txt" {
        return None;
    }
    let draw = xxhash_rust::xxh3::xxh3_64(format!("{path}#{n}").as_bytes()) % 1000;
    if draw < PER_MILLE_429 {
        Some(429)
    } else if draw < PER_MILLE_429 + PER_MILLE_500 {
        Some(500)
    } else {
        None
    }
}

async fn answer(req: Request<Body>, server: &Server) -> Response<Body> {
    let started = Instant::now();
    let now = server.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    server.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let path = req.uri().path().to_owned();
    let n = {
        let mut asked = server.asked.lock().unwrap_or_else(|e| e.into_inner());
        let n = asked.entry(path.clone()).or_default();
        *n += 1;
        *n - 1
    };
    tokio::time::sleep(LATENCY).await;
    let resp = match (fault(&path, n), server.pages.get(&path)) {
        (Some(429), _) => Response::builder()
            .status(429)
            .header("retry-after", RETRY_AFTER.as_secs().to_string())
            .body(Body::from("slow down")),
        (Some(code), _) => Response::builder()
            .status(code)
            .body(Body::from("server error")),
        (None, Some(page)) => Response::builder()
            .header("content-type", "text/html; charset=utf-8")
            .body(Body::from(page.clone())),
        (None, None) => Response::builder()
            .status(404)
            .body(Body::from("not found")),
    }
    .unwrap_or_default();
    let answered = Instant::now();
    server
        .log
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Seen {
            path,
            started,
            answered,
            status: resp.status().as_u16(),
        });
    server.in_flight.fetch_sub(1, Ordering::SeqCst);
    resp
}

/// Serves `server` on its own thread and runtime; returns the address.
fn start(server: Arc<Server>) -> std::net::SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr"))
                .expect("send addr");
            let app = axum::Router::new().fallback(move |req: Request<Body>| {
                let server = server.clone();
                async move { answer(req, &server).await }
            });
            let _ = axum::serve(listener, app).await;
        });
    });
    rx.recv().expect("server address")
}

/// A request that started inside the Retry-After window of a 429.
struct Early {
    path: String,
    status: u16,
    /// Its start, after the 429's answer.
    after: Duration,
    /// The 429 it fell after.
    throttled: String,
    /// Requests started (anywhere) before the 429 was answered and answered after it:
    /// the ones in flight then.
    in_flight_then: usize,
}

/// Requests starting in (answer + grace, answer + Retry-After) of any 429,
/// each counted once (against the earliest such 429).
fn inside_windows(log: &[Seen], grace: Duration) -> Vec<Early> {
    let throttles: Vec<&Seen> = log.iter().filter(|s| s.status == 429).collect();
    let mut early = Vec::new();
    for s in log {
        let hit = throttles
            .iter()
            .filter(|t| s.started > t.answered + grace && s.started < t.answered + RETRY_AFTER)
            .min_by_key(|t| t.answered);
        if let Some(t) = hit {
            early.push(Early {
                path: s.path.clone(),
                status: s.status,
                after: s.started - t.answered,
                throttled: t.path.clone(),
                in_flight_then: log
                    .iter()
                    .filter(|o| o.started <= t.answered && o.answered > t.answered)
                    .count(),
            });
        }
    }
    early
}

fn main() {
    let total: usize = std::env::var("BENCH_PAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let server = Arc::new(Server {
        pages: site(total),
        ..Server::default()
    });
    let addr = start(server.clone());

    let dir = tempfile::tempdir().expect("tempdir");
    let configs = dir.path().join("configs");
    std::fs::create_dir_all(&configs).expect("configs dir");
    std::fs::write(
        configs.join("bench.toml"),
        TARGET.replace("{addr}", &addr.to_string()),
    )
    .expect("write target");
    std::fs::write(configs.join("profiles.toml"), PROFILE).expect("write profile");
    let state = dir.path().join("state");

    println!(
        "== crawling {total} products, 50 ms per answer, ~5% 429 (Retry-After: 1), ~2% 500 =="
    );
    let started = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crawld"))
        .args(["crawl", "bench", "--full", "--no-progress", "--configs"])
        .arg(&configs)
        .arg("--state")
        .arg(&state)
        .output()
        .expect("run crawld");
    let wall = started.elapsed();
    print!("{}", String::from_utf8_lossy(&out.stdout));
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        eprintln!("crawld crawl failed: {}", out.status);
        std::process::exit(1);
    }

    let runs = std::process::Command::new(env!("CARGO_BIN_EXE_crawld"))
        .args(["runs", "bench", "--json", "--state"])
        .arg(&state)
        .output()
        .expect("crawld runs");
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).expect("runs JSON");
    let counts = runs
        .as_array()
        .and_then(|r| r.last())
        .map(|r| r["counts"].clone())
        .unwrap_or_default();
    let items = std::process::Command::new(env!("CARGO_BIN_EXE_crawld"))
        .args(["export", "bench", "--configs"])
        .arg(&configs)
        .arg("--state")
        .arg(&state)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
        .unwrap_or(0);

    let log = server.log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let products: HashSet<&str> = log
        .iter()
        .filter(|s| s.status == 200 && s.path.starts_with("/p/"))
        .map(|s| s.path.as_str())
        .collect();
    let count = |code: u16| log.iter().filter(|s| s.status == code).count();
    let strict = inside_windows(&log, Duration::ZERO);
    let graced = inside_windows(&log, GRACE);
    // After each 429, the first request that started beyond the grace.
    let mut quiet: Vec<Duration> = log
        .iter()
        .filter(|t| t.status == 429)
        .filter_map(|t| {
            log.iter()
                .filter(|s| s.started > t.answered + GRACE)
                .map(|s| s.started - t.answered)
                .min()
        })
        .collect();
    quiet.sort();
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    let pct = |v: &[Duration], p: f64| {
        v.get(((v.len() as f64 - 1.0) * p).round() as usize)
            .map_or("-".to_owned(), |d| ms(*d))
    };

    if !strict.is_empty() {
        println!("\nRequests started after a 429's answer, inside its Retry-After window:");
        println!(
            "  {:>9}  {:<16} {:>6}  {:<16} {:>14}",
            "after 429", "request", "status", "429 on", "in flight then"
        );
        for e in strict.iter().take(40) {
            println!(
                "  {:>9}  {:<16} {:>6}  {:<16} {:>14}",
                ms(e.after),
                e.path,
                e.status,
                e.throttled,
                e.in_flight_then
            );
        }
        if strict.len() > 40 {
            println!("  …and {} more", strict.len() - 40);
        }
    }

    let c = |k: &str| counts[k].as_u64().map_or("-".to_owned(), |v| v.to_string());
    let rows: Vec<(&str, String)> = vec![
        ("wall time", format!("{:.1} s", wall.as_secs_f64())),
        (
            "products answered 200 (server)",
            format!("{} / {total}", products.len()),
        ),
        ("items exported (store)", format!("{items} / {total}")),
        ("pages_fetched (crawld runs)", c("pages_fetched")),
        ("pages_failed (crawld runs)", c("pages_failed")),
        (
            "throttled / requeues (crawld runs)",
            format!("{} / {}", c("throttled"), c("requeues")),
        ),
        ("retries (crawld runs)", c("retries")),
        ("total requests served", log.len().to_string()),
        ("429s served", count(429).to_string()),
        ("500s served", count(500).to_string()),
        (
            "max in flight (server)",
            server.max_in_flight.load(Ordering::SeqCst).to_string(),
        ),
        (
            "started in a Retry-After window, strict",
            strict.len().to_string(),
        ),
        (
            "started in a Retry-After window, 5 ms grace",
            graced.len().to_string(),
        ),
        (
            "first start after a 429, min / median / max",
            format!(
                "{} / {} / {}",
                pct(&quiet, 0.0),
                pct(&quiet, 0.5),
                pct(&quiet, 1.0)
            ),
        ),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    println!("\n{:-<1$}", "", width + 20);
    for (k, v) in &rows {
        println!("{k:<width$}  {v:>16}");
    }
    println!("{:-<1$}", "", width + 20);
}
