//! The daemon's answers to control requests (`crawld status`, `trigger`,
//! `stop-run`, `reload`, and reads of the store), and the status it shows:
//! targets, runs in progress, hosts.

use std::sync::PoisonError;

use serde_json::{json, Value};

use axum::http::StatusCode;

use super::control::Request;
use super::{reload, Daemon};
use crate::error::Exit;
use crate::ids::TargetId;
use crate::store::RunMode;

impl Daemon {
    pub(super) async fn control(&mut self, req: Request) {
        match req {
            Request::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Request::Trigger {
                target,
                full,
                reply,
            } => {
                let mode = if full {
                    RunMode::Full
                } else {
                    RunMode::Incremental
                };
                let r = self
                    .request(&TargetId::new(target), mode, true)
                    .map(|m| json!({"message": m}));
                let _ = reply.send(r);
            }
            Request::StopRun { target, reply } => {
                let id = TargetId::new(target);
                let r = match self.running.get(&id) {
                    Some(run) => {
                        run.cancel.cancel();
                        self.full_after.remove(&id);
                        Ok(
                            json!({"message": format!("{id}: stopping; the run checkpoints and resumes at its next start")}),
                        )
                    }
                    None if self.set.targets.contains_key(&id) => Err((
                        StatusCode::CONFLICT,
                        format!("target {id} has no run in progress"),
                    )),
                    None => Err((StatusCode::NOT_FOUND, format!("no target {id}"))),
                };
                let _ = reply.send(r);
            }
            Request::Reload(reply) => {
                self.reload().await;
                let _ = reply.send(json!({
                    "message": format!("{} target(s), {} configuration error(s)", self.set.targets.len(), self.errors.len())
                }));
            }
            Request::Read { command, reply } => {
                let store = self.store.clone();
                let set = self.set.clone();
                // Reads can be long (exports): off the supervisor's loop.
                tokio::task::spawn_blocking(move || {
                    let result = match serde_json::from_value::<crate::cli::ReadCommand>(command) {
                        Ok(cmd) => {
                            let config = set.targets.get(&TargetId::new(cmd.target())).cloned();
                            let (mut out, mut err) = (Vec::new(), Vec::new());
                            let exit = crate::cli::run_read(
                                &store,
                                config.as_deref(),
                                &cmd,
                                &mut out,
                                &mut err,
                            );
                            (exit as u8, out, String::from_utf8_lossy(&err).into_owned())
                        }
                        Err(e) => (
                            Exit::Usage as u8,
                            Vec::new(),
                            format!("error: bad request: {e}\n"),
                        ),
                    };
                    let _ = reply.send(result);
                });
            }
        }
    }

    /// Everything `crawld status` shows, as JSON.
    pub(super) fn status(&self) -> Value {
        let targets: Vec<Value> = self
            .set
            .targets
            .values()
            .map(|t| {
                let (next_inc, next_full) = self.scheduler.next(&t.id);
                let running = self.running.get(&t.id).map(|r| {
                    let p = r
                        .progress
                        .0
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone();
                    json!({
                        "mode": mode_name(r.mode),
                        "secs": r.started.elapsed().as_secs(),
                        "done": p.done,
                        "queued": p.queued,
                        "fetched": p.fetched,
                        "failed": p.failed,
                        "items": p.items,
                        "committed": p.committed,
                    })
                });
                json!({
                    "name": t.id,
                    "file": t.file.display().to_string(),
                    "schedule": t.schedule.as_ref().map(|s| s.expr.clone()),
                    "full_schedule": t.full_schedule.as_ref().map(|s| s.expr.clone()),
                    "timezone": t.timezone.name(),
                    "next_incremental": next_inc.map(|d| d.to_rfc3339()),
                    "next_full": next_full.map(|d| d.to_rfc3339()),
                    "running": running,
                    "queued": self.queue.iter().any(|(q, _)| q == &t.id),
                    "stale": self.stale.contains(&t.id),
                    "last_run": self.store.last_run(&t.id).ok().flatten(),
                })
            })
            .collect();
        json!({
            "pid": std::process::id(),
            "configs": self.opts.configs.display().to_string(),
            "state": self.opts.state.display().to_string(),
            "running": self.running.len(),
            "queued": self.queue.len(),
            "targets": targets,
            "hosts": self.engine.hosts.snapshot(),
            "proxy_failures": self.engine.fetcher.proxy_failures(),
            "errors": reload::errors_by_file(&self.errors),
        })
    }
}

pub(super) fn mode_name(mode: RunMode) -> &'static str {
    match mode {
        RunMode::Incremental => "incremental",
        RunMode::Full => "full",
    }
}
