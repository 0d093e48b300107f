//! The whole way, in a real daemon: a site starts failing, `failure_rate`
//! is pending for one run, then fires once to a webhook, an SMTP server and an exec command, a restart
//! sends nothing twice, and the recovery sends one `resolved` to each.

use std::path::Path;

use serde_json::Value;

use super::common::daemon::{wait_for, Daemon};
use super::common::sinks::{SmtpSink, WebhookSink};
use super::common::{shop, write_configs, Resource, Site, FAST_PROFILE};
use super::{full_run, paged};

const TARGET: &str = r#"
start_urls = ["{base}/"]
profile = "fast"
strip_params = ["utm_*"]
alerts = ["hook", "mail", "pager"]
[follow]
allow = ['^/$', '^/list/', '^/p/']
[items.product]
pages = '^/p/'
[items.product.fields]
name = { css = "h1::text", required = true }
price = "p.price::text"
"#;

fn channels(hook: &WebhookSink, smtp: &SmtpSink, pager: &Path) -> String {
    format!(
        r#"
[channels.hook]
kind = "webhook"
url = "{}"
[channels.mail]
kind = "email"
smtp = "smtp://{}"
from = "crawld@example.org"
to = ["ops@example.org"]
[channels.pager]
kind = "exec"
command = ["sh", "-c", "cat >> \"$0\" && echo >> \"$0\"", "{}"]
"#,
        hook.url("/hook"),
        smtp.addr,
        pager.display()
    )
}

/// Waits until the daemon judged `run` and its queue is empty.
fn settled(d: &Daemon, run: u64) {
    wait_for(
        || {
            let s = d.status();
            let judged = s["targets"][0]["monitors"].as_array().is_some_and(|m| {
                m.iter()
                    .any(|m| m["monitor"] == "failure_rate" && m["run"] == run)
            });
            let idle = s["channels"]
                .as_array()
                .is_some_and(|c| c.iter().all(|c| c["pending"] == 0));
            judged && idle
        },
        "the run is judged and its alerts are out",
    );
}

/// A shop of 30 products whose every third product page can be made to
/// fail, a webhook receiver, an SMTP sink and an exec channel's file, and a
/// configs dir with the target and the three channels.
struct Scene {
    site: Site,
    third: Vec<(String, Resource)>,
    hook: WebhookSink,
    smtp: SmtpSink,
    tmp: tempfile::TempDir,
    pager: std::path::PathBuf,
    configs: std::path::PathBuf,
}

fn scene() -> Scene {
    let site = Site::start(shop(3, 10));
    let third: Vec<(String, Resource)> = (0..30)
        .filter(|i| i % 3 == 0)
        .map(|i| format!("/p/{i}.html"))
        .map(|p| (p.clone(), site.get(&p).unwrap()))
        .collect();
    let (hook, smtp) = (WebhookSink::start(), SmtpSink::start());
    let tmp = tempfile::tempdir().unwrap();
    let pager = tmp.path().join("pager.jsonl");
    let configs = tmp.path().join("configs");
    let alerts = channels(&hook, &smtp, &pager);
    write_configs(
        &configs,
        &site.url(""),
        &[
            ("t.toml", TARGET),
            ("profiles.toml", FAST_PROFILE),
            ("alerts.toml", &alerts),
        ],
    );
    Scene {
        site,
        third,
        hook,
        smtp,
        tmp,
        pager,
        configs,
    }
}

fn failing(site: &Site, fail: bool, pages: &[(String, Resource)]) {
    for (path, page) in pages {
        let r = if fail {
            Resource {
                status: 500,
                ..Resource::html("down")
            }
        } else {
            page.clone()
        };
        site.set(path, r);
    }
}

#[test]
fn a_failing_site_fires_once_per_channel_survives_a_restart_and_resolves() {
    let Scene {
        site,
        third,
        hook,
        smtp,
        tmp,
        pager,
        configs,
    } = scene();
    let state = tmp.path().join("state");
    let d = Daemon::start(&configs, &state, &[]);
    let run = full_run(&d);
    settled(&d, run);
    assert!(hook.hooks().is_empty(), "a healthy run sends nothing");

    failing(&site, true, &third);
    let run = full_run(&d);
    settled(&d, run);
    assert!(
        hook.hooks().is_empty(),
        "one failing run is pending, not firing"
    );
    let pending = d.target("t").unwrap()["monitors"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["monitor"] == "failure_rate" && m["state"] == "pending");
    assert!(pending, "{}", d.status());
    let run = full_run(&d);
    settled(&d, run);
    let sent = hook.accepted();
    assert_eq!(sent.len(), 1, "one alert: {sent:?}");
    let a = &sent[0];
    assert_eq!(
        (&a["target"], &a["monitor"], &a["state"], &a["run"]),
        (
            &Value::from("t"),
            &Value::from("failure_rate"),
            &Value::from("firing"),
            &Value::from(run)
        )
    );
    let share = a["value"].as_f64().unwrap();
    assert!((0.25..0.35).contains(&share), "10 of 33 pages: {a}");
    assert!(
        a["message"]
            .as_str()
            .unwrap()
            .starts_with("10 of 33 pages failed"),
        "{a}"
    );
    assert_eq!(a["threshold"], 0.1);
    assert!(
        a["message"].as_str().unwrap().contains("pages failed"),
        "{a}"
    );
    assert_eq!(smtp.mails().len(), 1);
    assert!(smtp.mails()[0]
        .header("Subject")
        .unwrap()
        .contains("failure_rate"));
    assert_eq!(paged(&pager).len(), 1);
    assert_eq!(paged(&pager)[0]["state"], "firing");

    // A restart: the open alert is remembered, neither forgotten nor re-sent.
    assert_eq!(d.stop(), Some(0));
    let d = Daemon::start(&configs, &state, &[]);
    let firing = d.target("t").unwrap()["monitors"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["monitor"] == "failure_rate" && m["state"] == "firing");
    assert!(firing, "the firing state survives the restart");
    let run = full_run(&d);
    settled(&d, run);
    assert_eq!(hook.accepted().len(), 1, "still firing: not sent again");
    assert_eq!(smtp.mails().len(), 1);
    assert_eq!(paged(&pager).len(), 1);

    failing(&site, false, &third);
    let run = full_run(&d);
    settled(&d, run);
    let sent = hook.accepted();
    assert_eq!(sent.len(), 2, "one resolved: {sent:?}");
    assert_eq!(sent[1]["state"], "resolved");
    assert_eq!(sent[1]["monitor"], "failure_rate");
    assert_eq!(smtp.mails().len(), 2);
    assert_eq!(paged(&pager).len(), 2);
    assert_eq!(paged(&pager)[1]["state"], "resolved");
}

/// A channel that refuses connections holds up neither the runs nor the
/// other channels, and gets its alert once, when it listens again.
#[test]
fn a_channel_that_is_down_slows_nothing_and_gets_its_alert_when_back() {
    let Scene {
        site,
        third,
        hook,
        smtp,
        tmp,
        pager,
        configs,
    } = scene();
    let d = Daemon::start(&configs, &tmp.path().join("state"), &[]);
    full_run(&d);
    hook.close();
    failing(&site, true, &third);
    let started = std::time::Instant::now();
    full_run(&d);
    full_run(&d);
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(10),
        "two runs took {took:?}"
    );
    // The others got theirs at once; the webhook's waits in the queue.
    wait_for(
        || smtp.mails().len() == 1 && paged(&pager).len() == 1,
        "mail and exec deliver",
    );
    wait_for(
        || {
            let s = d.status();
            s["channels"].as_array().unwrap().iter().any(|c| {
                c["name"] == "hook" && c["pending"] == 1 && c["failed"].as_u64() >= Some(1)
            })
        },
        "status shows the webhook's alert pending after a failed attempt",
    );
    assert!(hook.accepted().is_empty());
    hook.reopen();
    wait_for(
        || hook.accepted().len() == 1,
        "the webhook gets its alert once back",
    );
    assert_eq!(hook.accepted()[0]["monitor"], "failure_rate");
    assert_eq!(smtp.mails().len(), 1, "nothing sent twice");
}

/// `crawld crawl --alert`, for cron users without a daemon: the run's
/// monitors are recorded and their alerts sent before it exits.
#[test]
fn a_foreground_crawl_with_alert_sends_and_resolves() {
    let Scene {
        site,
        third,
        hook,
        smtp,
        tmp,
        pager,
        configs,
    } = scene();
    let crawl = || {
        let out = super::crawld()
            .args([
                "crawl",
                "t",
                "--full",
                "--no-progress",
                "--alert",
                "--fail-on-alert",
            ])
            .arg("--configs")
            .arg(&configs)
            .arg("--state")
            .arg(tmp.path().join("state"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.code(), text)
    };
    failing(&site, true, &third);
    let (code, out) = crawl();
    assert_eq!(code, Some(0), "the first failing run is pending: {out}");
    assert!(out.contains("pending failure_rate"), "{out}");
    assert!(hook.accepted().is_empty());
    let (code, out) = crawl();
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("Alerts: 3 delivered"), "{out}");
    assert_eq!(hook.accepted().len(), 1);
    assert_eq!(smtp.mails().len(), 1);
    assert_eq!(paged(&pager).len(), 1);
    // Still failing: nothing new to say.
    let (code, out) = crawl();
    assert_eq!(code, Some(3), "{out}");
    assert_eq!(hook.accepted().len(), 1, "{out}");
    failing(&site, false, &third);
    let (code, out) = crawl();
    assert_eq!(code, Some(0), "{out}");
    let sent = hook.accepted();
    assert_eq!(sent.len(), 2, "{out}");
    assert_eq!(sent[1]["state"], "resolved");
    assert_eq!(paged(&pager)[1]["state"], "resolved");
}
