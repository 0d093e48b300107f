//! A fresh PostgreSQL database per test, on the server that
//! `CRAWLD_TEST_DATABASE_URL` names (`.ci/postgres` starts one and sets it).
//!
//! Without that variable the PostgreSQL tests skip, so `cargo test` passes
//! on a machine without PostgreSQL; with `CRAWLD_REQUIRE_POSTGRES=1` (as CI
//! sets) a missing database is a failure instead of a silent skip.
//!
//! The admin work (create, drop) runs on a private current-thread runtime
//! in a fresh thread, so the helper works the same from `#[test]` and from
//! `#[tokio::test]`, and a `Drop` inside a runtime never blocks on it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio_postgres::NoTls;

/// The variable naming the server (and a database the role can connect to).
pub const URL_VAR: &str = "CRAWLD_TEST_DATABASE_URL";
/// Set to `1` to turn a missing `CRAWLD_TEST_DATABASE_URL` into a failure.
pub const REQUIRE_VAR: &str = "CRAWLD_REQUIRE_POSTGRES";

/// Bounds every admin connection, so a server that does not answer fails
/// the test with a message instead of hanging it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Numbers the databases of this process; with the pid and a random part
/// the name is unique across parallel test binaries and reruns.
static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A database of its own for one test, dropped (with its connections) when
/// this is dropped.
pub struct TestDatabase {
    url: String,
    admin_url: String,
    name: String,
}

impl TestDatabase {
    /// A `postgres://` URL for this database, as `--cluster` takes it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name (`crawld_t_<pid>_<counter>_<random>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The URL of the server's database that the helper connects to for
    /// admin work (the one `CRAWLD_TEST_DATABASE_URL` names): for a test
    /// that checks what exists on the server.
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // FORCE ends connections a test (or a crawld it started) left open.
        // A failure only leaves a database behind: never panic in drop.
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote(&self.name));
        if let Err(e) = admin(&self.admin_url, sql) {
            eprintln!(
                "note: could not drop test database {} on {}: {e}",
                self.name,
                redact(&self.admin_url)
            );
        }
    }
}

/// A fresh, empty database on the `CRAWLD_TEST_DATABASE_URL` server, or
/// `None` (with a one-line notice) when that variable is unset.
///
/// Panics when `CRAWLD_REQUIRE_POSTGRES=1` and the variable is unset, and
/// when the server cannot be reached or the database not created: a test
/// that was asked to run against PostgreSQL must not pass without it.
pub fn database() -> Option<TestDatabase> {
    let admin_url = match std::env::var(URL_VAR) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => {
            if std::env::var(REQUIRE_VAR).as_deref() == Ok("1") {
                panic!("{REQUIRE_VAR}=1 but {URL_VAR} is not set: source .ci/postgres");
            }
            eprintln!("skipped: no PostgreSQL ({URL_VAR} is not set; source .ci/postgres)");
            return None;
        }
    };
    let name = format!(
        "crawld_t_{}_{}_{:08x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    );
    let mut url = url::Url::parse(&admin_url).unwrap_or_else(|e| {
        panic!("{URL_VAR} is not a URL ({e}): expected postgres://user:password@host:port/database")
    });
    url.set_path(&format!("/{name}"));
    if let Err(e) = admin(&admin_url, format!("CREATE DATABASE {}", quote(&name))) {
        panic!(
            "cannot create a test database on {} ({URL_VAR}): {e}; \
             is the server up and may the role create databases? see .ci/postgres",
            redact(&admin_url)
        );
    }
    Some(TestDatabase {
        url: url.into(),
        admin_url,
        name,
    })
}

/// Runs `sql` (one or more statements) on `url` and returns the rows of
/// its results as text, for a test that looks into a database directly.
/// Panics with the server's message on an error.
pub fn sql(url: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    run(url, sql.to_owned()).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `sql` on `url`, on a runtime of its own in a fresh thread (see the
/// module docs for why). The error is the driver's, as text with context.
fn admin(url: &str, sql: String) -> Result<(), String> {
    run(url, sql).map(|_| ())
}

fn run(url: &str, sql: String) -> Result<Vec<Vec<Option<String>>>, String> {
    let url = url.to_owned();
    let work = std::thread::spawn(move || -> Result<Vec<Vec<Option<String>>>, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("no runtime for the admin connection: {e}"))?;
        rt.block_on(async {
            let mut config: tokio_postgres::Config =
                url.parse().map_err(|e| format!("bad URL: {}", chain(&e)))?;
            if config.get_connect_timeout().is_none() {
                config.connect_timeout(CONNECT_TIMEOUT);
            }
            let (client, connection) = config
                .connect(NoTls)
                .await
                .map_err(|e| format!("cannot connect: {}", chain(&e)))?;
            let driver = tokio::spawn(connection);
            let done = client
                .simple_query(&sql)
                .await
                .map(|messages| {
                    messages
                        .iter()
                        .filter_map(|m| match m {
                            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                                (0..row.len())
                                    .map(|i| row.get(i).map(str::to_owned))
                                    .collect(),
                            ),
                            _ => None,
                        })
                        .collect()
                })
                .map_err(|e| format!("{sql}: {}", chain(&e)));
            // Closing the client ends the connection task; wait for it so
            // the server has seen the session end before we return.
            drop(client);
            let _ = driver.await;
            done
        })
    });
    work.join()
        .map_err(|_| "the admin thread panicked".to_owned())?
}

/// `e` with its causes: tokio-postgres' own text is only "db error" or
/// "error connecting to server"; the server's message is in the source.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// `name` as a quoted SQL identifier.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `url` without its password, for messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.into()
        }
        Err(_) => "(unparsable URL)".to_owned(),
    }
}
