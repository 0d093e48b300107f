//! Configuration: the TOML files of the configs directory, loaded, validated
//! and compiled into a [`TargetSet`] that the rest of crawld runs from.
//!
//! `raw` mirrors the files, `compile` validates them into the types below,
//! `load` reads a directory and collects every error with its position
//! (`typed` every type and key error of a file, `hint` where a misplaced key
//! belongs). `channel` compiles alert channels (`smtp` their SMTP URLs), whose
//! secrets `secret` keeps out of every message.

mod channel;
mod compile;
mod dates;
mod error;
mod hint;
mod identity;
mod items;
mod load;
mod monitor;
mod notify;
mod process;
mod profile;
mod query;
mod raw;
mod schedule;
mod secret;
mod smtp;
mod typed;
mod values;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use regex::Regex;
use reqwest::header::HeaderMap;
use scraper::Selector;
use url::Url;

pub use channel::{
    Channel, ChannelKind, Email, Exec, Webhook, DEFAULT_CHANNEL_TIMEOUT, DEFAULT_MAX_PER_MINUTE,
};
pub use dates::{parse_bool, parse_date, FALSE_WORDS, TRUE_WORDS};
pub use error::{errors_by_file, ConfigError, ConfigErrorJson, ConfigErrors, Position};
pub use hint::documented_keys;
pub use identity::{Identity, ProxyUrl};
pub use load::{
    is_config_file, load_dir, load_dir_with_env, load_files, read_dir, ConfigFiles, LoadReport,
    ReadError, MAX_CONFIG_FILE,
};
pub use monitor::MonitorConfig;
pub use notify::{NotifyConfig, DEFAULT_NOTIFY_MAX_ITEMS};
pub use process::{Process, MAX_PATTERN_SIZE};
pub use profile::{
    builtins, DelayRange, Profile, BUILTIN_ADAPTIVE, BUILTIN_PROFILES, DEFAULT_PROFILE,
};
pub use query::{parse_selector, Query};
pub use schedule::Schedule;
pub use secret::{PathShown, Secret, SecretUrl};
pub use smtp::{SmtpSecurity, SmtpServer, SMTPS_PORT, SMTP_PORT};

use crate::ids::{ChannelName, ProfileName, TargetId};
use crate::jsonld::LdPath;

/// Default page budget of one run (`max_pages`).
pub const DEFAULT_MAX_PAGES: u64 = 10_000;
/// Default link depth from the start URLs (`follow.max_depth`).
pub const DEFAULT_MAX_DEPTH: u32 = 10;
/// Default age past which an interrupted run is abandoned (`resume_within`).
pub const DEFAULT_RESUME_WITHIN: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// Default past versions kept per item (`keep_versions`).
pub const DEFAULT_KEEP_VERSIONS: usize = 10;
/// Default run records kept per target (`keep_runs`).
pub const DEFAULT_KEEP_RUNS: usize = 100;
/// Default links taken from one page, in document order (`follow.max_links`):
/// a page offering more cannot make a run hold them all.
pub const DEFAULT_MAX_LINKS: usize = 10_000;
/// Default distinct hosts one run may queue URLs for (`follow.max_hosts`):
/// a site linking to millions of hosts cannot grow the run's per-host state.
pub const DEFAULT_MAX_HOSTS: usize = 1_000;
/// Default link selector (`follow.links`).
pub const DEFAULT_LINK_SELECTOR: &str = "a[href]";

/// Every valid target, profile and alert channel of a configs directory.
#[derive(Debug, Default, Clone)]
pub struct TargetSet {
    pub targets: BTreeMap<TargetId, Arc<Target>>,
    pub profiles: BTreeMap<ProfileName, Arc<Profile>>,
    pub channels: BTreeMap<ChannelName, Arc<Channel>>,
}

impl TargetSet {
    /// The channels a target's change notices go to: those its `[notify]
    /// channels` names, else its alert channels. A name no longer in the
    /// set is left out.
    pub fn notify_channels_for(&self, target: &Target) -> Vec<ChannelName> {
        match target.notify.as_ref().and_then(|n| n.channels.as_ref()) {
            Some(names) => names
                .iter()
                .filter(|n| self.channels.contains_key(*n))
                .cloned()
                .collect(),
            None => self.channels_for(target),
        }
    }

    /// The channels a target's alerts go to: those its `alerts` names, else
    /// every `default = true` channel. A name no longer in the set (a target
    /// running its last good version) is left out.
    pub fn channels_for(&self, target: &Target) -> Vec<ChannelName> {
        match &target.alerts {
            Some(names) => names
                .iter()
                .filter(|n| self.channels.contains_key(*n))
                .cloned()
                .collect(),
            None => self
                .channels
                .values()
                .filter(|c| c.default)
                .map(|c| c.name.clone())
                .collect(),
        }
    }
}

/// Where a target's sitemaps come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SitemapSource {
    /// The `Sitemap:` lines of each start host's robots.txt.
    Robots,
    /// These URLs (sitemaps or sitemap indexes).
    Urls(Vec<Url>),
}

/// One compiled target: everything a run needs, validated.
#[derive(Debug)]
pub struct Target {
    pub id: TargetId,
    /// The file that declares the target.
    pub file: PathBuf,
    pub start_urls: Vec<Url>,
    pub profile: Arc<Profile>,
    /// `[domains."HOST"]` profiles: `host` or `host:port`, lowercase.
    pub domains: Vec<(String, Arc<Profile>)>,
    /// Follow links and redirects to loopback, private and link-local
    /// addresses too (always so when a start URL is on one).
    pub allow_private_networks: bool,
    /// `alerts = [...]`: the channels of its alerts; `None`: the default
    /// channels (see [`TargetSet::channels_for`]); empty: no alerts.
    pub alerts: Option<Vec<ChannelName>>,
    pub max_pages: u64,
    pub schedule: Option<Schedule>,
    pub full_schedule: Option<Schedule>,
    /// Extra request headers, `${VAR}` already expanded and marked sensitive.
    pub headers: HeaderMap,
    pub strip_params: Vec<ParamPattern>,
    pub follow: Follow,
    /// `sitemaps`: where the run reads sitemaps from, if anywhere.
    pub sitemaps: Option<SitemapSource>,
    pub items: Vec<ItemKind>,
    pub resume_within: std::time::Duration,
    pub keep_versions: usize,
    pub keep_runs: usize,
    /// `[output] changes_jsonl`: a path under the state dir, with `{target}` and `{run}`.
    pub changes_jsonl: Option<String>,
    /// `[monitor]`: the thresholds of the target's monitors.
    pub monitor: MonitorConfig,
    /// `[notify]`: the run's item changes sent to channels; `None`: none.
    pub notify: Option<NotifyConfig>,
    /// Zone the cron expressions are read in.
    pub timezone: chrono_tz::Tz,
    pub catch_up: CatchUp,
    /// Each firing starts after a stable per-target offset within this window.
    pub spread: std::time::Duration,
    /// A run past this is stopped (and resumes at its next start).
    pub max_duration: Option<std::time::Duration>,
    /// Hash of the whole file and its profile: a reload applies a target
    /// whose hash changed.
    pub source_hash: String,
    /// Hash of what decides extraction (`items`, `follow`, `strip_params`):
    /// pages extracted under another fingerprint are fetched and parsed again.
    pub fingerprint: String,
}

impl Target {
    /// The profile that governs requests to `host`: its `[domains]` entry
    /// (`host:port` before `host`), else the target's profile.
    pub fn profile_for(&self, host: &crate::ids::HostKey) -> &Arc<Profile> {
        let key = host.as_str();
        let name = key.rsplit_once(':').map_or(key, |(h, _)| h);
        self.domains
            .iter()
            .find(|(d, _)| d == key)
            .or_else(|| self.domains.iter().find(|(d, _)| d == name))
            .map_or(&self.profile, |(_, p)| p)
    }

    /// Every profile the target may use.
    pub fn profiles(&self) -> impl Iterator<Item = &Arc<Profile>> {
        std::iter::once(&self.profile).chain(self.domains.iter().map(|(_, p)| p))
    }
}

/// What the daemon does about full runs it missed while it was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// Run a missed full scrape once at start-up (and a first one for a new target).
    Once,
    /// Wait for the next firing.
    Skip,
}

/// `[follow]`, compiled.
#[derive(Debug)]
pub struct Follow {
    pub links: Selector,
    pub allow: Vec<Regex>,
    pub deny: Vec<Regex>,
    pub max_depth: u32,
    pub same_host: bool,
    /// Links taken from one page (the first ones in document order).
    pub max_links: usize,
    /// Distinct hosts a run queues URLs for; links to further hosts are refused.
    pub max_hosts: usize,
}

use crate::urlnorm::ParamPattern;

/// `[items.NAME]`, compiled.
#[derive(Debug)]
pub struct ItemKind {
    pub name: String,
    /// Which pages (path + query) the kind applies to; `None` = all.
    pub pages: Option<Regex>,
    /// Each match is one item; `None` = the whole page is one item (or,
    /// with [`ItemKind::ld_type`], each JSON-LD object).
    pub selector: Option<Selector>,
    /// Each JSON-LD object of this `@type` is one item: the kind has no
    /// selector and every field is `jsonld` with this first segment.
    pub ld_type: Option<String>,
    pub key: ItemKey,
    pub fields: Vec<Field>,
}

/// What identifies an item across runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKey {
    /// The URL of the page the item was found on.
    PageUrl,
    /// The value of the field at this index of [`ItemKind::fields`].
    Field(usize),
}

/// One field of an item kind.
#[derive(Debug)]
pub struct Field {
    pub name: String,
    pub source: FieldSource,
    pub kind: FieldType,
    pub required: bool,
    pub many: bool,
    /// Join every match into one string with this separator.
    pub join: Option<String>,
    /// `re`, `replace`, `strip`; `None` when the field has none of them.
    pub process: Option<Process>,
    /// `default`: the value of a missing (optional, single) field, of its type.
    pub default: Option<serde_json::Value>,
}

/// Where a field's raw strings come from.
#[derive(Debug)]
pub enum FieldSource {
    /// `css = "…"`: a query inside the item's element.
    Css(Query),
    /// `jsonld = "Type.key…"`: the page's JSON-LD (or the item's object).
    JsonLd(LdPath),
}

impl FieldSource {
    /// The JSON-LD path, for a `jsonld` field.
    pub fn jsonld(&self) -> Option<&LdPath> {
        match self {
            FieldSource::JsonLd(p) => Some(p),
            FieldSource::Css(_) => None,
        }
    }
}

/// How a field's text is turned into a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldType {
    /// Trimmed text.
    Text,
    /// Made absolute against the page URL (and `<base href>`).
    Url,
    /// A number read from text like "£51.77" or "1.299,00".
    Number,
    /// A whole number, read as `Number` is ("1,299" = 1299); a fraction is missing.
    Integer,
    /// `true`/`yes`/`on`/`1` or `false`/`no`/`off`/`0`, any case.
    Boolean,
    /// A date, out in ISO 8601; read with `format` (chrono strftime) when given.
    Date { format: Option<String> },
}

impl FieldType {
    /// The name a config gives the type (`type = "…"`).
    pub fn name(&self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Url => "url",
            FieldType::Number => "number",
            FieldType::Integer => "integer",
            FieldType::Boolean => "boolean",
            FieldType::Date { .. } => "date",
        }
    }
}
