//! The page and the metrics at their edges: scrapers that want the classic
//! text format, figures next to their thresholds, blocked hosts, runs in
//! progress and thousands of hosts.

use std::collections::HashMap;

use super::dashboard::render;
use super::fixture::{self, NOW_MS};
use super::metrics::encode;
use super::tests::{scrape, value};
use crate::ids::TargetId;
use crate::store::RunCounts;

#[test]
fn metrics_without_openmetrics_in_accept_are_the_classic_text_format() {
    use super::metrics::{classic, wants_openmetrics};
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    assert!(wants_openmetrics(Some(prometheus)));
    assert!(!wants_openmetrics(Some(
        "text/plain;version=0.0.4;q=1,*/*;q=0.1"
    )));
    assert!(!wants_openmetrics(Some("*/*")));
    assert!(!wants_openmetrics(None));
    let text = classic(&encode(&fixture::status(), &fixture::runs(), NOW_MS));
    assert!(
        !text.contains("# EOF") && !text.contains("# UNIT"),
        "{text}"
    );
    // Every sample is named by the `# TYPE` before it, counters with `_total`
    // (0.0.4 has no families whose samples add a suffix).
    let mut typed = HashMap::new();
    let mut current = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            typed.insert(name.to_owned(), kind.to_owned());
            current = Some(name.to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split_once(' ').unwrap().0;
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "HELP of {name} names no TYPE"
            );
            continue;
        }
        let name = line.split(['{', ' ']).next().unwrap();
        assert_eq!(Some(name), current.as_deref(), "{line}");
        if typed[name] == "counter" {
            assert!(name.ends_with("_total"), "{line}");
        }
    }
    assert_eq!(typed["crawld_pages_total"], "counter");
    assert_eq!(typed["crawld_received_bytes_total"], "counter");
    assert_eq!(typed["crawld_last_run_duration_seconds"], "gauge");
    let s = scrape(&text);
    assert_eq!(
        value(
            &s,
            "crawld_host_too_many_requests_total",
            &[("host", "shop.example.org:443")]
        ),
        Some(27.0)
    );
}

#[test]
fn a_firing_figure_never_reads_equal_to_its_threshold() {
    use crate::health::{Health, MonitorKind, MonitorState};
    let state = |monitor, value, threshold| MonitorState {
        target: TargetId::new("t"),
        monitor,
        subject: String::new(),
        state: Health::Firing,
        value,
        threshold,
        message: String::new(),
        run: None,
        since_ms: 0,
    };
    for (s, expect) in [
        (state(MonitorKind::Overdue, 9.4, 9.0), "9s 400ms > 9s"),
        (state(MonitorKind::Overdue, 7260.0, 3600.0), "2h 1m > 1h"),
        (
            state(MonitorKind::FailureRate, 0.1004, 0.1),
            "10.04 % > 10.00 %",
        ),
        (state(MonitorKind::FieldCoverage, 0.35, 0.8), "35 % < 80 %"),
        (state(MonitorKind::ItemCount, 80.0, 80.4), "80.0 < 80.4"),
        (state(MonitorKind::HostBlocked, 0.5, 0.5), "50 % ≥ 50 %"),
    ] {
        assert_eq!(s.figures(), expect);
    }
}

#[test]
fn a_blocked_host_is_never_shown_as_ok() {
    use crate::health::{Health, MonitorKind};
    let mut status = fixture::status();
    let mut blocked = status.targets[0].monitors[0].clone();
    blocked.monitor = MonitorKind::HostBlocked;
    blocked.subject = "books.example.org:443".into();
    blocked.state = Health::Firing;
    blocked.message = "books.example.org:443 answered 30 of 40 requests with 403".into();
    status.targets[0].monitors.push(blocked);
    let html = render(&status, &fixture::runs(), NOW_MS);
    let row = html
        .split("<tr>")
        .find(|r| r.contains("<code>books.example.org:443</code>"))
        .unwrap();
    assert!(row.contains(">blocked</span>"), "{row}");
    assert!(!row.contains(">ok</span>"), "{row}");
}

/// The part of the page about target `name`.
fn section<'a>(html: &'a str, name: &str) -> &'a str {
    let start = html.find(&format!(r#"data-target="{name}""#)).unwrap();
    let end = html[start..].find("</section>").unwrap();
    &html[start..start + end]
}

#[test]
fn a_run_in_progress_is_not_charted_as_a_run_that_found_nothing() {
    let status = fixture::status();
    let mut runs = fixture::runs();
    let html = render(&status, &runs, NOW_MS);
    let shop = section(&html, "shop");
    assert!(shop.contains("<svg"), "its finished runs are charted");
    assert!(
        !shop.contains("running · "),
        "no mark for run 329, which is still running"
    );
    // A first run in progress: a note, not charts of one empty run.
    let shop_runs = runs.get_mut(&TargetId::new("shop")).unwrap();
    let running = shop_runs.as_mut().unwrap().pop().unwrap();
    let mut first = running.clone();
    first.counts = RunCounts::default();
    *shop_runs = Ok(vec![first]);
    let html = render(&status, &runs, NOW_MS);
    let shop = section(&html, "shop");
    assert!(!shop.contains("<svg"), "{shop}");
    assert!(shop.contains("No runs yet"), "{shop}");
}

#[test]
fn thousands_of_hosts_are_summed_beyond_the_busiest() {
    use super::busiest::PER_TARGET;
    use crate::control::HostStatus;
    use crate::ids::HostKey;
    let mut status = fixture::status();
    let template = status.hosts[0].clone();
    let many: Vec<HostStatus> = (0..3000u64)
        .map(|i| {
            let mut h = template.clone();
            h.host = HostKey::new(format!("h{i}.example:443"));
            h.counters.requests = i;
            h.counters.status_2xx = i;
            h.paused_until_ms = None;
            h.backoff_until_ms = None;
            h
        })
        .collect();
    status.hosts.extend(many.iter().cloned());
    let mut runs = fixture::runs();
    // Every host in books' last run too, as when a run follows 3,000 links.
    let books = runs
        .get_mut(&TargetId::new("books"))
        .unwrap()
        .as_mut()
        .unwrap();
    for h in &many {
        let e = books
            .last_mut()
            .unwrap()
            .counts
            .hosts
            .entry(h.host.as_str().to_owned())
            .or_default();
        e.answers.requests = 3000 - h.counters.requests;
        e.retries = 1;
    }
    let total_2xx: u64 = status.hosts.iter().map(|h| h.counters.status_2xx).sum();
    let s = scrape(&encode(&status, &runs, NOW_MS));
    let series: Vec<_> = s
        .samples
        .iter()
        .filter(|x| {
            x.metric == "crawld_host_requests_total" && x.labels.get("class") == Some("2xx")
        })
        .collect();
    // books' busiest 20 (h0…h19 by its runs), the daemon's (h2980…h2999).
    assert!(
        series.len() <= 2 * PER_TARGET + 1,
        "{} series",
        series.len()
    );
    let sum: f64 = series
        .iter()
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .sum();
    assert_eq!(
        sum, total_2xx as f64,
        "nothing is lost: the rest is in (other)"
    );
    for host in [
        "h2999.example:443",
        "h0.example:443",
        "news.example.org:443",
        "(other)",
    ] {
        assert!(
            value(
                &s,
                "crawld_host_requests_total",
                &[("host", host), ("class", "2xx")]
            )
            .is_some(),
            "{host}"
        );
    }
    assert_eq!(
        value(
            &s,
            "crawld_host_requests_total",
            &[("host", "h1500.example:443")]
        ),
        None
    );
    let retries_series = s
        .samples
        .iter()
        .filter(|x| x.metric == "crawld_host_retries_total")
        .count();
    assert!(retries_series <= 2 * PER_TARGET + 1, "{retries_series}");
    let html = render(&status, &runs, NOW_MS);
    assert!(html.contains("(other) 2\u{202f}9"), "one row for the rest");
    assert!(html.len() < 200_000, "{} bytes", html.len());
}
