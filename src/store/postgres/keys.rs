//! Where each of crawld's keys lives in the database: the records people
//! query (runs, pages, items, change events, failures) in tables with a
//! column per key part; everything else in `crawld.state` under its own key.
//!
//! A key is `letter · SEP · part · SEP · part … · last part`, as the store
//! builds it (`prefixed` and friends): text parts end at a separator, id
//! parts are 8 big-endian bytes, and the last part runs to the end.

use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};

use super::super::SEP;

/// A key part's column type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Col {
    /// UTF-8 text, `text COLLATE "C"`.
    Text,
    /// A u64 id or sequence number, `bigint`.
    Id,
}

/// A table of records with a column per key part.
#[derive(Debug)]
pub struct Table {
    pub letter: u8,
    pub name: &'static str,
    pub cols: &'static [(&'static str, Col)],
}

/// The tables, by key letter (sorted: a full scan reads them in key order).
pub const TABLES: [Table; 5] = [
    Table {
        letter: b'e',
        name: "crawld.events",
        cols: &[("target", Col::Text), ("run", Col::Id), ("seq", Col::Id)],
    },
    Table {
        letter: b'i',
        name: "crawld.items",
        cols: &[
            ("target", Col::Text),
            ("kind", Col::Text),
            ("key", Col::Text),
        ],
    },
    Table {
        letter: b'p',
        name: "crawld.pages",
        cols: &[("target", Col::Text), ("url", Col::Text)],
    },
    Table {
        letter: b'r',
        name: "crawld.runs",
        cols: &[("target", Col::Text), ("id", Col::Id)],
    },
    Table {
        letter: b'x',
        name: "crawld.failures",
        cols: &[("target", Col::Text), ("run", Col::Id), ("url", Col::Text)],
    },
];

/// The table of a key's letter; `None`: the key is kept in `crawld.state`.
pub fn table(letter: u8) -> Option<&'static Table> {
    TABLES.iter().find(|t| t.letter == letter)
}

/// One key part, as a query parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    Id(i64),
}

impl Table {
    /// The parts of a whole key of this table; `None` when the key does not
    /// have this table's layout (or a text part is not UTF-8).
    pub fn parse_key(&self, key: &[u8]) -> Option<Vec<Part>> {
        let mut rest = key.strip_prefix(&[self.letter, SEP])?;
        let mut parts = Vec::with_capacity(self.cols.len());
        for (i, &(_, col)) in self.cols.iter().enumerate() {
            let last = i + 1 == self.cols.len();
            let (part, next) = match (col, last) {
                (Col::Text, true) => (rest, &[][..]),
                (Col::Text, false) => {
                    let end = memchr::memchr(SEP, rest)?;
                    (&rest[..end], &rest[end + 1..])
                }
                (Col::Id, true) => (rest, &[][..]),
                (Col::Id, false) => {
                    let (id, tail) = rest.split_at_checked(8)?;
                    (id, tail.strip_prefix(&[SEP])?)
                }
            };
            parts.push(match col {
                Col::Text => Part::Text(std::str::from_utf8(part).ok()?.to_owned()),
                // Ids past i64::MAX would sort first as bigint: refused.
                Col::Id => Part::Id(i64::try_from(u64::from_be_bytes(part.try_into().ok()?)).ok()?),
            });
            rest = next;
        }
        Some(parts)
    }

    /// The leading key parts a prefix of this table's keys fixes: only
    /// whole parts; what follows them is left to the caller to filter.
    pub fn parse_prefix(&self, prefix: &[u8]) -> Vec<Part> {
        let mut parts = Vec::new();
        let Some(rest) = prefix.strip_prefix(&[self.letter]) else {
            return parts;
        };
        let Some(mut rest) = rest.strip_prefix(&[SEP]) else {
            return parts;
        };
        for &(_, col) in self.cols.iter().take(self.cols.len() - 1) {
            match col {
                Col::Text => {
                    let Some(end) = memchr::memchr(SEP, rest) else {
                        break;
                    };
                    let Ok(text) = std::str::from_utf8(&rest[..end]) else {
                        break;
                    };
                    parts.push(Part::Text(text.to_owned()));
                    rest = &rest[end + 1..];
                }
                Col::Id => {
                    let Some((id, tail)) = rest.split_at_checked(8) else {
                        break;
                    };
                    let Some(tail) = tail.strip_prefix(&[SEP]) else {
                        break;
                    };
                    let Ok(id) =
                        i64::try_from(u64::from_be_bytes(id.try_into().unwrap_or_default()))
                    else {
                        break;
                    };
                    parts.push(Part::Id(id));
                    rest = tail;
                }
            }
        }
        parts
    }

    /// The key of a row, from its parts (the inverse of [`Table::parse_key`]).
    pub fn key(&self, parts: &[Part]) -> Vec<u8> {
        let mut key = vec![self.letter, SEP];
        for (i, part) in parts.iter().enumerate() {
            match part {
                Part::Text(t) => key.extend_from_slice(t.as_bytes()),
                Part::Id(n) => key.extend_from_slice(&n.to_be_bytes()),
            }
            if i + 1 < parts.len() {
                key.push(SEP);
            }
        }
        key
    }

    /// `c1, c2, …`
    pub fn col_list(&self) -> String {
        self.cols
            .iter()
            .map(|(c, _)| *c)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The SQL type of a column, for casts.
pub fn sql_type(col: Col) -> &'static str {
    match col {
        Col::Text => "text",
        Col::Id => "bigint",
    }
}

impl ToSql for Part {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Part::Text(t) => t.to_sql(ty, out),
            Part::Id(n) => n.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <&str as ToSql>::accepts(ty) || <i64 as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

/// One column of a batch of rows, as an array parameter for `unnest`.
#[derive(Debug)]
pub enum Column {
    Text(Vec<String>),
    Id(Vec<i64>),
}

impl Column {
    pub fn new(col: Col, capacity: usize) -> Self {
        match col {
            Col::Text => Column::Text(Vec::with_capacity(capacity)),
            Col::Id => Column::Id(Vec::with_capacity(capacity)),
        }
    }

    pub fn push(&mut self, part: Part) {
        match (self, part) {
            (Column::Text(v), Part::Text(t)) => v.push(t),
            (Column::Id(v), Part::Id(n)) => v.push(n),
            // parse_key gives each column its own type: a mismatch is a bug
            // caught by the unit tests; the row is left out rather than
            // misfiled.
            _ => debug_assert!(false, "a key part of the wrong type"),
        }
    }
}

impl ToSql for Column {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Column::Text(v) => v.to_sql(ty, out),
            Column::Id(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <Vec<String> as ToSql>::accepts(ty) || <Vec<i64> as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

/// The smallest key greater than every key starting with `prefix`, or
/// `None` when there is none (the prefix is all 0xff).
pub fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(letter: u8, parts: &[&[u8]], last: &[u8]) -> Vec<u8> {
        let mut k = vec![letter];
        for p in parts {
            k.push(SEP);
            k.extend_from_slice(p);
        }
        k.push(SEP);
        k.extend_from_slice(last);
        k
    }

    #[test]
    fn keys_round_trip_through_their_columns() {
        let items = table(b'i').unwrap();
        let key = keyed(b'i', &[b"books", b"book"], b"a/b\xc3\xa9");
        let parts = items.parse_key(&key).unwrap();
        assert_eq!(
            parts,
            vec![
                Part::Text("books".into()),
                Part::Text("book".into()),
                Part::Text("a/bé".into())
            ]
        );
        assert_eq!(items.key(&parts), key);

        let events = table(b'e').unwrap();
        // Ids may hold the separator byte: they are fixed-width.
        let key = keyed(b'e', &[b"t", &256u64.to_be_bytes()], &7u64.to_be_bytes());
        let parts = events.parse_key(&key).unwrap();
        assert_eq!(
            parts,
            vec![Part::Text("t".into()), Part::Id(256), Part::Id(7)]
        );
        assert_eq!(events.key(&parts), key);

        let failures = table(b'x').unwrap();
        let key = keyed(b'x', &[b"t", &1u64.to_be_bytes()], b"https://e.com/\0odd");
        // A NUL in a URL: text it is, but PostgreSQL refuses it later; the
        // parse itself keeps it whole.
        assert_eq!(failures.key(&failures.parse_key(&key).unwrap()), key);
    }

    #[test]
    fn prefixes_fix_whole_parts_only() {
        let events = table(b'e').unwrap();
        assert_eq!(events.parse_prefix(b"e"), vec![]);
        assert_eq!(events.parse_prefix(b"e\0"), vec![]);
        assert_eq!(events.parse_prefix(b"e\0t\0"), vec![Part::Text("t".into())]);
        let mut p = b"e\0t\0".to_vec();
        p.extend_from_slice(&9u64.to_be_bytes());
        assert_eq!(events.parse_prefix(&p), vec![Part::Text("t".into())]);
        p.push(SEP);
        assert_eq!(
            events.parse_prefix(&p),
            vec![Part::Text("t".into()), Part::Id(9)]
        );
        // A partial text part fixes nothing more.
        assert_eq!(table(b'p').unwrap().parse_prefix(b"p\0bo"), vec![]);
    }

    #[test]
    fn a_malformed_key_has_no_place() {
        let mut huge = b"r\0t\0".to_vec();
        huge.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert!(
            table(b'r').unwrap().parse_key(&huge).is_none(),
            "past i64::MAX"
        );
        assert!(table(b'r').unwrap().parse_key(b"r\0t\0short").is_none());
        assert!(table(b'i').unwrap().parse_key(b"i\0only").is_none());
        assert!(table(b'p').unwrap().parse_key(b"q\0t\0u").is_none());
    }

    #[test]
    fn the_successor_bounds_a_prefix() {
        assert_eq!(successor(b"m\0"), Some(b"m\x01".to_vec()));
        assert_eq!(successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(successor(b"\xff\xff"), None);
    }
}
