//! The accept loop of the daemon's two HTTP servers (the dashboard's TCP
//! listener and the control socket): hyper's HTTP/1 on each connection,
//! with a cap on open connections and a deadline for a request's headers,
//! so that idle or half-sent connections cannot use up the file descriptors
//! that the crawls and the store need, nor keep the daemon from answering.
//!
//! The header deadline runs whenever the server waits for a request: on a
//! new connection, and after each answer on a kept-alive one, so it is also
//! the idle timeout. When the cap is reached, the connection that has been
//! idle longest (no request being answered) is closed to make room, as
//! nginx does with its keep-alive connections; only when every connection
//! is busy answering does the loop wait for one to end.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::Router;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;
use tracing::{debug, warn};

/// Default of `--http-max-connections`.
pub const MAX_CONNECTIONS: usize = 256;

/// Default of `--http-header-timeout`: a client has this long to send a
/// request's headers, and an idle kept-alive connection is closed after it.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long connections get to finish their answer at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How long the loop pauses after the process ran out of file descriptors,
/// so that it does not spin while none are free.
const OUT_OF_FDS_PAUSE: Duration = Duration::from_millis(100);

/// The limits of one server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once, at most.
    pub connections: usize,
    /// How long a client has to send a request's headers (and how long a
    /// connection may wait idle for its next request).
    pub header_timeout: Duration,
}

/// A listener whose connections the loop serves.
pub trait Accept: Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&self) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

impl Accept for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    async fn accept(&self) -> io::Result<Self::Io> {
        let (stream, _) = tokio::net::TcpListener::accept(self).await?;
        // Answers are written whole: no reason to wait for more.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

impl Accept for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    async fn accept(&self) -> io::Result<Self::Io> {
        tokio::net::UnixListener::accept(self).await.map(|(s, _)| s)
    }
}

/// One open connection, as the loop sees it when it needs room.
struct Slot {
    /// Requests being answered on it (until their body is sent).
    busy: AtomicUsize,
    /// When it last began or finished an answer, ms after the loop began.
    last: AtomicU64,
    /// Closes it at once.
    close: CancellationToken,
}

/// The open connections, by a number of their own.
#[derive(Default)]
struct Open {
    next: u64,
    slots: HashMap<u64, Arc<Slot>>,
}

/// What every connection task shares.
struct Shared {
    router: Router,
    limits: Limits,
    open: Mutex<Open>,
    began: Instant,
    shutdown: CancellationToken,
}

impl Shared {
    fn now(&self) -> u64 {
        u64::try_from(self.began.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn open(&self) -> std::sync::MutexGuard<'_, Open> {
        // A panic while holding it leaves only a map of connections behind.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes the connection idle the longest; false when all are busy.
    fn make_room(&self) -> bool {
        let open = self.open();
        let idlest = open
            .slots
            .values()
            .filter(|s| s.busy.load(Ordering::Acquire) == 0 && !s.close.is_cancelled())
            .min_by_key(|s| s.last.load(Ordering::Acquire));
        match idlest {
            Some(slot) => {
                slot.close.cancel();
                true
            }
            None => false,
        }
    }
}

/// Marks its connection busy while it lives: from a request's start until
/// its answer's body is sent (or dropped).
struct Busy {
    slot: Arc<Slot>,
    shared: Arc<Shared>,
}

impl Busy {
    fn start(slot: &Arc<Slot>, shared: &Arc<Shared>) -> Busy {
        slot.busy.fetch_add(1, Ordering::AcqRel);
        slot.last.store(shared.now(), Ordering::Release);
        Busy {
            slot: slot.clone(),
            shared: shared.clone(),
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.slot.last.store(self.shared.now(), Ordering::Release);
        self.slot.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves `router` on `listener` until `shutdown`, then lets open answers
/// finish for a moment.
pub async fn serve<L: Accept>(
    listener: L,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let room = Arc::new(Semaphore::new(limits.connections.max(1)));
    let shared = Arc::new(Shared {
        router,
        limits,
        open: Mutex::default(),
        began: Instant::now(),
        shutdown: shutdown.clone(),
    });
    let tasks = TaskTracker::new();
    let mut out_of_fds = false;
    loop {
        let io = tokio::select! {
            () = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let io = match io {
            Ok(io) => {
                out_of_fds = false;
                io
            }
            Err(e) if is_fd_exhaustion(&e) => {
                // Warned once per shortage, not once per attempt.
                if !out_of_fds {
                    warn!(error = %e, "The process is out of file descriptors: new connections wait.");
                    out_of_fds = true;
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(OUT_OF_FDS_PAUSE) => continue,
                }
            }
            // A client that went away before it was accepted, and the like.
            Err(e) => {
                debug!(error = %e, "A connection could not be accepted.");
                continue;
            }
        };
        let permit = match room.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if !shared.make_room() {
                    debug!(
                        limit = limits.connections,
                        "Every connection is busy: a new one waits."
                    );
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    p = room.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                }
            }
        };
        let shared = shared.clone();
        tasks.spawn(async move {
            connection(io, &shared).await;
            drop(permit);
        });
    }
    drop(listener);
    tasks.close();
    tasks.wait().await;
}

/// Too many open files, in the process or the system.
fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == rustix::io::Errno::MFILE.raw_os_error() || code == rustix::io::Errno::NFILE.raw_os_error())
}

/// Serves one connection until it ends, is closed to make room, or the
/// server shuts down.
async fn connection<I>(io: I, shared: &Arc<Shared>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let slot = Arc::new(Slot {
        busy: AtomicUsize::new(0),
        last: AtomicU64::new(shared.now()),
        close: CancellationToken::new(),
    });
    let id = {
        let mut open = shared.open();
        open.next += 1;
        let id = open.next;
        open.slots.insert(id, slot.clone());
        id
    };
    let service = {
        let (slot, shared) = (slot.clone(), shared.clone());
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let busy = Busy::start(&slot, &shared);
            let mut router = shared.router.clone();
            async move {
                // A Router is always ready: poll_ready has nothing to wait for.
                let resp = router.call(req.map(Body::new)).await?;
                // Busy until the body is sent: a long answer is not idle.
                Ok::<_, std::convert::Infallible>(resp.map(|body| {
                    Body::new(body.map_frame(move |frame| {
                        let _kept = &busy;
                        frame
                    }))
                }))
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.limits.header_timeout);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    debug!(error = %e, "A connection ended with an error.");
                }
                break;
            }
            () = slot.close.cancelled() => {
                debug!("An idle connection was closed to make room.");
                break;
            }
            () = shared.shutdown.cancelled(), if !stopping => {
                conn.as_mut().graceful_shutdown();
                stopping = true;
            }
            () = tokio::time::sleep(SHUTDOWN_GRACE), if stopping => break,
        }
    }
    shared.open().slots.remove(&id);
}
