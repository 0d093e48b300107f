//! Database errors as the store reports them, and the database's address
//! as messages name it (without the password).

use super::StoreError;

/// A database error, with the server's own words when it sent some.
pub(super) fn detail(e: &tokio_postgres::Error) -> String {
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
pub(super) fn database_error(
    place: &str,
    doing: &'static str,
    e: &tokio_postgres::Error,
) -> StoreError {
    let lost = match e.code() {
        // Connection exceptions, the server shutting down or starting up,
        // too many connections, and "not accepting connections" (a database
        // closed to connections for maintenance).
        Some(code) => {
            let code = code.code();
            // Deadlocks and serialization failures between the nodes of a
            // cluster: the transaction was rolled back and is tried again.
            code.starts_with("08")
                || matches!(code, "40P01" | "40001")
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
pub(super) fn describe(config: &tokio_postgres::Config) -> String {
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
