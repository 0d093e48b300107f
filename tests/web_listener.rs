//! The daemon's HTTP listener against hostile clients: a web page that
//! rebinds its DNS name to 127.0.0.1. Real daemon processes, raw sockets.
#![allow(clippy::disallowed_methods)] // these tests poll child processes with thread sleeps

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use common::daemon::Daemon;
use common::{shop, write_configs, Site, FAST_PROFILE};

/// Never scheduled and not caught up: it does not run by itself.
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
