//! Monitors as a user meets them: `crawld crawl` judges its run and says
//! which monitor fires and why (`--fail-on-alert` exits 3), the daemon's
//! clock notices runs that never complete, and `[monitor]` is validated.

mod common;

use std::path::Path;
use std::time::Duration;

use common::daemon::{wait_for, Daemon};
use common::sinks::WebhookSink;
use common::{shop, write_configs, Resource, Site, FAST_PROFILE};

const TARGET: &str = r#"
start_urls = ["{base}/"]
profile = "fast"
strip_params = ["utm_*"]
[follow]
allow = ['^/$', '^/list/', '^/p/']
[items.product]
pages = '^/p/'
[items.product.fields]
name = { css = "h1::text", required = true }
price = "p.price::text"
tags = { css = "ul.tags li::text", many = true }
"#;

fn crawld() -> assert_cmd::Command {
    common::crawld()
}

/// A shop of 30 products and a configs dir with the target `t` on it.
fn shop_target() -> (Site, tempfile::TempDir) {
    let site = Site::start(shop(3, 10));
    let tmp = tempfile::tempdir().unwrap();
    write_configs(
        &tmp.path().join("configs"),
        &site.url(""),
        &[("t.toml", TARGET), ("profiles.toml", FAST_PROFILE)],
    );
    (site, tmp)
}

/// `crawld crawl t --full --fail-on-alert`: (exit code, stdout).
fn crawl(dir: &Path) -> (i32, String) {
    let out = crawld()
        .args(["crawl", "t", "--full", "--no-progress", "--fail-on-alert"])
        .arg("--configs")
        .arg(dir.join("configs"))
        .arg("--state")
        .arg(dir.join("state"))
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), format!("{stdout}{stderr}"))
}

fn runs(dir: &Path) -> Vec<serde_json::Value> {
    let out = crawld()
        .args(["runs", "t", "--json", "--state"])
        .arg(dir.join("state"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Selector drift: the site's markup changes so that the price is gone
/// from most product pages. The pages still answer 200 and the items are
/// still valid, so only coverage against the target's own history sees it.
#[test]
fn selector_drift_fires_field_coverage_naming_the_kind_and_field() {
    let (site, tmp) = shop_target();
    for _ in 0..2 {
        let (code, out) = crawl(tmp.path());
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("Monitors: all ok"), "{out}");
    }
    // The redesign: 24 of the 30 product pages call the price `cost`.
    for i in 0..24 {
        let path = format!("/p/{i}.html");
        let page = site.get(&path).unwrap();
        let body = String::from_utf8(page.body)
            .unwrap()
            .replace(r#"class="price""#, r#"class="cost""#);
        site.set(&path, Resource::html(body));
    }
    let (code, out) = crawl(tmp.path());
    assert_eq!(code, 3, "--fail-on-alert: a monitor fires: {out}");
    let line = out
        .lines()
        .find(|l| l.contains("FIRING field_coverage product.price"))
        .unwrap_or_else(|| panic!("the firing field is named: {out}"));
    assert!(line.contains("20 % < 80 %"), "now and threshold: {line}");
    assert!(line.contains("down from 100 %"), "the baseline: {line}");
    assert!(
        !out.contains("field_coverage product.name"),
        "other fields hold: {out}"
    );
    // The coverage is kept with each run, so the baseline survives restarts.
    let runs = runs(tmp.path());
    let last = &runs[runs.len() - 1]["counts"]["coverage"]["product"];
    assert_eq!(last["items"], 30, "{last}");
    assert_eq!(last["fields"]["price"], 6, "{last}");
    assert_eq!(last["fields"]["name"], 30, "{last}");
    assert_eq!(
        runs[0]["counts"]["coverage"]["product"]["fields"]["price"],
        30
    );
}

/// A third of the product pages answer 500: `failure_rate` fires with the
/// share and the threshold, and clears when the site recovers.
#[test]
fn failure_rate_fires_above_its_threshold_and_clears_on_recovery() {
    let (site, tmp) = shop_target();
    let healthy: Vec<(String, Resource)> = (0..30)
        .filter(|i| i % 3 == 0)
        .map(|i| format!("/p/{i}.html"))
        .map(|p| (p.clone(), site.get(&p).unwrap()))
        .collect();
    for (path, _) in &healthy {
        site.set(
            path,
            Resource {
                status: 500,
                ..Resource::html("oops")
            },
        );
    }
    let (code, out) = crawl(tmp.path());
    assert_eq!(code, 3, "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("FIRING failure_rate"))
        .unwrap_or_else(|| panic!("failure_rate fires: {out}"));
    assert!(line.contains("> 10 %"), "{line}");
    for (path, page) in healthy {
        site.set(&path, page);
    }
    let (code, out) = crawl(tmp.path());
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("FIRING failure_rate"), "{out}");
}

/// Too few pages to judge: a 5-page run with 2 failures does not page anyone.
#[test]
fn failure_rate_waits_for_min_pages() {
    let mut pages = std::collections::HashMap::new();
    pages.insert(
        "/".to_owned(),
        Resource::html(
            r#"<a href="/p/1.html">1</a><a href="/p/2.html">2</a><a href="/p/gone.html">x</a><a href="/p/lost.html">y</a>"#,
        ),
    );
    pages.insert("/p/1.html".to_owned(), Resource::html("<h1>one</h1>"));
    pages.insert("/p/2.html".to_owned(), Resource::html("<h1>two</h1>"));
    let site = Site::start(pages);
    let tmp = tempfile::tempdir().unwrap();
    write_configs(
        &tmp.path().join("configs"),
        &site.url(""),
        &[("t.toml", TARGET), ("profiles.toml", FAST_PROFILE)],
    );
    let (code, out) = crawl(tmp.path());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(", 2 failed,"), "{out}");
    assert!(out.contains("Monitors: all ok"), "{out}");
    assert!(out.contains("failure_rate 40 %"), "the figure shows: {out}");
}

/// The overdue monitor of target `t`, when it fires.
fn overdue_firing(d: &Daemon) -> Option<serde_json::Value> {
    d.target("t").and_then(|t| {
        t["monitors"]
            .as_array()?
            .iter()
            .find(|m| m["monitor"] == "overdue" && m["state"] == "firing")
            .cloned()
    })
}

/// Waits until every channel's queue is empty.
fn delivered(d: &Daemon) {
    wait_for(
        || {
            d.status()["channels"]
                .as_array()
                .is_some_and(|c| c.iter().all(|c| c["pending"] == 0))
        },
        "the alerts are out",
    );
}

/// The dead man's switch: a target whose runs hang never completes one,
/// and `overdue` fires once the firing a run was due at and 2 more passed. A restart
/// keeps it firing (its runs still never completed) without a word to the
/// channel, and the first completed run resolves it.
#[test]
fn overdue_fires_when_runs_hang_past_the_grace() {
    let site = Site::start(shop(1, 3));
    let healthy = site.get("/").unwrap();
    let mut hanging = healthy.clone();
    hanging.delay = Duration::from_secs(120);
    site.set("/", hanging);
    let hook = WebhookSink::start();
    let tmp = tempfile::tempdir().unwrap();
    let configs = tmp.path().join("configs");
    // The page hangs past the request timeout too: no run completes.
    let target = format!(
        "schedule = \"* * * * * *\"\ncatch_up = \"skip\"\n{}\n[monitor]\noverdue = 2.0\n",
        TARGET.replace("profile = \"fast\"", "profile = \"patient\"")
    );
    let patient =
        format!("{FAST_PROFILE}\n[profiles.patient]\nextends = \"fast\"\ntimeout = \"5m\"\n");
    let channel = format!(
        "[channels.hook]\nkind = \"webhook\"\nurl = \"{}\"\ndefault = true\n",
        hook.url("/")
    );
    write_configs(
        &configs,
        &site.url(""),
        &[
            ("t.toml", &target),
            ("profiles.toml", &patient),
            ("alerts.toml", &channel),
        ],
    );
    let state = tmp.path().join("state");
    let started = std::time::Instant::now();
    let d = Daemon::start(&configs, &state, &[]);
    wait_for(|| overdue_firing(&d).is_some(), "overdue fires");
    // The due firing and two more of the every-second schedule after the
    // daemon began to watch: between 2 and 3 s.
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "not before the grace: {:?}",
        started.elapsed()
    );
    let m = overdue_firing(&d).unwrap();
    let grace = m["threshold"].as_f64().unwrap();
    assert!((2.0..=3.0).contains(&grace), "{m}");
    assert!(m["value"].as_f64().unwrap() > grace, "{m}");
    assert!(
        m["message"].as_str().unwrap().contains("no run completed"),
        "{m}"
    );
    let text = d.cmd(&["status"]).output().unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("monitor(s) firing:"), "{text}");
    assert!(text.contains("t overdue"), "{text}");
    delivered(&d);
    assert_eq!(hook.accepted().len(), 1);

    let before = m["value"].as_f64().unwrap();
    assert_eq!(d.stop(), Some(0));
    let d = Daemon::start(&configs, &state, &[]);
    // The new daemon's clock judged it, and it still fires.
    wait_for(
        || overdue_firing(&d).is_some_and(|m| m["value"].as_f64().unwrap() > before),
        "the restarted daemon judges overdue firing",
    );
    delivered(&d);
    let sent: Vec<_> = hook.accepted().iter().map(|a| a["state"].clone()).collect();
    assert_eq!(sent, ["firing"], "a restart sends nothing");

    // Healed, and a hanging request stopped: the next firing's run completes.
    site.set("/", healthy);
    let _ = d.cmd(&["stop-run", "t"]).output();
    wait_for(|| hook.accepted().len() == 2, "a completed run resolves it");
    assert_eq!(hook.accepted()[1]["state"], "resolved");
    assert_eq!(hook.accepted()[1]["monitor"], "overdue");
}

#[test]
fn monitor_keys_are_validated_with_their_position() {
    let tmp = tempfile::tempdir().unwrap();
    let target = format!(
        "{TARGET}\n[monitor]\nfailure_rate = 1.5\nbaseline_runs = 0\ndisable = [\"everything\"]\nmin_coverage = {{ \"product.cost\" = 0.9 }}\nrepeat = \"often\"\n"
    );
    write_configs(
        &tmp.path().join("configs"),
        "http://127.0.0.1:9",
        &[("t.toml", &target), ("profiles.toml", FAST_PROFILE)],
    );
    let out = crawld()
        .args(["check", "--configs"])
        .arg(tmp.path().join("configs"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    for expected in [
        "t.toml:15:16: monitor.failure_rate: failure_rate is a share from 0 to 1",
        "t.toml:16:17: monitor.baseline_runs: baseline_runs must be between 1 and 100",
        "monitor.disable: unknown monitor \"everything\": the monitors are run_failed,",
        "[items.product] has no field \"cost\"; its fields are name, price, tags",
        "monitor.repeat: invalid duration \"often\"",
    ] {
        assert!(err.contains(expected), "{expected}\n---\n{err}");
    }
    // A misplaced key says where it belongs.
    let misplaced = format!("failure_rate = 0.2\n{TARGET}");
    write_configs(
        &tmp.path().join("configs"),
        "http://127.0.0.1:9",
        &[("t.toml", &misplaced)],
    );
    let out = crawld()
        .args(["check", "--configs"])
        .arg(tmp.path().join("configs"))
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("`failure_rate` belongs in [monitor]"), "{err}");
}
