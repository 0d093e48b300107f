//! The benchmark site's server. It runs in a child process (this same bench
//! binary, started again with `BENCH_SERVE=1`): a crawler forked from a
//! process holding hundreds of MB of pages would have them counted in its
//! peak RSS, and the server's CPU can be read apart from the bench's own.
//!
//! Every page has an ETag and a matching `If-None-Match` is answered 304, so
//! that an incremental run over the unchanged site fetches no bodies.
//! `BENCH_LATENCY_MS=N` makes every answer wait N ms first (a tokio sleep, so
//! waiting answers cost no server CPU); `BENCH_CT` overrides the
//! content-type. The server exits when its stdin closes, so that a bench
//! killed before it could kill its server leaves no server behind.

use std::io::BufRead;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode};
use bytes::Bytes;

/// What the server serves.
pub trait Site: Send + Sync + 'static {
    /// The page's ETag (quoted), or `None` for a path the site lacks (404).
    fn etag(&self, path: &str) -> Option<String>;
    /// The page's body: asked only when the answer is not a 304.
    fn body(&self, path: &str) -> Bytes;
}

/// Whether this process is the server role.
pub fn is_server() -> bool {
    std::env::var_os("BENCH_SERVE").is_some()
}

/// `BENCH_LATENCY_MS`: how long the server waits before each answer.
pub fn latency() -> Duration {
    Duration::from_millis(super::env_num("BENCH_LATENCY_MS", 0))
}

/// Server role: prints the address on stdout, then serves until killed,
/// or until its stdin closes (the bench died without killing it).
pub fn serve(site: impl Site) {
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let site = Arc::new(site);
    let latency = latency();
    let content_type = HeaderValue::from_str(
        &std::env::var("BENCH_CT").unwrap_or_else(|_| "text/html; charset=utf-8".into()),
    )
    .expect("BENCH_CT is a valid header value");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!("{}", listener.local_addr().expect("addr"));
        let app = axum::Router::new().fallback(move |req: Request<Body>| {
            let site = site.clone();
            let content_type = content_type.clone();
            async move {
                if !latency.is_zero() {
                    tokio::time::sleep(latency).await;
                }
                answer(&*site, &req, content_type)
            }
        });
        let _ = axum::serve(listener, app).await;
    });
}

fn answer(site: &dyn Site, req: &Request<Body>, content_type: HeaderValue) -> Response<Body> {
    let path = req.uri().path();
    let Some(etag) = site.etag(path) else {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::empty())
            .unwrap_or_default();
    };
    let inm = req.headers().get("if-none-match").map(|v| v.as_bytes());
    if inm == Some(etag.as_bytes()) {
        return Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .header("etag", etag)
            .body(Body::empty())
            .unwrap_or_default();
    }
    Response::builder()
        .header("content-type", content_type)
        .header("etag", etag)
        .body(Body::from(site.body(path)))
        .unwrap_or_default()
}

/// The server child process, killed when dropped.
pub struct Server {
    child: std::process::Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Server {
    /// Starts this bench binary as the server, with extra environment.
    pub fn spawn(env: &[(&str, String)]) -> Server {
        let exe = std::env::current_exe().expect("own path");
        let mut child = std::process::Command::new(exe)
            .env("BENCH_SERVE", "1")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn the site server");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("server stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("server address");
        Server {
            child,
            addr: line.trim().to_owned(),
        }
    }

    /// The server's user + system CPU seconds so far, from /proc.
    pub fn cpu_secs(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name, which is in parentheses: the 12th
        // and 13th are utime and stime, in clock ticks.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
        // SAFETY: sysconf only reads a constant.
        let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        (ticks(11).unwrap_or(0.0) + ticks(12).unwrap_or(0.0)) / per_sec
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
