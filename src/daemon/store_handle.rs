//! The supervisor's way to the store: every call runs on one store thread,
//! in the order it was made, never on the async threads, so the supervisor's
//! loop never waits on sled (a flush, a scan of many runs). Runs and reading
//! requests get the store itself through [`StoreHandle::shared`]: their
//! store work goes off the async threads through [`Store::call`].

use std::sync::{mpsc as std_mpsc, Arc};

use tokio::sync::oneshot;

use crate::store::{Store, StoreError};

type Job = Box<dyn FnOnce(&Store) + Send>;

/// What the store thread stopped with: only after a bug (a panic outside
/// the store's own guard); the daemon's log says more.
const STOPPED: &str = "the daemon's store thread stopped";

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
    #[allow(
        clippy::disallowed_methods,
        reason = "the store thread is one thread, so that its calls run in order; Store::guard maps its panics"
    )]
    pub fn start(store: Arc<Store>) -> Self {
        let (jobs, rx) = std_mpsc::channel::<Job>();
        let s = store.clone();
        tokio::task::spawn_blocking(move || {
            for job in rx {
                // A panic of one job (the store contains sled's own) must not
                // take the thread, and every later call, with it. A call
                // answers with its own panic (see `call`); this is a write's.
                if let Err(e) = s.guard(job) {
                    tracing::error!(error = %e, "A store call of the daemon panicked; it was skipped.");
                }
            }
        });
        StoreHandle { store, jobs }
    }

    /// The store, for work that does its own blocking off the async threads.
    pub fn shared(&self) -> Arc<Store> {
        self.store.clone()
    }

    /// Runs `f` on the store thread; the answer comes when it is done. A
    /// panic of `f` is [`StoreError::Panicked`], as [`Store::call`]'s.
    pub fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> T + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let sent = self
            .jobs
            .send(Box::new(move |store: &Store| {
                let _ = tx.send(store.guard(f));
            }))
            .is_ok();
        let place = self.store.describe();
        let stopped = move || StoreError::Panicked {
            place,
            detail: STOPPED.to_owned(),
        };
        async move {
            if !sent {
                return Err(stopped());
            }
            rx.await.map_err(|_| stopped())?
        }
    }

    /// Runs `f` on the store thread without waiting for it (it reports its
    /// own errors); calls run in the order they were made.
    pub fn send(&self, f: impl FnOnce(&Store) + Send + 'static) {
        if self.jobs.send(Box::new(f)).is_err() {
            tracing::error!("{STOPPED}: a store write of the daemon was dropped.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_that_panics_answers_with_the_store_error_and_the_thread_goes_on_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(Store::open(dir.path()).expect("store"));
        let handle = StoreHandle::start(store.clone());
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let o = order.clone();
        handle.send(move |_| o.lock().expect("order").push(1));
        let bad = handle.call(|_| -> u32 { panic!("bad call") });
        let o = order.clone();
        let after = handle.call(move |_| {
            o.lock().expect("order").push(2);
            7
        });
        let e = bad.await.expect_err("the panic answers");
        assert!(
            matches!(&e, StoreError::Panicked { place, detail }
                if *place == store.describe() && detail == "bad call"),
            "{e:?}"
        );
        assert_eq!(after.await.expect("the thread goes on"), 7);
        assert_eq!(*order.lock().expect("order"), [1, 2], "calls run in order");
    }
}
