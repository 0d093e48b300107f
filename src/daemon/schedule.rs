//! When targets fire: cron expressions read in each target's time zone, and
//! the one-shot jobs in tokio-cron-scheduler that wake the daemon at those
//! times. This is the only module that touches tokio-cron-scheduler.
//!
//! Fire times are computed by [`Schedule::next_fire`] rather than by the scheduler's own time-zone
//! jobs, which freeze the UTC offset when they are created and drift by an
//! hour after each DST change. Each firing arms exactly one job for the next
//! one, so every job is computed with the offset of its own day.
//!
//! Each armed job has a generation. A job that was meant to be removed (its
//! removal failed or timed out, or it fired while a reload replaced it) may
//! still fire: its firing carries an old generation, and the daemon ignores
//! it ([`Scheduler::is_current`]).
//!
//! DST: a local time that does not exist (the spring gap, 02:00–03:00 in
//! Europe/Berlin) fires at the first instant after the gap; a local time that
//! happens twice (the autumn repeat) fires once, at its first occurrence.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tokio::sync::mpsc;
use tokio_cron_scheduler::{Job, JobScheduler};
use uuid::Uuid;

use crate::config::{Schedule, Target};
use crate::ids::TargetId;
use crate::store::RunMode;

/// The next time `schedule` fires strictly after `after`, read in `tz`
/// (see [`Schedule::next_fire`]).
pub fn next_fire(schedule: &Schedule, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    schedule.next_fire(tz, after)
}

/// A stable offset in `[0, spread)` for a target, so targets sharing a
/// schedule do not all start in the same second.
pub fn spread_offset(target: &TargetId, spread: Duration) -> Duration {
    if spread.is_zero() {
        return Duration::ZERO;
    }
    let h = xxhash_rust::xxh3::xxh3_64(target.as_str().as_bytes());
    Duration::from_millis(h % spread.as_millis().max(1) as u64)
}

/// A firing, sent to the daemon by a job.
#[derive(Debug, Clone)]
pub struct Firing {
    pub target: TargetId,
    pub mode: RunMode,
    /// The cron time that fired (before the spread offset).
    pub at: DateTime<Utc>,
    /// The generation of the job that fired.
    pub generation: u64,
}

/// The armed jobs of every target.
pub struct Scheduler {
    jobs: JobScheduler,
    armed: HashMap<(TargetId, RunModeKey), Armed>,
    tx: mpsc::UnboundedSender<Firing>,
    /// The generation of the last job armed.
    generation: u64,
}

/// An armed job, with what it was computed from.
struct Armed {
    job: Uuid,
    at: DateTime<Utc>,
    /// Expression, zone and spread: when they are unchanged a reload keeps the job.
    from: (String, Tz, Duration),
    generation: u64,
}

/// tokio-cron-scheduler's add/remove wait on its internal tasks: never let
/// that stall the daemon's loop.
const JOB_OP_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum RunModeKey {
    Incremental,
    Full,
}

impl Scheduler {
    pub async fn start(tx: mpsc::UnboundedSender<Firing>) -> Result<Self, String> {
        let jobs = JobScheduler::new()
            .await
            .map_err(|e| format!("cannot start the scheduler: {e}"))?;
        jobs.start()
            .await
            .map_err(|e| format!("cannot start the scheduler: {e}"))?;
        Ok(Scheduler {
            jobs,
            armed: HashMap::new(),
            tx,
            generation: 0,
        })
    }

    /// Arms the next firing of each of the target's schedules, keeping a job
    /// already armed from the same expression, zone and spread (so a reload
    /// that changed other keys loses no pending firing).
    pub async fn arm(&mut self, target: &Target) {
        self.arm_inner(target, Utc::now(), None).await;
    }

    /// Arms the next firing of the schedule that just fired, strictly after
    /// `after` (the time that fired, so a job that woke a little early cannot
    /// fire twice). Only that schedule: the other one's job stays armed, as
    /// re-arming it would orphan a firing of it already on its way (both
    /// schedules fire at once at, say, Sunday 03:00, and the full run was
    /// lost).
    pub async fn arm_after(&mut self, target: &Target, mode: RunMode, after: DateTime<Utc>) {
        self.arm_inner(target, after, Some(mode)).await;
    }

    /// `fired`: re-arm only this mode's schedule, whatever its job; `None`
    /// (a load or reload): both, keeping a job whose schedule is unchanged.
    async fn arm_inner(&mut self, target: &Target, after: DateTime<Utc>, fired: Option<RunMode>) {
        let after = after.max(Utc::now());
        let keep = fired.is_none();
        for (mode, key, schedule) in [
            (
                RunMode::Incremental,
                RunModeKey::Incremental,
                &target.schedule,
            ),
            (RunMode::Full, RunModeKey::Full, &target.full_schedule),
        ] {
            if fired.is_some_and(|f| f != mode) {
                continue;
            }
            let from = schedule
                .as_ref()
                .map(|s| (s.expr.clone(), target.timezone, target.spread));
            let same = self
                .armed
                .get(&(target.id.clone(), key))
                .is_some_and(|a| Some(&a.from) == from.as_ref());
            if keep && same {
                continue;
            }
            self.disarm_one(&target.id, key).await;
            let (Some(schedule), Some(from)) = (schedule, from) else {
                continue;
            };
            let Some(at) = next_fire(schedule, target.timezone, after) else {
                tracing::warn!(target = %target.id, expr = %schedule.expr, "Schedule never fires.");
                continue;
            };
            let start = at
                + chrono::Duration::from_std(spread_offset(&target.id, target.spread))
                    .unwrap_or_default();
            // The scheduler counts whole seconds and truncates: round up, never fire early.
            let wait =
                (start - Utc::now()).to_std().unwrap_or(Duration::ZERO) + Duration::from_secs(1);
            self.generation += 1;
            let generation = self.generation;
            let firing = Firing {
                target: target.id.clone(),
                mode,
                at,
                generation,
            };
            let tx = self.tx.clone();
            // The job only tells the daemon; it does no crawling itself.
            let job = Job::new_one_shot_async(wait, move |_, _| {
                let (tx, firing) = (tx.clone(), firing.clone());
                Box::pin(async move {
                    let _ = tx.send(firing);
                })
            });
            let added = match job {
                Ok(job) => tokio::time::timeout(JOB_OP_TIMEOUT, self.jobs.add(job))
                    .await
                    .map_err(|_| "the scheduler did not answer".to_owned())
                    .and_then(|r| r.map_err(|e| e.to_string())),
                Err(e) => Err(e.to_string()),
            };
            match added {
                Ok(job) => {
                    self.armed.insert(
                        (target.id.clone(), key),
                        Armed {
                            job,
                            at,
                            from,
                            generation,
                        },
                    );
                }
                Err(e) => {
                    tracing::error!(target = %target.id, error = %e, "Cannot arm a schedule.")
                }
            }
        }
    }

    /// Removes every job of a target.
    pub async fn disarm(&mut self, target: &TargetId) {
        self.disarm_one(target, RunModeKey::Incremental).await;
        self.disarm_one(target, RunModeKey::Full).await;
    }

    /// Removes a target's job of one mode. Forgetting it is what counts: if
    /// the scheduler fails to remove the job and it fires, its firing is not
    /// current and the daemon ignores it.
    async fn disarm_one(&mut self, target: &TargetId, key: RunModeKey) {
        let Some(armed) = self.armed.remove(&(target.clone(), key)) else {
            return;
        };
        let removed = match tokio::time::timeout(JOB_OP_TIMEOUT, self.jobs.remove(&armed.job)).await
        {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err("the scheduler did not answer".to_owned()),
        };
        if let Err(e) = removed {
            tracing::warn!(target = %target, error = %e, "Cannot remove a replaced schedule's job: if it fires, the firing is ignored.");
        }
    }

    /// Whether a firing comes from the job armed now for its target and mode.
    pub fn is_current(&self, firing: &Firing) -> bool {
        let key = match firing.mode {
            RunMode::Incremental => RunModeKey::Incremental,
            RunMode::Full => RunModeKey::Full,
        };
        self.armed
            .get(&(firing.target.clone(), key))
            .is_some_and(|a| a.generation == firing.generation)
    }

    /// The next incremental and full fire times of a target.
    pub fn next(&self, target: &TargetId) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        let get = |k| self.armed.get(&(target.clone(), k)).map(|a| a.at);
        (get(RunModeKey::Incremental), get(RunModeKey::Full))
    }

    pub async fn shutdown(&mut self) {
        let _ = tokio::time::timeout(JOB_OP_TIMEOUT, self.jobs.shutdown()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn fires(expr: &str, tz: &str, from: &str, n: usize) -> Vec<String> {
        let schedule = Schedule::parse(expr).unwrap();
        let tz: Tz = tz.parse().unwrap();
        let mut t = at(from);
        let mut out = Vec::new();
        for _ in 0..n {
            t = next_fire(&schedule, tz, t).unwrap();
            out.push(t.to_rfc3339());
        }
        out
    }

    #[test]
    fn daily_times_follow_berlin_across_both_dst_changes() {
        // 03:00 local every day: 02:00 UTC in summer, 03:00 UTC... in winter 02:00 UTC+1.
        assert_eq!(
            fires("0 0 3 * * *", "Europe/Berlin", "2026-03-27T12:00:00Z", 3),
            [
                "2026-03-28T02:00:00+00:00",
                "2026-03-29T01:00:00+00:00",
                "2026-03-30T01:00:00+00:00"
            ]
        );
        assert_eq!(
            fires("0 0 3 * * *", "Europe/Berlin", "2026-10-23T12:00:00Z", 3),
            [
                "2026-10-24T01:00:00+00:00",
                "2026-10-25T02:00:00+00:00",
                "2026-10-26T02:00:00+00:00"
            ]
        );
    }

    #[test]
    fn a_time_in_the_spring_gap_fires_when_the_gap_ends() {
        // 02:30 does not exist on 2026-03-29 in Berlin: it fires at 03:00 CEST = 01:00 UTC.
        assert_eq!(
            fires("0 30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00Z", 2),
            ["2026-03-29T01:00:00+00:00", "2026-03-30T00:30:00+00:00"]
        );
    }

    #[test]
    fn a_repeated_time_fires_once() {
        // 02:30 happens twice on 2026-10-25 in Berlin (00:30 and 01:30 UTC): once only.
        assert_eq!(
            fires("0 30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T00:30:00+00:00", "2026-10-26T01:30:00+00:00"]
        );
    }

    fn target(schedule: &str) -> std::sync::Arc<Target> {
        let text = format!("start_urls = [\"http://127.0.0.1:9/\"]\nschedule = \"{schedule}\"\n");
        let files = vec![(std::path::PathBuf::from("books.toml"), Ok(text))];
        let report = crate::config::load_files(files, &|_| None);
        assert!(report.all_errors().is_empty(), "{:?}", report.all_errors());
        report.set.targets[&TargetId::new("books")].clone()
    }

    #[tokio::test]
    async fn a_job_left_behind_by_a_failed_removal_fires_stale() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut s = Scheduler::start(tx).await.unwrap();
        s.arm(&target("* * * * * *")).await;
        // A reload changes the schedule, and the old job's removal fails:
        // the scheduler forgets the job, but the job stays and fires.
        s.armed.clear();
        s.arm(&target("0 0 0 1 1 *")).await;
        let firing = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("the job left behind fires")
            .unwrap();
        assert!(
            !s.is_current(&firing),
            "a firing of the replaced every-second schedule must not start a run"
        );
        s.shutdown().await;
    }

    #[tokio::test]
    async fn two_schedules_firing_at_once_both_stay_current() {
        // Incremental and full fire together (every */30 and Sunday 03:00
        // meet weekly): the daemon handles one firing first and re-arms its
        // schedule; the other firing, already sent, must still count.
        let text = "start_urls = [\"http://127.0.0.1:9/\"]\nschedule = \"* * * * * *\"\nfull_schedule = \"* * * * * *\"\n";
        let files = vec![(std::path::PathBuf::from("books.toml"), Ok(text.to_owned()))];
        let report = crate::config::load_files(files, &|_| None);
        assert!(report.all_errors().is_empty(), "{:?}", report.all_errors());
        let both = report.set.targets[&TargetId::new("books")].clone();

        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut s = Scheduler::start(tx).await.unwrap();
        s.arm(&both).await;
        let mut fired = Vec::new();
        while fired.len() < 2 {
            let f = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
            fired.push(f.expect("both schedules fire within 5 s").unwrap());
        }
        let (first, second) = (fired[0].clone(), fired[1].clone());
        assert_ne!(first.mode, second.mode, "{first:?} {second:?}");
        assert!(s.is_current(&first));
        s.arm_after(&both, first.mode, first.at).await;
        assert!(
            s.is_current(&second),
            "re-arming the {:?} schedule orphaned the {:?} firing already sent",
            first.mode,
            second.mode
        );
        s.shutdown().await;
    }

    #[test]
    fn spread_is_stable_and_within_the_window() {
        let w = Duration::from_secs(600);
        let a = spread_offset(&TargetId::new("books"), w);
        assert_eq!(a, spread_offset(&TargetId::new("books"), w));
        assert!(a < w);
        assert_ne!(a, spread_offset(&TargetId::new("films"), w));
        assert_eq!(
            spread_offset(&TargetId::new("books"), Duration::ZERO),
            Duration::ZERO
        );
    }
}
