//! The schema's versions: migrations applied by a writer (refinery), a
//! newer database refused before any write, readers that never migrate.

use super::{StoreError, Tables};

/// The schema versions this release knows, oldest first.
const MIGRATIONS: [(&str, &str); 3] = [
    ("V1__records", include_str!("migrations/V1__records.sql")),
    ("V2__cluster", include_str!("migrations/V2__cluster.sql")),
    (
        "V3__shared_runs",
        include_str!("migrations/V3__shared_runs.sql"),
    ),
];

/// The schema version this release writes.
const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The advisory lock a process holds while it migrates.
const MIGRATION_LOCK: i64 = 0x6372_6177_6c6d; // "crawlm"

/// refinery's record of the versions applied, inside crawld's schema.
const HISTORY: &str = "crawld.schema_history";

impl Tables {
    /// The newest schema version applied, `None` without crawld's schema.
    pub(super) async fn applied_version(
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

    pub(super) fn check_schema(&self) -> Result<(), StoreError> {
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

    /// Applies the migrations this release knows, in a session of its own
    /// that holds [`MIGRATION_LOCK`]: nodes starting together migrate one
    /// after the other (the later ones find the schema up to date).
    pub(super) fn migrate(&self) -> Result<(), StoreError> {
        let (config, place) = (self.config.clone(), self.place.clone());
        let failed = self.failed("migrating");
        self.block(async move {
            let (mut client, connection) = config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|e| super::errors::database_error(&place, "connecting to", &e))?;
            // Ends when the client is dropped, and the lock with it.
            tokio::spawn(async move {
                let _ = connection.await;
            });
            let mut said = false;
            loop {
                let got: bool = client
                    .query_one("SELECT pg_try_advisory_lock($1)", &[&MIGRATION_LOCK])
                    .await
                    .map_err(&failed)?
                    .get(0);
                if got {
                    break;
                }
                if !said {
                    tracing::info!(database = %place, "Another crawld is migrating the database's schema; waiting for it.");
                    said = true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            match Self::applied_version(&client).await.map_err(&failed)? {
                Some(found) if found > SCHEMA_VERSION => {
                    return Err(StoreError::DatabaseNewer {
                        place,
                        found,
                        known: SCHEMA_VERSION,
                    });
                }
                // Up to date: nothing to do, and nothing that needs more
                // than the right to read and write crawld's tables.
                Some(found) if found == SCHEMA_VERSION => return Ok(()),
                _ => {}
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// refinery refuses a database whose applied migration differs from the
    /// binary's: a released migration must never change, so each one's
    /// checksum is pinned here (a new version adds a line).
    #[test]
    fn released_migrations_are_never_edited() {
        let pinned: [u64; 3] = [
            279_137_458_585_306_092,
            4_179_013_154_172_003_951,
            17_218_536_099_893_597_524,
        ];
        for ((name, sql), want) in MIGRATIONS.iter().zip(pinned) {
            let got = refinery::Migration::unapplied(name, sql)
                .unwrap()
                .checksum();
            assert_eq!(got, want, "{name} changed: add a new migration instead");
        }
        assert_eq!(MIGRATIONS.len(), pinned.len());
    }
}
