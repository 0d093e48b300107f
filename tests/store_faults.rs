//! The store's failure modes, as a user meets them: reading commands that
//! must never write, a truncated or overwritten log, and a full disk. Each
//! failure is exit 74 with the store's path and what to do, never a panic,
//! and leaves the store's files exactly as they were.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command as Process;

use common::state::*;
use common::{shop, Site};

/// Hashes of every file of a store's sled directory.
fn fingerprint(state: &Path) -> Vec<(PathBuf, u64)> {
    let mut files: Vec<(PathBuf, u64)> = walk(&state.join("db"))
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, xxhash_rust::xxh3::xxh3_64(&bytes))
        })
        .collect();
    files.sort();
    files
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// What a user sees of one command.
struct Seen {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

fn run<S: AsRef<str>>(e: &Env, args: &[S]) -> Seen {
    let args: Vec<&str> = args.iter().map(|a| a.as_ref()).collect();
    let mut cmd = crawld();
    cmd.args(&args).arg("--state").arg(&e.state);
    if args[0] == "crawl" {
        cmd.arg("--configs").arg(&e.configs);
    }
    let out = cmd.output().unwrap();
    Seen {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The commands that only read, with the arguments to run them; `key` is
/// an item's key, for `history`.
fn readers(key: &str) -> Vec<Vec<String>> {
    [
        &["export", "shop"][..],
        &["export", "shop", "--changes"],
        &["export", "shop", "--format", "csv"],
        &["history", "shop", key],
        &["runs", "shop"],
        &["runs", "shop", "--json"],
        &["failures", "shop"],
        &["store", "check"],
    ]
    .iter()
    .map(|args| args.iter().map(|a| a.to_string()).collect())
    .collect()
}

/// The key of one item of the store.
fn some_key(state: &Path) -> String {
    jsonl(state, &[])[0]["_key"].as_str().unwrap().to_owned()
}

/// A failure as crawld must report it: exit 74, the store's path, what to
/// do, and none of a panic's or a debug print's text.
fn assert_store_failure(seen: &Seen, e: &Env, what: &str) {
    assert_eq!(seen.code, Some(74), "{what}: {}", seen.stderr);
    assert!(!seen.stderr.contains("panicked"), "{what}: {}", seen.stderr);
    assert!(!seen.stderr.contains("None"), "{what}: {}", seen.stderr);
    assert!(
        seen.stderr
            .contains(&e.state.join("db").display().to_string()),
        "{what} names the store: {}",
        seen.stderr
    );
    assert!(
        seen.stderr.contains("restore") || seen.stderr.contains("free space"),
        "{what} says what to do: {}",
        seen.stderr
    );
}

/// A store of 400 products crawled three times: a few MB of sled log.
fn crawled_shop() -> (Site, Env) {
    let site = Site::start(shop(4, 100));
    let e = env(&site, TARGET);
    for _ in 0..3 {
        crawl(&e, true).success();
    }
    (site, e)
}

#[test]
fn reading_commands_leave_the_store_byte_for_byte_unchanged() {
    let site = Site::start(shop(2, 10));
    let e = env(&site, TARGET);
    crawl(&e, true).success();
    // Before anything reads it: the first reader after a writer is the test.
    let before = fingerprint(&e.state);
    let key = some_key(&e.state);
    assert_eq!(fingerprint(&e.state), before, "`export` wrote");
    let backup = e.state.parent().unwrap().join("backup");
    for args in readers(&key) {
        let seen = run(&e, &args);
        assert_eq!(seen.code, Some(0), "{args:?}: {}", seen.stderr);
    }
    let seen = run(&e, &["store", "backup", backup.to_str().unwrap()]);
    assert_eq!(seen.code, Some(0), "{}", seen.stderr);
    assert_eq!(fingerprint(&e.state), before, "a reading command wrote");
}

/// [`crawled_shop`], then a fourth crawl killed with SIGKILL while it
/// commits: a store its writer did not close, as sled finds it after a crash.
fn killed_shop() -> (Site, Env) {
    let (site, e) = crawled_shop();
    for r in shop(4, 100).into_keys() {
        if let Some(mut page) = site.get(&r) {
            page.delay = std::time::Duration::from_millis(20);
            site.set(&r, page);
        }
    }
    let mut child = Process::new(assert_cmd::cargo::cargo_bin("crawld"))
        .args(["crawl", "shop", "--full", "--no-progress", "--configs"])
        .arg(&e.configs)
        .arg("--state")
        .arg(&e.state)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while site.stats.status_count(200) < 1300 && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    child.kill().unwrap();
    child.wait().unwrap();
    (site, e)
}

#[test]
fn a_truncated_log_is_exit_74_never_a_panic_and_is_left_as_it_is() {
    let mut contained = 0;
    for (_site, e) in [crawled_shop(), killed_shop()] {
        contained += truncations(&e);
    }
    // sled panics on some of these cuts: the panic is contained and named.
    assert!(
        contained > 0,
        "no cut made sled panic: the guard went untested"
    );
}

/// Cuts the log at each twentieth and runs every command on it; returns how
/// many failures were sled panics that crawld contained.
fn truncations(e: &Env) -> usize {
    let key = some_key(&e.state);
    let log = e.state.join("db/db");
    let pristine = std::fs::read(&log).unwrap();
    let (mut failed, mut contained) = (0, 0);
    // Twentieths: sled panics only at some cuts, and where they fall moves
    // with what the runs wrote; tenths sometimes missed them all.
    for part in 1..20 {
        std::fs::write(&log, &pristine[..pristine.len() * part / 20]).unwrap();
        let before = fingerprint(&e.state);
        for args in readers(&key) {
            let seen = run(e, &args);
            let what = format!("{args:?} on a log cut at {part}/20");
            if seen.code != Some(0) {
                assert_store_failure(&seen, e, &what);
                failed += 1;
                contained += usize::from(seen.stderr.contains("is damaged: sled failed"));
            }
            assert_eq!(fingerprint(&e.state), before, "{what} wrote to the store");
        }
        // A crawl opens the store for writing, and sled recovers what it can
        // of the log in place; crawld then notices the loss and stops.
        let seen = run(e, &["crawl", "shop", "--full"]);
        if seen.code != Some(0) {
            assert_store_failure(&seen, e, &format!("crawl on a log cut at {part}/20"));
            assert!(log.exists(), "the store is left in place");
        }
    }
    assert!(failed > 0, "no truncation was noticed");
    contained
}

#[test]
fn an_overwritten_log_fails_reads_and_crawls_with_74_and_writes_nothing() {
    let (_site, e) = crawled_shop();
    let log = e.state.join("db/db");
    let pristine = std::fs::read(&log).unwrap();
    let runs_before = runs(&e.state).len();
    // The whole state dir as it was: a crawl below may let sled rewrite more
    // than the log (its snapshot).
    let saved = e.state.with_file_name("saved");
    copy_state(&e.state, &saved);
    let mut failed = 0;
    for tenth in 1..10 {
        copy_state(&saved, &e.state);
        // 64 KiB of garbage inside the log.
        let mut bytes = pristine.clone();
        let at = bytes.len() * tenth / 10;
        let end = (at + 64 * 1024).min(bytes.len());
        bytes[at..end].fill(0xA5);
        std::fs::write(&log, &bytes).unwrap();
        let before = fingerprint(&e.state);
        let export = run(&e, &["export", "shop"]);
        if export.code == Some(0) {
            continue;
        }
        failed += 1;
        let what = format!("export with garbage at {tenth}/10");
        assert_store_failure(&export, &e, &what);
        assert!(
            ["cannot read", "cannot open", "lost committed data"]
                .iter()
                .any(|m| export.stderr.contains(m)),
            "{what}: says it is a read, not a write: {}",
            export.stderr
        );
        if !export.stdout.is_empty() {
            assert!(
                export.stderr.contains("INCOMPLETE"),
                "{what}: partial output must say so: {}",
                export.stderr
            );
        }
        assert_eq!(
            fingerprint(&e.state),
            before,
            "{what}: the store was written"
        );
        // A crawl opens the store for writing, and sled may rewrite the damaged
        // part of its log while it recovers; crawld itself records no run.
        let crawl = run(&e, &["crawl", "shop", "--full"]);
        assert_store_failure(&crawl, &e, &format!("crawl with garbage at {tenth}/10"));
        // Where the run records can still be read, the crawl added none.
        let listed = run(&e, &["runs", "shop", "--json"]);
        if listed.code == Some(0) {
            let runs: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).unwrap();
            assert_eq!(runs.len(), runs_before, "{what}: the crawl recorded a run");
        }
    }
    assert!(failed > 0, "no overwrite was noticed");
}

/// Replaces the state dir `to` with a copy of `from`.
fn copy_state(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let copied = Process::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(copied.success());
}

#[test]
fn a_full_disk_is_refused_before_the_store_is_opened() {
    let tmp = tempfile::tempdir().unwrap();
    let mount = tmp.path().join("small");
    std::fs::create_dir_all(&mount).unwrap();
    let mounted = Process::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
        .arg(&mount)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIPPED: this machine does not let the test mount a tmpfs (it needs root)");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Process::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mount.clone());
    let site = Site::start(shop(2, 20));
    let mut e = env(&site, TARGET);
    e.state = mount.join("state");
    crawl(&e, true).success();
    let items = jsonl(&e.state, &[]);
    assert_eq!(items.len(), 40);

    // Fill the filesystem to the last byte.
    let filler = mount.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let mut byte = [0u8; 1];
        while f.write_all(&byte).is_ok() {
            byte[0] = 1;
        }
        let _ = f.sync_all();
    }
    let before = fingerprint(&e.state);
    for args in [
        &["export", "shop"][..],
        &["export", "shop"],
        &["runs", "shop"],
        &["crawl", "shop"],
    ] {
        let seen = run(&e, args);
        assert_store_failure(&seen, &e, &format!("{args:?} on a full disk"));
        assert!(seen.stderr.contains("bytes free"), "{}", seen.stderr);
    }
    assert_eq!(
        fingerprint(&e.state),
        before,
        "a command wrote to a full disk"
    );

    // A copy on a roomy disk opens, and so does the store once space is freed.
    let copy = tmp.path().join("copy");
    let copied = Process::new("cp")
        .arg("-r")
        .arg(&e.state)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(copied.success());
    assert_eq!(jsonl(&copy, &[]), items);
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(jsonl(&e.state, &[]), items);
}
