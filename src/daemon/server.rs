//! The control socket's server: HTTP/JSON over a Unix socket (the API is
//! [`crate::control`]), so that `crawld status`, `trigger`, `stop-run`,
//! `reload` and the reading commands work while the daemon holds the state
//! dir. Each route asks the supervisor through a [`Request`]; store reads
//! happen here, off the supervisor's loop and off the async threads, and a
//! reading command's output is streamed as it is written.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::{mpsc, oneshot, watch};

use super::runs::Recorded;
use super::store_handle::StoreHandle;
use crate::config::Target;
use crate::control::stream::{encode, Frame};
use crate::control::{
    route, ApiError, ErrorBody, Reloaded, Status, StopRunRequest, Stopping, TriggerRequest,
    Triggered,
};
use crate::ids::TargetId;
use crate::query::{run_read, Configured, ReadCommand};
use crate::store::{RunMode, Store};
use crate::web::Limits;

/// What the socket asks of the supervisor. Each answer is what only the
/// supervisor knows; nothing here waits on the store.
pub enum Request {
    /// The status, without the last runs (read from the store here).
    Status(oneshot::Sender<(Status, StoreHandle)>),
    Trigger {
        req: TriggerRequest,
        reply: oneshot::Sender<Result<Trigger, ApiError>>,
    },
    StopRun {
        req: StopRunRequest,
        reply: oneshot::Sender<Result<Stopping, ApiError>>,
    },
    Reload(oneshot::Sender<Reloaded>),
    /// What a reading command of `target` needs.
    Read {
        target: TargetId,
        reply: oneshot::Sender<ForReading>,
    },
    /// The store, for a backup.
    Backup(oneshot::Sender<Arc<Store>>),
}

/// What a reading command needs: the store, its target's config and the
/// names of every configured target (for an unknown target's error).
pub struct ForReading {
    pub store: Arc<Store>,
    pub config: Option<Arc<Target>>,
    pub names: Vec<TargetId>,
}

/// The supervisor's answer to a trigger.
pub enum Trigger {
    /// Already decided (queued, …).
    Answered(Triggered),
    /// A run task started; its record says which mode it really has.
    Started {
        target: TargetId,
        record: watch::Receiver<Recorded>,
    },
}

/// How long a trigger waits for its run's record before it answers without it.
const RECORD_WAIT: Duration = Duration::from_secs(10);

/// Output of a reading command is sent in frames of at most this many bytes.
const READ_CHUNK: usize = 64 * 1024;

/// Frames in flight between a reading command and the socket: the command
/// waits when the client reads slowly, so nothing is buffered whole.
const READ_FRAMES: usize = 8;

/// The socket's connections: a few commands at once is all it serves, and
/// clients that connect and send nothing must not use up the daemon's file
/// descriptors (see [`crate::web::accept`]).
const LIMITS: Limits = Limits {
    connections: 64,
    header_timeout: crate::web::HEADER_TIMEOUT,
};

pub(super) type Tx = mpsc::Sender<Request>;

/// Serves the bound control socket (see `socket.rs`) until `shutdown`.
pub fn serve(
    listener: tokio::net::UnixListener,
    tx: Tx,
    shutdown: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let app = Router::new()
        .route(route::STATUS, get(status))
        .route(route::TRIGGER, post(trigger))
        .route(route::STOP_RUN, post(stop_run))
        .route(route::RELOAD, post(reload))
        .route(route::READ, post(read))
        .route(route::BACKUP, post(backup))
        .with_state(tx);
    tokio::spawn(crate::web::accept::serve(listener, app, LIMITS, shutdown))
}

/// A refusal: its HTTP status and typed body.
fn refuse(error: ApiError) -> Response {
    let code =
        StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, Json(ErrorBody::from(error))).into_response()
}

/// Sends a request to the supervisor and waits for its answer; a closed
/// channel means the daemon is shutting down.
async fn ask<T>(tx: &Tx, make: impl FnOnce(oneshot::Sender<T>) -> Request) -> Result<T, ApiError> {
    let (reply, rx) = oneshot::channel();
    tx.send(make(reply))
        .await
        .map_err(|_| ApiError::ShuttingDown)?;
    rx.await.map_err(|_| ApiError::ShuttingDown)
}

/// A JSON body of the expected type, or a typed refusal.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest {
        detail: e.to_string(),
    })
}

fn answer<T: serde::Serialize>(r: Result<T, ApiError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => refuse(e),
    }
}

async fn status(State(tx): State<Tx>) -> Response {
    answer(full_status(&tx).await)
}

/// The status as `crawld status` shows it: the supervisor's part, then the
/// last runs, read on the store thread. The HTTP listener's `/api/status`
/// is this too.
pub(super) async fn full_status(tx: &Tx) -> Result<Status, ApiError> {
    let (mut status, store) = ask(tx, Request::Status).await?;
    let ids: Vec<TargetId> = status.targets.iter().map(|t| t.name.clone()).collect();
    let last = store
        .call(move |s| ids.iter().map(|id| s.last_run(id)).collect::<Vec<_>>())
        .await;
    match last {
        Ok(last) => {
            for (t, r) in status.targets.iter_mut().zip(last) {
                match r {
                    Ok(run) => t.last_run = run,
                    Err(e) => t.last_run_error = Some(e.to_string()),
                }
            }
        }
        Err(gone) => {
            for t in &mut status.targets {
                t.last_run_error = Some(gone.to_string());
            }
        }
    }
    if status.database.is_some() {
        match store.call(|s| s.members()).await {
            Ok(Ok(members)) => status.members = crate::control::MemberStatus::list(members),
            Ok(Err(e)) | Err(e) => status.members_error = Some(e.to_string()),
        }
    }
    Ok(status)
}

async fn trigger(State(tx): State<Tx>, body: Bytes) -> Response {
    let req: TriggerRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return refuse(e),
    };
    let requested = if req.full {
        RunMode::Full
    } else {
        RunMode::Incremental
    };
    match ask(&tx, |reply| Request::Trigger { req, reply }).await {
        Ok(Ok(Trigger::Answered(t))) => Json(t).into_response(),
        Ok(Ok(Trigger::Started { target, record })) => {
            Json(started(target, requested, record).await).into_response()
        }
        Ok(Err(e)) | Err(e) => refuse(e),
    }
}

/// The answer to a trigger that started a run: the run as recorded, so that
/// it names the mode the run really has (a resumed run keeps its own).
async fn started(
    target: TargetId,
    requested: RunMode,
    mut record: watch::Receiver<Recorded>,
) -> Triggered {
    let known = tokio::time::timeout(
        RECORD_WAIT,
        record.wait_for(|r| !matches!(r, Recorded::Pending)),
    )
    .await;
    let state = match known {
        Ok(Ok(r)) => r.clone(),
        _ => Recorded::Pending,
    };
    match state {
        Recorded::Known(run) => Triggered::Started {
            target,
            mode: run.mode,
            run: run.id,
            resumed_from: run.resumed_from,
        },
        Recorded::Ended => Triggered::EndedAtOnce {
            target,
            mode: requested,
        },
        Recorded::Pending | Recorded::Unreadable => Triggered::Starting { target, requested },
    }
}

async fn stop_run(State(tx): State<Tx>, body: Bytes) -> Response {
    let req: StopRunRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return refuse(e),
    };
    answer(
        ask(&tx, |reply| Request::StopRun { req, reply })
            .await
            .and_then(|r| r),
    )
}

async fn reload(State(tx): State<Tx>) -> Response {
    answer(ask(&tx, Request::Reload).await)
}

async fn read(State(tx): State<Tx>, body: Bytes) -> Response {
    let cmd: ReadCommand = match parse(&body) {
        Ok(c) => c,
        Err(e) => return refuse(e),
    };
    let target = cmd.target().clone();
    let ForReading {
        store,
        config,
        names,
    } = match ask(&tx, |reply| Request::Read { target, reply }).await {
        Ok(v) => v,
        Err(e) => return refuse(e),
    };
    streamed(store, move |store, out, err| {
        let configured = Configured {
            target: config.as_deref(),
            names: &names,
        };
        run_read(store, configured, &cmd, out, err)
    })
}

/// A backup of the store, streamed to the client, which writes it to the
/// user's path as the user (the daemon may not reach that path, under
/// systemd's sandbox). The commit lock is held while it is read out, so the
/// copy is consistent; runs wait for their commits meanwhile.
async fn backup(State(tx): State<Tx>) -> Response {
    let store = match ask(&tx, Request::Backup).await {
        Ok(s) => s,
        Err(e) => return refuse(e),
    };
    streamed(store, move |store, out, err| {
        match store.backup_to(out, std::path::Path::new("the backup stream")) {
            Ok(_) => crate::error::Exit::Ok,
            Err(e) => {
                let _ = writeln!(err, "error: {e}");
                crate::error::Exit::from(&e)
            }
        }
    })
}

/// Runs `command` on the store off the async threads (reads can be long:
/// exports, backups), its output and messages streamed as frames as they are
/// written, then its exit code, which closes the stream.
fn streamed(
    store: Arc<Store>,
    command: impl FnOnce(&Store, &mut dyn Write, &mut dyn Write) -> crate::error::Exit + Send + 'static,
) -> Response {
    let (frames, rx) = mpsc::channel::<Bytes>(READ_FRAMES);
    let ended = frames.clone();
    let done = store.call_any(move |store| {
        let mut out = std::io::BufWriter::with_capacity(READ_CHUNK, FrameWriter::out(&frames));
        let mut err = FrameWriter::err(&frames);
        let exit = command(store, &mut out, &mut err);
        // Output first, then the exit code that closes the stream.
        let _ = out.flush();
        drop(out);
        let _ = frames.blocking_send(encode(&Frame::End(exit)));
    });
    // A command that panicked still ends its stream with an error and an
    // exit code, rather than a stream cut short.
    tokio::spawn(async move {
        if let Err(e) = done.await {
            let _ = ended
                .send(encode(&Frame::Err(format!("error: {e}\n"))))
                .await;
            let _ = ended
                .send(encode(&Frame::End(crate::error::Exit::from(&e))))
                .await;
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    Body::from_stream(stream).into_response()
}

/// Writes a reading command's output or messages as frames. A client that
/// went away closes the channel: the write fails as a broken pipe, which
/// ends the command as `crawld export | head` would.
struct FrameWriter<'a> {
    frames: &'a mpsc::Sender<Bytes>,
    stderr: bool,
}

impl<'a> FrameWriter<'a> {
    fn out(frames: &'a mpsc::Sender<Bytes>) -> Self {
        FrameWriter {
            frames,
            stderr: false,
        }
    }

    fn err(frames: &'a mpsc::Sender<Bytes>) -> Self {
        FrameWriter {
            frames,
            stderr: true,
        }
    }
}

impl Write for FrameWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(READ_CHUNK);
        let chunk = &buf[..n];
        let frame = if self.stderr {
            Frame::Err(String::from_utf8_lossy(chunk).into_owned())
        } else {
            Frame::Out(Bytes::copy_from_slice(chunk))
        };
        self.frames
            .blocking_send(encode(&frame))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
