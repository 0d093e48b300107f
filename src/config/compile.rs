//! Turns one raw target file into a validated [`Target`], collecting every
//! error with its position instead of stopping at the first.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use toml::Spanned;
use url::Url;

use super::error::{ConfigError, Source};
use super::items::item_kind;
use super::raw::{RawFile, RawFollow};
use super::schedule::Schedule;
use super::values::{expand_env, regex, selector};
use super::{
    CatchUp, Channel, Follow, ItemKind, ParamPattern, Profile, Target, DEFAULT_KEEP_RUNS,
    DEFAULT_KEEP_VERSIONS, DEFAULT_LINK_SELECTOR, DEFAULT_MAX_DEPTH, DEFAULT_MAX_HOSTS,
    DEFAULT_MAX_LINKS, DEFAULT_MAX_PAGES, DEFAULT_PROFILE, DEFAULT_RESUME_WITHIN,
};
use crate::ids::{ChannelName, ProfileName, TargetId};
use crate::urlnorm::normalize_url;

/// What a target may refer to while it compiles.
pub struct Context<'a> {
    pub profiles: &'a BTreeMap<ProfileName, Arc<Profile>>,
    /// Profiles that were declared but failed to resolve, with their file.
    pub broken_profiles: &'a BTreeMap<String, std::path::PathBuf>,
    /// Files that did not parse: a profile they define is unknown here.
    pub unreadable: &'a [std::path::PathBuf],
    /// Alert channels, by name.
    pub channels: &'a BTreeMap<ChannelName, Arc<Channel>>,
    /// Channels that were declared but failed to compile, with their file.
    pub broken_channels: &'a BTreeMap<String, std::path::PathBuf>,
    /// Reads `${VAR}` references in header values.
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

/// Collects the errors of one file while its parts compile.
pub(super) struct Compiler<'a> {
    pub(super) src: &'a Source,
    pub(super) errors: Vec<ConfigError>,
}

impl Compiler<'_> {
    pub(super) fn err(
        &mut self,
        span: Range<usize>,
        key: impl Into<String>,
        msg: impl Into<String>,
    ) {
        self.errors
            .push(self.src.error(span, Some(key.into()), msg));
    }

    /// Runs `f` on a spanned value, recording its error at the value's span.
    pub(super) fn check<T, R>(
        &mut self,
        v: &Spanned<T>,
        key: &str,
        f: impl FnOnce(&T) -> Result<R, String>,
    ) -> Option<R> {
        match f(v.get_ref()) {
            Ok(r) => Some(r),
            Err(e) => {
                self.err(v.span(), key, e);
                None
            }
        }
    }
}

/// Compiles a file that declares a target. `None` when it has errors, which
/// are returned alongside.
pub fn target(
    id: TargetId,
    raw: &RawFile,
    src: &Source,
    cx: &Context,
) -> Result<Target, Vec<ConfigError>> {
    let mut c = Compiler {
        src,
        errors: Vec::new(),
    };
    // Every part is checked, whatever failed before it, so that all errors show at once.
    let strip_params = strip_params(raw);
    let start_urls = start_urls(&mut c, raw, &strip_params);
    let profile = match &raw.profile {
        None => cx.profiles.get(&ProfileName::new(DEFAULT_PROFILE)).cloned(),
        Some(p) => c.check(p, "profile", |name| lookup_profile(name, cx)),
    };
    let domains = domains(&mut c, raw, cx);
    let max_pages = max_pages(&mut c, raw);
    let (schedule, full_schedule) = schedules(&mut c, raw);
    let headers = header_map(&mut c, raw.headers.as_ref(), "headers", cx.env);
    let follow = follow(&mut c, raw.follow.as_ref().map(|f| f.get_ref()));
    let sitemaps = sitemaps(&mut c, raw);
    let items = items(&mut c, raw);
    let timing = timing(&mut c, raw);
    let keep = keep(&mut c, raw);
    let alerts = super::channel::alerts(&mut c, raw, cx);
    let monitor = super::monitor::compile(&mut c, raw.monitor.as_ref(), &items);
    let notify = super::notify::compile(&mut c, raw.notify.as_ref(), cx, &items);
    let (
        true,
        Some(profile),
        Some(max_pages),
        Some(follow),
        Some(timing),
        Some(keep),
        Some(monitor),
    ) = (
        c.errors.is_empty(),
        profile,
        max_pages,
        follow,
        timing,
        keep,
        monitor,
    )
    else {
        return Err(c.errors);
    };
    Ok(Target {
        id,
        file: src.path.clone(),
        start_urls,
        profile,
        domains,
        allow_private_networks: raw.allow_private_networks.unwrap_or(false),
        alerts,
        max_pages,
        schedule,
        full_schedule,
        headers,
        strip_params,
        follow,
        sitemaps,
        items,
        resume_within: timing.resume_within,
        keep_versions: keep.versions,
        keep_runs: keep.runs,
        changes_jsonl: keep.changes_jsonl,
        monitor,
        notify,
        fingerprint: fingerprint(&src.text),
        timezone: timing.timezone,
        catch_up: timing.catch_up,
        spread: timing.spread,
        max_duration: timing.max_duration,
        source_hash: format!("{:016x}", xxhash_rust::xxh3::xxh3_64(src.text.as_bytes())),
    })
}

/// For a name not found: the files that could not be read may declare it.
pub(super) fn unreadable_hint(cx: &Context) -> String {
    if cx.unreadable.is_empty() {
        return String::new();
    }
    let files: Vec<String> = cx
        .unreadable
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    format!(
        " (it may be in {}, which could not be read: fix that first)",
        files.join(", ")
    )
}

/// `strip_params`: the query parameters dropped from every URL.
fn strip_params(raw: &RawFile) -> Vec<ParamPattern> {
    raw.strip_params
        .as_ref()
        .map(|s| {
            s.get_ref()
                .iter()
                .map(|p| ParamPattern::parse(p.get_ref()))
                .collect()
        })
        .unwrap_or_default()
}

/// `start_urls`: not empty, each an http(s) URL with a host (the valid
/// ones), normalised so that the frontier dedups them like any link.
fn start_urls(c: &mut Compiler, raw: &RawFile, strip_params: &[ParamPattern]) -> Vec<Url> {
    let mut start_urls = Vec::new();
    if let Some(urls) = &raw.start_urls {
        if urls.get_ref().is_empty() {
            c.err(
                urls.span(),
                "start_urls",
                "start_urls is empty: give at least one URL",
            );
        }
        for u in urls.get_ref() {
            if let Some(url) = c.check(u, "start_urls", |s| parse_http_url(s)) {
                start_urls.push(url);
            }
        }
    }
    start_urls
        .into_iter()
        .map(|u| normalize_url(u, strip_params))
        .collect()
}

/// `sitemaps`: `"robots"` or a list of http(s) URLs (the valid ones).
fn sitemaps(c: &mut Compiler, raw: &RawFile) -> Option<super::SitemapSource> {
    use super::raw::RawSitemaps;
    use super::SitemapSource;
    let s = raw.sitemaps.as_ref()?;
    c.check(s, "sitemaps", |s| match s {
        RawSitemaps::Word(w) if w == "robots" => Ok(SitemapSource::Robots),
        RawSitemaps::Word(w) => Err(format!(
            "sitemaps = {w:?}: write \"robots\" (the Sitemap: lines of robots.txt) or a list of URLs"
        )),
        RawSitemaps::Urls(urls) if urls.is_empty() => {
            Err("sitemaps is empty: give at least one URL, or \"robots\"".to_owned())
        }
        RawSitemaps::Urls(urls) => urls
            .iter()
            .map(|u| parse_http_url(u))
            .collect::<Result<Vec<_>, _>>()
            .map(SitemapSource::Urls),
    })
}

/// `max_pages`: at least 1.
fn max_pages(c: &mut Compiler, raw: &RawFile) -> Option<u64> {
    match &raw.max_pages {
        None => Some(DEFAULT_MAX_PAGES),
        Some(m) => c.check(m, "max_pages", |&n| {
            u64::try_from(n)
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| "max_pages must be at least 1".to_owned())
        }),
    }
}

/// `schedule` and `full_schedule` (each `None` when unset or invalid).
fn schedules(c: &mut Compiler, raw: &RawFile) -> (Option<Schedule>, Option<Schedule>) {
    let schedule = raw
        .schedule
        .as_ref()
        .and_then(|s| c.check(s, "schedule", |e| Schedule::parse(e)));
    let full_schedule = raw
        .full_schedule
        .as_ref()
        .and_then(|s| c.check(s, "full_schedule", |e| Schedule::parse(e)));
    (schedule, full_schedule)
}

/// `[domains]`: a profile per host (the valid entries).
fn domains(c: &mut Compiler, raw: &RawFile, cx: &Context) -> Vec<(String, Arc<Profile>)> {
    let mut domains = Vec::new();
    if let Some(d) = &raw.domains {
        for (host, entry) in d.get_ref() {
            let key = format!("domains.{host}");
            let valid = url::Url::parse(&format!("http://{host}/"))
                .ok()
                .filter(|u| {
                    let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
                    u.host_str().is_some_and(|h| format!("{h}{port}") == *host)
                });
            if valid.is_none() {
                c.err(
                    entry.span(),
                    key.clone(),
                    format!("{host:?} is not a lowercase host name or host:port"),
                );
                continue;
            }
            let name = &entry.get_ref().profile;
            if let Some(p) = c.check(name, &format!("{key}.profile"), |n| lookup_profile(n, cx)) {
                domains.push((host.clone(), p));
            }
        }
    }
    domains
}

/// A table of request headers (`[headers]` of a target, or of a webhook
/// channel: `key` is the table's own key), `${VAR}` expanded from `env` and
/// every value marked sensitive.
pub(super) fn header_map(
    c: &mut Compiler,
    table: Option<&Spanned<IndexMap<String, Spanned<String>>>>,
    key: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in table.map(|h| h.get_ref().iter()).into_iter().flatten() {
        let key = format!("{key}.{name}");
        let Ok(hname) = HeaderName::from_bytes(name.as_bytes()) else {
            c.err(
                value.span(),
                key,
                format!("{name:?} is not a valid HTTP header name"),
            );
            continue;
        };
        let v = c.check(value, &key, |v| {
            HeaderValue::from_str(&expand_env(v, env)?)
                .map_err(|_| "header value contains characters not allowed in HTTP headers".into())
        });
        if let Some(mut v) = v {
            // Header values may hold tokens: keep them out of logs and debug output.
            v.set_sensitive(true);
            headers.append(hname, v);
        }
    }
    headers
}

/// `[items.*]`: the item kinds that compiled.
fn items(c: &mut Compiler, raw: &RawFile) -> Vec<ItemKind> {
    let mut items = Vec::new();
    if let Some(raw_items) = &raw.items {
        for (name, item) in raw_items.get_ref() {
            if let Some(kind) = item_kind(c, name, item) {
                items.push(kind);
            }
        }
    }
    items
}

/// When a target's runs happen and how long they may take.
struct Timing {
    timezone: chrono_tz::Tz,
    catch_up: CatchUp,
    spread: Duration,
    max_duration: Option<Duration>,
    resume_within: Duration,
}

/// `timezone`, `catch_up`, `spread`, `max_duration` and `resume_within`;
/// `None` when any has an error.
fn timing(c: &mut Compiler, raw: &RawFile) -> Option<Timing> {
    let timezone = match &raw.timezone {
        None => Some(chrono_tz::Tz::UTC),
        Some(z) => c.check(z, "timezone", |s| {
            s.parse::<chrono_tz::Tz>().map_err(|_| {
                format!(
                    "unknown time zone {s:?}: use an IANA name like \"Europe/Berlin\" or \"UTC\""
                )
            })
        }),
    };
    let catch_up = match &raw.catch_up {
        None => Some(CatchUp::Once),
        Some(v) => c.check(v, "catch_up", |s| match s.as_str() {
            "once" => Ok(CatchUp::Once),
            "skip" => Ok(CatchUp::Skip),
            other => Err(format!("catch_up is \"once\" or \"skip\", not {other:?}")),
        }),
    };
    let spread = match &raw.spread {
        None => Some(Duration::ZERO),
        Some(d) => c.check(d, "spread", |s| super::values::duration(s)),
    };
    let max_duration = match &raw.max_duration {
        None => Some(None),
        Some(d) => c.check(d, "max_duration", |s| super::values::duration(s).map(Some)),
    };
    let resume_within = match &raw.resume_within {
        None => Some(DEFAULT_RESUME_WITHIN),
        Some(d) => c.check(d, "resume_within", |s| super::values::duration(s)),
    };
    Some(Timing {
        timezone: timezone?,
        catch_up: catch_up?,
        spread: spread?,
        max_duration: max_duration?,
        resume_within: resume_within?,
    })
}

/// What a target keeps: versions per item, run records, a changes log.
struct Keep {
    versions: usize,
    runs: usize,
    changes_jsonl: Option<String>,
}

/// `keep_versions`, `keep_runs` and `[output] changes_jsonl`; `None` when
/// a count has an error.
fn keep(c: &mut Compiler, raw: &RawFile) -> Option<Keep> {
    let count = |c: &mut Compiler, v: &Option<Spanned<i64>>, key: &str, default: usize| match v {
        None => Some(default),
        Some(n) => c.check(n, key, |&n| {
            usize::try_from(n)
                .ok()
                .filter(|&n| (1..=100_000).contains(&n))
                .ok_or_else(|| format!("{key} must be between 1 and 100000"))
        }),
    };
    let versions = count(
        c,
        &raw.keep_versions,
        "keep_versions",
        DEFAULT_KEEP_VERSIONS,
    );
    let runs = count(c, &raw.keep_runs, "keep_runs", DEFAULT_KEEP_RUNS);
    let changes_jsonl = raw
        .output
        .as_ref()
        .and_then(|o| o.get_ref().changes_jsonl.as_ref())
        .and_then(|p| c.check(p, "output.changes_jsonl", |s| output_path(s)));
    Some(Keep {
        versions: versions?,
        runs: runs?,
        changes_jsonl,
    })
}

/// Hash of the sections that decide what a page yields, in their TOML form
/// (so comments and other keys do not count).
fn fingerprint(text: &str) -> String {
    let table: toml::Table = toml::from_str(text).unwrap_or_default();
    let parts: Vec<String> = ["items", "follow", "strip_params"]
        .iter()
        .map(|k| {
            table
                .get(*k)
                .and_then(|v| serde_json::to_string(v).ok())
                .unwrap_or_default()
        })
        .collect();
    format!(
        "{:016x}",
        xxhash_rust::xxh3::xxh3_64(parts.join("\u{1}").as_bytes())
    )
}

/// A relative path that stays inside the state dir, with known placeholders.
fn output_path(s: &str) -> Result<String, String> {
    let path = std::path::Path::new(s);
    if s.trim().is_empty() || path.is_absolute() {
        return Err("changes_jsonl must be a path relative to the state dir".into());
    }
    if path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err("changes_jsonl must stay inside the state dir (no `..`)".into());
    }
    let stripped = s.replace("{target}", "").replace("{run}", "");
    if stripped.contains('{') || stripped.contains('}') {
        return Err("changes_jsonl knows only the placeholders {target} and {run}".into());
    }
    Ok(s.to_owned())
}

fn parse_http_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s.trim()).map_err(|e| format!("invalid URL {s:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("{s:?} is not an http(s) URL with a host"));
    }
    Ok(url)
}

fn lookup_profile(name: &str, cx: &Context) -> Result<Arc<Profile>, String> {
    if let Some(p) = cx.profiles.get(&ProfileName::new(name)) {
        return Ok(p.clone());
    }
    if let Some(file) = cx.broken_profiles.get(name) {
        return Err(format!(
            "profile {name:?} has errors (see {})",
            file.display()
        ));
    }
    let known: Vec<&str> = cx.profiles.keys().map(|p| p.as_str()).collect();
    let mut msg = format!("unknown profile {name:?}; known: {}", known.join(", "));
    msg.push_str(&unreadable_hint(cx));
    Err(msg)
}

fn follow(c: &mut Compiler, raw: Option<&RawFollow>) -> Option<Follow> {
    let links = match raw.and_then(|f| f.links.as_ref()) {
        Some(l) => c.check(l, "follow.links", |s| selector(s)),
        None => selector(DEFAULT_LINK_SELECTOR).ok(),
    };
    let mut allow = Vec::new();
    let mut deny = Vec::new();
    let mut max_depth = Some(DEFAULT_MAX_DEPTH);
    let mut same_host = true;
    let mut max_links = Some(DEFAULT_MAX_LINKS);
    let mut max_hosts = Some(DEFAULT_MAX_HOSTS);
    if let Some(raw) = raw {
        allow = raw
            .allow
            .iter()
            .filter_map(|r| c.check(r, "follow.allow", |s| regex(s)))
            .collect();
        deny = raw
            .deny
            .iter()
            .filter_map(|r| c.check(r, "follow.deny", |s| regex(s)))
            .collect();
        if let Some(d) = &raw.max_depth {
            max_depth = c.check(d, "follow.max_depth", |&d| {
                u32::try_from(d).map_err(|_| "max_depth must be 0 or more".to_owned())
            });
        }
        same_host = raw.same_host.unwrap_or(true);
        if let Some(n) = &raw.max_links {
            max_links = c.check(n, "follow.max_links", |&n| at_least_one(n, "max_links"));
        }
        if let Some(n) = &raw.max_hosts {
            max_hosts = c.check(n, "follow.max_hosts", |&n| at_least_one(n, "max_hosts"));
        }
    }
    Some(Follow {
        links: links?,
        allow,
        deny,
        max_depth: max_depth?,
        same_host,
        max_links: max_links?,
        max_hosts: max_hosts?,
    })
}

/// A cap that must let at least one through.
fn at_least_one(n: i64, key: &str) -> Result<usize, String> {
    usize::try_from(n)
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| format!("{key} must be at least 1"))
}
