//! Nothing lost, only changes fetched: kill -9 and SIGTERM resume, incremental
//! runs with conditional requests, the change feed, removals, store failures.

mod common;

use std::collections::HashMap;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use common::state::*;
use common::{shop, write_configs, Resource, Site};
use serde_json::Value;

fn spawn_crawl(e: &Env) -> std::process::Child {
    let mut cmd = Process::new(assert_cmd::cargo::cargo_bin("crawld"));
    cmd.env_remove("CRAWLD_CLUSTER");
    if let Some(url) = database_of(&e.state) {
        cmd.env("CRAWLD_CLUSTER", url);
    }
    cmd.args(["crawl", "shop", "--no-progress", "--configs"])
        .arg(&e.configs)
        .arg("--state")
        .arg(&e.state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A site whose product pages take a little while, so that kills land mid-crawl.
fn slow_shop(lists: usize, per_list: usize, delay: Duration) -> HashMap<String, Resource> {
    let mut pages = shop(lists, per_list);
    for r in pages.values_mut() {
        r.delay = delay;
    }
    pages
}

#[test]
fn kill_9_at_random_moments_loses_no_item_and_duplicates_none() {
    kill_9_at_random_moments(None);
}

/// The same on the PostgreSQL backend (`crawld crawl` with CRAWLD_CLUSTER).
#[test]
fn kill_9_at_random_moments_loses_no_item_on_postgres() {
    if let Some(db) = common::postgres::database() {
        kill_9_at_random_moments(Some(db.url()));
    }
}

#[allow(clippy::disallowed_methods)] // sleeps between kills of a child process
fn kill_9_at_random_moments(database: Option<&str>) {
    let (lists, per_list) = (20, 100);
    let products = lists * per_list;
    let site = Site::start(slow_shop(lists, per_list, Duration::from_millis(15)));
    let e = env(&site, TARGET);
    if let Some(url) = database {
        use_database(&e.state, url);
    }
    // A small LCG: seeded, so a failure replays the same kill times.
    let mut seed: u64 = 0x5eed_2026;
    let mut next = |lo: u64, hi: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lo + (seed >> 33) % (hi - lo)
    };
    let kills = 4;
    for _ in 0..kills {
        let mut child = spawn_crawl(&e);
        std::thread::sleep(Duration::from_millis(next(150, 700)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let before = site.stats.status_count(200);
    assert!(
        before > 0 && before < products,
        "the kills landed mid-crawl ({before} pages)"
    );
    // Restart until a run completes.
    let mut attempts = 0;
    loop {
        attempts += 1;
        let out = crawl(&e, false).get_output().clone();
        if out.status.success() {
            break;
        }
        assert!(attempts < 3, "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_all_products_once(&e.state, products);
    let site_pages = products + lists;
    let fetched = site.stats.status_count(200);
    assert!(fetched >= site_pages, "every page was fetched ({fetched})");
    assert!(
        fetched <= site_pages + kills * (IN_FLIGHT + 64),
        "at most in-flight + one commit batch refetched per kill: {fetched} for {site_pages} pages"
    );
    let runs = runs(&e.state);
    let last = runs.last().unwrap();
    assert_eq!(last["status"], "completed");
    assert!(
        last["resumed_from"].is_u64(),
        "the last run resumed the killed ones: {last}"
    );
    assert!(
        runs[..runs.len() - 1]
            .iter()
            .all(|r| r["status"] == "interrupted"),
        "killed runs are marked interrupted"
    );
    for run in &runs[..runs.len() - 1] {
        let c = &run["counts"];
        assert!(
            c["pages_committed"] == 0 || c["pages_fetched"].as_u64() > Some(0),
            "a killed run that committed pages shows them fetched: {run}"
        );
    }
    if let Some(url) = database {
        let stored = common::postgres::sql(url, "SELECT count(*) FROM crawld.runs");
        assert_eq!(
            stored[0][0].as_deref(),
            Some(runs.len().to_string().as_str()),
            "the runs are in the database"
        );
        assert!(!e.state.join("db").exists(), "and no sled store was made");
    } else {
        crawld()
            .args(["store", "check", "--state"])
            .arg(&e.state)
            .assert()
            .success();
    }
}

#[test]
#[allow(clippy::disallowed_methods)]
fn sigterm_checkpoints_and_the_next_run_refetches_nothing_committed() {
    let (lists, per_list) = (5, 60);
    let site = Site::start(slow_shop(lists, per_list, Duration::from_millis(15)));
    let e = env(&site, TARGET);
    let child = spawn_crawl(&e);
    let deadline = Instant::now() + Duration::from_secs(20);
    while site.stats.status_count(200) < 40 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: a signal to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "an interrupted run exits 1");
    let first = runs(&e.state);
    assert_eq!(first[0]["status"], "interrupted");
    let committed = first[0]["counts"]["pages_committed"].as_u64().unwrap() as usize;
    assert!(
        // Answers still in flight at the signal are not committed.
        committed >= 40 - IN_FLIGHT && committed < lists * per_list,
        "{committed}"
    );

    crawl(&e, false).success();
    assert_all_products_once(&e.state, lists * per_list);
    let runs = runs(&e.state);
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1]["resumed_from"], first[0]["id"]);
    let mut per_path: HashMap<String, usize> = HashMap::new();
    for (path, status) in site.stats.responses.lock().unwrap().iter() {
        if *status == 200 {
            *per_path.entry(path.clone()).or_default() += 1;
        }
    }
    let twice = per_path.values().filter(|&&n| n > 1).count();
    assert!(
        twice <= IN_FLIGHT,
        "only requests in flight at SIGTERM are fetched again ({twice})"
    );
    assert_eq!(
        per_path.len(),
        lists * per_list + lists,
        "every page fetched"
    );
}

#[test]
fn incremental_runs_fetch_only_changes_and_full_runs_find_removals() {
    let (lists, per_list) = (5, 20);
    let site = Site::start(shop(lists, per_list));
    let e = env(&site, TARGET);
    // Asked for an incremental run, the target's first run fetches everything:
    // it is recorded as the full run it is.
    crawl(&e, false).success();
    assert_eq!(runs(&e.state)[0]["mode"], "full");
    assert_eq!(
        jsonl(&e.state, &["--changes"]).len(),
        100,
        "the first run adds every product"
    );

    // An unchanged site: conditional requests, nothing re-extracted.
    site.stats.reset();
    let out = crawl(&e, false).success().get_output().stdout.clone();
    let summary = String::from_utf8_lossy(&out);
    let total = site.stats.requests();
    let not_modified = site.stats.status_count(304);
    assert!(
        not_modified * 100 >= total * 95,
        "{not_modified} of {total} answered 304"
    );
    let last = runs(&e.state).pop().unwrap();
    assert_eq!(last["mode"], "incremental");
    assert_eq!(last["counts"]["items_new"], 0);
    assert_eq!(last["counts"]["items_changed"], 0);
    assert_eq!(last["counts"]["items_unchanged"], 0, "nothing re-extracted");
    // The summary says what the target still holds, not "0 new, 0 changed".
    assert_eq!(last["counts"]["items_kept"], 100, "{last}");
    assert!(
        summary.contains("items   100 kept (on pages not parsed again), 0 new, 0 changed"),
        "{summary}"
    );
    assert!(jsonl(&e.state, &["--changes"]).is_empty());

    // Five prices change (on the product pages and on the listings that show them),
    // and one product page disappears.
    let changed = [3, 17, 42, 64, 88];
    for i in changed {
        let path = format!("/p/{i}.html");
        let mut page = site.get(&path).unwrap();
        page.body = String::from_utf8(page.body)
            .unwrap()
            .replace(&format!("£{i}.99"), &format!("£{i}.49"))
            .into_bytes();
        site.set(&path, page);
        let list = if i < per_list {
            "/".to_owned()
        } else {
            format!("/list/{}", i / per_list + 1)
        };
        let mut page = site.get(&list).unwrap();
        page.body = String::from_utf8(page.body)
            .unwrap()
            .replace(&format!("£{i}.99"), &format!("£{i}.49"))
            .into_bytes();
        site.set(&list, page);
    }
    site.remove("/p/55.html");

    crawl(&e, false).success();
    let changes = jsonl(&e.state, &["--changes"]);
    let mut keys: Vec<String> = changes
        .iter()
        .map(|c| c["_key"].as_str().unwrap().to_owned())
        .collect();
    keys.sort();
    let mut expected: Vec<String> = changed
        .iter()
        .map(|i| site.url(&format!("/p/{i}.html")))
        .collect();
    expected.sort();
    assert_eq!(
        keys, expected,
        "exactly the five changed products: {changes:?}"
    );
    for c in &changes {
        assert_eq!(c["change"], "changed");
        assert_eq!(c["fields"], serde_json::json!(["price"]));
    }
    let incremental_run = runs(&e.state).pop().unwrap()["id"].as_u64().unwrap();

    crawl(&e, true).success();
    let changes = jsonl(&e.state, &["--changes"]);
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0]["change"], "removed");
    assert_eq!(changes[0]["_key"], site.url("/p/55.html"));
    let since = jsonl(
        &e.state,
        &["--changes", "--since", &(incremental_run - 1).to_string()],
    );
    assert_eq!(
        since.len(),
        6,
        "five changes and one removal since the run before"
    );
    assert_eq!(
        jsonl(&e.state, &[]).len(),
        99,
        "a removed item is no longer exported"
    );

    let history = crawld()
        .args(["history", "shop"])
        .arg(site.url("/p/42.html"))
        .arg("--state")
        .arg(&e.state)
        .output()
        .unwrap();
    let versions: Vec<Value> = String::from_utf8(history.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert_eq!(versions[0]["value"]["price"], 42.99);
    assert_eq!(versions[1]["value"]["price"], 42.49);
    // Each version names the run that made it, not the last run that saw it.
    assert_eq!(versions[0]["run"], 1, "{versions:?}");
    assert_eq!(versions[1]["run"], incremental_run, "{versions:?}");
}

#[test]
fn a_full_run_hitting_its_budget_removes_nothing() {
    let site = Site::start(shop(2, 10));
    let e = env(&site, TARGET);
    crawl(&e, true).success();
    let limited = TARGET.replace("max_pages = 100000", "max_pages = 5");
    write_configs(&e.configs, &site.url(""), &[("shop.toml", &limited)]);
    crawl(&e, true).success();
    let removed: Vec<Value> = jsonl(&e.state, &["--changes"])
        .into_iter()
        .filter(|c| c["change"] == "removed")
        .collect();
    assert!(
        removed.is_empty(),
        "pages not seen are not evidence of removal: {removed:?}"
    );
    assert_eq!(jsonl(&e.state, &[]).len(), 20);
}

#[test]
fn changes_file_is_written_when_a_run_ends() {
    let site = Site::start(shop(1, 5));
    let target =
        format!("{TARGET}\n[output]\nchanges_jsonl = \"exports/{{target}}/{{run}}.jsonl\"\n");
    let e = env(&site, &target);
    crawl(&e, true).success();
    let run = runs(&e.state)[0]["id"].as_u64().unwrap();
    let file = e.state.join(format!("exports/shop/{run}.jsonl"));
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count(), 5);
    assert!(text.lines().all(|l| l.contains("\"change\":\"added\"")));
}

#[test]
fn backup_and_restore_round_trip() {
    let site = Site::start(shop(2, 10));
    let e = env(&site, TARGET);
    crawl(&e, true).success();
    let file = e.state.parent().unwrap().join("backup.crawld");
    crawld()
        .args(["store", "backup"])
        .arg(&file)
        .arg("--state")
        .arg(&e.state)
        .assert()
        .success();
    let restored = e.state.parent().unwrap().join("restored");
    crawld()
        .args(["store", "restore"])
        .arg(&file)
        .arg("--state")
        .arg(&restored)
        .assert()
        .success();
    crawld()
        .args(["store", "check", "--state"])
        .arg(&restored)
        .assert()
        .success();
    assert_eq!(jsonl(&e.state, &[]), jsonl(&restored, &[]));
    assert_eq!(runs(&e.state), runs(&restored));
    // Restoring over an existing store is refused, and the store is untouched.
    crawld()
        .args(["store", "restore"])
        .arg(&file)
        .arg("--state")
        .arg(&restored)
        .assert()
        .code(74)
        .stderr(predicates::str::contains("already holds a store"));
    // A damaged backup restores nothing.
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let other = e.state.parent().unwrap().join("other");
    crawld()
        .args(["store", "restore"])
        .arg(&file)
        .arg("--state")
        .arg(&other)
        .assert()
        .code(74)
        .stderr(predicates::str::contains("damaged"));
    assert!(!other.join("db").exists());
}

#[test]
fn a_truncated_store_exits_74_and_is_left_in_place() {
    let site = Site::start(shop(2, 10));
    let e = env(&site, TARGET);
    crawl(&e, true).success();
    let log = e.state.join("db/db");
    // A settled log ends in zeros up to its segment's end: cut inside the data.
    let bytes = std::fs::read(&log).unwrap();
    let data = bytes.iter().rposition(|&b| b != 0).unwrap() as u64;
    let f = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
    f.set_len(data / 3).unwrap();
    drop(f);
    crawld()
        .args(["export", "shop", "--state"])
        .arg(&e.state)
        .assert()
        .code(74)
        .stderr(truncation())
        .stderr(predicates::str::contains("left as it is"));
    // sled may pad its log while it recovers, but the store is neither deleted nor
    // recreated: it keeps failing the same way until someone acts.
    assert!(log.exists());
    crawld()
        .args(["crawl", "shop", "--configs"])
        .arg(&e.configs)
        .arg("--state")
        .arg(&e.state)
        .assert()
        .code(74)
        .stderr(truncation());
}

/// How crawld names a truncated log: sled finds a hole where its snapshot
/// points, or opens an older state than was committed.
fn truncation() -> impl predicates::Predicate<str> {
    use predicates::prelude::PredicateBooleanExt;
    predicates::str::contains("lost committed data").or(predicates::str::contains("corrupted data"))
}

#[test]
fn a_full_disk_fails_the_run_loudly_and_keeps_what_was_committed() {
    // A real full disk: a 40 MB tmpfs (the tests run as root, as CI does).
    let tmp = tempfile::tempdir().unwrap();
    let mount = tmp.path().join("small");
    std::fs::create_dir_all(&mount).unwrap();
    let ok = Process::new("mount")
        .args(["-t", "tmpfs", "-o", "size=40m", "tmpfs"])
        .arg(&mount)
        .status()
        .unwrap();
    assert!(ok.success(), "mounting a tmpfs needs root");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Process::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mount.clone());

    // 400 products with 60 KB of text each: far more than the disk holds.
    let mut pages = shop(4, 100);
    for (path, r) in pages.iter_mut() {
        if path.starts_with("/p/") {
            let body = String::from_utf8(r.body.clone()).unwrap();
            let text = format!(
                "<div class=blurb>{}</div>",
                "lorem ipsum dolor sit amet ".repeat(2400)
            );
            r.body = body
                .replace("</body>", &format!("{text}</body>"))
                .into_bytes();
        }
    }
    let site = Site::start(pages);
    let target = TARGET.replace(
        "[items.product.fields]",
        "[items.product.fields]\nblurb = \"div.blurb\"",
    );
    let configs = tmp.path().join("configs");
    write_configs(
        &configs,
        &site.url(""),
        &[("shop.toml", &target), ("p.toml", PROFILE)],
    );
    let state = mount.join("state");
    let out = crawld()
        .args(["crawl", "shop", "--no-progress", "--configs"])
        .arg(&configs)
        .arg("--state")
        .arg(&state)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(74), "{stderr}");
    assert!(stderr.contains("bytes free on the filesystem"), "{stderr}");

    // The admin frees space; what was committed is there and consistent.
    let grown = Process::new("mount")
        .args(["-o", "remount,size=128m"])
        .arg(&mount)
        .status()
        .unwrap();
    assert!(grown.success());
    crawld()
        .args(["store", "check", "--state"])
        .arg(&state)
        .assert()
        .success();
    let run = runs(&state).pop().unwrap();
    // The run's last record comes out of the space crawld keeps in reserve.
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        run["error"].as_str().unwrap().contains("bytes free"),
        "{run}"
    );
    let committed = run["counts"]["items_new"].as_u64().unwrap() as usize;
    assert!(
        committed > 0,
        "some pages were committed before the disk filled"
    );
    assert_eq!(
        jsonl(&state, &[]).len(),
        committed,
        "every committed item is readable"
    );
    // And the next run resumes and completes.
    crawld()
        .args(["crawl", "shop", "--no-progress", "--configs"])
        .arg(&configs)
        .arg("--state")
        .arg(&state)
        .assert()
        .success();
    assert_all_products_once(&state, 400);
}

#[test]
fn an_incremental_run_reextracts_pages_after_the_selectors_change() {
    let site = Site::start(shop(1, 5));
    let e = env(&site, TARGET);
    crawl(&e, true).success();
    crawl(&e, false).success();
    let quiet = runs(&e.state).pop().unwrap();
    assert_eq!(quiet["counts"]["pages_not_modified"], 6, "{quiet}");
    // A new field: unchanged pages must be parsed again to fill it.
    let edited = TARGET.replace(
        "[items.product.fields]",
        "[items.product.fields]\nfull = \"h1\"",
    );
    write_configs(&e.configs, &site.url(""), &[("shop.toml", &edited)]);
    crawl(&e, false).success();
    let run = runs(&e.state).pop().unwrap();
    assert_eq!(run["counts"]["pages_not_modified"], 0, "{run}");
    let changes = jsonl(&e.state, &["--changes"]);
    assert_eq!(changes.len(), 5, "{changes:?}");
    assert!(
        changes
            .iter()
            .all(|c| c["fields"] == serde_json::json!(["full"])),
        "{changes:?}"
    );
    // And the run after that is quiet again.
    crawl(&e, false).success();
    assert_eq!(
        runs(&e.state).pop().unwrap()["counts"]["pages_not_modified"],
        6
    );
}

#[test]
fn retention_bounds_runs_and_versions() {
    let site = Site::start(shop(1, 3));
    let target = TARGET.replace(
        "max_pages = 100000",
        "max_pages = 100000\nkeep_runs = 2\nkeep_versions = 2",
    );
    let e = env(&site, &target);
    for round in 0..4 {
        // A new price every round: one more version of product 1 each time.
        let mut page = site.get("/p/1.html").unwrap();
        let body = String::from_utf8(page.body).unwrap();
        let price = format!("£{}.{round}9", 100 + round);
        let start = body.find("Price: ").unwrap() + "Price: ".len();
        let end = start + body[start..].find('<').unwrap();
        page.body = format!("{}{}{}", &body[..start], price, &body[end..]).into_bytes();
        site.set("/p/1.html", page);
        crawl(&e, true).success();
    }
    let runs = runs(&e.state);
    assert_eq!(runs.len(), 2, "keep_runs = 2: {runs:?}");
    let history = crawld()
        .args(["history", "shop"])
        .arg(site.url("/p/1.html"))
        .arg("--state")
        .arg(&e.state)
        .output()
        .unwrap();
    let versions = String::from_utf8(history.stdout).unwrap().lines().count();
    assert_eq!(
        versions, 3,
        "keep_versions = 2 past versions plus the current one"
    );
    crawld()
        .args(["store", "check", "--state"])
        .arg(&e.state)
        .assert()
        .success();
}

#[test]
#[allow(clippy::disallowed_methods)]
fn stale_or_replaced_interrupted_runs_are_abandoned() {
    let site = Site::start(slow_shop(2, 40, Duration::from_millis(20)));
    let target = TARGET.replace(
        "max_pages = 100000",
        "max_pages = 100000\nresume_within = \"300ms\"",
    );
    let e = env(&site, &target);
    let interrupt = |e: &Env| {
        let child = spawn_crawl(e);
        let before = site.stats.requests();
        let deadline = Instant::now() + Duration::from_secs(20);
        while site.stats.requests() < before + 10 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        assert_eq!(child.wait_with_output().unwrap().status.code(), Some(1));
    };
    // Too old to resume.
    interrupt(&e);
    std::thread::sleep(Duration::from_millis(400));
    crawl(&e, false).success();
    let runs_now = runs(&e.state);
    assert_eq!(runs_now[0]["status"], "abandoned");
    assert!(runs_now[1]["resumed_from"].is_null());
    // An interrupted incremental run is replaced by a full one.
    interrupt(&e);
    crawl(&e, true).success();
    let runs_now = runs(&e.state);
    assert_eq!(runs_now[2]["status"], "abandoned", "{runs_now:?}");
    assert_eq!(runs_now[3]["mode"], "full");
    assert!(runs_now[3]["resumed_from"].is_null());
    assert_all_products_once(&e.state, 80);
}
