//! The configuration exactly as written in TOML. Every struct mirrors a table,
//! rejects unknown keys, and wraps values that are validated after parsing in
//! [`Spanned`] so that a later error can still point at its line and column.
//! Nothing outside `config/` sees these types: [`super::compile`] turns them
//! into validated ones.

use std::fmt;

use indexmap::IndexMap;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use toml::Spanned;

/// One file of the configs directory: a target (it has `start_urls`), a set of
/// profiles and alert channels, or both.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    pub start_urls: Option<Spanned<Vec<Spanned<String>>>>,
    pub profile: Option<Spanned<String>>,
    pub max_pages: Option<Spanned<i64>>,
    pub schedule: Option<Spanned<String>>,
    pub full_schedule: Option<Spanned<String>>,
    pub headers: Option<Spanned<IndexMap<String, Spanned<String>>>>,
    pub strip_params: Option<Spanned<Vec<Spanned<String>>>>,
    pub follow: Option<Spanned<RawFollow>>,
    pub items: Option<Spanned<IndexMap<String, Spanned<RawItem>>>>,
    pub timezone: Option<Spanned<String>>,
    pub catch_up: Option<Spanned<String>>,
    pub spread: Option<Spanned<String>>,
    pub max_duration: Option<Spanned<String>>,
    pub resume_within: Option<Spanned<String>>,
    pub keep_versions: Option<Spanned<i64>>,
    pub keep_runs: Option<Spanned<i64>>,
    pub output: Option<Spanned<RawOutput>>,
    pub monitor: Option<Spanned<RawMonitor>>,
    pub allow_private_networks: Option<bool>,
    pub alerts: Option<Spanned<Vec<Spanned<String>>>>,
    pub notify: Option<Spanned<RawNotify>>,
    pub domains: Option<Spanned<IndexMap<String, Spanned<RawDomain>>>>,
    pub sitemaps: Option<Spanned<RawSitemaps>>,
    #[serde(default)]
    pub profiles: IndexMap<String, Spanned<RawProfile>>,
    #[serde(default)]
    pub channels: IndexMap<String, Spanned<RawChannel>>,
}

/// `sitemaps`: `"robots"` (the `Sitemap:` lines of robots.txt) or a list of URLs.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawSitemaps {
    Word(String),
    Urls(Vec<String>),
}

/// `[monitor]`: thresholds of the target's monitors.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMonitor {
    pub failure_rate: Option<Spanned<f64>>,
    pub min_pages: Option<Spanned<i64>>,
    pub min_items: Option<Spanned<i64>>,
    pub item_drop: Option<Spanned<f64>>,
    pub coverage_drop: Option<Spanned<f64>>,
    pub min_coverage: Option<Spanned<IndexMap<String, Spanned<f64>>>>,
    pub baseline_runs: Option<Spanned<i64>>,
    pub overdue: Option<Spanned<f64>>,
    pub repeat: Option<Spanned<String>>,
    pub blocked_share: Option<Spanned<f64>>,
    pub disable: Option<Vec<Spanned<String>>>,
    pub fire_after: Option<Spanned<IndexMap<String, Spanned<i64>>>>,
}

/// `[notify]`: the run's item changes sent to alert channels.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    pub on: Option<Spanned<Vec<Spanned<String>>>>,
    pub fields: Option<Spanned<Vec<Spanned<String>>>>,
    pub channels: Option<Spanned<Vec<Spanned<String>>>>,
    pub max_items: Option<Spanned<i64>>,
}

/// `[output]`: files written when a run ends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutput {
    pub changes_jsonl: Option<Spanned<String>>,
}

/// `[follow]`: which links a crawl follows.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFollow {
    pub links: Option<Spanned<String>>,
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
    #[serde(default)]
    pub deny: Vec<Spanned<String>>,
    pub max_depth: Option<Spanned<i64>>,
    pub same_host: Option<bool>,
    pub max_links: Option<Spanned<i64>>,
    pub max_hosts: Option<Spanned<i64>>,
}

/// `[items.NAME]`: one kind of item.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawItem {
    pub pages: Option<Spanned<String>>,
    pub selector: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    #[serde(default)]
    pub fields: IndexMap<String, Spanned<RawField>>,
}

/// A field: `"css"` shorthand or `{ css = "…", type = "…", … }`, or
/// `{ jsonld = "Type.key", … }` (exactly one of `css` and `jsonld`, checked
/// when it compiles so that the error has the field's position).
///
/// Written by hand because serde's untagged enums buffer the input and lose
/// the spans of the values inside the table form.
#[derive(Debug)]
pub struct RawField {
    pub css: Option<Spanned<String>>,
    pub jsonld: Option<Spanned<String>>,
    pub kind: Option<Spanned<String>>,
    pub required: bool,
    pub many: bool,
    pub join: Option<Spanned<String>>,
    /// `re`, `replace`, `strip`, `default`, `date_format` (see `super::process`).
    pub process: RawProcess,
}

/// One `replace` pair: `['pattern', 'replacement']`.
pub type RawReplace = Spanned<(String, String)>;

/// A field's value-processing keys; all absent in the string shorthand.
#[derive(Debug, Default)]
pub struct RawProcess {
    pub re: Option<Spanned<String>>,
    pub replace: Option<Spanned<Vec<RawReplace>>>,
    pub strip: Option<Spanned<String>>,
    pub default: Option<Spanned<toml::Value>>,
    pub date_format: Option<Spanned<String>>,
}

/// The table form of a field (also read by [`super::hint`] for its keys).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFieldTable {
    css: Option<Spanned<String>>,
    jsonld: Option<Spanned<String>>,
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    many: bool,
    join: Option<Spanned<String>>,
    re: Option<Spanned<String>>,
    replace: Option<Spanned<Vec<RawReplace>>>,
    strip: Option<Spanned<String>>,
    default: Option<Spanned<toml::Value>>,
    date_format: Option<Spanned<String>>,
}

impl<'de> Deserialize<'de> for RawField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldVisitor;

        impl<'de> Visitor<'de> for FieldVisitor {
            type Value = RawField;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    r#"a CSS query string or a table like { css = "…", type = "url" } or { jsonld = "Product.name" }"#,
                )
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawField, E> {
                // The enclosing `Spanned<RawField>` carries the position of the string.
                Ok(RawField {
                    css: Some(Spanned::new(0..0, v.to_owned())),
                    jsonld: None,
                    kind: None,
                    required: false,
                    many: false,
                    join: None,
                    process: RawProcess::default(),
                })
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawField, A::Error> {
                let t = RawFieldTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawField {
                    css: t.css,
                    jsonld: t.jsonld,
                    kind: t.kind,
                    required: t.required,
                    many: t.many,
                    join: t.join,
                    process: RawProcess {
                        re: t.re,
                        replace: t.replace,
                        strip: t.strip,
                        default: t.default,
                        date_format: t.date_format,
                    },
                })
            }
        }

        deserializer.deserialize_any(FieldVisitor)
    }
}

/// `[profiles.NAME]`: politeness settings; absent keys come from `extends`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    pub extends: Option<Spanned<String>>,
    pub concurrency: Option<Spanned<i64>>,
    pub delay: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub max_body: Option<Spanned<String>>,
    pub user_agent: Option<Spanned<String>>,
    pub retries: Option<Spanned<i64>>,
    pub backoff: Option<Spanned<String>>,
    pub backoff_max: Option<Spanned<String>>,
    pub backoff_429: Option<Spanned<String>>,
    pub max_requeues: Option<Spanned<i64>>,
    pub retry_after_max: Option<Spanned<String>>,
    pub respect_robots: Option<bool>,
    pub adaptive: Option<bool>,
    pub pause_after: Option<Spanned<i64>>,
    pub pause_for: Option<Spanned<String>>,
    pub rotate_session_every: Option<Spanned<i64>>,
    pub identities: Option<Spanned<Vec<Spanned<RawIdentity>>>>,
    pub proxies: Option<Spanned<Vec<Spanned<String>>>>,
}

/// One identity of `identities = [...]`: a header set sent together.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    pub user_agent: Spanned<String>,
    pub accept_language: Option<Spanned<String>>,
    #[serde(default)]
    pub headers: IndexMap<String, Spanned<String>>,
}

/// `[domains."HOST"]`: settings for one host of a target.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDomain {
    pub profile: Spanned<String>,
}

/// `[channels.NAME]`: an alert channel. Which keys a kind takes is checked
/// when it compiles (`super::channel`), so that a key of another kind says so.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChannel {
    pub kind: Spanned<String>,
    pub url: Option<Spanned<String>>,
    pub headers: Option<Spanned<IndexMap<String, Spanned<String>>>>,
    pub smtp: Option<Spanned<String>>,
    pub from: Option<Spanned<String>>,
    pub to: Option<Spanned<Vec<Spanned<String>>>>,
    pub command: Option<Spanned<Vec<Spanned<String>>>>,
    pub default: Option<bool>,
    pub max_per_minute: Option<Spanned<i64>>,
    pub timeout: Option<Spanned<String>>,
}
