//! One grammar for the command line (issue 17, item 3): the reading
//! commands take the same options, an unknown target is exit 2 everywhere
//! naming the targets that exist, `failures` prints a table, every
//! `<TARGET>` says what it is, cron takes its common forms, and the demo
//! crawls the port it serves.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;

use common::{crawld, shop, write_configs, Site, FAST_PROFILE};
use predicates::prelude::*;

const SHOP: &str = r#"
start_urls = ["{base}/"]
profile = "fast"
[follow]
allow = ['^/$', '^/list/', '^/p/']
[items.product]
pages = '^/p/'
[items.product.fields]
name = { css = "h1::text", required = true }
"#;

/// A second target, configured and never crawled.
const IDLE: &str = "start_urls = [\"{base}/idle\"]\nprofile = \"fast\"\n";

/// The reading commands, each with what it needs besides the target.
const READERS: [&[&str]; 5] = [
    &["export"],
    &["export", "--changes"],
    &["runs"],
    &["failures"],
    &["history", "KEY"],
];

/// `args` with the target put in second place: `history TARGET KEY`.
fn with_target<'a>(args: &[&'a str], target: &'a str) -> Vec<&'a str> {
    let mut all = vec![args[0], target];
    all.extend(&args[1..]);
    all
}

/// A configs dir with `shop` and `idle`, and a state dir where `shop` ran.
fn crawled(site: &Site, dir: &Path) {
    write_configs(
        &dir.join("configs"),
        &site.url(""),
        &[
            ("shop.toml", SHOP),
            ("idle.toml", IDLE),
            ("p.toml", FAST_PROFILE),
        ],
    );
    crawld()
        .args(["crawl", "shop", "--no-progress", "--configs"])
        .arg(dir.join("configs"))
        .arg("--state")
        .arg(dir.join("state"))
        .assert()
        .success();
}

/// Every reading command takes --configs, --state and --socket, and a
/// target that is configured but never ran is known to all of them.
#[test]
fn every_reading_command_takes_the_same_options() {
    for args in READERS {
        let help = crawld().args([args[0], "--help"]).output().unwrap();
        let help = String::from_utf8(help.stdout).unwrap();
        for option in [
            "--configs <CONFIGS>",
            "--state <STATE>",
            "--socket <SOCKET>",
        ] {
            assert!(
                help.contains(option),
                "{} --help lacks {option}:\n{help}",
                args[0]
            );
        }
    }
    let site = Site::start(shop(1, 2));
    let tmp = tempfile::tempdir().unwrap();
    crawled(&site, tmp.path());
    for args in READERS {
        // `idle` is known from the configs: not exit 2, whatever else.
        let out = crawld()
            .args(with_target(args, "idle"))
            .arg("--configs")
            .arg(tmp.path().join("configs"))
            .arg("--state")
            .arg(tmp.path().join("state"))
            .arg("--socket")
            .arg(tmp.path().join("no.sock"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(!stderr.contains("unknown target"), "{args:?}: {stderr}");
    }
}

/// A typo in a target name is exit 2 for every command, naming the
/// configured targets and those with runs in the store; also when there is
/// no store at all.
#[test]
fn an_unknown_target_is_exit_2_naming_the_targets_that_exist() {
    let site = Site::start(shop(1, 2));
    let tmp = tempfile::tempdir().unwrap();
    crawled(&site, tmp.path());
    let configs = tmp.path().join("configs");
    for args in READERS {
        crawld()
            .args(with_target(args, "shpo"))
            .arg("--configs")
            .arg(&configs)
            .arg("--state")
            .arg(tmp.path().join("state"))
            .assert()
            .code(2)
            .stdout("")
            .stderr(predicate::str::contains(
                "unknown target shpo: it is not configured (configured: idle, shop) \
                 and the store has runs of shop",
            ));
        crawld()
            .args(with_target(args, "shpo"))
            .arg("--configs")
            .arg(&configs)
            .arg("--state")
            .arg(tmp.path().join("empty"))
            .assert()
            .code(2)
            .stderr(predicate::str::contains(
                "unknown target shpo: it is not configured (configured: idle, shop) \
                 and there is no store in",
            ));
    }
    for args in [
        &["crawl", "shpo"][..],
        &["test", "shpo", "http://127.0.0.1:9/"],
    ] {
        crawld()
            .args(args)
            .arg("--configs")
            .arg(&configs)
            .assert()
            .code(2)
            .stderr(
                predicate::str::contains("no target \"shpo\"")
                    .and(predicate::str::contains("idle, shop")),
            );
    }
}

/// `<TARGET>` says what it is in every command's help.
#[test]
fn every_target_argument_has_help() {
    for command in [
        "test", "crawl", "export", "trigger", "stop-run", "history", "failures", "runs",
    ] {
        let help = crawld().args([command, "--help"]).output().unwrap();
        let help = String::from_utf8(help.stdout).unwrap();
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with("<TARGET>"))
            .unwrap_or_else(|| panic!("{command} --help has no <TARGET>:\n{help}"));
        assert!(
            line.contains("config file's name"),
            "{command}: <TARGET> has no help: {line:?}"
        );
    }
}

/// `failures` prints a table like `runs`; `--json` prints JSON lines.
#[test]
fn failures_prints_a_table_and_json_lines_with_json() {
    let mut pages = shop(1, 2);
    pages.insert(
        "/p/gone".to_owned(),
        common::Resource {
            status: 404,
            ..common::Resource::html("")
        },
    );
    pages
        .get_mut("/")
        .unwrap()
        .body
        .extend(br#"<a href="/p/gone">gone</a>"#);
    let site = Site::start(pages);
    let tmp = tempfile::tempdir().unwrap();
    crawled(&site, tmp.path());
    let read = |json: bool| {
        let mut cmd = crawld();
        cmd.args(["failures", "shop", "--configs"])
            .arg(tmp.path().join("configs"))
            .arg("--state")
            .arg(tmp.path().join("state"));
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let table = read(false);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["run", "at", "kind", "status", "url", "detail"],
        "{table}"
    );
    let row = lines.next().unwrap();
    assert!(
        row.contains("http_404") && row.contains(" 404 ") && row.contains(&site.url("/p/gone")),
        "{table}"
    );
    assert_eq!(lines.next(), None, "{table}");
    let json = read(true);
    let line: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(line["url"], site.url("/p/gone"));
    assert_eq!(line["status"], 404);
    assert_eq!(line["kind"], "http_404");
}

/// The five-field crontab form and the @-macros pass `crawld check`; a bad
/// one is a config error with its line and column.
#[test]
fn check_takes_five_fields_and_macros() {
    let tmp = tempfile::tempdir().unwrap();
    let configs = tmp.path().join("configs");
    let target = "start_urls = [\"http://127.0.0.1:9/\"]\nprofile = \"fast\"\n";
    write_configs(
        &configs,
        "",
        &[
            (
                "a.toml",
                &format!("{target}schedule = \"*/30 * * * *\"\nfull_schedule = \"@weekly\"\n"),
            ),
            (
                "b.toml",
                &format!("{target}schedule = \"@hourly\"\nfull_schedule = \"0 0 3 * * Sun\"\n"),
            ),
            ("p.toml", FAST_PROFILE),
        ],
    );
    crawld()
        .args(["check", "--configs"])
        .arg(&configs)
        .assert()
        .success()
        .stdout(predicate::str::contains("2 target(s)"));
    write_configs(
        &configs,
        "",
        &[("b.toml", &format!("{target}schedule = \"0 25 * * *\"\n"))],
    );
    crawld()
        .args(["check", "--configs"])
        .arg(&configs)
        .assert()
        .code(78)
        .stderr(predicate::str::contains(
            "b.toml:3:12: schedule: cron expression \"0 25 * * *\": field 2 (hours) \"25\" is invalid",
        ));
}

/// A free port on 127.0.0.1 (nothing listens on it once this returns).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `demo --port P` crawls the site it serves on P, not port 8088.
#[test]
fn demo_crawls_the_port_it_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = crawld()
        .args(["demo", "--port", &port.to_string(), "--state"])
        .arg(tmp.path().join("state"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("8088"), "{stdout}");
    let items = crawld()
        .args(["export", "shop", "--state"])
        .arg(tmp.path().join("state"))
        .output()
        .unwrap();
    let items = String::from_utf8(items.stdout).unwrap();
    assert!(items.lines().count() > 10, "{stdout}\n{items}");
    assert!(items.contains(&format!("127.0.0.1:{port}/")), "{items}");
}

/// `demo --serve` says how to stop it, and Ctrl-C (SIGINT) stops it with exit 0.
#[test]
fn demo_serve_says_how_to_stop_it() {
    let port = free_port();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("crawld"))
        .args(["demo", "--serve", "--port", &port.to_string()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    while !said.contains("Ctrl-C") {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "ended before: {said}"
        );
        said.push_str(&line);
    }
    assert!(
        said.contains(&format!("http://127.0.0.1:{port}/")),
        "{said}"
    );
    let page = std::net::TcpStream::connect(("127.0.0.1", port));
    assert!(page.is_ok(), "it serves: {said}");
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    assert!(child.wait().unwrap().success());
}

/// Through a running daemon too: `trigger`, `stop-run` and the reading
/// commands (which the daemon runs, with its own configs) name its targets.
#[test]
fn the_daemon_names_its_targets_for_an_unknown_one() {
    let tmp = tempfile::tempdir().unwrap();
    let configs = tmp.path().join("configs");
    write_configs(
        &configs,
        "http://127.0.0.1:9",
        &[
            ("shop.toml", SHOP),
            ("idle.toml", IDLE),
            ("p.toml", FAST_PROFILE),
        ],
    );
    let daemon = common::daemon::Daemon::start(&configs, &tmp.path().join("state"), &[]);
    for args in [&["trigger", "shpo"][..], &["stop-run", "shpo"]] {
        daemon
            .cmd(args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(
                "no target shpo in the daemon's configs (targets: idle, shop)",
            ));
    }
    // No configs here: what the daemon has configured is what counts.
    let elsewhere = format!("--configs={}", tmp.path().join("none").display());
    daemon
        .cmd(&["runs", "shpo", &elsewhere])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "unknown target shpo: it is not configured (configured: idle, shop) \
             and the store has no runs of any target",
        ));
    daemon.stop();
}
