//! The dashboard and the metrics, rendered from the fixture daemon.

use std::collections::HashMap;

use super::dashboard::{health, render, Light};
use super::fixture::{self, INJECTED, NOW_MS};
use super::metrics::encode;
use crate::ids::TargetId;
use crate::store::{KindCoverage, RunCounts};

pub(super) fn scrape(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

/// The value of one sample, by metric name and labels.
pub(super) fn value(
    s: &prometheus_parse::Scrape,
    metric: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

#[test]
fn the_dashboard_shows_every_target_with_its_light_and_escapes_everything() {
    let status = fixture::status();
    let html = render(&status, &fixture::runs(), NOW_MS);
    for (name, word) in [
        ("books", "ok"),
        ("news", "firing"),
        ("shop", "running"),
        ("prices", "never ran"),
    ] {
        assert!(
            html.contains(&format!(r#"data-target="{name}" data-health="{word}""#)),
            "{name} is shown as {word}"
        );
    }
    assert!(
        !html.contains(INJECTED),
        "markup from configs and errors is text, never markup"
    );
    assert!(!html.contains("<script"), "the page has no script at all");
    assert!(html.contains("&lt;script&gt;alert(&#39;crawld&#39;)&lt;/script&gt;"));
    // The firing monitors, with their figures; the drop shows in the coverage chart.
    assert!(html.contains("article.author") && html.contains("35 % &lt; 80 %"));
    assert!(
        html.contains("author 38%"),
        "the legend gives the last coverage (30 of 79)"
    );
    assert!(
        html.contains("61 of 100 pages"),
        "the running run's progress"
    );
    assert!(html.contains("paused") && html.contains("backoff"));
    assert!(html.contains("oncall-mail") && html.contains("prices-extra.toml:3:9"));
    // For a look in a browser (tests/web.rs takes its screenshot).
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("dashboard-fixture.html"), &html).unwrap();
}

#[test]
fn without_monitor_data_the_page_says_so() {
    let mut status = fixture::status();
    for t in &mut status.targets {
        t.monitors.clear();
    }
    let html = render(&status, &fixture::runs(), NOW_MS);
    assert!(html.contains("No monitor data yet."));
    assert_eq!(html.matches("no monitor data yet").count(), 4);
    // A failed last run is red even before monitors exist.
    assert!(html.contains(r#"data-target="news" data-health="failed""#));
}

#[test]
fn lights_follow_monitors_runs_and_config() {
    let status = fixture::status();
    let light = |name: &str| {
        let t = status
            .targets
            .iter()
            .find(|t| t.name.as_str() == name)
            .unwrap();
        health(t).0
    };
    assert_eq!(light("books"), Light::Green);
    assert_eq!(light("news"), Light::Red);
    assert_eq!(light("shop"), Light::Amber);
    assert_eq!(light("prices"), Light::Grey);
    let mut stale = status.targets[0].clone();
    stale.stale = true;
    assert_eq!(health(&stale), (Light::Amber, "config broken"));
}

#[test]
fn metrics_sum_the_kept_runs_and_parse() {
    let (status, runs) = (fixture::status(), fixture::runs());
    let text = encode(&status, &runs, fixture::NOW_MS);
    let s = scrape(&text);
    let books = runs[&TargetId::new("books")].as_ref().unwrap();
    let mut sum = RunCounts::default();
    for r in books {
        sum.add(&r.counts);
    }
    let books_v = |m: &str, extra: &[(&str, &str)]| {
        let mut l = vec![("target", "books")];
        l.extend_from_slice(extra);
        value(&s, m, &l).unwrap_or_else(|| panic!("{m} {extra:?} in\n{text}"))
    };
    assert_eq!(
        books_v("crawld_pages_total", &[("outcome", "fetched")]),
        sum.pages_fetched as f64
    );
    assert_eq!(
        books_v("crawld_pages_total", &[("outcome", "failed")]),
        sum.pages_failed as f64
    );
    assert_eq!(
        books_v("crawld_items_total", &[("outcome", "new")]),
        sum.items_new as f64
    );
    assert_eq!(
        books_v("crawld_items_total", &[("outcome", "removed")]),
        sum.items_removed as f64
    );
    let full = books
        .iter()
        .filter(|r| r.mode == crate::store::RunMode::Full)
        .count();
    assert_eq!(
        books_v(
            "crawld_runs_total",
            &[("mode", "full"), ("status", "completed")]
        ),
        full as f64
    );
    // The running run of shop is not counted as a finished run.
    let shop_runs: f64 = s
        .samples
        .iter()
        .filter(|x| x.metric == "crawld_runs_total" && x.labels.get("target") == Some("shop"))
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum();
    assert_eq!(shop_runs, 5.0);
}

#[test]
fn metrics_show_runs_monitors_coverage_hosts_and_channels() {
    let (status, runs) = (fixture::status(), fixture::runs());
    let s = scrape(&encode(&status, &runs, fixture::NOW_MS));
    assert_eq!(
        value(&s, "crawld_running", &[("target", "shop")]),
        Some(1.0)
    );
    assert_eq!(
        value(
            &s,
            "crawld_monitor_firing",
            &[("target", "news"), ("monitor", "field_coverage")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &s,
            "crawld_monitor_firing",
            &[("target", "books"), ("monitor", "overdue")]
        ),
        Some(0.0)
    );
    let cov = value(
        &s,
        "crawld_field_coverage",
        &[
            ("target", "news"),
            ("mode", "incremental"),
            ("kind", "article"),
            ("field", "author"),
        ],
    )
    .unwrap();
    // The last completed incremental run: 30 of its 91 articles had an author.
    assert!((cov - 30.0 / 91.0).abs() < 1e-9, "{cov}");
    assert_eq!(
        value(
            &s,
            "crawld_host_paused",
            &[("host", "news.example.org:443")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &s,
            "crawld_host_too_many_requests_total",
            &[("host", "shop.example.org:443")]
        ),
        Some(27.0)
    );
    assert_eq!(
        value(
            &s,
            "crawld_channel_failed_total",
            &[("channel", "oncall-mail")]
        ),
        Some(4.0)
    );
    assert_eq!(value(&s, "crawld_config_errors", &[]), Some(1.0));
    for x in &s.samples {
        for v in x.labels.values() {
            assert!(
                !v.contains("://"),
                "a URL as a label value: {} {v}",
                x.metric
            );
        }
    }
}

#[test]
fn label_values_are_escaped() {
    let (status, mut runs) = (fixture::status(), fixture::runs());
    let books = runs
        .get_mut(&TargetId::new("books"))
        .unwrap()
        .as_mut()
        .unwrap();
    let last = books.last_mut().unwrap();
    last.counts.coverage = [(
        "bo\"ok".to_owned(),
        KindCoverage {
            items: 4,
            fields: [("a\\b\nc".to_owned(), 1)].into(),
        },
    )]
    .into();
    let text = encode(&status, &runs, NOW_MS);
    assert!(
        text.contains(r#"kind="bo\"ok",field="a\\b\nc""#),
        "escaped as the text format wants:\n{}",
        text.lines()
            .filter(|l| l.contains("bo"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let lines: HashMap<_, _> = text.lines().map(|l| (l, ())).collect();
    assert!(lines.keys().all(|l| !l.contains('\r')));
}

#[test]
fn addresses_parse_as_ip_port_or_localhost() {
    use super::{parse_addr, WebError};
    assert_eq!(
        parse_addr("127.0.0.1:9464").unwrap(),
        "127.0.0.1:9464".parse().unwrap()
    );
    assert_eq!(
        parse_addr("localhost:0").unwrap(),
        "127.0.0.1:0".parse().unwrap()
    );
    assert_eq!(parse_addr("[::1]:80").unwrap(), "[::1]:80".parse().unwrap());
    for bad in ["9464", "example.org:80", "127.0.0.1", "localhost:x", ""] {
        assert!(
            matches!(parse_addr(bad), Err(WebError::BadAddress { .. })),
            "{bad}"
        );
    }
}

#[test]
fn host_retries_and_requeues_add_up_over_every_targets_runs() {
    let (status, mut runs) = (fixture::status(), fixture::runs());
    let mut n = 0;
    for list in runs.values_mut().flatten() {
        for run in list.iter_mut().take(2) {
            n += 1;
            let h = run.counts.hosts.entry("a.example:80".into()).or_default();
            h.retries = n;
            h.requeues = 10 * n;
        }
    }
    let s = scrape(&encode(&status, &runs, NOW_MS));
    let sum = (1..=n).sum::<u64>() as f64;
    let host = [("host", "a.example:80")];
    assert_eq!(value(&s, "crawld_host_retries_total", &host), Some(sum));
    assert_eq!(
        value(&s, "crawld_host_requeues_total", &host),
        Some(10.0 * sum)
    );
}
