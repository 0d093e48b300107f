//! The control socket: HTTP/JSON over a Unix socket, so that `crawld
//! status`, `trigger`, `stop-run` and the reading commands work while the
//! daemon holds the state dir. Server and client both live here.

use std::path::{Path, PathBuf};

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

/// Longest path a Unix socket address holds (`sun_path`, minus the NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// Header carrying the exit code of a forwarded reading command.
pub const EXIT_HEADER: &str = "x-crawld-exit";
/// Header carrying its messages, percent-encoded.
pub const STDERR_HEADER: &str = "x-crawld-stderr";

/// What the socket asks of the daemon's main loop.
#[derive(Debug)]
pub enum Request {
    Status(oneshot::Sender<Value>),
    Trigger {
        target: String,
        full: bool,
        reply: oneshot::Sender<Result<Value, (StatusCode, String)>>,
    },
    StopRun {
        target: String,
        reply: oneshot::Sender<Result<Value, (StatusCode, String)>>,
    },
    Reload(oneshot::Sender<Value>),
    /// A reading command (`export`, `runs`, …) run against the daemon's store.
    Read {
        command: Value,
        reply: oneshot::Sender<(u8, Vec<u8>, String)>,
    },
}

#[derive(Debug, Deserialize, Serialize)]
pub struct TriggerQuery {
    pub target: String,
    #[serde(default)]
    pub full: bool,
}

#[derive(Debug, Deserialize, Serialize)]
pub struct TargetQuery {
    pub target: String,
}

/// The socket path: `--socket`, else `$RUNTIME_DIRECTORY/control.sock`
/// (systemd's `RuntimeDirectory=crawld`), else `STATE/control.sock`.
pub fn socket_path(explicit: Option<&Path>, state: &Path) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    match std::env::var_os("RUNTIME_DIRECTORY").and_then(|v| {
        v.to_str()
            .and_then(|s| s.split(':').next())
            .map(PathBuf::from)
    }) {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join("control.sock"),
        _ => state.join("control.sock"),
    }
}

/// Binds the socket (mode 0660) and serves it until `shutdown`.
pub async fn serve(
    path: &Path,
    tx: mpsc::Sender<Request>,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let shown = path.display();
    if path.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(format!(
            "control socket path {shown} is {} bytes, over the {MAX_SOCKET_PATH}-byte limit of Unix sockets: use --socket with a shorter path",
            path.as_os_str().len()
        ));
    }
    // We hold the state dir's lock, so a socket file left here is a dead daemon's.
    if path.exists() {
        std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove the stale socket {shown}: {e}"))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(path)
        .map_err(|e| format!("cannot bind the control socket {shown}: {e}"))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .map_err(|e| format!("cannot set the mode of {shown}: {e}"))?;
    }
    let app = Router::new()
        .route("/status", get(status))
        .route("/trigger", post(trigger))
        .route("/stop-run", post(stop_run))
        .route("/reload", post(reload))
        .route("/read", post(read))
        .with_state(tx);
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
    }))
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(serde_json::json!({"error": "the daemon is shutting down"})),
    )
        .into_response()
}

async fn status(State(tx): State<mpsc::Sender<Request>>) -> Response {
    let (reply, rx) = oneshot::channel();
    if tx.send(Request::Status(reply)).await.is_err() {
        return unavailable();
    }
    match rx.await {
        Ok(v) => Json(v).into_response(),
        Err(_) => unavailable(),
    }
}

fn answer(r: Result<Result<Value, (StatusCode, String)>, oneshot::error::RecvError>) -> Response {
    match r {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err((code, msg))) => (code, Json(serde_json::json!({"error": msg}))).into_response(),
        Err(_) => unavailable(),
    }
}

async fn trigger(
    State(tx): State<mpsc::Sender<Request>>,
    Query(q): Query<TriggerQuery>,
) -> Response {
    let (reply, rx) = oneshot::channel();
    if tx
        .send(Request::Trigger {
            target: q.target,
            full: q.full,
            reply,
        })
        .await
        .is_err()
    {
        return unavailable();
    }
    answer(rx.await)
}

async fn stop_run(
    State(tx): State<mpsc::Sender<Request>>,
    Query(q): Query<TargetQuery>,
) -> Response {
    let (reply, rx) = oneshot::channel();
    if tx
        .send(Request::StopRun {
            target: q.target,
            reply,
        })
        .await
        .is_err()
    {
        return unavailable();
    }
    answer(rx.await)
}

async fn reload(State(tx): State<mpsc::Sender<Request>>) -> Response {
    let (reply, rx) = oneshot::channel();
    if tx.send(Request::Reload(reply)).await.is_err() {
        return unavailable();
    }
    match rx.await {
        Ok(v) => Json(v).into_response(),
        Err(_) => unavailable(),
    }
}

async fn read(State(tx): State<mpsc::Sender<Request>>, Json(command): Json<Value>) -> Response {
    let (reply, rx) = oneshot::channel();
    if tx.send(Request::Read { command, reply }).await.is_err() {
        return unavailable();
    }
    match rx.await {
        Ok((exit, out, err)) => {
            let mut resp = (StatusCode::OK, out).into_response();
            resp.headers_mut()
                .insert(EXIT_HEADER, HeaderValue::from(u16::from(exit)));
            // Percent-encoded: a header holds ASCII only.
            let encoded: String = url::form_urlencoded::byte_serialize(err.as_bytes()).collect();
            if let Ok(v) = HeaderValue::from_str(&encoded) {
                resp.headers_mut().insert(STDERR_HEADER, v);
            }
            resp
        }
        Err(_) => unavailable(),
    }
}

/// Why the daemon could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no daemon is running (nothing answers at {0})")]
    NoDaemon(PathBuf),
    #[error("the control socket {path} failed: {detail}")]
    Failed { path: PathBuf, detail: String },
}

/// An answer of the daemon.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: axum::http::HeaderMap,
    pub body: Bytes,
}

/// Sends one request to the daemon.
pub async fn call(
    socket: &Path,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> Result<Answer, ClientError> {
    let failed = |detail: String| ClientError::Failed {
        path: socket.to_path_buf(),
        detail,
    };
    let stream = tokio::net::UnixStream::connect(socket).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => ClientError::NoDaemon(socket.to_path_buf()),
        std::io::ErrorKind::PermissionDenied => failed(format!(
            "permission denied: the socket is for the daemon's group (`crawld` under systemd); join it, or use sudo ({e})"
        )),
        _ => failed(e.to_string()),
    })?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| failed(e.to_string()))?;
    tokio::spawn(conn);
    let bytes = body
        .map(|b| serde_json::to_vec(&b).unwrap_or_default())
        .unwrap_or_default();
    let request = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "crawld")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(bytes)))
        .map_err(|e| failed(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| failed(e.to_string()))?
        .to_bytes();
    Ok(Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}
