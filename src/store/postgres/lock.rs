//! The writer's lock: one process writes to a database at a time, and it
//! checks in every write transaction that it still holds the lock.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::NoTls;

use super::errors::database_error;
use super::StoreError;

/// The advisory lock a writing process holds for as long as it is
/// connected: one writer per database until cluster mode shares it.
const WRITER_LOCK: i64 = 0x6372_6177_6c64; // "crawld"

/// A writer's hold on [`WRITER_LOCK`]: the session that holds it, taken
/// again before a write when the database lost it (a server restart, a cut
/// connection), so that a writer never writes without the lock: if another
/// process took it meanwhile, the write fails with
/// [`StoreError::DatabaseLocked`] instead.
#[derive(Clone)]
pub(super) struct Writer {
    /// The session holding the lock, and its server process id.
    pub(super) session: Arc<tokio::sync::Mutex<Option<(tokio_postgres::Client, i32)>>>,
    pub(super) config: tokio_postgres::Config,
}

/// Whether the server process `$1` holds [`WRITER_LOCK`] (`$2`): the
/// first statement of every write transaction, so that a writer whose
/// lock session the server ended (and whose client has not noticed yet)
/// does not write.
const STILL_HELD: &str = "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
     AND granted AND pid = $1 AND ((classid::bigint << 32) | objid::bigint) = $2)";

impl Writer {
    /// Makes sure the lock is held, waiting up to `wait` for a process
    /// that just ended to lose it; returns the holding session's server
    /// process id.
    pub(super) async fn hold(&self, place: &str, wait: Duration) -> Result<i32, StoreError> {
        let mut session = self.session.lock().await;
        if let Some((_, pid)) = session.as_ref().filter(|(c, _)| !c.is_closed()) {
            return Ok(*pid);
        }
        *session = None;
        let failed = |e: tokio_postgres::Error| database_error(place, "connecting to", &e);
        let (client, connection) = self.config.connect(NoTls).await.map_err(failed)?;
        tokio::spawn(async move {
            // Ends when the client is dropped (the lock goes with it).
            let _ = connection.await;
        });
        // The server releases a dead process's lock when it notices its
        // connection closed, a moment after the process died: a writer
        // started right after a crash waits that moment out.
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let row = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&WRITER_LOCK])
                .await
                .map_err(failed)?;
            if row.get::<_, bool>(0) {
                let pid = client
                    .query_one("SELECT pg_backend_pid()", &[])
                    .await
                    .map_err(failed)?
                    .get::<_, i32>(0);
                *session = Some((client, pid));
                return Ok(pid);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StoreError::DatabaseLocked {
                    place: place.to_owned(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Writer {
    /// Checks, inside a write transaction, that the lock is still held;
    /// when it is not, the session is dropped (the next try takes the lock
    /// again, or finds another process holds it) and the write is retried.
    pub(super) async fn check(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        pid: i32,
        place: &str,
        failed: &(impl Fn(tokio_postgres::Error) -> StoreError + Sync),
    ) -> Result<(), StoreError> {
        let held: bool = tx
            .query_one(STILL_HELD, &[&pid, &WRITER_LOCK])
            .await
            .map_err(failed)?
            .get(0);
        if held {
            return Ok(());
        }
        *self.session.lock().await = None;
        Err(StoreError::DatabaseLost {
            place: place.to_owned(),
            doing: "writing to",
            detail: "this process's writer lock was released by the server".into(),
        })
    }
}

impl Writer {
    /// [`Writer::hold`] for a process that writes (`Some`), nothing for a
    /// reader: the first step of every write.
    pub(super) async fn hold_if(
        writer: &Option<Writer>,
        place: &str,
        wait: Duration,
    ) -> Result<Option<i32>, StoreError> {
        match writer {
            Some(w) => Ok(Some(w.hold(place, wait).await?)),
            None => Ok(None),
        }
    }

    /// [`Writer::check`] inside a write's transaction, when a lock is held.
    pub(super) async fn check_if(
        writer: &Option<Writer>,
        held: Option<i32>,
        tx: &deadpool_postgres::Transaction<'_>,
        place: &str,
        failed: &(impl Fn(tokio_postgres::Error) -> StoreError + Sync),
    ) -> Result<(), StoreError> {
        match (writer, held) {
            (Some(w), Some(pid)) => w.check(tx, pid, place, failed).await,
            _ => Ok(()),
        }
    }
}
