//! The PostgreSQL test helper (tests/common/postgres.rs) itself: every
//! `database()` is a fresh, empty database of its own, and dropping it
//! removes it from the server, from inside a runtime and outside one.

mod common;

use common::postgres::{database, TestDatabase};
use tokio_postgres::{Client, NoTls};

/// A connection to `url`, its driver on the current runtime.
async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test database: {e:?}"));
    tokio::spawn(connection);
    client
}

/// Whether the server still lists `name`, asked through the admin URL.
async fn exists(admin_url: &str, name: &str) -> bool {
    let client = connect(admin_url).await;
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .unwrap();
    row.get::<_, i64>(0) == 1
}

#[tokio::test]
async fn each_database_is_fresh_and_dropped_with_its_handle() {
    let Some(first) = database() else { return };
    let client = connect(first.url()).await;
    let current: String = client
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        current,
        first.name(),
        "url() must point at the new database"
    );
    client
        .batch_execute("CREATE TABLE pages (url text PRIMARY KEY); INSERT INTO pages VALUES ('a')")
        .await
        .unwrap();

    let second: TestDatabase = database().expect("a second database");
    assert_ne!(second.name(), first.name());
    assert_ne!(second.url(), first.url());
    let other = connect(second.url()).await;
    let tables: i64 = other
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 0, "a second database must be empty");

    // Dropped while `client` is still connected: the helper must end that
    // session rather than fail (a crawld under test may leave one open).
    let (admin_url, first_name) = (first.admin_url().to_owned(), first.name().to_owned());
    assert!(exists(&admin_url, &first_name).await);
    drop(first);
    assert!(
        !exists(&admin_url, &first_name).await,
        "{first_name} must be gone after drop"
    );
    assert!(exists(&admin_url, second.name()).await);
    drop(client);
}

/// The same helper from a plain `#[test]`, where no runtime is running.
#[test]
fn works_outside_a_runtime() {
    let Some(db) = database() else { return };
    let (admin_url, name) = (db.admin_url().to_owned(), db.name().to_owned());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert!(rt.block_on(exists(&admin_url, &name)));
    drop(db);
    assert!(!rt.block_on(exists(&admin_url, &name)));
}
