//! The supervisor's answers to control requests (`crawld status`,
//! `trigger`, `stop-run`, `reload`, and reads of the store). Each answer is
//! built from what the supervisor holds in memory: what needs the store is
//! read by the socket server, off the supervisor's loop.

use super::runs::Decision;
use super::server::{ForReading, Request, Trigger};
use super::Daemon;
use crate::control::{
    ApiError, HostStatus, Reloaded, RunningStatus, Status, StopRunRequest, Stopping, TargetStatus,
    Triggered,
};
use crate::ids::TargetId;
use crate::limiter::HostSnapshot;
use crate::store::RunMode;

/// How long a request waits for the cluster's database, at most.
const ASK_CLUSTER: std::time::Duration = std::time::Duration::from_secs(3);

impl Daemon {
    pub(super) async fn control(&mut self, req: Request) {
        match req {
            Request::Status(reply) => {
                let _ = reply.send((self.status(), self.store.clone()));
            }
            Request::Trigger { req, reply } => {
                let mode = if req.full {
                    RunMode::Full
                } else {
                    RunMode::Incremental
                };
                if let Some(node) = self.elsewhere(&req.target).await {
                    let _ = reply.send(Err(ApiError::RunningElsewhere {
                        target: req.target,
                        node,
                    }));
                    return;
                }
                let _ = reply.send(self.trigger(&req.target, mode));
            }
            Request::StopRun { req, reply } => {
                let answer = match self.stop_run(&req) {
                    Err(ApiError::NotRunning { target }) => self.stop_elsewhere(target).await,
                    answer => answer,
                };
                let _ = reply.send(answer);
            }
            Request::Reload(reply) => {
                self.reload().await;
                let _ = reply.send(Reloaded {
                    targets: self.set.targets.len(),
                    errors: self.errors.len(),
                });
            }
            Request::Read { target, reply } => {
                let _ = reply.send(ForReading {
                    store: self.store.shared(),
                    config: self.set.targets.get(&target).cloned(),
                    names: self.set.targets.keys().cloned().collect(),
                });
            }
            Request::Backup(reply) => {
                let _ = reply.send(self.store.shared());
            }
        }
    }

    /// In a cluster, the other node running `target` (when this one does
    /// not): a trigger here would only be refused by the run's lease.
    async fn elsewhere(&self, target: &TargetId) -> Option<String> {
        let store = self.store.shared();
        if !store.is_database() || self.running.contains_key(target) {
            return None;
        }
        let t = target.clone();
        // Bounded: the supervisor's loop waits for it, and a lost database
        // would hold it for minutes.
        match tokio::time::timeout(ASK_CLUSTER, self.store.call(move |s| s.run_holder(&t))).await {
            Ok(Ok(Ok(holder))) => holder,
            // Unknown: the run's start settles it (and says so in the log).
            _ => None,
        }
    }

    /// `stop-run` of a target this node does not run: in a cluster, the
    /// node that runs it is asked (through the database).
    async fn stop_elsewhere(&self, target: TargetId) -> Result<Stopping, ApiError> {
        if !self.store.shared().is_database() {
            return Err(ApiError::NotRunning { target });
        }
        let t = target.clone();
        let asked = self.store.call(move |s| s.request_stop(&t));
        match tokio::time::timeout(ASK_CLUSTER, asked).await {
            Ok(Ok(Ok(Some(node)))) => Ok(Stopping {
                target,
                run: None,
                node: Some(node),
            }),
            Ok(Ok(Ok(None))) => Err(ApiError::NotRunning { target }),
            Ok(Ok(Err(e)) | Err(e)) => Err(ApiError::Cluster {
                detail: e.to_string(),
            }),
            Err(_) => Err(ApiError::Cluster {
                detail: format!("the database did not answer in {} s", ASK_CLUSTER.as_secs()),
            }),
        }
    }

    fn trigger(&mut self, target: &TargetId, mode: RunMode) -> Result<Trigger, ApiError> {
        let target = target.clone();
        Ok(match self.request(&target, mode, true)? {
            Decision::Started => {
                let record = match self.running.get(&target) {
                    Some(r) => r.record.clone(),
                    // Not reached: `request` just started it. Said plainly, not a panic.
                    None => return Ok(Trigger::Answered(Triggered::EndedAtOnce { target, mode })),
                };
                Trigger::Started { target, record }
            }
            Decision::Queued { running } => Trigger::Answered(Triggered::Queued {
                target,
                mode,
                running,
            }),
            Decision::AlreadyQueued { mode } => {
                Trigger::Answered(Triggered::AlreadyQueued { target, mode })
            }
            // Only scheduled requests are deferred or skipped; a manual one
            // on a running target was refused above.
            Decision::FullAfter | Decision::Skipped => {
                return Err(ApiError::AlreadyRunning {
                    target: target.clone(),
                    run: self.running.get(&target).and_then(|r| r.run_id()),
                    mode,
                })
            }
        })
    }

    fn stop_run(&mut self, req: &StopRunRequest) -> Result<Stopping, ApiError> {
        let id = &req.target;
        match self.running.get(id) {
            Some(run) => {
                run.cancel.cancel();
                self.full_after.remove(id);
                Ok(Stopping {
                    target: id.clone(),
                    run: run.run_id(),
                    node: None,
                })
            }
            None if self.set.targets.contains_key(id) => {
                Err(ApiError::NotRunning { target: id.clone() })
            }
            None => Err(ApiError::UnknownTarget {
                target: id.clone(),
                known: self.set.targets.keys().cloned().collect(),
            }),
        }
    }

    /// Everything `crawld status` shows but the last runs, which are read
    /// from the store by the socket server.
    pub(super) fn status(&self) -> Status {
        let targets = self
            .set
            .targets
            .values()
            .map(|t| {
                let (next_inc, next_full) = self.scheduler.next(&t.id);
                let running = self.running.get(&t.id).map(|r| {
                    let p = r.live.progress();
                    let known = r.known();
                    RunningStatus {
                        mode: r.mode(),
                        run: known.as_ref().map(|k| k.id),
                        resumed_from: known.and_then(|k| k.resumed_from),
                        secs: r.started.elapsed().as_secs(),
                        done: p.done,
                        queued: p.queued,
                        fetched: p.fetched,
                        failed: p.failed,
                        items: p.items,
                        committed: p.committed,
                    }
                });
                TargetStatus {
                    name: t.id.clone(),
                    file: t.file.display().to_string(),
                    schedule: t.schedule.as_ref().map(|s| s.expr.clone()),
                    full_schedule: t.full_schedule.as_ref().map(|s| s.expr.clone()),
                    timezone: t.timezone.name().to_owned(),
                    next_incremental: next_inc.map(|d| d.to_rfc3339()),
                    next_full: next_full.map(|d| d.to_rfc3339()),
                    running,
                    queued: self.queue.iter().any(|(q, _)| q == &t.id),
                    stale: self.stale.contains(&t.id),
                    last_run: None,
                    last_run_error: None,
                    monitors: self.monitors.states.get(&t.id).cloned().unwrap_or_default(),
                }
            })
            .collect();
        Status {
            pid: std::process::id(),
            configs: self.opts.configs.display().to_string(),
            state: self.opts.state.display().to_string(),
            database: {
                let store = self.store.shared();
                store.is_database().then(|| store.describe())
            },
            running: self.running.len(),
            queued: self.queue.len(),
            targets,
            hosts: self
                .engine
                .hosts
                .snapshot()
                .into_iter()
                .map(host_status)
                .collect(),
            proxy_failures: self.engine.fetcher.proxy_failures(),
            errors: self.errors.clone(),
            channels: self.delivery.status(),
            http: self.http.clone(),
            members: Vec::new(),
            members_error: None,
        }
    }
}

fn host_status(h: HostSnapshot) -> HostStatus {
    HostStatus {
        host: h.host,
        in_flight: h.in_flight,
        concurrency: h.concurrency,
        effective: h.effective,
        delay_ms: h.delay_ms,
        paused_until_ms: h.paused_until_ms,
        backoff_until_ms: h.backoff_until_ms,
        backoff_asked_ms: h.backoff_asked_ms,
        counters: h.counters,
    }
}
