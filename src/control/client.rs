//! The client side of the control socket: one typed method per route, used
//! by `crawld status|trigger|stop-run|reload` and by the reading commands
//! while a daemon holds the state dir.

use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::stream::{Decoder, Frame};
use super::{
    route, ApiError, ErrorBody, ReadCommand, Reloaded, Status, StopRunRequest, Stopping,
    TriggerRequest, Triggered,
};
use crate::error::Exit;

/// Why the daemon could not be asked, or what it refused.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no daemon is running (nothing answers at {0})")]
    NoDaemon(PathBuf),
    #[error(
        "permission denied on the control socket {0}: it is for the daemon's group (`crawld` under \
         systemd); join it, or use sudo"
    )]
    PermissionDenied(PathBuf),
    #[error("the control socket {path} failed: {detail}")]
    Failed { path: PathBuf, detail: String },
    /// The daemon answered with a refusal.
    #[error(transparent)]
    Refused(ApiError),
    #[error(
        "the daemon's answer on {path} could not be read ({detail}): are `crawld` and the daemon \
         the same version?"
    )]
    BadAnswer { path: PathBuf, detail: String },
    #[error("the daemon's answer on {0} ended before the command finished (did the daemon stop?)")]
    CutOff(PathBuf),
    /// Writing what the daemon sent failed (stdout or the output file).
    #[error("cannot write the output: {0}")]
    Output(#[source] std::io::Error),
}

/// A client of one control socket.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: &Path) -> Self {
        Client {
            socket: socket.to_path_buf(),
        }
    }

    /// The socket this client asks.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub async fn status(&self) -> Result<Status, ClientError> {
        self.json("GET", route::STATUS, None::<&()>).await
    }

    pub async fn trigger(&self, req: &TriggerRequest) -> Result<Triggered, ClientError> {
        self.json("POST", route::TRIGGER, Some(req)).await
    }

    pub async fn stop_run(&self, req: &StopRunRequest) -> Result<Stopping, ClientError> {
        self.json("POST", route::STOP_RUN, Some(req)).await
    }

    pub async fn reload(&self) -> Result<Reloaded, ClientError> {
        self.json("POST", route::RELOAD, None::<&()>).await
    }

    /// Runs a reading command in the daemon: its output goes to `out` and
    /// its messages to `err` as they arrive. Returns the command's exit code.
    pub async fn read(
        &self,
        cmd: &ReadCommand,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<Exit, ClientError> {
        self.stream(route::READ, Some(cmd), out, err).await
    }

    /// A backup of the daemon's store, taken by the daemon at one point in
    /// time while it crawls: its bytes go to `out`, its messages to `err`.
    pub async fn backup(
        &self,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<Exit, ClientError> {
        self.stream(route::BACKUP, None::<&()>, out, err).await
    }

    /// A request whose answer is a stream of output and message frames,
    /// closed by the exit code.
    async fn stream(
        &self,
        uri: &str,
        body: Option<&impl Serialize>,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Result<Exit, ClientError> {
        let response = self.send("POST", uri, body).await?;
        if !response.status().is_success() {
            return Err(self.refusal(response).await);
        }
        let mut body = response.into_body();
        let mut frames = Decoder::default();
        while let Some(chunk) = body.frame().await {
            let chunk = chunk.map_err(|e| self.failed(e))?;
            let Ok(data) = chunk.into_data() else {
                continue;
            };
            frames.push(&data);
            while let Some(frame) = frames.next_frame().map_err(|e| self.bad(e))? {
                match frame {
                    Frame::Out(bytes) => out.write_all(&bytes).map_err(ClientError::Output)?,
                    Frame::Err(text) => {
                        let _ = err.write_all(text.as_bytes());
                    }
                    Frame::End(exit) => {
                        out.flush().map_err(ClientError::Output)?;
                        return Ok(exit);
                    }
                }
            }
        }
        Err(ClientError::CutOff(self.socket.clone()))
    }

    /// Sends a request and reads a JSON answer, or the refusal.
    async fn json<T: DeserializeOwned>(
        &self,
        method: &str,
        uri: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let response = self.send(method, uri, body).await?;
        if !response.status().is_success() {
            return Err(self.refusal(response).await);
        }
        let bytes = self.collect(response).await?;
        serde_json::from_slice(&bytes).map_err(|e| self.bad(e))
    }

    async fn collect(&self, response: hyper::Response<Incoming>) -> Result<Bytes, ClientError> {
        Ok(response
            .into_body()
            .collect()
            .await
            .map_err(|e| self.failed(e))?
            .to_bytes())
    }

    /// The typed error of a refusal.
    async fn refusal(&self, response: hyper::Response<Incoming>) -> ClientError {
        let status = response.status();
        match self.collect(response).await {
            Ok(bytes) => match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(body) => ClientError::Refused(body.error),
                Err(e) => self.bad(format!("HTTP {status}: {e}")),
            },
            Err(e) => e,
        }
    }

    async fn send(
        &self,
        method: &str,
        uri: &str,
        body: Option<&impl Serialize>,
    ) -> Result<hyper::Response<Incoming>, ClientError> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                    ClientError::NoDaemon(self.socket.clone())
                }
                std::io::ErrorKind::PermissionDenied => {
                    ClientError::PermissionDenied(self.socket.clone())
                }
                _ => self.failed(e),
            })?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| self.failed(e))?;
        tokio::spawn(conn);
        let bytes = match body {
            Some(b) => serde_json::to_vec(b).map_err(|e| self.failed(e))?,
            None => Vec::new(),
        };
        let request = hyper::Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "crawld")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| self.failed(e))?;
        sender
            .send_request(request)
            .await
            .map_err(|e| self.failed(e))
    }

    fn failed(&self, e: impl std::fmt::Display) -> ClientError {
        ClientError::Failed {
            path: self.socket.clone(),
            detail: e.to_string(),
        }
    }

    fn bad(&self, e: impl std::fmt::Display) -> ClientError {
        ClientError::BadAnswer {
            path: self.socket.clone(),
            detail: e.to_string(),
        }
    }
}
