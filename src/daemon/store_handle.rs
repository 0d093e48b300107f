//! The supervisor's way to the store: every call runs on one store thread,
//! in the order it was made, never on the async threads, so the supervisor's
//! loop never waits on sled (a flush, a scan of many runs). Runs and reading
//! requests get the store itself through [`StoreHandle::shared`]: they do
//! their own store work off the async threads.

use std::panic::AssertUnwindSafe;
use std::sync::{mpsc as std_mpsc, Arc};

use tokio::sync::oneshot;

use crate::store::Store;

type Job = Box<dyn FnOnce(&Store) + Send>;

/// The store thread stopped: only after a bug (a panic outside the store's
/// own guard); the daemon's log says more.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the daemon's store thread stopped")]
pub struct StoreGone;

/// A handle on the store thread. Clones share the thread; it ends when the
/// last handle is dropped.
#[derive(Clone)]
pub struct StoreHandle {
    store: Arc<Store>,
    jobs: std_mpsc::Sender<Job>,
}

impl StoreHandle {
    /// Starts the store thread. It is a task of the runtime's blocking pool,
    /// so that the runtime, when it shuts down, waits for it to drop its
    /// share of the store: a store closes (and settles) when its last share
    /// goes, and the process must not exit before.
    pub fn start(store: Arc<Store>) -> Self {
        let (jobs, rx) = std_mpsc::channel::<Job>();
        let s = store.clone();
        tokio::task::spawn_blocking(move || {
            for job in rx {
                // A panic of one job (the store contains sled's own) must not
                // take the thread, and every later call, with it.
                if std::panic::catch_unwind(AssertUnwindSafe(|| job(&s))).is_err() {
                    tracing::error!("A store call of the daemon panicked; it was skipped.");
                }
            }
        });
        StoreHandle { store, jobs }
    }

    /// The store, for work that does its own blocking off the async threads.
    pub fn shared(&self) -> Arc<Store> {
        self.store.clone()
    }

    /// Runs `f` on the store thread; the answer comes when it is done.
    pub fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> T + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T, StoreGone>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let sent = self
            .jobs
            .send(Box::new(move |store: &Store| {
                let _ = tx.send(f(store));
            }))
            .is_ok();
        async move {
            if !sent {
                return Err(StoreGone);
            }
            rx.await.map_err(|_| StoreGone)
        }
    }

    /// Runs `f` on the store thread without waiting for it (it reports its
    /// own errors); calls run in the order they were made.
    pub fn send(&self, f: impl FnOnce(&Store) + Send + 'static) {
        if self.jobs.send(Box::new(f)).is_err() {
            tracing::error!("{StoreGone}: a store write of the daemon was dropped.");
        }
    }
}
