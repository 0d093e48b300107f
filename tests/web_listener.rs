//! The daemon's HTTP listener against hostile clients: a web page that
//! rebinds its DNS name to 127.0.0.1, and clients that open connections and
//! send nothing, or half a request. Real daemon processes, raw sockets.
#![allow(clippy::disallowed_methods)] // these tests poll child processes with thread sleeps

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::daemon::{wait_for, Daemon};
use common::{shop, write_configs, Site, FAST_PROFILE};

/// Never scheduled and not caught up: it runs only when triggered.
const SHOP: &str = r#"
start_urls = ["{base}/"]
profile = "fast"
schedule = "0 0 0 1 1 *"
catch_up = "skip"
[follow]
allow = ['^/$', '^/list/', '^/p/']
[items.product]
pages = '^/p/'
[items.product.fields]
name = { css = "h1::text", required = true }
"#;

/// A configs dir with the shop target and the fast profile, and a state dir.
fn setup(site: &Site) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let configs = tmp.path().join("configs");
    write_configs(
        &configs,
        &site.url(""),
        &[("shop.toml", SHOP), ("profiles.toml", FAST_PROFILE)],
    );
    let state = tmp.path().join("state");
    (tmp, configs, state)
}

/// The listener's loopback address, as the status reports it.
fn http_addr(d: &Daemon) -> SocketAddr {
    let addr = d.status()["http"].as_str().expect("status.http").to_owned();
    addr.parse().unwrap()
}

/// One raw request naming `host`: the status code and the body.
fn raw_get(addr: SocketAddr, host: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(15)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer)
        .unwrap_or_else(|e| panic!("no answer to GET {path} (Host: {host}): {e}"));
    let code = answer
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

#[test]
fn without_a_token_only_loopback_and_allowed_host_names_are_answered() {
    let site = Site::start(shop(1, 2));
    let (_tmp, configs, state) = setup(&site);
    let d = Daemon::start(
        &configs,
        &state,
        &[
            "--http",
            "127.0.0.1:0",
            "--http-allow-host",
            "Dash.Internal",
        ],
    );
    let addr = http_addr(&d);
    let port = addr.port();
    // A rebinding page's name, with or without the port the page used.
    for host in [
        "evil.example".to_owned(),
        format!("evil.example:{port}"),
        format!("localhost.evil.example:{port}"),
        format!("127.0.0.1.evil.example:{port}"),
    ] {
        for path in ["/", "/metrics", "/api/status", "/api/runs?target=shop"] {
            let (code, body) = raw_get(addr, &host, path);
            assert_eq!(code, 421, "GET {path} with Host: {host}: {body}");
            assert!(
                body.contains("--http-allow-host") && !body.contains("crawld_"),
                "{body}"
            );
        }
    }
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "localhost".to_owned(),
        format!("crawld.localhost:{port}"),
        format!("dash.internal:{port}"),
    ] {
        let (code, body) = raw_get(addr, &host, "/api/status");
        assert_eq!(code, 200, "Host: {host}: {body}");
    }
}

/// Connects `n` clients to `connect` that send nothing.
fn idle<S>(n: usize, connect: impl Fn() -> std::io::Result<S>) -> Vec<S> {
    (0..n)
        .map(|i| connect().unwrap_or_else(|e| panic!("idle connection {i}: {e}")))
        .collect()
}

#[test]
fn idle_connections_neither_starve_the_daemon_nor_fail_its_run() {
    let site = Site::start(shop(2, 5));
    let (_tmp, configs, state) = setup(&site);
    // A small open-file limit, as under a default `ulimit -n` with a busy
    // crawl: idle clients alone could use it up. The long header timeout
    // leaves the cap to do the work.
    let d = Daemon::start_with_open_files(
        &configs,
        &state,
        &["--http", "127.0.0.1:0", "--http-header-timeout", "10m"],
        256,
    );
    let addr = http_addr(&d);
    let socket = state.join("control.sock");
    let _tcp = idle(300, || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(15))
    });
    let _unix = idle(100, || UnixStream::connect(&socket));

    let asked = Instant::now();
    let (code, _) = raw_get(addr, &format!("127.0.0.1:{}", addr.port()), "/api/status");
    assert_eq!(code, 200);
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "a fresh request is answered promptly, not after the idle ones: {:?}",
        asked.elapsed()
    );
    d.cmd(&["trigger", "shop", "--full"]).assert().success();
    wait_for(
        || {
            d.runs("shop")
                .iter()
                .any(|r| r["status"] != "running" && r["status"] != "queued")
        },
        "the triggered run of shop ended",
    );
    let runs = d.runs("shop");
    assert_eq!(runs[0]["status"], "completed", "{runs:?}");
    assert!(runs[0]["counts"]["pages_fetched"].as_u64().unwrap() >= 10);
    let (code, page) = raw_get(addr, "localhost", "/");
    assert_eq!(code, 200, "{page}");
}

/// Reads until the server closes the connection; fails past `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> Duration {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            // Closed (perhaps after a 408): what a client sees either way.
            Ok(0) => return start.elapsed(),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return start.elapsed(),
        }
        assert!(
            start.elapsed() < within,
            "the server kept the connection open for {within:?}"
        );
    }
}

#[test]
fn half_sent_and_idle_connections_are_closed_after_the_header_timeout() {
    let site = Site::start(shop(1, 2));
    let (_tmp, configs, state) = setup(&site);
    let d = Daemon::start(
        &configs,
        &state,
        &["--http", "127.0.0.1:0", "--http-header-timeout", "1s"],
    );
    let addr = http_addr(&d);
    let mut half = TcpStream::connect(addr).unwrap();
    half.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .unwrap();
    let mut silent = TcpStream::connect(addr).unwrap();
    // A kept-alive connection after its answer waits for its next request.
    let mut kept = TcpStream::connect(addr).unwrap();
    kept.write_all(b"GET /api/status HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    for (what, s) in [
        ("half-sent headers", &mut half),
        ("no request", &mut silent),
        ("idle after an answer", &mut kept),
    ] {
        let took = closed_within(s, Duration::from_secs(20));
        assert!(took < Duration::from_secs(20), "{what}: {took:?}");
    }
    // The listener still answers.
    let (code, _) = raw_get(addr, "localhost", "/api/status");
    assert_eq!(code, 200);
}
