//! The SQL of a batch: per table, one `INSERT … SELECT FROM unnest(…) ON
//! CONFLICT DO UPDATE` for its upserts and one `DELETE` for its deletions
//! (the last write of a key in a batch wins).

use indexmap::IndexMap;
use tokio_postgres::types::ToSql;

use super::keys::{self, Column, Part, Table};
use super::{Batch, StoreError, Tables};

impl Tables {
    /// The statements that apply a batch: the last write of a key wins.
    pub(super) fn statements(&self, batch: Batch) -> Result<Vec<Statement>, StoreError> {
        let mut writes: IndexMap<sled::IVec, Option<sled::IVec>> = IndexMap::new();
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
                        state_keys.push(key.to_vec());
                        state_values.push(v.to_vec());
                    }
                    None => state_gone.push(key.to_vec()),
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
                    let record =
                        String::from_utf8(v.to_vec()).map_err(|e| StoreError::Corrupt {
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
}

/// A batch's writes to one table: the keys of its upserts, their records,
/// and the keys it deletes.
type TableWrites = (Vec<Vec<Part>>, Vec<String>, Vec<Vec<Part>>);

/// A statement and its parameters.
pub(super) type Statement = (String, Vec<Box<dyn ToSql + Sync + Send>>);

/// `c1 = $k::t AND c2 = $k+1::t …` for a table's first `n` columns.
pub(super) fn equalities(table: &Table, n: usize, first: usize) -> String {
    table.cols[..n]
        .iter()
        .enumerate()
        .map(|(i, (c, col))| format!("{c} = ${}::{}", first + i, keys::sql_type(*col)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// One array per key column, for `unnest`.
pub(super) fn columns(table: &Table, rows: Vec<Vec<Part>>) -> Vec<Box<dyn ToSql + Sync + Send>> {
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

/// The records of a table at a list of keys: the key columns and each
/// key's position in the list (`$n+1`) unnested, joined to the table.
pub(super) fn get_many_sql(table: &Table) -> String {
    let cols = table.col_list();
    let on = table
        .cols
        .iter()
        .map(|(c, _)| format!("t.{c} = u.{c}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let n = table.cols.len();
    let arrays = table
        .cols
        .iter()
        .enumerate()
        .map(|(i, (_, col))| format!("${}::{}[]", i + 1, keys::sql_type(*col)))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT u.at, t.record::text FROM unnest({arrays}, ${}::bigint[]) AS u({cols}, at) \
         JOIN {name} t ON {on}",
        n + 1,
        name = table.name,
    )
}
