//! The clock monitors, judged by the daemon between runs: `overdue` (the
//! dead man's switch) and `config_broken`.

use std::time::Duration;

use super::{Health, MonitorKind, MonitorState};
use crate::config::Target;

/// `overdue`: `interval` is the target's schedule interval (`None`: not
/// scheduled), `reference_ms` the end of its last completed run (or, before
/// one, when the daemon began to watch it).
pub fn overdue(
    target: &Target,
    interval: Option<Duration>,
    reference_ms: u64,
    now_ms: u64,
) -> Option<MonitorState> {
    let cfg = &target.monitor;
    if !cfg.enabled(MonitorKind::Overdue) {
        return None;
    }
    let interval = interval?;
    let grace = interval.mul_f64(cfg.overdue);
    let age = Duration::from_millis(now_ms.saturating_sub(reference_ms));
    let firing = age > grace;
    let message = if firing {
        format!(
            "no run completed for {}, more than {} × the schedule interval of {} ({}): are runs hanging, or has the schedule stopped?",
            human(age),
            cfg.overdue,
            human(interval),
            human(grace)
        )
    } else {
        format!("last completed run {} ago", human(age))
    };
    Some(MonitorState {
        target: target.id.clone(),
        monitor: MonitorKind::Overdue,
        subject: String::new(),
        state: if firing { Health::Firing } else { Health::Ok },
        value: age.as_secs_f64(),
        threshold: grace.as_secs_f64(),
        message,
        run: None,
        since_ms: 0,
    })
}

/// `config_broken`: `errors` are the messages of the target's file, empty
/// when it loads.
pub fn config_broken(target: &Target, errors: &[String]) -> Option<MonitorState> {
    if !target.monitor.enabled(MonitorKind::ConfigBroken) {
        return None;
    }
    let firing = !errors.is_empty();
    let message = match errors.first() {
        Some(first) => format!(
            "{} has {} error(s), so its last good version runs; the first: {first}",
            target.file.display(),
            errors.len()
        ),
        None => format!("{} loads", target.file.display()),
    };
    Some(MonitorState {
        target: target.id.clone(),
        monitor: MonitorKind::ConfigBroken,
        subject: String::new(),
        state: if firing { Health::Firing } else { Health::Ok },
        value: errors.len() as f64,
        threshold: 0.0,
        message,
        run: None,
        since_ms: 0,
    })
}

/// A duration to the second, as a person reads it.
fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}
