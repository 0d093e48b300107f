//! The shop target and the command-line helpers that store tests share:
//! a configs dir with one target on a test site, and `crawld` processes that
//! crawl it and read it back.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use assert_cmd::Command;
use serde_json::Value;

use super::{write_configs, Site};

/// Product pages only carry items; listing pages show prices too but yield none.
pub const TARGET: &str = r#"
start_urls = ["{base}/"]
profile = "quick"
max_pages = 100000
strip_params = ["utm_*"]
[follow]
allow = ['^/$', '^/list/', '^/p/']
max_depth = 10000
[items.product]
pages = '^/p/'
[items.product.fields]
name = { css = "h1::text", required = true }
price = { css = "p.price::text", type = "number", required = true }
tags = { css = "ul.tags li::text", many = true }
"#;

pub const PROFILE: &str = r#"
[profiles.quick]
concurrency = 8
delay = "0ms"
timeout = "10s"
"#;

/// In-flight limit of the profile above.
pub const IN_FLIGHT: usize = 8;

pub fn crawld() -> Command {
    let mut cmd = Command::cargo_bin("crawld").unwrap();
    cmd.env_remove("CRAWLD_CONFIGS")
        .env_remove("CRAWLD_STATE")
        .env_remove("CRAWLD_CLUSTER")
        .env_remove("RUST_LOG")
        .timeout(Duration::from_secs(120));
    cmd
}

/// The PostgreSQL databases that stand for state dirs: a test on the
/// PostgreSQL backend registers its database for its state dir, and every
/// crawld these helpers start for that state dir uses the database.
static DATABASES: std::sync::Mutex<Vec<(std::path::PathBuf, String)>> =
    std::sync::Mutex::new(Vec::new());

/// Makes every crawld started for `state` use the database at `url`.
pub fn use_database(state: &Path, url: &str) {
    DATABASES
        .lock()
        .unwrap()
        .push((state.to_path_buf(), url.to_owned()));
}

/// The database standing for `state`, if any.
pub fn database_of(state: &Path) -> Option<String> {
    DATABASES
        .lock()
        .unwrap()
        .iter()
        .find(|(s, _)| s == state)
        .map(|(_, url)| url.clone())
}

/// `crawld()` for a command on `state`: with its database, if it has one.
pub fn crawld_on(state: &Path) -> Command {
    let mut cmd = crawld();
    if let Some(url) = database_of(state) {
        cmd.env("CRAWLD_CLUSTER", url);
    }
    cmd
}

pub struct Env {
    pub _tmp: tempfile::TempDir,
    pub configs: std::path::PathBuf,
    pub state: std::path::PathBuf,
}

pub fn env(site: &Site, target: &str) -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let configs = tmp.path().join("configs");
    write_configs(
        &configs,
        &site.url(""),
        &[("shop.toml", target), ("p.toml", PROFILE)],
    );
    let state = tmp.path().join("state");
    Env {
        _tmp: tmp,
        configs,
        state,
    }
}

pub fn crawl(e: &Env, full: bool) -> assert_cmd::assert::Assert {
    let mut cmd = crawld_on(&e.state);
    cmd.args(["crawl", "shop", "--no-progress", "--configs"])
        .arg(&e.configs)
        .arg("--state")
        .arg(&e.state);
    if full {
        cmd.arg("--full");
    }
    cmd.assert()
}

pub fn jsonl(state: &Path, args: &[&str]) -> Vec<Value> {
    let out = crawld_on(state)
        .arg("export")
        .arg("shop")
        .args(args)
        .arg("--state")
        .arg(state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn runs(state: &Path) -> Vec<Value> {
    let out = crawld_on(state)
        .args(["runs", "shop", "--json", "--state"])
        .arg(state)
        .output()
        .unwrap();
    assert!(out.status.success());
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

/// Every product key exactly once.
pub fn assert_all_products_once(state: &Path, products: usize) {
    let items = jsonl(state, &[]);
    let keys: HashSet<&str> = items.iter().map(|i| i["_key"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), items.len(), "no duplicate keys");
    assert_eq!(items.len(), products, "every product page's item is there");
}
