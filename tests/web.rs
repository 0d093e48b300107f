//! The daemon's HTTP listener (`crawld run --http`), as Prometheus, a
//! script and a person in a real browser use it: real daemon processes,
//! real loopback sites, a real Prometheus text parser and headless Chromium.
#![allow(clippy::disallowed_methods)] // these tests poll child processes with thread sleeps

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use common::daemon::{wait_for, Daemon};
use common::{shop, write_configs, Site, FAST_PROFILE};
use serde_json::Value;

/// Crawled at start-up (its catch-up full run), then never again.
const SHOP: &str = r#"
start_urls = ["{base}/"]
profile = "fast"
schedule = "0 0 0 1 1 *"
full_schedule = "0 0 0 1 1 *"
[follow]
allow = ['^/$', '^/list/', '^/p/', '^/missing/']
[items.product]
pages = '^/p/'
[items.product.fields]
name = { css = "h1::text", required = true }
price = { css = "p.price::text", type = "number" }
"#;

/// Scheduled yearly and not caught up: it never runs in a test.
const IDLE: &str = r#"
start_urls = ["{base}/"]
profile = "fast"
schedule = "0 0 0 1 1 *"
catch_up = "skip"
"#;

/// A configs dir with `files` and the fast profile, and a state dir.
fn setup(site: &Site, files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let configs = tmp.path().join("configs");
    let mut all = files.to_vec();
    all.push(("profiles.toml", FAST_PROFILE));
    write_configs(&configs, &site.url(""), &all);
    let state = tmp.path().join("state");
    (tmp, configs, state)
}

/// The listener's address as the status reports it, reachable on loopback.
fn http_base(d: &Daemon) -> String {
    let addr = d.status()["http"].as_str().expect("status.http").to_owned();
    let port = addr.rsplit(':').next().unwrap();
    assert_ne!(port, "0", "the real port, not the asked-for 0");
    format!("http://127.0.0.1:{port}")
}

struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

/// One request to the listener; `bearer` adds `Authorization: Bearer`.
fn request(method: &str, url: &str, bearer: Option<&str>) -> Answer {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    request_with(method, url, &headers)
}

/// What Prometheus sends as `Accept` when it scrapes.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// One request to the listener with `headers`.
fn request_with(method: &str, url: &str, headers: &[(&str, &str)]) -> Answer {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap();
        let mut req = client.request(method.parse().unwrap(), url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        Answer {
            status: resp.status().as_u16(),
            headers,
            body: resp.text().await.unwrap(),
        }
    })
}

fn get(url: &str) -> Answer {
    request("GET", url, None)
}

/// A daemon serving `--http 127.0.0.1:0` whose `shop` target has completed its run.
fn crawled(site: &Site, extra_files: &[(&str, &str)]) -> (tempfile::TempDir, Daemon) {
    let mut files = vec![("shop.toml", SHOP)];
    files.extend_from_slice(extra_files);
    let (tmp, configs, state) = setup(site, &files);
    let d = Daemon::start(&configs, &state, &["--http", "127.0.0.1:0"]);
    wait_for(
        || d.runs("shop").iter().any(|r| r["status"] == "completed"),
        "the catch-up run of shop completed",
    );
    (tmp, d)
}

fn sample_value(s: &prometheus_parse::Sample) -> f64 {
    match s.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        _ => f64::NAN,
    }
}

#[test]
fn metrics_parse_and_their_counters_equal_the_sums_of_crawld_runs() {
    let site = Site::start(shop(2, 6));
    let (_tmp, d) = crawled(&site, &[]);
    let base = http_base(&d);
    let m = request_with(
        "GET",
        &format!("{base}/metrics"),
        &[("accept", PROMETHEUS_ACCEPT)],
    );
    assert_eq!(m.status, 200);
    assert!(m.headers["content-type"].starts_with("application/openmetrics-text"));
    assert!(m.body.ends_with("# EOF\n"));
    // Without OpenMetrics in Accept (promtool, Telegraf): the classic format.
    for accept in [None, Some("text/plain"), Some("*/*")] {
        let headers: Vec<_> = accept.map(|a| ("accept", a)).into_iter().collect();
        let classic = request_with("GET", &format!("{base}/metrics"), &headers);
        assert_eq!(classic.status, 200);
        assert_eq!(
            classic.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8",
            "Accept: {accept:?}"
        );
        assert!(!classic.body.contains("# EOF"), "Accept: {accept:?}");
        assert!(classic.body.contains("# TYPE crawld_pages_total counter\n"));
    }
    let scrape = prometheus_parse::Scrape::parse(m.body.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let find = |metric: &str, labels: &[(&str, &str)]| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(sample_value)
            .unwrap_or_else(|| panic!("no {metric} {labels:?} in\n{}", m.body))
    };
    let runs = d.runs("shop");
    let sum = |field: &str| {
        runs.iter()
            .map(|r| r["counts"][field].as_u64().unwrap())
            .sum::<u64>() as f64
    };
    assert!(sum("pages_fetched") >= 13.0, "the crawl fetched the site");
    assert!(sum("pages_failed") >= 1.0, "and met its missing pages");
    let outcomes = [
        ("fetched", "pages_fetched"),
        ("committed", "pages_committed"),
        ("failed", "pages_failed"),
        ("not_modified", "pages_not_modified"),
        ("unchanged", "pages_unchanged"),
        ("unchanged_by_sitemap", "unchanged_by_sitemap"),
        ("not_html", "pages_not_html"),
        ("robots_disallowed", "robots_disallowed"),
        ("over_budget", "over_budget"),
    ];
    for (outcome, field) in outcomes {
        assert_eq!(
            find(
                "crawld_pages_total",
                &[("target", "shop"), ("outcome", outcome)]
            ),
            sum(field),
            "{outcome}"
        );
    }
    for outcome in [
        "new",
        "changed",
        "unchanged",
        "kept",
        "removed",
        "invalid",
        "duplicate",
    ] {
        let field = format!("items_{outcome}");
        assert_eq!(
            find(
                "crawld_items_total",
                &[("target", "shop"), ("outcome", outcome)]
            ),
            sum(&field),
            "{outcome}"
        );
    }
    for (metric, field) in [
        ("crawld_retries_total", "retries"),
        ("crawld_requeues_total", "requeues"),
        ("crawld_throttled_total", "throttled"),
        ("crawld_received_bytes_total", "bytes"),
        ("crawld_jsonld_invalid_pages_total", "jsonld_invalid"),
    ] {
        assert_eq!(find(metric, &[("target", "shop")]), sum(field), "{metric}");
    }
    assert_eq!(
        find(
            "crawld_runs_total",
            &[
                ("target", "shop"),
                ("mode", "full"),
                ("status", "completed")
            ]
        ),
        1.0
    );
    assert_eq!(find("crawld_running", &[("target", "shop")]), 0.0);
    let ended = runs[0]["ended_ms"].as_u64().unwrap() as f64 / 1000.0;
    assert_eq!(
        find(
            "crawld_last_success_timestamp_seconds",
            &[("target", "shop")]
        ),
        ended
    );
    let host = site.addr.to_string();
    assert!(
        find(
            "crawld_host_requests_total",
            &[("host", &host), ("class", "2xx")]
        ) >= 13.0
    );
    // The missing pages, and robots.txt (which the site does not have).
    assert!(
        find(
            "crawld_host_requests_total",
            &[("host", &host), ("class", "4xx")]
        ) >= sum("pages_failed")
    );
    assert_eq!(
        find(
            "crawld_monitor_firing",
            &[("target", "shop"), ("monitor", "run_failed")]
        ),
        0.0
    );
    // Labels are names, never URLs or paths.
    for s in &scrape.samples {
        for (k, v) in s.labels.iter() {
            assert!(
                !v.contains("://") && !v.starts_with('/'),
                "{} has a URL as {k}: {v}",
                s.metric
            );
        }
    }
}

#[test]
fn api_status_is_the_control_sockets_status_and_the_log_names_the_address() {
    let site = Site::start(shop(1, 3));
    let (tmp, configs, state) = setup(&site, &[("shop.toml", SHOP), ("idle.toml", IDLE)]);
    let log = tmp.path().join("daemon.log");
    let d = Daemon::start_logged(&configs, &state, &["--http", "127.0.0.1:0"], Some(&log));
    wait_for(
        || d.runs("shop").iter().any(|r| r["status"] == "completed"),
        "shop's run completed",
    );
    let base = http_base(&d);
    let api = get(&format!("{base}/api/status"));
    assert_eq!(api.status, 200);
    let api: Value = serde_json::from_str(&api.body).unwrap();
    assert_eq!(api, d.status(), "the same status, field for field");
    let addr = d.status()["http"].as_str().unwrap().to_owned();
    let text = d.cmd(&["status"]).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!("dashboard http://{addr}/")),
        "{text}"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("Dashboard and metrics listening") && logged.contains(&addr),
        "{logged}"
    );

    // The runs of a target, newest last, as `crawld runs --json` has them.
    let runs: Value =
        serde_json::from_str(&get(&format!("{base}/api/runs?target=shop&limit=5")).body).unwrap();
    assert_eq!(runs, Value::Array(d.runs("shop")));
    assert_eq!(get(&format!("{base}/api/runs?target=idle")).body, "[]");
    let unknown = get(&format!("{base}/api/runs?target=nope"));
    assert_eq!(unknown.status, 404);
    assert!(unknown.body.contains("unknown_target"), "{}", unknown.body);
    // A query it cannot read: the same JSON error shape, not plain text.
    for query in [
        "",
        "?limit=5",
        "?target=shop&limit=many",
        "?target=shop&limit=-1",
    ] {
        let bad = get(&format!("{base}/api/runs{query}"));
        assert_eq!(bad.status, 400, "{query}");
        assert!(
            bad.headers["content-type"].starts_with("application/json"),
            "{query}: {}",
            bad.body
        );
        let body: Value = serde_json::from_str(&bad.body).unwrap();
        assert_eq!(body["kind"], "bad_request", "{query}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains("target=NAME"),
            "{body}"
        );
    }
}

#[test]
fn every_route_is_read_only() {
    let site = Site::start(shop(1, 2));
    let (_tmp, d) = crawled(&site, &[]);
    let base = http_base(&d);
    for path in ["/", "/metrics", "/api/status", "/api/runs?target=shop"] {
        assert_eq!(get(&format!("{base}{path}")).status, 200, "GET {path}");
        let head = request("HEAD", &format!("{base}{path}"), None);
        assert_eq!((head.status, head.body.as_str()), (200, ""), "HEAD {path}");
        for method in ["POST", "PUT", "DELETE"] {
            let a = request(method, &format!("{base}{path}"), None);
            assert_eq!(a.status, 405, "{method} {path}");
        }
    }
    assert_eq!(get(&format!("{base}/nope")).status, 404);
}

/// `crawld run` with `args`, expected to refuse to start: its exit code and stderr.
fn refused_start(args: &[&str]) -> (Option<i32>, String) {
    let tmp = tempfile::tempdir().unwrap();
    let configs = tmp.path().join("configs");
    std::fs::create_dir_all(&configs).unwrap();
    let out = Command::cargo_bin("crawld")
        .unwrap()
        .env_remove("CRAWLD_HTTP")
        .env_remove("CRAWLD_HTTP_TOKEN")
        .env_remove("CRAWLD_HTTP_TOKEN_FILE")
        .args(["run", "--configs"])
        .arg(&configs)
        .arg("--state")
        .arg(tmp.path().join("state"))
        .args(args)
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_address_that_cannot_work_stops_the_start_with_exit_78() {
    let (code, err) = refused_start(&["--http", "0.0.0.0:0"]);
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("not a loopback address") && err.contains("token"),
        "{err}"
    );
    let (code, err) = refused_start(&["--http", "my-laptop"]);
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("not an address"), "{err}");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, err) = refused_start(&["--http", &addr]);
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
}

#[test]
fn off_loopback_every_request_needs_the_token() {
    let site = Site::start(shop(1, 2));
    let (tmp, configs, state) = setup(&site, &[("idle.toml", IDLE)]);
    let token = "s3cret-token-0123456789abcdef";
    let file = tmp.path().join("http-token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let log = tmp.path().join("daemon.log");
    let file_arg = file.to_str().unwrap();
    let d = Daemon::start_logged(
        &configs,
        &state,
        &["--http", "0.0.0.0:0", "--http-token-file", file_arg],
        Some(&log),
    );
    assert!(d.status()["http"].as_str().unwrap().starts_with("0.0.0.0:"));
    let base = http_base(&d);
    for path in ["/", "/metrics", "/api/status", "/api/runs?target=idle"] {
        let url = format!("{base}{path}");
        let none = get(&url);
        assert_eq!(none.status, 401, "{path} without the token");
        assert_eq!(none.headers["www-authenticate"], "Bearer realm=\"crawld\"");
        assert_eq!(
            request("GET", &url, Some("s3cret-token-0123456789abcdeX")).status,
            401,
            "{path}, wrong token"
        );
        assert_eq!(
            request("GET", &url, Some(token)).status,
            200,
            "{path} with the token"
        );
    }
    let sep = |p: &str| if p.contains('?') { '&' } else { '?' };
    for path in ["/", "/api/runs?target=idle"] {
        assert_eq!(
            get(&format!("{base}{path}{}token={token}", sep(path))).status,
            200,
            "{path}?token="
        );
    }
    assert_eq!(request("POST", &format!("{base}/"), None).status, 401);
    assert!(
        !std::fs::read_to_string(&log).unwrap().contains(token),
        "the token is never logged"
    );
}

#[test]
fn the_dashboard_shows_markup_from_configs_as_text() {
    let site = Site::start(shop(1, 2));
    // A broken file: its error quotes the line, markup and all.
    let broken = "start_urls = [\"{base}/\"]\nschedule = \"<script>alert('pwned')</script>\"\n";
    let (_tmp, d) = crawled(&site, &[("broken.toml", broken)]);
    let page = get(&format!("{}/", http_base(&d)));
    assert_eq!(page.status, 200);
    assert!(page.body.contains("broken.toml"), "the error is shown");
    assert!(
        !page.body.contains("<script"),
        "no markup from a config: {}",
        page.body
    );
    assert!(page
        .body
        .contains("&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;"));
    assert!(page.headers["content-security-policy"].contains("default-src 'none'"));
    assert!(page.body.contains(r#"data-target="shop" data-health="ok""#));
}

/// Headless Chromium, if installed: `None` (and a visible skip) when it
/// is not, unless CI says it must be.
fn chromium() -> Option<PathBuf> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var("CRAWLD_REQUIRE_CHROMIUM").as_deref() != Ok("1"),
            "CRAWLD_REQUIRE_CHROMIUM=1 but no chromium: apt-get install chromium"
        );
        eprintln!(
            "SKIPPED: the dashboard's browser test needs chromium (apt-get install chromium)"
        );
    }
    found
}

/// Runs Chromium headless on `url` with `args`, within a deadline (killed
/// past it): its stdout and stderr.
fn run_chromium(bin: &Path, url: &str, args: &[String]) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let out = tempfile::NamedTempFile::new().unwrap();
    let err = tempfile::NamedTempFile::new().unwrap();
    let mut child = Process::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
        ])
        .args([
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .args([
            "--no-proxy-server",
            "--hide-scrollbars",
            "--enable-logging=stderr",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(out.reopen().unwrap())
        .stderr(err.reopen().unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium failed: {status}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (
        std::fs::read_to_string(out.path()).unwrap(),
        std::fs::read_to_string(err.path()).unwrap(),
    )
}

/// What the page logged to its console (Chromium logs every message, of any
/// level, as `CONSOLE`): script errors, blocked loads, failed requests.
fn console_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains(":CONSOLE")).collect()
}

#[test]
fn the_dashboard_in_headless_chromium() {
    let Some(bin) = chromium() else { return };
    let site = Site::start(shop(2, 5));
    let (_tmp, d) = crawled(&site, &[("idle.toml", IDLE)]);
    let url = format!("{}/", http_base(&d));
    let (dom, log) = run_chromium(&bin, &url, &["--dump-dom".into()]);
    assert!(
        console_lines(&log).is_empty(),
        "console messages:\n{}",
        console_lines(&log).join("\n")
    );
    for (target, health) in [("shop", "ok"), ("idle", "never ran")] {
        assert!(
            dom.contains(&format!(r#"data-target="{target}" data-health="{health}""#)),
            "{target} shows as {health} in the rendered page:\n{dom}"
        );
    }
    assert!(dom.contains("<svg"), "the charts are drawn");
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let (_, log) = run_chromium(
        &bin,
        &url,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1400,1000".into(),
        ],
    );
    assert!(console_lines(&log).is_empty(), "{log}");
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a screenshot at {}",
        shot.display()
    );

    // The fixture daemon (firing monitors, coverage), for a look at the full page.
    let fixture = crawld::web::dashboard::render(
        &crawld::web::fixture::status(),
        &crawld::web::fixture::runs(),
        crawld::web::fixture::NOW_MS,
    );
    let page = artifacts.join("dashboard-fixture.html");
    std::fs::write(&page, &fixture).unwrap();
    let shot = artifacts.join("dashboard-fixture.png");
    let (_, log) = run_chromium(
        &bin,
        &format!("file://{}", page.display()),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1400,2300".into(),
        ],
    );
    assert!(console_lines(&log).is_empty(), "{log}");
    eprintln!(
        "screenshots: {} and {}",
        artifacts.join("dashboard.png").display(),
        shot.display()
    );

    // At phone width nothing sticks out of the page: tables scroll inside
    // their box, charts scale. The page in a 420 px frame (headless
    // Chromium's own window is at least 500 px wide) whose parent notes
    // how wide the page is and how wide its frame, where --dump-dom shows it.
    let frame = artifacts.join("dashboard-fixture-420.html");
    std::fs::write(
        &frame,
        r#"<!DOCTYPE html><html><body><iframe src="dashboard-fixture.html" style="width:420px;height:1000px;border:0" onload="var d = this.contentDocument.documentElement; document.body.dataset.widths = d.scrollWidth + ' ' + d.clientWidth;"></iframe></body></html>"#,
    )
    .unwrap();
    let (dom, _) = run_chromium(
        &bin,
        &format!("file://{}", frame.display()),
        &["--dump-dom".into(), "--allow-file-access-from-files".into()],
    );
    let widths: Vec<u32> = dom
        .split("data-widths=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map(|w| w.split(' ').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default();
    let [page, frame_width] = widths[..] else {
        panic!("no widths noted in\n{dom}");
    };
    assert!(
        page <= frame_width && frame_width <= 420,
        "the page is {page} px wide in a {frame_width} px frame"
    );
}
