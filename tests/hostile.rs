//! Hostile and broken servers on loopback: one that never answers, one that
//! drips its body a byte at a time, an endless chain of redirects, a page
//! with 100,000 links, and pages whose charset is only in a BOM or a
//! `<meta>`. Each run ends in bounded time with what it could keep, and
//! each failure is recorded with its kind.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::tcp::TcpServer;
use common::{crawl_target, write_configs, Resource, Site};
use crawld::crawl::Engine;
use crawld::failure::Failure;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TARGET: &str = r#"
start_urls = ["{base}/"]
profile = "p"
max_pages = 200
[follow]
allow = ['^/']
[items.page]
pages = '^/'
[items.page.fields]
title = { css = "title::text" }
h1 = { css = "h1::text" }
"#;

/// Short timeouts, one retry, no robots.txt.
const PROFILE: &str = r#"
[profiles.p]
concurrency = 4
delay = "0ms"
timeout = "1s"
connect_timeout = "1s"
retries = 1
backoff = "10ms"
backoff_max = "20ms"
respect_robots = false
"#;

fn configs(dir: &std::path::Path, base: &str) -> std::path::PathBuf {
    let configs = dir.join("configs");
    write_configs(&configs, base, &[("t.toml", TARGET), ("p.toml", PROFILE)]);
    configs
}

#[derive(Clone, Copy)]
enum Answer {
    /// Reads the request and never answers.
    Hang,
    /// Sends headers for a large body, then one byte every 100 ms.
    Drip,
}

/// A raw HTTP server on 127.0.0.1 that answers every connection so.
fn raw_server(answer: Answer) -> TcpServer {
    TcpServer::start(move |tcp| serve(tcp, answer))
}

fn base(server: &TcpServer) -> String {
    format!("http://{}", server.addr)
}

async fn serve(mut tcp: tokio::net::TcpStream, answer: Answer) {
    let mut buf = [0u8; 4096];
    let _ = tcp.read(&mut buf).await;
    match answer {
        Answer::Hang => {
            // Hold the connection open, answering nothing, for longer than any timeout.
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        Answer::Drip => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 1000000\r\n\r\n<title>";
            if tcp.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            // Bounded: 300 bytes over 30 s at most, then the connection closes.
            for _ in 0..300 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if tcp.write_all(b"x").await.is_err() {
                    return;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_times_out_and_is_recorded() {
    let server = raw_server(Answer::Hang);
    let tmp = tempfile::tempdir().unwrap();
    let configs = configs(tmp.path(), &base(&server));
    let started = Instant::now();
    let (run, store) = crawl_target(&Engine::default(), &configs, &tmp.path().join("s"), "t").await;
    let c = &run.counts;
    assert_eq!(c.errors.get(&Failure::Timeout), Some(&1), "{c:?}");
    assert_eq!(c.retries, 1, "timeouts are retried: {c:?}");
    assert_eq!(server.connections(), 2);
    // Two attempts of 1 s each, a short backoff, and some slack for a busy machine.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let failures: Vec<_> = store
        .failures(&run.target, run.id)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(failures[0].kind, Failure::Timeout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dripping_body_is_cut_by_the_timeout() {
    let server = raw_server(Answer::Drip);
    let tmp = tempfile::tempdir().unwrap();
    let configs = configs(tmp.path(), &base(&server));
    let started = Instant::now();
    let (run, _) = crawl_target(&Engine::default(), &configs, &tmp.path().join("s"), "t").await;
    let c = &run.counts;
    // The timeout covers the body too: a drip cannot hold a slot for 30 s.
    let failed: u64 = c.errors.values().sum();
    assert_eq!(failed, 1, "{c:?}");
    assert!(
        c.errors.contains_key(&Failure::Timeout) || c.errors.contains_key(&Failure::Body),
        "{c:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_redirect_chain_ends_after_ten_hops() {
    let mut pages = HashMap::new();
    pages.insert(
        "/".to_owned(),
        Resource::html(r#"<title>Home</title><a href="/r/0">chain</a>"#),
    );
    for i in 0..40 {
        pages.insert(
            format!("/r/{i}"),
            Resource::redirect(&format!("/r/{}", i + 1)),
        );
    }
    let site = Site::start(pages);
    let tmp = tempfile::tempdir().unwrap();
    let configs = configs(tmp.path(), &site.url(""));
    let (run, _) = crawl_target(&Engine::default(), &configs, &tmp.path().join("s"), "t").await;
    let c = &run.counts;
    assert_eq!(c.errors.get(&Failure::RedirectLoop), Some(&1), "{c:?}");
    let hops = (0..40)
        .map(|i| site.stats.count(&format!("/r/{i}")))
        .sum::<usize>();
    assert!(
        hops <= 11,
        "at most ten redirects followed, {hops} requested"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_with_100000_links_costs_bounded_time_and_keeps_the_budget() {
    let mut body = String::from("<title>Links</title><h1>Many</h1>");
    for i in 0..100_000 {
        body.push_str(&format!(r#"<a href="/p/{i}">{i}</a>"#));
    }
    let mut pages = HashMap::new();
    pages.insert("/".to_owned(), Resource::html(body));
    let site = Site::start(pages);
    let tmp = tempfile::tempdir().unwrap();
    let configs = configs(tmp.path(), &site.url(""));
    let started = Instant::now();
    let (run, _) = crawl_target(&Engine::default(), &configs, &tmp.path().join("s"), "t").await;
    let c = &run.counts;
    // max_pages = 200: the start page and 199 links; the rest is counted, not queued.
    assert_eq!(c.pages_fetched, 200, "{c:?}");
    // follow.max_links = 10,000 by default: the rest are not even offered.
    assert_eq!(c.over_budget, 10_000 - 199, "{c:?}");
    assert_eq!(c.links_dropped, 90_000, "{c:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charset_in_a_bom_or_a_meta_tag_is_honoured() {
    let mut pages = HashMap::new();
    pages.insert(
        "/".to_owned(),
        Resource::html(r#"<title>Home</title><a href="/meta">m</a><a href="/bom">b</a>"#),
    );
    // windows-1252 named only by <meta>: "Café" with é as 0xE9.
    let mut meta =
        b"<html><head><meta charset=\"windows-1252\"><title>m</title></head><h1>Caf".to_vec();
    meta.extend_from_slice(&[0xE9]);
    meta.extend_from_slice(b"</h1>");
    pages.insert(
        "/meta".to_owned(),
        Resource {
            content_type: Some("text/html".into()),
            body: meta,
            ..Resource::html("")
        },
    );
    // UTF-16LE with a byte order mark and no other hint.
    let text = "<title>b</title><h1>Crème</h1>";
    let mut bom = vec![0xFF, 0xFE];
    for unit in text.encode_utf16() {
        bom.extend_from_slice(&unit.to_le_bytes());
    }
    pages.insert(
        "/bom".to_owned(),
        Resource {
            content_type: Some("text/html".into()),
            body: bom,
            ..Resource::html("")
        },
    );
    let site = Site::start(pages);
    let tmp = tempfile::tempdir().unwrap();
    let configs = configs(tmp.path(), &site.url(""));
    let (run, store) = crawl_target(&Engine::default(), &configs, &tmp.path().join("s"), "t").await;
    let items: Vec<_> = store.items(&run.target).collect::<Result<_, _>>().unwrap();
    let h1 = |path: &str| {
        items
            .iter()
            .find(|i| i.key == site.url(path))
            .map(|i| i.value["h1"].clone())
    };
    assert_eq!(h1("/meta"), Some(serde_json::json!("Café")));
    assert_eq!(h1("/bom"), Some(serde_json::json!("Crème")));
}
