//! The `crawld` binary as a user runs it: check, test, crawl, export, exit codes.

mod common;

use std::path::Path;
use std::time::Duration;

use assert_cmd::Command;
use common::{shop, write_configs, Site, FAST_PROFILE};
use predicates::prelude::*;

const SHOP: &str = r#"
start_urls = ["{base}/"]
profile = "fast"
strip_params = ["utm_*"]
[follow]
allow = ['^/$', '^/list/', '^/p/']
[items.card]
pages = '^/(list/\d+)?$'
selector = "article.pod"
key = "url"
[items.card.fields]
title = "h3 a::attr(title)"
url = { css = "h3 a::attr(href)", type = "url" }
price = { css = "p.price::text", type = "number", required = true }
[items.product]
pages = '^/p/'
[items.product.fields]
name = { css = "h1::text", required = true }
tags = { css = "ul.tags li::text", many = true }
"#;

fn crawld() -> Command {
    let mut cmd = Command::cargo_bin("crawld").unwrap();
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("CRAWLD_CONFIGS")
        .env_remove("CRAWLD_STATE")
        .env_remove("CONFIGURATION_DIRECTORY")
        .env_remove("STATE_DIRECTORY")
        .env_remove("RUST_LOG")
        .timeout(Duration::from_secs(60));
    cmd
}

fn setup(site: &Site, dir: &Path) {
    write_configs(
        &dir.join("configs"),
        &site.url(""),
        &[("shop.toml", SHOP), ("profiles.toml", FAST_PROFILE)],
    );
}

#[test]
fn check_reports_every_error_with_its_position() {
    let expected = std::fs::read_to_string("tests/fixtures/bad-configs.expected").unwrap();
    crawld()
        .args(["check", "--configs", "tests/fixtures/bad-configs"])
        .env_remove("CRAWLD_TEST_UNDEFINED_TOKEN")
        .assert()
        .code(78)
        .stderr(expected);
}

#[test]
fn check_accepts_the_documented_example_and_needs_its_variables() {
    crawld()
        .args(["check", "--configs", "tests/fixtures/good-configs"])
        .env("BOOKS_TOKEN", "t0ken")
        .assert()
        .success()
        .stdout(predicate::str::contains("1 target(s)"));
    crawld()
        .args(["check", "--configs", "tests/fixtures/good-configs"])
        .env_remove("BOOKS_TOKEN")
        .assert()
        .code(78)
        .stderr(predicate::str::contains(
            "books.toml:7:29: headers.Authorization: environment variable BOOKS_TOKEN is not set",
        ));
    crawld()
        .args(["check", "--configs", "configs"])
        .assert()
        .success();
    // The directory as an argument, as `crawld check /etc/crawld`; it wins
    // over the environment's.
    crawld()
        .args(["check", "tests/fixtures/bad-configs"])
        .env("CRAWLD_CONFIGS", "configs")
        .assert()
        .code(78);
}

#[test]
fn crawl_then_export_jsonl_and_csv() {
    let site = Site::start(shop(2, 5));
    let tmp = tempfile::tempdir().unwrap();
    setup(&site, tmp.path());
    // Directories from the environment, as a service manager would set them.
    crawld()
        .args(["crawl", "shop"])
        .env("CRAWLD_CONFIGS", tmp.path().join("configs"))
        .env("STATE_DIRECTORY", tmp.path().join("state"))
        .assert()
        .success()
        .stdout(predicate::str::contains("completed"))
        .stdout(predicate::str::contains(
            "12 fetched, 12 committed, 0 failed",
        ))
        .stdout(predicate::str::contains("20 new"));

    let state = tmp.path().join("state");
    let out = crawld()
        .args(["export", "shop", "--state"])
        .arg(&state)
        .output()
        .unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 20);
    let card = lines
        .iter()
        .find(|l| l["_kind"] == "card" && l["title"] == "Product 3")
        .unwrap();
    assert_eq!(card["price"], 3.99);
    assert_eq!(card["_key"], site.url("/p/3.html"));

    let csv_path = tmp.path().join("cards.csv");
    crawld()
        .args([
            "export",
            "shop",
            "--format",
            "csv",
            "--kind",
            "card",
            "--configs",
        ])
        .arg(tmp.path().join("configs"))
        .arg("--state")
        .arg(&state)
        .arg("--out")
        .arg(&csv_path)
        .assert()
        .success();
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    let mut rows = csv.lines();
    assert_eq!(
        rows.next().unwrap(),
        "_key,title,url,price,_page,_first_seen,_last_seen,_last_changed",
        "columns follow the config"
    );
    assert_eq!(rows.count(), 10);
    let refused = tmp.path().join("all.csv");
    crawld()
        .args(["export", "shop", "--format", "csv", "--state"])
        .arg(&state)
        .arg("--out")
        .arg(&refused)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--kind"));
    assert!(!refused.exists(), "a failed export leaves no file");
    assert!(std::fs::read_dir(tmp.path()).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".partial")));
    // A mistyped state dir is an error, and is not created.
    let typo = tmp.path().join("stat");
    crawld()
        .args(["export", "shop", "--state"])
        .arg(&typo)
        .assert()
        .code(74)
        .stderr(predicate::str::contains("no store in"));
    assert!(!typo.exists());
}

#[test]
fn crawl_refuses_a_target_whose_file_is_invalid() {
    let site = Site::start(shop(1, 2));
    let tmp = tempfile::tempdir().unwrap();
    setup(&site, tmp.path());
    let broken = SHOP
        .replace("key = \"url\"", "key = \"url\"\nmax_depht = 3")
        .replace("{base}", &site.url(""));
    std::fs::write(tmp.path().join("configs/shop.toml"), broken).unwrap();
    crawld()
        .args(["crawl", "shop", "--configs"])
        .arg(tmp.path().join("configs"))
        .arg("--state")
        .arg(tmp.path().join("state"))
        .assert()
        .code(78)
        .stderr(predicate::str::contains(
            "shop.toml:11:1: items.card.max_depht: unknown field `max_depht`",
        ));
    assert_eq!(
        site.stats.requests(),
        0,
        "nothing fetched for an invalid target"
    );
    crawld()
        .args(["crawl", "nope", "--configs"])
        .arg(tmp.path().join("configs"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no target \"nope\""));
}

#[test]
fn a_held_state_dir_exits_75_and_a_broken_store_74() {
    let site = Site::start(shop(1, 2));
    let tmp = tempfile::tempdir().unwrap();
    setup(&site, tmp.path());
    let state = tmp.path().join("state");
    let held = crawld::store::Store::open(&state).unwrap();
    crawld()
        .args(["crawl", "shop", "--configs"])
        .arg(tmp.path().join("configs"))
        .arg("--state")
        .arg(&state)
        .assert()
        .code(75)
        .stderr(predicate::str::contains(format!(
            "is in use by crawld pid {}",
            std::process::id()
        )));
    drop(held);

    let bad = tmp.path().join("bad-state");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("db"), b"this is not a sled database").unwrap();
    crawld()
        .args(["export", "shop", "--state"])
        .arg(&bad)
        .assert()
        .code(74)
        .stderr(predicate::str::contains("cannot open the store at"));
    assert_eq!(
        std::fs::read(bad.join("db")).unwrap(),
        b"this is not a sled database",
        "left in place"
    );
}

#[test]
fn test_shows_what_selectors_extract() {
    let site = Site::start(shop(1, 3));
    let tmp = tempfile::tempdir().unwrap();
    setup(&site, tmp.path());
    let configs = tmp.path().join("configs");
    crawld()
        .args(["test", "shop"])
        .arg(site.url("/"))
        .arg("--configs")
        .arg(&configs)
        .assert()
        .success()
        .stdout(predicate::str::contains("[card] 3 item(s), 0 invalid"))
        .stdout(predicate::str::contains("price        2.99"))
        .stdout(predicate::str::contains(
            "[product] 0 items (`pages` does not match this URL)",
        ))
        .stdout(predicate::str::contains(
            "links: 3 found, 3 would be followed",
        ))
        // Which ones, not only how many.
        .stdout(predicate::str::contains(format!(
            "  follow {}",
            site.url("/p/0.html")
        )));

    let page = tmp.path().join("page.html");
    std::fs::write(
        &page,
        "<h1>Own <i>child</i></h1><ul class=tags><li>a</li><li>b</li></ul>",
    )
    .unwrap();
    let out = crawld()
        .args(["test", "shop", "--json", "--file"])
        .arg(&page)
        .arg("--configs")
        .arg(&configs)
        .output()
        .unwrap();
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let product = json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "product")
        .unwrap();
    assert_eq!(product["value"]["name"], "Own");
    assert_eq!(product["value"]["tags"], serde_json::json!(["a", "b"]));
    assert_eq!(
        json["invalid"],
        serde_json::json!([]),
        "no card on the page is no invalid card"
    );
}

/// A shop of one list and `products` products, each of which takes 20 s to
/// answer: a crawl of it stays busy while a test acts on it.
fn slow_shop(products: usize) -> Site {
    let mut pages = shop(1, products);
    for (path, r) in pages.iter_mut() {
        if path != "/" {
            r.delay = Duration::from_secs(20);
        }
    }
    Site::start(pages)
}

#[test]
#[allow(clippy::disallowed_methods)] // a sync test, polling a child process
fn sigterm_interrupts_a_crawl_and_keeps_what_was_fetched() {
    let site = slow_shop(6);
    let tmp = tempfile::tempdir().unwrap();
    setup(&site, tmp.path());
    let bin = assert_cmd::cargo::cargo_bin("crawld");
    let child = std::process::Command::new(bin)
        .args(["crawl", "shop", "--configs"])
        .arg(tmp.path().join("configs"))
        .arg("--state")
        .arg(tmp.path().join("state"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the slow product pages are being fetched.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while site.stats.requests() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(site.stats.requests() >= 2);
    std::thread::sleep(Duration::from_millis(400));
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let started = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stops promptly"
    );
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("interrupted"), "{stdout}");
    assert!(stdout.contains("1 fetched, 1 committed"), "{stdout}");
    let items = crawld()
        .args(["export", "shop", "--state"])
        .arg(tmp.path().join("state"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&items.stdout).lines().count(),
        6,
        "the list page's cards were kept"
    );
}

#[test]
#[allow(clippy::disallowed_methods)] // a sync test, polling a child process
fn reading_during_a_foreground_crawl_names_the_crawl_and_exits_75_at_once() {
    let site = slow_shop(4);
    let tmp = tempfile::tempdir().unwrap();
    setup(&site, tmp.path());
    let state = tmp.path().join("state");
    let mut crawl = std::process::Command::new(assert_cmd::cargo::cargo_bin("crawld"))
        .args(["crawl", "shop", "--no-progress", "--configs"])
        .arg(tmp.path().join("configs"))
        .arg("--state")
        .arg(&state)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The crawl holds the state dir once it fetches.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while site.stats.requests() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(site.stats.requests() >= 2);
    let held = format!("is in use by `crawld crawl` (pid {})", crawl.id());
    for args in [
        &["export", "shop"][..],
        &["runs", "shop"],
        &["store", "check"],
    ] {
        let asked = std::time::Instant::now();
        crawld()
            .args(args)
            .arg("--state")
            .arg(&state)
            .assert()
            .code(75)
            .stderr(
                predicate::str::contains(&held)
                    .and(predicate::str::contains("run this again when it finishes"))
                    .and(predicate::str::contains("daemon").not()),
            );
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "{args:?} does not wait for the crawl"
        );
    }
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(crawl.id() as i32, libc::SIGTERM) }, 0);
    crawl.wait().unwrap();
}

/// A typo in a target or kind name is a usage error (exit 2) that names
/// what exists, for every reading command, not an empty success.
#[test]
fn reading_an_unknown_target_or_kind_is_exit_2_naming_what_exists() {
    let site = Site::start(shop(1, 3));
    let tmp = tempfile::tempdir().unwrap();
    setup(&site, tmp.path());
    let (configs, state) = (tmp.path().join("configs"), tmp.path().join("state"));
    crawld()
        .args(["crawl", "shop", "--configs"])
        .arg(&configs)
        .arg("--state")
        .arg(&state)
        .assert()
        .success();
    for args in [
        vec!["export", "shpo"],
        vec!["runs", "shpo"],
        vec!["failures", "shpo"],
        vec!["history", "shpo", "k"],
        vec!["export", "shpo", "--changes"],
    ] {
        crawld()
            .args(&args)
            .arg("--configs")
            .arg(&configs)
            .arg("--state")
            .arg(&state)
            .assert()
            .code(2)
            .stdout("")
            .stderr(predicate::str::contains(
                "unknown target shpo: it is not configured (configured: shop) and the store has runs of shop",
            ));
    }
    crawld()
        .args(["export", "shop", "--kind", "nokind", "--configs"])
        .arg(&configs)
        .arg("--state")
        .arg(&state)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "target shop has no item kind \"nokind\"; its kinds are",
        ));
}
