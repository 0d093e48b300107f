//! What a site offers cannot grow a run without end: a page's links are
//! taken up to `follow.max_links` (the rest counted as `links_dropped`), and
//! a run queues URLs for at most `follow.max_hosts` hosts (the others
//! counted as `hosts_dropped`), both shown by `crawld crawl` and `runs --json`.

mod common;

use std::collections::HashMap;

use common::{crawl_target, crawld, write_configs, Resource, Site};
use crawld::crawl::Engine;
use serde_json::Value;

/// No retries and no robots.txt: each URL costs one request at most.
const PROFILE: &str = r#"
[profiles.p]
concurrency = 8
delay = "0ms"
timeout = "5s"
connect_timeout = "2s"
retries = 0
respect_robots = false
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_50000_links_gives_only_max_links_and_counts_the_rest() {
    let mut body = String::from("<title>Links</title>");
    for i in 0..50_000 {
        body.push_str(&format!(r#"<a href="/p/{i}">{i}</a>"#));
    }
    let mut pages = HashMap::new();
    pages.insert("/".to_owned(), Resource::html(body));
    for i in 0..200 {
        pages.insert(format!("/p/{i}"), Resource::html("<title>p</title>"));
    }
    let site = Site::start(pages);
    let tmp = tempfile::tempdir().unwrap();
    let configs = tmp.path().join("configs");
    let target = r#"
start_urls = ["{base}/"]
profile = "p"
max_pages = 100000
[follow]
max_links = 100
"#;
    write_configs(
        &configs,
        &site.url(""),
        &[("t.toml", target), ("p.toml", PROFILE)],
    );
    let (run, _) = crawl_target(&Engine::default(), &configs, &tmp.path().join("s"), "t").await;
    let c = &run.counts;
    // The first 100 links in document order, and nothing past them.
    assert_eq!(c.pages_fetched, 101, "{c:?}");
    assert_eq!(site.stats.count("/p/99"), 1);
    assert_eq!(site.stats.count("/p/100"), 0);
    assert_eq!(c.links_dropped, 50_000 - 100, "{c:?}");
    assert_eq!(c.over_budget, 0, "{c:?}");
}

#[test]
fn a_page_linking_many_hosts_queues_max_hosts_and_counts_the_rest() {
    // Links to 127.0.0.2…127.0.0.61 on the site's port: nothing listens
    // there, so each admitted host costs one refused connection.
    let mut pages = HashMap::new();
    pages.insert("/".to_owned(), Resource::html("placeholder"));
    let site = Site::start(pages);
    let port = site.url("").rsplit(':').next().unwrap().to_owned();
    let mut body = String::from("<title>Hosts</title>");
    for n in 2..=61 {
        body.push_str(&format!(r#"<a href="http://127.0.0.{n}:{port}/">{n}</a>"#));
    }
    site.set("/", Resource::html(body));
    let tmp = tempfile::tempdir().unwrap();
    let configs = tmp.path().join("configs");
    let state = tmp.path().join("state");
    let target = r#"
start_urls = ["{base}/"]
profile = "p"
allow_private_networks = true
[follow]
same_host = false
max_hosts = 10
"#;
    write_configs(
        &configs,
        &site.url(""),
        &[("t.toml", target), ("p.toml", PROFILE)],
    );
    let out = crawld()
        .args(["crawl", "t", "--no-progress", "--configs"])
        .arg(&configs)
        .arg("--state")
        .arg(&state)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("51 host(s) past follow.max_hosts")
            || stderr.contains("51 host(s) past follow.max_hosts"),
        "{stdout}\n{stderr}"
    );
    let out = crawld()
        .args(["runs", "t", "--json", "--state"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runs: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let c = &runs[0]["counts"];
    // The start host is one of the ten: nine more are queued, the other 51 refused.
    assert_eq!(c["hosts_dropped"], 51, "{c}");
    assert_eq!(c["links_dropped"], 0, "{c}");
    assert_eq!(c["pages_fetched"], 1, "{c}");
    assert_eq!(c["pages_failed"], 9, "{c}");
    let hosts = c["hosts"].as_object().unwrap();
    assert!(hosts.len() <= 10, "{c}");
    assert!(!hosts.contains_key(&format!("127.0.0.11:{port}")), "{c}");
}

#[test]
fn caps_below_one_are_config_errors_with_their_position() {
    let text = "start_urls = [\"http://a.test/\"]\n[follow]\nmax_links = 0\nmax_hosts = -3\n";
    let files = vec![(std::path::PathBuf::from("t.toml"), Ok(text.to_owned()))];
    let report = crawld::config::load_files(files, &|_| None);
    let errors: Vec<String> = report
        .all_errors()
        .iter()
        .map(|e| e.to_string().lines().next().unwrap().to_owned())
        .collect();
    assert_eq!(
        errors,
        [
            "t.toml:3:13: follow.max_links: max_links must be at least 1",
            "t.toml:4:13: follow.max_hosts: max_hosts must be at least 1",
        ]
    );
}
