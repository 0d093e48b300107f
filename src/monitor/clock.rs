//! The clock monitors, judged by the daemon between runs: `overdue` (the
//! dead man's switch) and `config_broken`.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Health, MonitorKind, MonitorState};
use crate::config::{Schedule, Target};

/// `overdue`: fires once the target's schedules fired `overdue` times
/// (2 by default; a fraction goes part of the way to the next firing)
/// after the firing a run was due at, since `reference_ms`, without a run
/// completing. The due firing's run has until the next firing: counting
/// from it, one slow run (or one `stop-run`) with `overdue = 2` goes by,
/// and a second one fires it. `reference_ms` is the end
/// of its last completed run (before one, when it began to be watched).
/// Counting the schedule's own firings, not a fixed interval, keeps a
/// schedule that rests at night or at weekends from firing it. `None` for a
/// target without schedules.
pub fn overdue(target: &Target, reference_ms: u64, now_ms: u64) -> Option<MonitorState> {
    let cfg = &target.monitor;
    if !cfg.enabled(MonitorKind::Overdue) {
        return None;
    }
    let deadline = deadline(target, reference_ms)?;
    let age = Duration::from_millis(now_ms.saturating_sub(reference_ms));
    let grace = Duration::from_millis(deadline.saturating_sub(reference_ms));
    let firing = now_ms > deadline;
    let message = if firing {
        format!(
            "no run completed for {}, past {} (the firing a run was due at, then {} × the schedule's firings): are runs hanging, or has the schedule stopped?",
            human(age),
            human(grace),
            cfg.overdue
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

/// When the first firing of the target's schedules after `reference_ms`
/// and `overdue` × the firings after it have passed, in milliseconds since
/// the Unix epoch.
pub fn deadline(target: &Target, reference_ms: u64) -> Option<u64> {
    let schedules: Vec<&Schedule> = [&target.schedule, &target.full_schedule]
        .into_iter()
        .flatten()
        .collect();
    let factor = target.monitor.overdue;
    let whole = (factor.floor() as usize).max(1);
    let mut at = DateTime::<Utc>::from_timestamp_millis(i64::try_from(reference_ms).ok()?)?;
    let mut fires = Vec::with_capacity(whole + 2);
    for _ in 0..whole + 2 {
        at = schedules
            .iter()
            .filter_map(|s| s.next_fire(target.timezone, at))
            .min()?;
        fires.push(u64::try_from(at.timestamp_millis()).ok()?);
    }
    let (last, next) = (fires[whole], fires[whole + 1]);
    let part = (factor - whole as f64).max(0.0);
    Some(last + ((next - last) as f64 * part) as u64)
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
