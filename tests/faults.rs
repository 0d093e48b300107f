//! Fault cases, each against a real server on loopback: what a hostile or
//! broken site does to a crawl, and what the crawl records.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::tcp::TcpServer;
use common::{crawl_target, write_configs, Resource, Site};
use crawld::crawl::Engine;
use crawld::failure::Failure;
use crawld::robots::MAX_ROBOTS;
use tokio_rustls::rustls;

/// A target that follows every link of its start page's host.
const TARGET: &str = r#"
start_urls = ["{base}/"]
profile = "p"
[follow]
allow = ['^/']
[items.page]
pages = '^/'
[items.page.fields]
title = { css = "title::text" }
"#;

/// Three retries, quick backoffs; `{robots}` is `true` or `false`.
const PROFILE: &str = r#"
[profiles.p]
concurrency = 4
delay = "0ms"
timeout = "5s"
retries = 3
backoff = "10ms"
backoff_max = "20ms"
backoff_429 = "10ms"
respect_robots = {robots}
"#;

fn configs(dir: &Path, base: &str, robots: bool) -> std::path::PathBuf {
    let configs = dir.join("configs");
    let profile = PROFILE.replace("{robots}", &robots.to_string());
    write_configs(&configs, base, &[("t.toml", TARGET), ("p.toml", &profile)]);
    configs
}

/// A TLS server on 127.0.0.1 with a self-signed certificate for localhost,
/// which no client trusts; it counts the TCP connections it accepts.
struct SelfSigned(TcpServer);

impl SelfSigned {
    fn start() -> SelfSigned {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from(made.signing_key.serialize_der());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![made.cert.der().clone()], key.into())
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        // The client refuses the certificate: the handshake fails.
        SelfSigned(TcpServer::start(move |tcp| {
            let acceptor = acceptor.clone();
            async move {
                let _ = acceptor.accept(tcp).await;
            }
        }))
    }

    fn base(&self) -> String {
        format!("https://localhost:{}", self.0.addr.port())
    }

    fn connections(&self) -> usize {
        self.0.connections()
    }
}

/// Defect: a handshake failure was classified as a connect error and
/// retried `retries` times, against the retry table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_certificate_fails_at_once_as_tls() {
    let server = SelfSigned::start();
    let tmp = tempfile::tempdir().unwrap();
    let configs = configs(tmp.path(), &server.base(), false);
    let (run, store) = crawl_target(&Engine::default(), &configs, &tmp.path().join("s"), "t").await;
    let c = &run.counts;
    assert_eq!(c.errors.get(&Failure::Tls), Some(&1), "{c:?}");
    assert_eq!(c.retries, 0, "{c:?}");
    assert_eq!(server.connections(), 1, "one attempt, no retry");
    let failures: Vec<_> = store
        .failures(&run.target, run.id)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].kind, Failure::Tls);
    assert!(
        failures[0].detail.contains("certificate"),
        "the detail says why: {}",
        failures[0].detail
    );
}

/// With robots.txt on, the same failure of robots.txt closes the host at
/// once, instead of asking again twice after a backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_certificate_closes_the_host_at_its_robots_txt() {
    let server = SelfSigned::start();
    let tmp = tempfile::tempdir().unwrap();
    let configs = configs(tmp.path(), &server.base(), true);
    let (run, _) = crawl_target(&Engine::default(), &configs, &tmp.path().join("s"), "t").await;
    let c = &run.counts;
    assert_eq!(c.errors.get(&Failure::RobotsUnavailable), Some(&1), "{c:?}");
    assert_eq!(
        server.connections(),
        1,
        "robots.txt asked once, the page never"
    );
}

/// A home page linking to a private and a public page.
fn site_with_robots(robots: Vec<u8>) -> Site {
    let mut pages = HashMap::new();
    pages.insert(
        "/".to_owned(),
        Resource::html(
            r#"<html><head><title>Home</title></head><body>
<a href="/private/a">a</a> <a href="/public">b</a></body></html>"#,
        ),
    );
    for path in ["/private/a", "/public"] {
        pages.insert(
            path.to_owned(),
            Resource::html(format!("<html><head><title>{path}</title></head></html>")),
        );
    }
    pages.insert(
        "/robots.txt".to_owned(),
        Resource {
            content_type: Some("text/plain".into()),
            body: robots,
            ..Resource::html("")
        },
    );
    Site::start(pages)
}

/// `lines` followed by comment lines up to `size` bytes.
fn padded(lines: &str, size: usize) -> Vec<u8> {
    let mut body = lines.as_bytes().to_vec();
    let comment = format!("# {}\n", "padding ".repeat(12));
    while body.len() + comment.len() <= size {
        body.extend_from_slice(comment.as_bytes());
    }
    body.resize(size - 1, b'#');
    body.push(b'\n');
    body
}

/// Defect: a robots.txt over `max_body` (10 MiB) failed as too large, was
/// asked three times and shut the host out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_robots_txt_is_read_in_part_and_honoured() {
    let robots = padded("User-agent: *\nDisallow: /private\n", 12 * 1024 * 1024);
    let site = site_with_robots(robots);
    let tmp = tempfile::tempdir().unwrap();
    let configs = configs(tmp.path(), &site.url(""), true);
    let (run, _) = crawl_target(&Engine::default(), &configs, &tmp.path().join("s"), "t").await;
    let c = &run.counts;
    assert_eq!(site.stats.count("/robots.txt"), 1, "asked once");
    assert_eq!(site.stats.count("/private/a"), 0, "disallowed");
    assert_eq!(site.stats.count("/public"), 1);
    assert_eq!(c.robots_disallowed, 1, "{c:?}");
    assert_eq!(c.pages_failed, 0, "{c:?}");
}

/// What lies past the first 512 KiB is ignored, and a line cut by that
/// limit is ignored whole: `Disallow: /priv…` cut short would disallow
/// more than its line says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robots_txt_past_512_kib_is_ignored_and_no_line_is_cut_short() {
    let cut = "Disallow: /priv";
    let mut robots = padded("User-agent: *\n", MAX_ROBOTS - cut.len());
    robots.extend_from_slice(b"Disallow: /private-archive\n");
    assert_eq!(&robots[MAX_ROBOTS - cut.len()..MAX_ROBOTS], cut.as_bytes());
    let tail = String::from_utf8(padded("Disallow: /public\n", 600 * 1024 - robots.len())).unwrap();
    robots.extend_from_slice(tail.as_bytes());
    let site = site_with_robots(robots);
    let tmp = tempfile::tempdir().unwrap();
    let configs = configs(tmp.path(), &site.url(""), true);
    let (run, _) = crawl_target(&Engine::default(), &configs, &tmp.path().join("s"), "t").await;
    let c = &run.counts;
    assert_eq!(
        site.stats.count("/private/a"),
        1,
        "the cut line is not a rule"
    );
    assert_eq!(site.stats.count("/public"), 1, "past 512 KiB: not a rule");
    assert_eq!(c.robots_disallowed, 0, "{c:?}");
}

fn crawld() -> assert_cmd::Command {
    common::crawld()
}

/// Defect: the summary counted a 404 as failed and pointed to
/// `crawld failures`, which did not list it.
#[test]
fn a_404_is_a_failure_that_crawld_failures_lists() {
    let mut pages = HashMap::new();
    pages.insert(
        "/".to_owned(),
        Resource::html(
            r#"<html><head><title>Home</title></head><body>
<a href="/public">here</a> <a href="/gone">gone</a> <a href="/removed">removed</a></body></html>"#,
        ),
    );
    pages.insert("/public".to_owned(), Resource::html("<title>p</title>"));
    pages.insert(
        "/removed".to_owned(),
        Resource {
            status: 410,
            ..Resource::html("")
        },
    );
    let site = Site::start(pages);
    let tmp = tempfile::tempdir().unwrap();
    let configs = configs(tmp.path(), &site.url(""), true);
    let state = tmp.path().join("state");
    let crawl = crawld()
        .args(["crawl", "t", "--no-progress", "--configs"])
        .arg(&configs)
        .arg("--state")
        .arg(&state)
        .output()
        .unwrap();
    assert!(crawl.status.success(), "{crawl:?}");
    let summary = String::from_utf8(crawl.stdout).unwrap();
    assert!(summary.contains(", 2 failed,"), "{summary}");
    let failures = crawld()
        .args(["failures", "t", "--json", "--state"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(failures.status.success(), "{failures:?}");
    let mut lines: Vec<serde_json::Value> = String::from_utf8(failures.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    lines.sort_by_key(|l| l["status"].as_u64());
    assert_eq!(lines.len(), 2, "{lines:?}");
    for (line, (path, status)) in lines.iter().zip([("/gone", 404), ("/removed", 410)]) {
        assert_eq!(line["url"], site.url(path));
        assert_eq!(line["status"], status);
        assert_eq!(line["kind"], format!("http_{status}"));
        let listed = format!(
            "  failed  {} ({})",
            site.url(path),
            line["detail"].as_str().unwrap()
        );
        assert!(summary.contains(&listed), "the summary lists it: {summary}");
    }
    let runs = crawld()
        .args(["runs", "t", "--json", "--state"])
        .arg(&state)
        .output()
        .unwrap();
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap();
    assert_eq!(runs[0]["counts"]["pages_failed"], 2, "{runs}");
}

/// Item 12: an unparsable robots.txt allowed everything without a log
/// line. The rule texting_robots cannot compile is dropped (RFC 9309 §2.2:
/// use the rules that parse), the others apply, and the log says so once.
#[test]
fn a_robots_txt_rule_that_cannot_be_parsed_is_logged_and_the_others_apply() {
    let monster = format!("Disallow: /{}$\n", "x*".repeat(5000));
    let site =
        site_with_robots(format!("User-agent: *\n{monster}Disallow: /private\n").into_bytes());
    let tmp = tempfile::tempdir().unwrap();
    let configs = configs(tmp.path(), &site.url(""), true);
    let crawl = crawld()
        .args(["crawl", "t", "--no-progress", "--configs"])
        .arg(&configs)
        .arg("--state")
        .arg(tmp.path().join("state"))
        .output()
        .unwrap();
    assert!(crawl.status.success(), "{crawl:?}");
    let log = String::from_utf8(crawl.stderr).unwrap();
    let warned = log
        .matches("robots.txt has lines that cannot be parsed")
        .count();
    assert_eq!(warned, 1, "one WARN line: {log}");
    assert!(log.contains("WARN"), "{log}");
    assert!(log.len() < 4000, "the rule is not quoted in full: {log}");
    assert_eq!(site.stats.count("/private/a"), 0, "the other rules apply");
    assert_eq!(site.stats.count("/public"), 1);
}

/// Item 11: a `Retry-After` cut to `retry_after_max` left the crawl silent
/// for the whole wait. The progress now says which host it waits for, until
/// when, and why.
#[test]
fn a_long_retry_after_is_said_in_the_progress() {
    let mut pages = HashMap::new();
    pages.insert(
        "/".to_owned(),
        Resource::html(r#"<title>Home</title><a href="/slow">slow</a>"#),
    );
    pages.insert("/slow".to_owned(), Resource::html("<title>slow</title>"));
    let site = Site::start(pages);
    // The first answer of /slow asks for an hour; the second serves it.
    let throttled = Resource {
        status: 429,
        headers: vec![("retry-after".into(), "3600".into())],
        ..Resource::html("")
    };
    site.script(
        "/slow",
        vec![throttled, Resource::html("<title>slow</title>")],
    );
    let tmp = tempfile::tempdir().unwrap();
    let configs = configs(tmp.path(), &site.url(""), false);
    let profile = PROFILE.replace("{robots}", "false") + "retry_after_max = \"6s\"\n";
    write_configs(&configs, &site.url(""), &[("p.toml", &profile)]);
    let started = std::time::Instant::now();
    let crawl = crawld()
        .args(["crawl", "t", "--no-progress", "--configs"])
        .arg(&configs)
        .arg("--state")
        .arg(tmp.path().join("state"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&crawl.stderr);
    assert!(crawl.status.success(), "{stderr}");
    let host = site.url("").trim_start_matches("http://").to_owned();
    assert!(
        stderr.contains(&format!("progress: waiting for {host} until"))
            && stderr.contains("it asked for 1h (Retry-After), cut to retry_after_max"),
        "{stderr}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "the wait was kept"
    );
    assert_eq!(site.stats.count("/slow"), 2);
}

/// An answer with more header fields than hyper reads (100) fails with a
/// message that says so, and a refused connection says it was refused, not
/// reqwest's "error sending request".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_failures_say_what_happened() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TcpServer::start(|mut tcp| async move {
        let mut buf = vec![0u8; 8192];
        let _ = tcp.read(&mut buf).await;
        let mut head = String::from("HTTP/1.1 200 OK\r\ncontent-type: text/html\r\n");
        for i in 0..120 {
            head.push_str(&format!("x-header-{i}: {i}\r\n"));
        }
        head.push_str("content-length: 2\r\nconnection: close\r\n\r\nhi");
        let _ = tcp.write_all(head.as_bytes()).await;
    });
    let tmp = tempfile::tempdir().unwrap();
    let big = configs(tmp.path(), &format!("http://{}", server.addr), false);
    let (run, store) = crawl_target(&Engine::default(), &big, &tmp.path().join("s"), "t").await;
    let failures: Vec<_> = store
        .failures(&run.target, run.id)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        failures[0].detail.contains("header section is too large"),
        "{}",
        failures[0].detail
    );

    // Nothing listens on a port just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tmp = tempfile::tempdir().unwrap();
    let refused = configs(tmp.path(), &format!("http://127.0.0.1:{port}"), false);
    let (run, store) = crawl_target(&Engine::default(), &refused, &tmp.path().join("s"), "t").await;
    let f = store.failures(&run.target, run.id).next().unwrap().unwrap();
    assert!(
        f.detail.contains("cannot connect: connection refused"),
        "{}",
        f.detail
    );
    assert!(f.detail.contains("Connection refused"), "{}", f.detail);
    assert!(!f.detail.contains("error sending request"), "{}", f.detail);
}

/// The one failure of a run of target `t` against `server`, with a profile
/// of a short timeout and no retries.
async fn only_failure(server: &TcpServer) -> crawld::store::FailureRecord {
    let tmp = tempfile::tempdir().unwrap();
    let configs = configs(tmp.path(), &format!("http://{}", server.addr), false);
    let profile =
        "[profiles.p]\ntimeout = \"300ms\"\nretries = 0\ndelay = \"0ms\"\nrespect_robots = false\n";
    write_configs(&configs, "", &[("p.toml", profile)]);
    let (run, store) = crawl_target(&Engine::default(), &configs, &tmp.path().join("s"), "t").await;
    let failures: Vec<_> = store
        .failures(&run.target, run.id)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    failures.into_iter().next().unwrap()
}

/// A server that answers garbage is "not valid HTTP"; one that never
/// answers "timed out": each says what happened, not "error sending request".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_silence_say_what_happened() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let garbage = TcpServer::start(|mut tcp| async move {
        let mut buf = vec![0u8; 8192];
        let _ = tcp.read(&mut buf).await;
        let _ = tcp.write_all(b"SPAM SPAM SPAM\r\n\r\n").await;
    });
    let f = only_failure(&garbage).await;
    assert!(
        f.detail.contains("the server's answer is not valid HTTP"),
        "{}",
        f.detail
    );
    assert!(!f.detail.contains("error sending request"), "{}", f.detail);

    let silent = TcpServer::start(|mut tcp| async move {
        let mut buf = vec![0u8; 8192];
        let _ = tcp.read(&mut buf).await;
        // Holds the connection open and never answers.
        std::future::pending::<()>().await;
    });
    let f = only_failure(&silent).await;
    assert_eq!(f.kind.name(), "timeout", "{}", f.detail);
    assert!(f.detail.contains("timed out"), "{}", f.detail);
}
