//! The daemon's optional HTTP listener (`crawld run --http ADDR`): the
//! dashboard for people, `/metrics` for Prometheus and `/api/…` for scripts.
//! Every route is a read-only GET.
//!
//! | route                          | answer                                         |
//! |--------------------------------|------------------------------------------------|
//! | `GET /`                        | the dashboard ([`dashboard`]), HTML            |
//! | `GET /metrics`                 | Prometheus/OpenMetrics text ([`metrics`])      |
//! | `GET /api/status`              | the control socket's [`Status`], JSON          |
//! | `GET /api/runs?target=T&limit=N` | a target's last N run records, newest last   |
//!
//! The listener knows nothing of the daemon: it reads through a [`Source`],
//! which the daemon implements with the same requests as its control socket,
//! so imports go one way (`daemon` → `web` → `control`) and the supervisor
//! only ever answers a `Status` request, never waits on a page.

pub mod accept;
mod auth;
pub mod busiest;
pub mod charts;
pub mod dashboard;
#[cfg(test)]
mod edge_tests;
#[doc(hidden)]
pub mod fixture;
mod html;
pub mod metrics;
mod tables;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use accept::{Limits, HEADER_TIMEOUT, MAX_CONNECTIONS};
use auth::Access;
pub use auth::{Token, MIN_TOKEN_LEN, TOKEN_ENV};

use crate::control::{ApiError, ErrorBody, Status};
use crate::ids::TargetId;
use crate::store::{RunRecord, StoreError};

/// Run records per target that the dashboard charts, and `/api/runs` answers
/// without `limit`.
pub const CHART_RUNS: usize = 30;

/// Requests served at once; more wait their turn, so that a burst of scrapes
/// cannot pile store reads up.
const CONCURRENT: usize = 4;

/// How the listener is asked for: `--http` / `CRAWLD_HTTP`, and the token.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// `IP:PORT` or `localhost:PORT`, as given.
    pub addr: String,
    /// `--http-token-file`; else the token comes from `CRAWLD_HTTP_TOKEN`.
    pub token_file: Option<PathBuf>,
    /// `--http-allow-host`: names answered without a token, besides loopback.
    pub allow_hosts: Vec<String>,
    /// `--http-max-connections`, before the file descriptor budget cuts it.
    pub max_connections: usize,
    /// `--http-header-timeout`.
    pub header_timeout: Duration,
}

/// Of the process's file descriptors, the listener's connections may use at
/// most this share: the rest stays for the crawls (a socket per host
/// connection, spill files) and the store.
const FD_SHARE_DIVISOR: u64 = 4;

/// `asked`, cut to the listener's share of the soft `RLIMIT_NOFILE`.
fn connection_cap(asked: usize) -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    let share = soft.map_or(usize::MAX, |n| {
        usize::try_from(n / FD_SHARE_DIVISOR).unwrap_or(usize::MAX)
    });
    asked.min(share).max(1)
}

/// Why the listener cannot start. Each is a configuration error (exit 78).
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("--http / CRAWLD_HTTP `{addr}` is not an address: write IP:PORT, e.g. 127.0.0.1:9464 (port 0 picks a free one)")]
    BadAddress { addr: String },
    #[error("--http {addr} is not a loopback address: the listener would be reachable from other machines, so it needs a token (--http-token-file PATH or CRAWLD_HTTP_TOKEN, at least {MIN_TOKEN_LEN} characters); or bind 127.0.0.1")]
    NeedsToken { addr: SocketAddr },
    #[error("cannot read the HTTP token file {}: {source}", path.display())]
    TokenFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTP token from {from} has {len} characters: use at least {MIN_TOKEN_LEN} (e.g. `openssl rand -hex 32`)")]
    TokenTooShort { from: String, len: usize },
    #[error("the HTTP token from {from} may only hold visible ASCII characters (no spaces): it goes into headers and URLs as it is")]
    TokenCharacters { from: String },
    #[error("cannot listen on {addr} (--http): {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A read the listener asked of the daemon that could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("the daemon's store read stopped: {0}")]
    Read(#[from] StoreError),
}

/// Each target's run records, or why they could not be read.
pub type TargetRuns = BTreeMap<TargetId, Result<Vec<RunRecord>, StoreError>>;

/// Where the listener's data comes from: the daemon, through the same
/// requests as its control socket.
pub trait Source: Clone + Send + Sync + 'static {
    /// The status exactly as the control socket serves it.
    fn status(&self) -> impl Future<Output = Result<Status, SourceError>> + Send;

    /// The last `limit` run records of each of `targets`, oldest first.
    fn runs(
        &self,
        targets: Vec<TargetId>,
        limit: usize,
    ) -> impl Future<Output = Result<TargetRuns, SourceError>> + Send;
}

/// The listener's address, parsed: `IP:PORT`, or `localhost:PORT`.
pub fn parse_addr(addr: &str) -> Result<SocketAddr, WebError> {
    let bad = || WebError::BadAddress {
        addr: addr.to_owned(),
    };
    if let Some(port) = addr.strip_prefix("localhost:") {
        let port = port.parse().map_err(|_| bad())?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    addr.parse().map_err(|_| bad())
}

/// A bound listener, not serving yet.
pub struct Bound {
    listener: tokio::net::TcpListener,
    access: Access,
    limits: Limits,
    /// The address it is bound to (the real port, for port 0).
    pub addr: SocketAddr,
}

/// The address and the token of `cfg`, checked without binding anything:
/// the daemon refuses a bad `--http` before it creates its state dir.
pub fn check(cfg: &HttpConfig) -> Result<(), WebError> {
    resolve(cfg).map(|_| ())
}

fn resolve(cfg: &HttpConfig) -> Result<(SocketAddr, Option<Token>), WebError> {
    let asked = parse_addr(&cfg.addr)?;
    let token = auth::resolve(
        cfg.token_file.as_deref(),
        std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty()),
    )?;
    if !asked.ip().is_loopback() && token.is_none() {
        return Err(WebError::NeedsToken { addr: asked });
    }
    Ok((asked, token))
}

/// Resolves the token and binds the address. A non-loopback address without
/// a token is refused before anything listens.
pub async fn bind(cfg: &HttpConfig) -> Result<Bound, WebError> {
    let (asked, token) = resolve(cfg)?;
    let bind_err = |source| WebError::Bind {
        addr: asked,
        source,
    };
    let listener = tokio::net::TcpListener::bind(asked)
        .await
        .map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;
    let limits = Limits {
        connections: connection_cap(cfg.max_connections),
        header_timeout: cfg.header_timeout,
    };
    Ok(Bound {
        listener,
        access: Access::new(token, &cfg.allow_hosts),
        limits,
        addr,
    })
}

/// What every handler gets.
#[derive(Clone)]
struct App<S> {
    source: S,
    turns: Arc<Semaphore>,
}

/// Serves `bound` until `shutdown`.
pub fn serve<S: Source>(
    bound: Bound,
    source: S,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let Bound {
        listener,
        access,
        limits,
        addr,
    } = bound;
    info!(
        http = %addr,
        token = access.token.is_some(),
        connections = limits.connections,
        "Dashboard and metrics listening."
    );
    let app = router(source, access);
    tokio::spawn(accept::serve(listener, app, limits, shutdown))
}

/// The routes, behind the token check (or, without a token, the host check).
fn router<S: Source>(source: S, access: Access) -> Router {
    let app = App {
        source,
        turns: Arc::new(Semaphore::new(CONCURRENT)),
    };
    Router::new()
        .route("/", get(page::<S>))
        .route("/metrics", get(scrape::<S>))
        .route("/api/status", get(api_status::<S>))
        .route("/api/runs", get(api_runs::<S>))
        .fallback(not_found)
        .with_state(app)
        .layer(axum::middleware::from_fn_with_state(access, auth::require))
}

/// Headers of every answer: nothing cached, nothing sniffed, no referrer (a
/// `?token=` must not leak to another site).
fn harden(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

fn refuse(e: SourceError) -> Response {
    let api = match e {
        SourceError::Api(api) => api,
        SourceError::Read(_) => ApiError::ShuttingDown,
    };
    let code = StatusCode::from_u16(api.http_status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    harden((code, Json(ErrorBody::from(api))).into_response())
}

async fn not_found() -> Response {
    harden(
        (
            StatusCode::NOT_FOUND,
            "404: the routes are /, /metrics, /api/status and /api/runs?target=NAME\n",
        )
            .into_response(),
    )
}

/// The status and the last `limit` runs of each of its targets.
async fn status_and_runs<S: Source>(
    app: &App<S>,
    limit: usize,
) -> Result<(Status, TargetRuns), SourceError> {
    let status = app.source.status().await?;
    let ids = status.targets.iter().map(|t| t.name.clone()).collect();
    let runs = app.source.runs(ids, limit).await?;
    Ok((status, runs))
}

async fn page<S: Source>(State(app): State<App<S>>) -> Response {
    let _turn = app.turns.acquire().await;
    match status_and_runs(&app, CHART_RUNS).await {
        Ok((status, runs)) => {
            let html = dashboard::render(&status, &runs, crate::store::now_ms());
            let mut resp = harden(axum::response::Html(html).into_response());
            resp.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(dashboard::CSP),
            );
            resp
        }
        Err(e) => refuse(e),
    }
}

async fn scrape<S: Source>(State(app): State<App<S>>, headers: HeaderMap) -> Response {
    let _turn = app.turns.acquire().await;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let openmetrics = metrics::wants_openmetrics(accept);
    match status_and_runs(&app, usize::MAX).await {
        Ok((status, runs)) => {
            let text = metrics::encode(&status, &runs, crate::store::now_ms());
            let (text, kind) = if openmetrics {
                (text, metrics::CONTENT_TYPE)
            } else {
                (metrics::classic(&text), metrics::CLASSIC_CONTENT_TYPE)
            };
            let mut resp = harden(text.into_response());
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
            resp
        }
        Err(e) => refuse(e),
    }
}

async fn api_status<S: Source>(State(app): State<App<S>>) -> Response {
    let _turn = app.turns.acquire().await;
    match app.source.status().await {
        Ok(s) => harden(Json(s).into_response()),
        Err(e) => refuse(e),
    }
}

#[derive(Deserialize)]
struct RunsQuery {
    target: String,
    limit: Option<usize>,
}

/// A query `/api/runs` cannot read: the documented JSON error, not axum's
/// plain-text rejection.
fn bad_query(detail: String) -> Response {
    let body = ErrorBody {
        message: format!(
            "bad query ({detail}): write /api/runs?target=NAME or /api/runs?target=NAME&limit=N"
        ),
        error: ApiError::BadRequest { detail },
    };
    harden((StatusCode::BAD_REQUEST, Json(body)).into_response())
}

async fn api_runs<S: Source>(
    State(app): State<App<S>>,
    q: Result<Query<RunsQuery>, QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return bad_query(e.body_text()),
    };
    let _turn = app.turns.acquire().await;
    let target = TargetId::new(q.target);
    let known: Vec<TargetId> = match app.source.status().await {
        Ok(s) => s.targets.iter().map(|t| t.name.clone()).collect(),
        Err(e) => return refuse(e),
    };
    if !known.contains(&target) {
        return refuse(SourceError::Api(ApiError::UnknownTarget { target, known }));
    }
    let limit = q.limit.unwrap_or(CHART_RUNS);
    match app.source.runs(vec![target.clone()], limit).await {
        Ok(mut runs) => match runs.remove(&target) {
            Some(Ok(r)) => harden(Json(r).into_response()),
            Some(Err(e)) => harden(
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("500: the runs of {target} could not be read: {e}\n"),
                )
                    .into_response(),
            ),
            None => harden(Json(Vec::<RunRecord>::new()).into_response()),
        },
        Err(e) => refuse(e),
    }
}
