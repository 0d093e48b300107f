//! Store work off the async threads, written once: every async caller hands
//! its store work to [`Store::call`] (or [`Store::call_any`]), which runs it
//! on tokio's blocking pool, and a panic inside it comes back as one typed
//! error, [`StoreError::Panicked`], naming the store. Threads of their own
//! that do store work (a run's writer, the daemon's store thread) map their
//! panics with [`Store::panicked`] and [`Store::guard`], to the same error.

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use tokio::task::JoinError;

use super::{Store, StoreError};

impl Store {
    /// Runs `f` on the store off the async threads, and hands back its
    /// result. The work starts at once, like `spawn_blocking` (the returned
    /// future only waits for it); dropping the future leaves it running to
    /// its end, so a commit is never cut in half.
    pub fn call<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> impl Future<Output = Result<T, StoreError>> + Send + 'static {
        let done = self.call_any(f);
        async move { done.await? }
    }

    /// [`Store::call`] for work whose answer is not a store result (another
    /// error type, one result per target): only a panic is a [`StoreError`].
    #[allow(clippy::disallowed_methods, reason = "the one offload of store work")]
    pub fn call_any<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Store) -> T + Send + 'static,
    ) -> impl Future<Output = Result<T, StoreError>> + Send + 'static {
        let store = Arc::clone(self);
        let place = self.describe();
        let work = tokio::task::spawn_blocking(move || f(&store));
        async move { work.await.map_err(|e| panicked(place, e)) }
    }

    /// Runs `f` on the store on this thread, a panic turned into
    /// [`StoreError::Panicked`]: for a thread of its own that must outlive
    /// one bad call (the daemon's store thread).
    pub fn guard<T>(&self, f: impl FnOnce(&Store) -> T) -> Result<T, StoreError> {
        catch_unwind(AssertUnwindSafe(|| f(self))).map_err(|payload| StoreError::Panicked {
            place: self.describe(),
            detail: panic_message(payload.as_ref()),
        })
    }

    /// The error for store work on this store whose task did not finish (it
    /// panicked, or the runtime dropped it): for a store thread spawned
    /// directly (a run's writer).
    pub fn panicked(&self, e: JoinError) -> StoreError {
        panicked(self.describe(), e)
    }
}

/// Runs `f` (opening a store: there is none yet to call on) off the async
/// threads; `place` names what it opens, for the error of a panic.
#[allow(
    clippy::disallowed_methods,
    reason = "the one offload of opening a store"
)]
pub async fn open_off<T: Send + 'static>(
    place: String,
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| panicked(place, e))?
}

fn panicked(place: String, e: JoinError) -> StoreError {
    let detail = match e.try_into_panic() {
        Ok(payload) => panic_message(payload.as_ref()),
        Err(_) => "it was cancelled: the process is shutting down".to_owned(),
    };
    StoreError::Panicked { place, detail }
}

/// A panic's message, when it has one.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Arc<Store>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("store");
        (dir, Arc::new(store))
    }

    #[tokio::test]
    async fn a_call_runs_off_the_async_threads_and_hands_back_its_result() {
        let (_dir, store) = store();
        // The test's runtime has one thread: work off it is on another.
        let here = std::thread::current().id();
        let (place, there) = store
            .call(|s| Ok((s.describe(), std::thread::current().id())))
            .await
            .expect("called");
        assert_eq!(place, store.describe());
        assert_ne!(there, here, "the work ran on the async thread");
        let e = store
            .call(|s| {
                Err::<(), _>(StoreError::ReadOnly {
                    path: s.path().to_path_buf(),
                })
            })
            .await;
        assert!(matches!(e, Err(StoreError::ReadOnly { .. })), "{e:?}");
    }

    #[tokio::test]
    async fn a_panic_in_store_work_is_one_error_naming_the_store() {
        let (_dir, store) = store();
        let e = store
            .call_any(|_| -> () { panic!("boom in the store") })
            .await
            .expect_err("the panic is an error");
        let StoreError::Panicked { place, detail } = &e else {
            panic!("not Panicked: {e:?}");
        };
        assert_eq!(place, &store.describe());
        assert_eq!(detail, "boom in the store");
        assert!(e.to_string().contains(&store.describe()), "{e}");
        let guarded = store.guard(|_| -> () { panic!("{}", String::from("owned")) });
        assert!(
            matches!(&guarded, Err(StoreError::Panicked { detail, .. }) if detail == "owned"),
            "{guarded:?}"
        );
        let opened = open_off("somewhere".into(), || -> Result<(), StoreError> {
            panic!("x")
        })
        .await;
        assert!(
            matches!(&opened, Err(StoreError::Panicked { place, .. }) if place == "somewhere"),
            "{opened:?}"
        );
    }
}
