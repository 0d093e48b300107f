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

mod keys;

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use indexmap::IndexMap;
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;

use super::keyspace::{Batch, Record, Val};
use super::StoreError;
use keys::{Col, Column, Part, Table};

/// The schema versions this release knows, oldest first.
const MIGRATIONS: [(&str, &str); 1] = [("V1__records", include_str!("migrations/V1__records.sql"))];

/// The schema version this release writes.
const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// refinery's record of the versions applied, inside crawld's schema.
const HISTORY: &str = "crawld.schema_history";

/// The advisory lock a writing process holds for as long as it is
/// connected: one writer per database until cluster mode shares it.
const WRITER_LOCK: i64 = 0x6372_6177_6c64; // "crawld"

/// How long a writer waits for the lock of a process that just ended.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Rows read per round trip by a scan.
const PAGE: i64 = 1000;

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
    /// The session that holds [`WRITER_LOCK`] (a writer only).
    _writer: Option<tokio_postgres::Client>,
}

impl Drop for Tables {
    fn drop(&mut self) {
        // `shutdown_background`, not a drop: the store may be dropped on an
        // async thread, where waiting for a runtime is refused.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// A database error, with the server's own words when it sent some.
fn detail(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
    }
}

/// A database error as the store reports it: [`StoreError::DatabaseLost`]
/// when the connection, not the request, failed (the server went away, is
/// restarting or refuses connections for now), which is worth a retry.
fn database_error(place: &str, doing: &'static str, e: &tokio_postgres::Error) -> StoreError {
    let lost = match e.code() {
        // Connection exceptions, the server shutting down or starting up,
        // too many connections, and "not accepting connections" (a database
        // closed to connections for maintenance).
        Some(code) => {
            let code = code.code();
            code.starts_with("08")
                || matches!(code, "57P01" | "57P02" | "57P03" | "53300" | "55000")
                    && e.as_db_error()
                        .is_none_or(|db| code != "55000" || db.message().contains("connections"))
        }
        None => {
            e.is_closed() || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
        }
    };
    let (place, detail) = (place.to_owned(), detail(e));
    if lost {
        StoreError::DatabaseLost {
            place,
            doing,
            detail,
        }
    } else {
        StoreError::Database {
            place,
            doing,
            detail,
        }
    }
}

/// `postgres://user@host:port/db`: the address without its password.
fn describe(config: &tokio_postgres::Config) -> String {
    let user = config.get_user().unwrap_or("");
    let host = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect::<Vec<_>>()
        .join(",");
    let port = config
        .get_ports()
        .first()
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    let db = config.get_dbname().unwrap_or(user);
    let at = if user.is_empty() {
        String::new()
    } else {
        format!("{user}@")
    };
    format!("postgres://{at}{host}{port}/{db}")
}

impl Tables {
    /// Connects to the database at `url`: a writer takes the writer's lock
    /// and migrates the schema; a reader checks the schema is this
    /// release's and writes nothing.
    pub fn connect(url: &str, reading: bool) -> Result<Tables, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| StoreError::DatabaseUrl { detail: detail(&e) })?;
        let place = describe(&config);
        config.application_name("crawld");
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if reading {
            config.options("-c default_transaction_read_only=on");
        }
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
            _writer: None,
        };
        if reading {
            tables.check_schema()?;
        } else {
            tables._writer = Some(tables.take_writer_lock(config)?);
            tables.migrate()?;
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
    /// holds, and goes on when the database is back. Every operation is safe
    /// to repeat: a batch writes whole records, so applying it twice (when
    /// the connection broke after the server committed it) leaves the same
    /// rows.
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
                match op(pool.clone(), place.clone()).await {
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

    fn take_writer_lock(
        &self,
        config: tokio_postgres::Config,
    ) -> Result<tokio_postgres::Client, StoreError> {
        let failed = self.failed("connecting to");
        let place = self.place.clone();
        self.block(async move {
            let (client, connection) = config.connect(NoTls).await.map_err(&failed)?;
            tokio::spawn(async move {
                // Ends when the client is dropped (the lock goes with it).
                let _ = connection.await;
            });
            // The server releases a dead process's lock when it notices its
            // connection closed, a moment after the process died: a writer
            // started right after a crash waits that moment out.
            let deadline = tokio::time::Instant::now() + LOCK_WAIT;
            loop {
                let row = client
                    .query_one("SELECT pg_try_advisory_lock($1)", &[&WRITER_LOCK])
                    .await
                    .map_err(&failed)?;
                if row.get::<_, bool>(0) {
                    return Ok(client);
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(StoreError::DatabaseLocked { place });
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }

    /// The newest schema version applied, `None` without crawld's schema.
    async fn applied_version(
        client: &tokio_postgres::Client,
    ) -> Result<Option<i64>, tokio_postgres::Error> {
        let exists = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&HISTORY])
            .await?
            .get::<_, bool>(0);
        if !exists {
            return Ok(None);
        }
        let row = client
            .query_one(&format!("SELECT max(version)::bigint FROM {HISTORY}"), &[])
            .await?;
        Ok(row.get::<_, Option<i64>>(0))
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        let (pool, place) = (self.pool.clone(), self.place.clone());
        let failed = self.failed("reading");
        self.block(async move {
            let client = Self::client(&pool, &place, "connecting to").await?;
            let found = Self::applied_version(&client).await.map_err(&failed)?;
            if found == Some(SCHEMA_VERSION) {
                Ok(())
            } else {
                Err(StoreError::DatabaseSchema {
                    place,
                    found,
                    known: SCHEMA_VERSION,
                })
            }
        })
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let (pool, place) = (self.pool.clone(), self.place.clone());
        let failed = self.failed("migrating");
        self.block(async move {
            let mut client = Self::client(&pool, &place, "connecting to").await?;
            if let Some(found) = Self::applied_version(&client).await.map_err(&failed)? {
                if found > SCHEMA_VERSION {
                    return Err(StoreError::DatabaseNewer {
                        place,
                        found,
                        known: SCHEMA_VERSION,
                    });
                }
            }
            let has_schema = client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'crawld')",
                    &[],
                )
                .await
                .map_err(&failed)?
                .get::<_, bool>(0);
            if !has_schema {
                client
                    .batch_execute("CREATE SCHEMA crawld")
                    .await
                    .map_err(&failed)?;
            }
            let migrations = MIGRATIONS
                .iter()
                .map(|(name, sql)| refinery::Migration::unapplied(name, sql))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StoreError::Database {
                    place: place.clone(),
                    doing: "migrating",
                    detail: e.to_string(),
                })?;
            let mut runner = refinery::Runner::new(&migrations).set_abort_missing(true);
            runner.set_migration_table_name(HISTORY);
            let client: &mut tokio_postgres::Client = &mut client;
            runner
                .run_async(client)
                .await
                .map_err(|e| StoreError::Database {
                    place,
                    doing: "migrating",
                    detail: e.to_string(),
                })?;
            Ok(())
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
                        let row = client
                            .query_opt(sql.as_str(), &params)
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

    /// Applies a batch in one transaction: per table, one statement for its
    /// upserts and one for its deletions.
    pub fn apply_batch(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let statements = Arc::new(self.statements(batch)?);
        let failed = Arc::new(self.failed("writing to"));
        self.retrying(move |pool, place| {
            let (statements, failed) = (statements.clone(), failed.clone());
            async move {
                let mut client = Self::client(&pool, &place, "connecting to").await?;
                let tx = client.transaction().await.map_err(&*failed)?;
                for (sql, params) in statements.iter() {
                    let params: Vec<&(dyn ToSql + Sync)> = params
                        .iter()
                        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                        .collect();
                    tx.execute(sql.as_str(), &params).await.map_err(&*failed)?;
                }
                tx.commit().await.map_err(&*failed)?;
                Ok(())
            }
        })
    }

    /// The statements that apply a batch: the last write of a key wins.
    fn statements(&self, batch: Batch) -> Result<Vec<Statement>, StoreError> {
        let mut writes: IndexMap<Vec<u8>, Option<Vec<u8>>> = IndexMap::new();
        for (key, value) in batch.ops {
            writes.insert(key, value);
        }
        let mut tables: Vec<TableWrites> =
            keys::TABLES.iter().map(|_| Default::default()).collect();
        let (mut state_keys, mut state_values, mut state_gone) = (vec![], vec![], vec![]);
        for (key, value) in writes {
            let at = key
                .first()
                .and_then(|&l| keys::TABLES.iter().position(|t| t.letter == l));
            let Some(at) = at else {
                match value {
                    Some(v) => {
                        state_keys.push(key);
                        state_values.push(v);
                    }
                    None => state_gone.push(key),
                }
                continue;
            };
            let table = &keys::TABLES[at];
            let parts = table.parse_key(&key).ok_or_else(|| StoreError::Corrupt {
                path: self.place.clone().into(),
                key: String::from_utf8_lossy(&key).replace('\0', "/"),
                detail: format!("a key that {} cannot hold", table.name),
            })?;
            let (upserts, records, deletions) = &mut tables[at];
            match value {
                Some(v) => {
                    let record = String::from_utf8(v).map_err(|e| StoreError::Corrupt {
                        path: self.place.clone().into(),
                        key: String::from_utf8_lossy(&key).replace('\0', "/"),
                        detail: format!("a record that is not UTF-8 JSON: {e}"),
                    })?;
                    upserts.push(parts);
                    records.push(record);
                }
                None => deletions.push(parts),
            }
        }
        let mut out: Vec<Statement> = Vec::new();
        for (table, (upserts, records, deletions)) in keys::TABLES.iter().zip(tables) {
            if !deletions.is_empty() {
                out.push((delete_sql(table), columns(table, deletions)));
            }
            if !upserts.is_empty() {
                let mut params = columns(table, upserts);
                params.push(Box::new(Column::Text(records)));
                out.push((upsert_sql(table), params));
            }
        }
        if !state_gone.is_empty() {
            out.push((
                "DELETE FROM crawld.state WHERE key = ANY($1::bytea[])".into(),
                vec![Box::new(state_gone)],
            ));
        }
        if !state_keys.is_empty() {
            out.push((
                "INSERT INTO crawld.state (key, value) \
                 SELECT * FROM unnest($1::bytea[], $2::bytea[]) \
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
                    .into(),
                vec![Box::new(state_keys), Box::new(state_values)],
            ));
        }
        Ok(out)
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

    /// Every record whose key starts with `prefix` (every record for an
    /// empty one), in key order, read a page at a time.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Scan<'_> {
        let sources = match prefix.first() {
            None => {
                // Everything: the tables in letter order, with the state
                // records that sort between them.
                let mut sources = Vec::new();
                let mut from = Vec::new();
                for table in &keys::TABLES {
                    sources.push(Source::State {
                        from: from.clone(),
                        to: Some(vec![table.letter]),
                    });
                    sources.push(Source::Table {
                        table,
                        fixed: Vec::new(),
                    });
                    from = vec![table.letter + 1];
                }
                sources.push(Source::State { from, to: None });
                sources
            }
            Some(&letter) => match keys::table(letter) {
                Some(table) => vec![Source::Table {
                    table,
                    fixed: table.parse_prefix(prefix),
                }],
                None => vec![Source::State {
                    from: prefix.to_vec(),
                    to: keys::successor(prefix),
                }],
            },
        };
        Scan {
            tables: self,
            prefix: prefix.to_vec(),
            sources: sources.into(),
            cursor: None,
            rows: VecDeque::new(),
            ended: false,
        }
    }

    /// One page of a source, after `cursor` (the last key read of it).
    fn page(&self, source: &Source, cursor: Option<&Cursor>) -> Result<Vec<Record>, StoreError> {
        let failed = Arc::new(self.failed("reading"));
        match source {
            Source::Table { table, fixed } => {
                let table: &'static Table = table;
                let free = &table.cols[fixed.len()..];
                let mut sql = format!(
                    "SELECT {}, record::text FROM {} WHERE TRUE",
                    table.col_list(),
                    table.name
                );
                if !fixed.is_empty() {
                    sql.push_str(" AND ");
                    sql.push_str(&equalities(table, fixed.len(), 1));
                }
                let mut params: Vec<Part> = fixed.clone();
                if let Some(Cursor::Parts(last)) = cursor {
                    let n = params.len();
                    let names: Vec<&str> = free.iter().map(|(c, _)| *c).collect();
                    let values: Vec<String> = free
                        .iter()
                        .enumerate()
                        .map(|(i, (_, col))| format!("${}::{}", n + i + 1, keys::sql_type(*col)))
                        .collect();
                    sql.push_str(&format!(
                        " AND ({}) > ({})",
                        names.join(", "),
                        values.join(", ")
                    ));
                    params.extend(last[fixed.len()..].iter().cloned());
                }
                sql.push_str(&format!(" ORDER BY {} LIMIT {PAGE}", table.col_list()));
                let (sql, params) = (Arc::new(sql), Arc::new(params));
                let rows = self.retrying(move |pool, place| {
                    let (sql, params, failed) = (sql.clone(), params.clone(), failed.clone());
                    async move {
                        let client = Self::client(&pool, &place, "connecting to").await?;
                        let refs: Vec<&(dyn ToSql + Sync)> =
                            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                        client.query(sql.as_str(), &refs).await.map_err(&*failed)
                    }
                })?;
                Ok(rows
                    .iter()
                    .map(|row| {
                        let parts: Vec<Part> = table
                            .cols
                            .iter()
                            .enumerate()
                            .map(|(i, (_, col))| match col {
                                Col::Text => Part::Text(row.get(i)),
                                Col::Id => Part::Id(row.get(i)),
                            })
                            .collect();
                        let record: String = row.get(table.cols.len());
                        (
                            Val::Owned(table.key(&parts)),
                            Val::Owned(record.into_bytes()),
                        )
                    })
                    .collect())
            }
            Source::State { from, to } => {
                let after = match cursor {
                    Some(Cursor::Key(k)) => Some(k.clone()),
                    _ => None,
                };
                let range = Arc::new((from.clone(), to.clone(), after));
                let rows = self.retrying(move |pool, place| {
                    let (range, failed) = (range.clone(), failed.clone());
                    async move {
                        let client = Self::client(&pool, &place, "connecting to").await?;
                        let (from, to, after) = &*range;
                        client
                            .query(
                                &format!(
                                    "SELECT key, value FROM crawld.state \
                                     WHERE key >= $1 AND ($2::bytea IS NULL OR key < $2) \
                                     AND ($3::bytea IS NULL OR key > $3) \
                                     ORDER BY key LIMIT {PAGE}"
                                ),
                                &[from, to, after],
                            )
                            .await
                            .map_err(&*failed)
                    }
                })?;
                Ok(rows
                    .iter()
                    .map(|r| {
                        (
                            Val::Owned(r.get::<_, Vec<u8>>(0)),
                            Val::Owned(r.get::<_, Vec<u8>>(1)),
                        )
                    })
                    .collect())
            }
        }
    }
}

/// A batch's writes to one table: the keys of its upserts, their records,
/// and the keys it deletes.
type TableWrites = (Vec<Vec<Part>>, Vec<String>, Vec<Vec<Part>>);

/// A statement and its parameters.
type Statement = (String, Vec<Box<dyn ToSql + Sync + Send>>);

/// `c1 = $k::t AND c2 = $k+1::t …` for a table's first `n` columns.
fn equalities(table: &Table, n: usize, first: usize) -> String {
    table.cols[..n]
        .iter()
        .enumerate()
        .map(|(i, (c, col))| format!("{c} = ${}::{}", first + i, keys::sql_type(*col)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// One array per key column, for `unnest`.
fn columns(table: &Table, rows: Vec<Vec<Part>>) -> Vec<Box<dyn ToSql + Sync + Send>> {
    let mut cols: Vec<Column> = table
        .cols
        .iter()
        .map(|(_, col)| Column::new(*col, rows.len()))
        .collect();
    for row in rows {
        for (col, part) in cols.iter_mut().zip(row) {
            col.push(part);
        }
    }
    cols.into_iter()
        .map(|c| Box::new(c) as Box<dyn ToSql + Sync + Send>)
        .collect()
}

/// `unnest($1::text[], $2::bigint[], …) AS u(c1, c2, …)` over the key
/// columns, plus `extra` more text columns.
fn unnest(table: &Table, extra: &[&str]) -> String {
    let mut arrays: Vec<String> = table
        .cols
        .iter()
        .enumerate()
        .map(|(i, (_, col))| format!("${}::{}[]", i + 1, keys::sql_type(*col)))
        .collect();
    let mut names: Vec<&str> = table.cols.iter().map(|(c, _)| *c).collect();
    for (i, name) in extra.iter().enumerate() {
        arrays.push(format!("${}::text[]", table.cols.len() + i + 1));
        names.push(name);
    }
    format!("unnest({}) AS u({})", arrays.join(", "), names.join(", "))
}

fn upsert_sql(table: &Table) -> String {
    let cols = table.col_list();
    format!(
        "INSERT INTO {name} ({cols}, record) SELECT {cols}, record::json FROM {from} \
         ON CONFLICT ({cols}) DO UPDATE SET record = EXCLUDED.record",
        name = table.name,
        from = unnest(table, &["record"]),
    )
}

fn delete_sql(table: &Table) -> String {
    let cols = table.col_list();
    format!(
        "DELETE FROM {name} WHERE ({cols}) IN (SELECT {cols} FROM {from})",
        name = table.name,
        from = unnest(table, &[]),
    )
}

/// Where a scan reads from.
enum Source {
    /// Rows of a table whose first key columns are fixed.
    Table {
        table: &'static Table,
        fixed: Vec<Part>,
    },
    /// `crawld.state` keys in `[from, to)`.
    State { from: Vec<u8>, to: Option<Vec<u8>> },
}

/// Where the last page of a source ended.
enum Cursor {
    Parts(Vec<Part>),
    Key(Vec<u8>),
}

/// A scan in key order, a page of rows at a time; it ends after its first
/// error.
pub struct Scan<'a> {
    tables: &'a Tables,
    /// Only keys starting with this are yielded (a table's prefix may end
    /// in the middle of a key part, which the query does not narrow).
    prefix: Vec<u8>,
    sources: VecDeque<Source>,
    cursor: Option<Cursor>,
    rows: VecDeque<Record>,
    ended: bool,
}

impl Iterator for Scan<'_> {
    type Item = Result<Record, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.ended {
                return None;
            }
            if let Some(record) = self.rows.pop_front() {
                if record.0.starts_with(&self.prefix) {
                    return Some(Ok(record));
                }
                continue;
            }
            let source = self.sources.front()?;
            match self.tables.page(source, self.cursor.as_ref()) {
                Err(e) => {
                    self.ended = true;
                    return Some(Err(e));
                }
                Ok(page) => {
                    let full = page.len() as i64 == PAGE;
                    self.cursor = page.last().map(|(k, _)| match source {
                        Source::Table { table, .. } => {
                            Cursor::Parts(table.parse_key(k).unwrap_or_default())
                        }
                        Source::State { .. } => Cursor::Key(k.to_vec()),
                    });
                    if !full {
                        self.sources.pop_front();
                        self.cursor = None;
                    }
                    self.rows = page.into();
                }
            }
        }
    }
}
