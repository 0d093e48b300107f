//! Scans in key order, a page of rows per round trip: a table's rows by
//! keyset (its key columns after the fixed ones), `crawld.state` by key.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio_postgres::types::ToSql;

use super::keys::{self, Col, Part, Table};
use super::sql::equalities;
use super::{Record, StoreError, Tables, Val};

/// Rows read per round trip by a scan.
const PAGE: i64 = 1000;

impl Tables {
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
                        let statement = client.prepare_cached(&sql).await.map_err(&*failed)?;
                        client.query(&statement, &refs).await.map_err(&*failed)
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
