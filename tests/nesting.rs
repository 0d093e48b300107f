//! Deeply nested HTML against a real loopback site: a page nested past the
//! limit is recorded as `too_deep` at once while the rest of the site is
//! crawled, a page just under it is parsed, and a stop signal (`crawld crawl`
//! and `crawld run --grace`) never waits for a parse in progress.
#![allow(clippy::disallowed_methods)] // the process tests poll children with thread sleeps

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use common::daemon::wait_for;
use common::{crawl_target, write_configs, Resource, Site, FAST_PROFILE};
use crawld::crawl::Engine;
use crawld::extract::MAX_DEPTH;
use crawld::failure::Failure;
use crawld::ids::TargetId;

const TARGET: &str = r#"
start_urls = ["{base}/"]
profile = "fast"
[items.page]
[items.page.fields]
h1 = { css = "h1", required = true }
"#;

/// `inner` inside `depth` nested `<div>`s.
fn nested(depth: u32, inner: &str) -> String {
    let depth = depth as usize;
    format!(
        "<html><body>{}{inner}{}</body></html>",
        "<div>".repeat(depth),
        "</div>".repeat(depth)
    )
}

fn site(pages: Vec<(&str, String)>) -> Site {
    let pages: HashMap<String, Resource> = pages
        .into_iter()
        .map(|(path, body)| (path.to_owned(), Resource::html(body)))
        .collect();
    Site::start(pages)
}

/// The `h1` of every item of the target `t`, sorted.
fn headings(store: &crawld::store::Store) -> Vec<String> {
    let mut all: Vec<String> = store
        .items(&TargetId::new("t"))
        .map(|i| {
            i.unwrap().value["h1"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    all.sort();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_nested_100000_deep_is_too_deep_at_once_and_the_rest_is_crawled() {
    let site = site(vec![
        (
            "/",
            "<h1>Home</h1><a href=/deep>deep</a><a href=/a>a</a><a href=/b>b</a>".into(),
        ),
        (
            "/deep",
            nested(100_000, "<h1>Deep</h1><a href=/hidden>x</a>"),
        ),
        ("/a", "<h1>A</h1>".into()),
        ("/b", "<h1>B</h1>".into()),
        ("/hidden", "<h1>Hidden</h1>".into()),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let configs = tmp.path().join("configs");
    write_configs(
        &configs,
        &site.url(""),
        &[("t.toml", TARGET), ("p.toml", FAST_PROFILE)],
    );
    let started = Instant::now();
    let (run, store) = crawl_target(&Engine::default(), &configs, &tmp.path().join("s"), "t").await;
    // Parsing the page took 27 s of CPU (release build) before the limit.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the crawl took {:?}",
        started.elapsed()
    );
    assert_eq!(
        run.counts.errors.get(&Failure::TooDeep),
        Some(&1),
        "{:?}",
        run.counts
    );
    assert_eq!(headings(&store), ["A", "B", "Home"]);
    assert_eq!(
        site.stats.count("/hidden"),
        0,
        "a page not parsed has no links"
    );
    let failures: Vec<_> = store
        .failures(&run.target, run.id)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].url.ends_with("/deep"));
    assert_eq!(failures[0].kind, Failure::TooDeep);
    assert!(
        failures[0]
            .detail
            .contains(&format!("more than {MAX_DEPTH} levels")),
        "{}",
        failures[0].detail
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_nested_just_under_the_limit_is_parsed() {
    let site = site(vec![
        (
            "/",
            "<h1>Home</h1><a href=/under>under</a><a href=/over>over</a>".into(),
        ),
        // With the <h1> and <a> inside, the page nests exactly MAX_DEPTH deep.
        (
            "/under",
            nested(MAX_DEPTH - 1, "<h1>Under</h1><a href=/after>after</a>"),
        ),
        ("/over", nested(MAX_DEPTH + 1, "<h1>Over</h1>")),
        ("/after", "<h1>After</h1>".into()),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let configs = tmp.path().join("configs");
    write_configs(
        &configs,
        &site.url(""),
        &[("t.toml", TARGET), ("p.toml", FAST_PROFILE)],
    );
    let (run, store) = crawl_target(&Engine::default(), &configs, &tmp.path().join("s"), "t").await;
    assert_eq!(headings(&store), ["After", "Home", "Under"]);
    assert_eq!(
        run.counts.errors.get(&Failure::TooDeep),
        Some(&1),
        "{:?}",
        run.counts
    );
}

#[test]
fn crawld_test_says_why_a_page_is_not_parsed() {
    let tmp = tempfile::tempdir().unwrap();
    let configs = tmp.path().join("configs");
    write_configs(
        &configs,
        "http://127.0.0.1:9",
        &[("t.toml", TARGET), ("p.toml", FAST_PROFILE)],
    );
    let deep = tmp.path().join("deep.html");
    std::fs::write(&deep, nested(5_000, "<h1>Deep</h1>")).unwrap();
    // Not deep, but 200,000 tags each opened under 1,000 elements.
    let heavy = tmp.path().join("heavy.html");
    std::fs::write(&heavy, nested(1_000, &"<li>x".repeat(200_000))).unwrap();
    for (page, why) in [
        (&deep, "its elements nest more than 1024 levels deep"),
        (&heavy, "parsing it would take too long"),
    ] {
        let out = Process::new(assert_cmd::cargo::cargo_bin("crawld"))
            .args(["test", "t", "--file"])
            .arg(page)
            .arg("--configs")
            .arg(&configs)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("is not parsed: "), "{stderr}");
        assert!(stderr.contains(why), "{stderr}");
        assert!(stderr.contains("too_deep"), "{stderr}");
    }
}

/// A site whose page `/big` takes seconds to parse (80 MB of character
/// references: within the nesting limits, only big), next to a page nested
/// 100,000 deep; the profile lets bodies of 100 MiB through.
fn slow_parse_site(dir: &Path) -> Site {
    let big = format!("<h1>Big</h1><p>{}", "&amp;".repeat(16_000_000));
    let site = site(vec![
        (
            "/",
            "<h1>Home</h1><a href=/big>big</a><a href=/deep>deep</a>".into(),
        ),
        ("/big", big),
        ("/deep", nested(100_000, "<h1>Deep</h1>")),
    ]);
    let profile = r#"
[profiles.fast]
extends = "aggressive"
concurrency = 4
delay = "0ms"
timeout = "60s"
max_body = "100MiB"
retries = 0
"#;
    // The daemon needs a schedule; a yearly one never fires here.
    let target = TARGET.replace("profile", "schedule = \"0 0 0 1 1 *\"\nprofile");
    write_configs(
        &dir.join("configs"),
        &site.url(""),
        &[("t.toml", &target), ("p.toml", profile)],
    );
    site
}

/// Waits until `/big` was answered and its parse is under way.
fn wait_for_the_parse(site: &Site) {
    wait_for(
        || site.stats.status_count(200) >= 3,
        "the big and the deep pages are served",
    );
    // The parse itself gives no sign from outside: leave time for the 80 MB
    // to arrive and be decoded, so that the signal comes during the parse
    // (which takes about 7 s in a debug build).
    std::thread::sleep(Duration::from_millis(1500));
}

/// Waits for `child` to exit; returns its exit code and how long it took.
fn exit_of(child: &mut Child) -> (Option<i32>, Duration) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code(), started.elapsed());
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the process does not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sigterm(child: &Child) {
    // SAFETY: a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
}

#[test]
fn sigterm_does_not_wait_for_a_parse_in_progress() {
    let tmp = tempfile::tempdir().unwrap();
    let site = slow_parse_site(tmp.path());
    let state = tmp.path().join("state");
    let mut child = Process::new(assert_cmd::cargo::cargo_bin("crawld"))
        .args(["crawl", "t", "--no-progress", "--configs"])
        .arg(tmp.path().join("configs"))
        .arg("--state")
        .arg(&state)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_the_parse(&site);
    sigterm(&child);
    let (code, took) = exit_of(&mut child);
    // Waiting for the parse, the exit took 5.4 s.
    assert!(took < Duration::from_secs(3), "exit took {took:?}");
    assert_eq!(code, Some(1), "an interrupted crawl exits 1");
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert!(stdout.contains("interrupted"), "{stdout}");
    // The run record and the home page's item were committed before the exit.
    let store = crawld::store::Store::open(&state).unwrap();
    let runs: Vec<_> = store
        .runs(&TargetId::new("t"))
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, crawld::store::RunStatus::Interrupted);
    assert_eq!(headings(&store), ["Home"]);
}

#[test]
fn the_daemon_stops_within_its_grace_while_a_page_is_parsed() {
    let tmp = tempfile::tempdir().unwrap();
    let site = slow_parse_site(tmp.path());
    let state = tmp.path().join("state");
    let mut child = Process::new(assert_cmd::cargo::cargo_bin("crawld"))
        .args(["run", "--grace", "1s", "--no-watch", "--configs"])
        .arg(tmp.path().join("configs"))
        .arg("--state")
        .arg(&state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let crawld = |args: &[&str]| {
        Process::new(assert_cmd::cargo::cargo_bin("crawld"))
            .args(args)
            .arg("--state")
            .arg(&state)
            .output()
            .unwrap()
    };
    wait_for(
        || crawld(&["status"]).status.success(),
        "the daemon answers",
    );
    assert!(crawld(&["trigger", "t"]).status.success());
    wait_for_the_parse(&site);
    sigterm(&child);
    let (code, took) = exit_of(&mut child);
    // The grace period (1 s), and not the rest of the parse (5.6 s before).
    assert!(took < Duration::from_secs(3), "exit took {took:?}");
    assert_eq!(code, Some(0), "a graceful stop exits 0");
    let store = crawld::store::Store::open(&state).unwrap();
    let runs: Vec<_> = store
        .runs(&TargetId::new("t"))
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(runs[0].status, crawld::store::RunStatus::Interrupted);
}
