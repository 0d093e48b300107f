//! The PostgreSQL backend: crawld's keyspace kept in a database, through a
//! pool of tokio-postgres connections.
//!
//! The store above calls in from any thread (the daemon's store thread, a
//! run's writer, a command's main thread, sometimes an async worker), so
//! the database work runs on this backend's own small runtime and each call
//! waits for its answer: no caller needs a runtime, and none can block the
//! runtime that drives the connections.
//!
//! The schema is versioned: a process that writes applies the migrations it
//! knows at start-up (refinery), and refuses a database whose schema is
//! newer than it, before writing anything; a command that only reads uses
//! read-only sessions and refuses a schema that is not its own.

mod claims;
mod cluster;
mod errors;
mod heartbeat;
mod hosts;
mod keys;
mod scan;
mod schema;
mod shared;
mod sql;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;

use super::keyspace::{Batch, Record, Val};
use super::StoreError;
pub use claims::Claim;
pub use cluster::{Fence, LeaseStep, Node, DEFAULT_LEASE};
use errors::{database_error, describe, detail};
pub use hosts::HostRound;
use keys::Part;
pub use scan::Scan;
pub use shared::{fingerprint, SharedStep};
use sql::equalities;

/// Idle time before a connection's first keepalive probe.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);

/// One try of an operation gives up after this, as if the connection was
/// lost (and is tried again): a statement of crawld's takes milliseconds,
/// so this only ends a wait on a connection that went silent.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a node that stops waits for the database to take its leave.
const LEAVE_WAIT: Duration = Duration::from_secs(2);

/// Connections kept open at most.
const POOL_SIZE: usize = 8;

/// How long a call waits for a connection, and a new connection for the
/// server, before it fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an operation goes on retrying while the database is
/// unreachable, before it fails (a run then ends interrupted, and resumes
/// at its next start).
const RETRY_FOR: Duration = Duration::from_secs(300);
/// The first wait before a retry, doubled after each up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The records of one database.
pub struct Tables {
    pool: Pool,
    /// The database's address without its password, for messages.
    place: String,
    /// Runs the connections; shut down (without waiting) on drop.
    runtime: Option<tokio::runtime::Runtime>,
    /// The connection settings, for the migration's own session.
    config: tokio_postgres::Config,
    /// This process as a node of the cluster (a writer only).
    node: Option<Arc<Node>>,
}

impl Drop for Tables {
    fn drop(&mut self) {
        // `shutdown_background`, not a drop: the store may be dropped on an
        // async thread, where waiting for a runtime is refused.
        if let Some(rt) = self.runtime.take() {
            // A node that stops leaves the cluster, if the database answers
            // at once; otherwise it is listed as gone when its heartbeat
            // expires.
            if let Some(node) = &self.node {
                let (pool, place, id) = (self.pool.clone(), self.place.clone(), node.id.clone());
                let (tx, rx) = std::sync::mpsc::sync_channel(1);
                rt.spawn(async move {
                    if let Ok(client) = Self::client(&pool, &place, "connecting to").await {
                        // Its hosts are free for the others at once.
                        let _ = client
                            .execute(
                                "UPDATE crawld.host_leases SET node = '', expires = now() \
                                 WHERE node = $1",
                                &[&id],
                            )
                            .await;
                        let _ = client
                            .execute("DELETE FROM crawld.members WHERE node = $1", &[&id])
                            .await;
                    }
                    let _ = tx.send(());
                });
                let _ = rx.recv_timeout(LEAVE_WAIT);
            }
            rt.shutdown_background();
        }
    }
}

impl Tables {
    /// Connects to the database at `url`: a writer migrates the schema and
    /// joins the cluster as a node whose leases last `lease`; a reader
    /// (`lease` is `None`) checks the schema is this release's and writes
    /// nothing.
    pub fn connect(url: &str, lease: Option<Duration>) -> Result<Tables, StoreError> {
        let reading = lease.is_none();
        let mut config: tokio_postgres::Config =
            url.parse()
                .map_err(|e: tokio_postgres::Error| StoreError::DatabaseUrl {
                    detail: format!(
                        "{}. Give one like postgres://crawld@db.internal/crawld",
                        detail(&e)
                    ),
                })?;
        let at_in_host = config.get_hosts().iter().any(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.contains('@'),
            tokio_postgres::config::Host::Unix(_) => false,
        });
        if at_in_host {
            // A password with an unencoded `@` ends early: what follows
            // would be taken for the host (and shown in messages).
            return Err(StoreError::DatabaseUrl {
                detail: "the host part holds an '@': percent-encode an '@' in the user or \
                         password as %40"
                    .into(),
            });
        }
        let place = describe(&config);
        if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            return Err(StoreError::DatabaseUrl {
                detail: format!(
                    "{place} asks for sslmode=require, and this crawld does not speak TLS to \
                     PostgreSQL yet (nothing was sent): use a Unix socket, a private network or a \
                     tunnel, and leave sslmode out"
                ),
            });
        }
        // `prefer`, the default, would try TLS first: without TLS, say so
        // to the server at once.
        config.ssl_mode(tokio_postgres::config::SslMode::Disable);
        config.application_name("crawld");
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if reading {
            // Added to the URL's own `options`, if it has some.
            let options = match config.get_options() {
                Some(theirs) => format!("{theirs} -c default_transaction_read_only=on"),
                None => "-c default_transaction_read_only=on".to_owned(),
            };
            config.options(&options);
        }
        // A connection cut without a word (a network partition) is noticed
        // within a minute, not after the system's two hours of keepalive.
        config.keepalives(true);
        config.keepalives_idle(KEEPALIVE_IDLE);
        config.tcp_user_timeout(KEEPALIVE_IDLE * 2);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("crawld-postgres")
            .enable_all()
            .build()
            .map_err(|source| StoreError::Io {
                what: "cannot start the database connections' threads for",
                path: place.clone().into(),
                source,
            })?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::DatabaseUrl {
                detail: e.to_string(),
            })?;
        let mut tables = Tables {
            pool,
            place,
            runtime: Some(runtime),
            config,
            node: None,
        };
        match lease {
            None => tables.check_schema()?,
            Some(lease) => {
                tables.migrate()?;
                tables.join(Node::new(lease))?;
            }
        }
        Ok(tables)
    }

    /// The database's address without its password.
    pub fn describe(&self) -> String {
        self.place.clone()
    }

    /// Runs `fut` on the backend's runtime and waits for its answer.
    fn block<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let gone = || StoreError::Database {
            place: self.place.clone(),
            doing: "using",
            detail: "the connection's task stopped".into(),
        };
        let Some(rt) = &self.runtime else {
            return Err(gone());
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        // A panic inside the task drops `tx`: an error, not a crash.
        rx.recv().unwrap_or_else(|_| Err(gone()))
    }

    fn failed(
        &self,
        doing: &'static str,
    ) -> impl Fn(tokio_postgres::Error) -> StoreError + Send + Sync + 'static {
        let place = self.place.clone();
        move |e| database_error(&place, doing, &e)
    }

    async fn client(
        pool: &Pool,
        place: &str,
        doing: &'static str,
    ) -> Result<deadpool_postgres::Object, StoreError> {
        pool.get().await.map_err(|e| match &e {
            deadpool_postgres::PoolError::Backend(e) => database_error(place, doing, e),
            // No connection came free, or none could be made, in time.
            deadpool_postgres::PoolError::Timeout(_) => StoreError::DatabaseLost {
                place: place.to_owned(),
                doing,
                detail: e.to_string(),
            },
            e => StoreError::Database {
                place: place.to_owned(),
                doing,
                detail: e.to_string(),
            },
        })
    }

    /// Runs the database work `op` makes, again and again while the
    /// connection is lost (a server restarting, a network cut), with a
    /// backoff, for up to [`RETRY_FOR`]: the caller waits, keeps what it
    /// holds, and goes on when the database is back. A batch is safe to
    /// repeat: it writes whole records, so applying it twice (when the
    /// connection broke after the server committed it) leaves the same rows.
    /// A read-modify-write repeated after such a break applies its change
    /// twice: its one user, the run id counter, then skips an id, which is
    /// harmless (ids need only be unique and increasing).
    fn retrying<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(Pool, String) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send,
    {
        let (pool, place) = (self.pool.clone(), self.place.clone());
        self.block(async move {
            let started = tokio::time::Instant::now();
            let mut wait = RETRY_FIRST;
            let mut lost = false;
            loop {
                let attempt = tokio::time::timeout(ATTEMPT_TIMEOUT, op(pool.clone(), place.clone()));
                let done = attempt.await.unwrap_or_else(|_| {
                    Err(StoreError::DatabaseLost {
                        place: place.clone(),
                        doing: "waiting for",
                        detail: format!("no answer in {} s", ATTEMPT_TIMEOUT.as_secs()),
                    })
                });
                match done {
                    Err(e @ StoreError::DatabaseLost { .. }) if started.elapsed() < RETRY_FOR => {
                        if !lost {
                            tracing::warn!(error = %e, "Lost the database; retrying until it is back.");
                            lost = true;
                        }
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(RETRY_MAX);
                    }
                    done => {
                        if lost && done.is_ok() {
                            tracing::info!(database = %place, "The database is back.");
                        }
                        return done;
                    }
                }
            }
        })
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let failed = Arc::new(self.failed("reading"));
        let Some(&letter) = key.first() else {
            return Ok(None);
        };
        match keys::table(letter) {
            Some(table) => {
                let Some(parts) = table.parse_key(key) else {
                    return Ok(None);
                };
                let sql = format!(
                    "SELECT record::text FROM {} WHERE {}",
                    table.name,
                    equalities(table, parts.len(), 1)
                );
                let (sql, parts) = (Arc::new(sql), Arc::new(parts));
                self.retrying(move |pool, place| {
                    let (sql, parts, failed) = (sql.clone(), parts.clone(), failed.clone());
                    async move {
                        let client = Self::client(&pool, &place, "connecting to").await?;
                        let params: Vec<&(dyn ToSql + Sync)> =
                            parts.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                        let statement = client.prepare_cached(&sql).await.map_err(&*failed)?;
                        let row = client
                            .query_opt(&statement, &params)
                            .await
                            .map_err(&*failed)?;
                        Ok(row.map(|r| r.get::<_, String>(0).into_bytes()))
                    }
                })
            }
            None => {
                let key = Arc::new(key.to_vec());
                self.retrying(move |pool, place| {
                    let (key, failed) = (key.clone(), failed.clone());
                    async move {
                        let client = Self::client(&pool, &place, "connecting to").await?;
                        let row = client
                            .query_opt("SELECT value FROM crawld.state WHERE key = $1", &[&*key])
                            .await
                            .map_err(&*failed)?;
                        Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
                    }
                })
            }
        }
    }

    /// The records at `keys`, in their order, with one query per table
    /// they belong to (`unnest … WITH ORDINALITY` joined to the table).
    pub fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let mut found: Vec<Option<Vec<u8>>> = vec![None; keys.len()];
        // Per table, the keys' parts and their positions in `keys`.
        let mut by_table: Vec<(Vec<Vec<Part>>, Vec<i64>)> =
            keys::TABLES.iter().map(|_| Default::default()).collect();
        let mut state: (Vec<Vec<u8>>, Vec<i64>) = Default::default();
        for (i, key) in keys.iter().enumerate() {
            let at = key
                .first()
                .and_then(|&l| keys::TABLES.iter().position(|t| t.letter == l));
            match at {
                Some(at) => {
                    // A key no table can hold has no record.
                    if let Some(parts) = keys::TABLES[at].parse_key(key) {
                        by_table[at].0.push(parts);
                        by_table[at].1.push(i as i64);
                    }
                }
                None => {
                    state.0.push(key.clone());
                    state.1.push(i as i64);
                }
            }
        }
        for (table, (rows, at)) in keys::TABLES.iter().zip(by_table) {
            if rows.is_empty() {
                continue;
            }
            let mut params = sql::columns(table, rows);
            params.push(Box::new(at));
            let rows = self.query_shared(sql::get_many_sql(table), params)?;
            for (i, record) in rows {
                found[i] = Some(record);
            }
        }
        if !state.0.is_empty() {
            let params: Vec<Box<dyn ToSql + Sync + Send>> =
                vec![Box::new(state.0), Box::new(state.1)];
            let sql = "SELECT u.at, s.value FROM unnest($1::bytea[], $2::bigint[]) AS u(key, at) \
                       JOIN crawld.state s ON s.key = u.key"
                .to_owned();
            for (i, value) in self.query_shared(sql, params)? {
                found[i] = Some(value);
            }
        }
        Ok(found)
    }

    /// Runs a query whose rows are (position, bytes) and returns them.
    fn query_shared(
        &self,
        sql: String,
        params: Vec<Box<dyn ToSql + Sync + Send>>,
    ) -> Result<Vec<(usize, Vec<u8>)>, StoreError> {
        let failed = Arc::new(self.failed("reading"));
        let (sql, params) = (Arc::new(sql), Arc::new(params));
        self.retrying(move |pool, place| {
            let (sql, params, failed) = (sql.clone(), params.clone(), failed.clone());
            async move {
                let client = Self::client(&pool, &place, "connecting to").await?;
                let refs: Vec<&(dyn ToSql + Sync)> = params
                    .iter()
                    .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                    .collect();
                let statement = client.prepare_cached(&sql).await.map_err(&*failed)?;
                let rows = client.query(&statement, &refs).await.map_err(&*failed)?;
                rows.iter()
                    .map(|r| {
                        let at: i64 = r.try_get(0).map_err(&*failed)?;
                        // A table's record is JSON text; a state value bytes.
                        let value = match r.try_get::<_, String>(1) {
                            Ok(text) => text.into_bytes(),
                            Err(_) => r.try_get::<_, Vec<u8>>(1).map_err(&*failed)?,
                        };
                        Ok((at as usize, value))
                    })
                    .collect()
            }
        })
    }

    /// Applies a batch in one transaction: per table, one statement for its
    /// upserts and one for its deletions.
    pub fn apply_batch(&self, mut batch: Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let fence = Arc::new(batch.fence.take());
        let shared = Arc::new(batch.shared.take());
        let node = self.node.clone();
        let statements = Arc::new(self.statements(batch)?);
        let failed = Arc::new(self.failed("writing to"));
        self.retrying(move |pool, place| {
            let (statements, failed, fence) = (statements.clone(), failed.clone(), fence.clone());
            let (shared, node) = (shared.clone(), node.clone());
            async move {
                let mut client = Self::client(&pool, &place, "connecting to").await?;
                let tx = client.transaction().await.map_err(&*failed)?;
                if let Some(fence) = fence.as_ref() {
                    fence.check(&tx, &place, &*failed).await?;
                }
                if let Some(step) = shared.as_ref() {
                    step.check(&tx, &place, &*failed).await?;
                }
                for (sql, params) in statements.iter() {
                    let params: Vec<&(dyn ToSql + Sync)> = params
                        .iter()
                        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                        .collect();
                    // Prepared once per connection: a commit is then one
                    // round trip per statement, not two.
                    let statement = tx.prepare_cached(sql).await.map_err(&*failed)?;
                    tx.execute(&statement, &params).await.map_err(&*failed)?;
                }
                if let (Some(step), Some(node)) = (shared.as_ref(), node.as_ref()) {
                    step.apply(&tx, node, &*failed).await?;
                }
                if let Some(fence) = fence.as_ref() {
                    fence.step(&tx, &*failed).await?;
                }
                tx.commit().await.map_err(&*failed)?;
                Ok(())
            }
        })
    }

    /// Replaces one `crawld.state` record with what `f` makes of it, under a
    /// transaction-scoped advisory lock on the key, so that two processes
    /// never both read the same old value.
    pub fn update_and_fetch(
        &self,
        key: &[u8],
        f: impl FnMut(Option<&[u8]>) -> Option<Vec<u8>> + Send + 'static,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        if key.first().is_some_and(|&l| keys::table(l).is_some()) {
            return Err(StoreError::Corrupt {
                path: self.place.clone().into(),
                key: String::from_utf8_lossy(key).replace('\0', "/"),
                detail: "a record of a table updated in place".into(),
            });
        }
        let failed = Arc::new(self.failed("writing to"));
        let key = Arc::new(key.to_vec());
        let lock = xxhash_rust::xxh3::xxh3_64(&key) as i64;
        // Called again on a retry, with what the database holds then.
        let f = Arc::new(std::sync::Mutex::new(f));
        self.retrying(move |pool, place| {
            let (key, failed, f) = (key.clone(), failed.clone(), f.clone());
            async move {
                let mut client = Self::client(&pool, &place, "connecting to").await?;
                let tx = client.transaction().await.map_err(&*failed)?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock])
                    .await
                    .map_err(&*failed)?;
                let old = tx
                    .query_opt("SELECT value FROM crawld.state WHERE key = $1", &[&*key])
                    .await
                    .map_err(&*failed)?
                    .map(|r| r.get::<_, Vec<u8>>(0));
                let new = {
                    let mut f = f.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    (*f)(old.as_deref())
                };
                match &new {
                    Some(v) => tx
                        .execute(
                            "INSERT INTO crawld.state (key, value) VALUES ($1, $2) \
                             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                            &[&*key, v],
                        )
                        .await
                        .map_err(&*failed)?,
                    None => tx
                        .execute("DELETE FROM crawld.state WHERE key = $1", &[&*key])
                        .await
                        .map_err(&*failed)?,
                };
                tx.commit().await.map_err(&*failed)?;
                Ok(new)
            }
        })
    }
}
