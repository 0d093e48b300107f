//! Where a misplaced key belongs: an unknown key that another table accepts
//! (`max_depth` at the top of a target file, `delay` in `[follow]`) is most
//! likely in the wrong place rather than misspelt, so its error says where.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};

use super::raw::{
    RawChannel, RawDomain, RawFieldTable, RawFile, RawFollow, RawIdentity, RawItem, RawMonitor,
    RawNotify, RawOutput, RawProfile,
};

/// Every table of a config file, as a user writes it, with the keys it takes
/// and the heading of its section in the configuration reference.
fn tables() -> [Table; 11] {
    [
        Table {
            place: "at the top of a target file (above its first [table])",
            heading: "Target keys",
            keys: keys::<RawFile>(),
        },
        Table {
            place: "in [follow]",
            heading: "`[follow]`",
            keys: keys::<RawFollow>(),
        },
        Table {
            place: "in [items.NAME]",
            heading: "`[items.NAME]`",
            keys: keys::<RawItem>(),
        },
        Table {
            place: "in a field of [items.NAME.fields] (NAME = { css = \"…\", … })",
            heading: "`[items.NAME.fields]`",
            keys: keys::<RawFieldTable>(),
        },
        Table {
            place: "in [profiles.NAME]",
            heading: "`[profiles.NAME]`",
            keys: keys::<RawProfile>(),
        },
        Table {
            place: "in [output]",
            heading: "`[output]`",
            keys: keys::<RawOutput>(),
        },
        Table {
            place: "in [monitor]",
            heading: "`[monitor]`",
            keys: keys::<RawMonitor>(),
        },
        Table {
            place: "in [notify]",
            heading: "`[notify]`",
            keys: keys::<RawNotify>(),
        },
        Table {
            place: "in [domains.\"HOST\"]",
            heading: "`[domains.\"HOST\"]`",
            keys: keys::<RawDomain>(),
        },
        Table {
            place: "in [channels.NAME]",
            heading: "`[channels.NAME]`",
            keys: keys::<RawChannel>(),
        },
        Table {
            place: "in an identity of a profile's identities = [{ … }]",
            heading: "`[profiles.NAME]`",
            keys: keys::<RawIdentity>(),
        },
    ]
}

/// One table of a config file.
struct Table {
    /// Where it is, as an error says it.
    place: &'static str,
    /// The heading of its section in docs/configuration.md.
    heading: &'static str,
    keys: &'static [&'static str],
}

/// Every key the parser accepts, per section heading of the configuration
/// reference (docs/configuration.md), read from the raw structs: a test
/// checks that the reference documents each one.
pub fn documented_keys() -> Vec<(&'static str, &'static [&'static str])> {
    tables().into_iter().map(|t| (t.heading, t.keys)).collect()
}

/// For toml's "unknown field `KEY`, expected …": where KEY belongs, when
/// another table takes it. toml's errors carry no kind, so this reads serde's
/// fixed wording.
pub(super) fn unknown_key(message: &str) -> Option<String> {
    let key = message.strip_prefix("unknown field `")?.split('`').next()?;
    let places: Vec<&str> = tables()
        .into_iter()
        .filter(|t| t.keys.contains(&key))
        .map(|t| t.place)
        .collect();
    (!places.is_empty()).then(|| format!("`{key}` belongs {}", places.join(" or ")))
}

/// The keys a config struct takes, as serde's derive declares them: read by
/// asking it to deserialize from a probe that only records them, so that the
/// hints never drift from [`super::raw`].
fn keys<T: DeserializeOwned>() -> &'static [&'static str] {
    let fields = Cell::new(&[][..]);
    let _ = T::deserialize(Probe(&fields));
    fields.get()
}

struct Probe<'a>(&'a Cell<&'static [&'static str]>);

/// The probe's only outcome: it never produces a value.
#[derive(Debug)]
struct Probed;

impl fmt::Display for Probed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("probed")
    }
}

impl std::error::Error for Probed {}

impl de::Error for Probed {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Probed
    }
}

impl<'de> Deserializer<'de> for Probe<'_> {
    type Error = Probed;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Probed> {
        Err(Probed)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Probed> {
        self.0.set(fields);
        Err(Probed)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_reads_the_raw_structs_keys() {
        assert!(keys::<RawFollow>().contains(&"max_depth"));
        assert!(keys::<RawFieldTable>().contains(&"type"));
        assert!(keys::<RawProfile>().contains(&"delay"));
    }

    #[test]
    fn a_misplaced_key_is_told_where_it_belongs() {
        assert_eq!(
            unknown_key("unknown field `max_depth`, expected one of `start_urls`").as_deref(),
            Some("`max_depth` belongs in [follow]")
        );
        assert_eq!(
            unknown_key("unknown field `user_agent`, expected one of `links`").as_deref(),
            Some("`user_agent` belongs in [profiles.NAME] or in an identity of a profile's identities = [{ … }]")
        );
        // A typo belongs nowhere: toml's list of keys is the hint.
        assert_eq!(unknown_key("unknown field `max_page`, expected …"), None);
        assert_eq!(
            unknown_key("invalid type: string \"x\", expected i64"),
            None
        );
    }
}
