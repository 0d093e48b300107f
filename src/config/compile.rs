//! Turns one raw target file into a validated [`Target`], collecting every
//! error with its position instead of stopping at the first.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use regex::Regex;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use scraper::Selector;
use toml::Spanned;
use url::Url;

use super::error::{ConfigError, Source};
use super::items::item_kind;
use super::raw::{RawFile, RawFollow};
use super::schedule::Schedule;
use super::{
    CatchUp, Follow, ParamPattern, Profile, Target, DEFAULT_KEEP_RUNS, DEFAULT_KEEP_VERSIONS,
    DEFAULT_LINK_SELECTOR, DEFAULT_MAX_DEPTH, DEFAULT_MAX_PAGES, DEFAULT_PROFILE,
    DEFAULT_RESUME_WITHIN,
};
use crate::ids::{ProfileName, TargetId};
use crate::urlnorm::normalize_url;

/// What a target may refer to while it compiles.
pub struct Context<'a> {
    pub profiles: &'a BTreeMap<ProfileName, Arc<Profile>>,
    /// Profiles that were declared but failed to resolve, with their file.
    pub broken_profiles: &'a BTreeMap<String, std::path::PathBuf>,
    /// Files that did not parse: a profile they define is unknown here.
    pub unreadable: &'a [std::path::PathBuf],
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

    let profile = match &raw.profile {
        None => cx.profiles.get(&ProfileName::new(DEFAULT_PROFILE)).cloned(),
        Some(p) => c.check(p, "profile", |name| lookup_profile(name, cx)),
    };
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
    let max_pages = match &raw.max_pages {
        None => Some(DEFAULT_MAX_PAGES),
        Some(m) => c.check(m, "max_pages", |&n| {
            u64::try_from(n)
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| "max_pages must be at least 1".to_owned())
        }),
    };
    let schedule = raw
        .schedule
        .as_ref()
        .and_then(|s| c.check(s, "schedule", |e| Schedule::parse(e)));
    let full_schedule = raw
        .full_schedule
        .as_ref()
        .and_then(|s| c.check(s, "full_schedule", |e| Schedule::parse(e)));

    let mut headers = HeaderMap::new();
    if let Some(h) = &raw.headers {
        for (name, value) in h.get_ref() {
            let key = format!("headers.{name}");
            let Ok(hname) = HeaderName::from_bytes(name.as_bytes()) else {
                c.err(
                    value.span(),
                    key,
                    format!("{name:?} is not a valid HTTP header name"),
                );
                continue;
            };
            if let Some(v) = c.check(value, &key, |v| expand_env(v, cx.env)) {
                match HeaderValue::from_str(&v) {
                    Ok(mut hv) => {
                        // Header values may hold tokens: keep them out of logs and debug output.
                        hv.set_sensitive(true);
                        headers.append(hname, hv);
                    }
                    Err(_) => c.err(
                        value.span(),
                        key,
                        "header value contains characters not allowed in HTTP headers",
                    ),
                }
            }
        }
    }
    let strip_params: Vec<ParamPattern> = raw
        .strip_params
        .as_ref()
        .map(|s| {
            s.get_ref()
                .iter()
                .map(|p| ParamPattern::parse(p.get_ref()))
                .collect()
        })
        .unwrap_or_default();
    let follow = follow(&mut c, raw.follow.as_ref().map(|f| f.get_ref()));

    let mut items = Vec::new();
    if let Some(raw_items) = &raw.items {
        for (name, item) in raw_items.get_ref() {
            if let Some(kind) = item_kind(&mut c, name, item) {
                items.push(kind);
            }
        }
    }

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
        None => Some(std::time::Duration::ZERO),
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
    let count = |c: &mut Compiler, v: &Option<Spanned<i64>>, key: &str, default: usize| match v {
        None => Some(default),
        Some(n) => c.check(n, key, |&n| {
            usize::try_from(n)
                .ok()
                .filter(|&n| (1..=100_000).contains(&n))
                .ok_or_else(|| format!("{key} must be between 1 and 100000"))
        }),
    };
    let keep_versions = count(
        &mut c,
        &raw.keep_versions,
        "keep_versions",
        DEFAULT_KEEP_VERSIONS,
    );
    let keep_runs = count(&mut c, &raw.keep_runs, "keep_runs", DEFAULT_KEEP_RUNS);
    let changes_jsonl = raw
        .output
        .as_ref()
        .and_then(|o| o.get_ref().changes_jsonl.as_ref())
        .and_then(|p| c.check(p, "output.changes_jsonl", |s| output_path(s)));

    // Start URLs are stored normalised so that the frontier dedups them like any link.
    let start_urls = start_urls
        .into_iter()
        .map(|u| normalize_url(u, &strip_params))
        .collect();
    let (Some(timezone), Some(catch_up), Some(spread), Some(max_duration)) =
        (timezone, catch_up, spread, max_duration)
    else {
        return Err(c.errors);
    };
    match (
        c.errors.is_empty(),
        profile,
        max_pages,
        follow,
        resume_within,
        keep_versions,
        keep_runs,
    ) {
        (
            true,
            Some(profile),
            Some(max_pages),
            Some(follow),
            Some(resume_within),
            Some(keep_versions),
            Some(keep_runs),
        ) => Ok(Target {
            id,
            file: src.path.clone(),
            start_urls,
            profile,
            domains,
            allow_private_networks: raw.allow_private_networks.unwrap_or(false),
            max_pages,
            schedule,
            full_schedule,
            headers,
            strip_params,
            follow,
            items,
            resume_within,
            keep_versions,
            keep_runs,
            changes_jsonl,
            fingerprint: fingerprint(&src.text),
            timezone,
            catch_up,
            spread,
            max_duration,
            source_hash: format!("{:016x}", xxhash_rust::xxh3::xxh3_64(src.text.as_bytes())),
        }),
        _ => Err(c.errors),
    }
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
    if !cx.unreadable.is_empty() {
        let files: Vec<String> = cx
            .unreadable
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        msg.push_str(&format!(
            " (it may be in {}, which could not be read: fix that first)",
            files.join(", ")
        ));
    }
    Err(msg)
}

/// Replaces `${VAR}` with the variable's value; an undefined variable is an error.
pub(super) fn expand_env(
    value: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "unterminated ${…} reference".to_owned())?;
        let var = &after[..end];
        if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("invalid variable name {var:?} in ${{…}}"));
        }
        match env(var) {
            Some(v) => out.push_str(&v),
            None => return Err(format!("environment variable {var} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

pub(super) fn regex(s: &str) -> Result<Regex, String> {
    Regex::new(s).map_err(|e| {
        // regex draws its own caret over several lines; its last line says what is wrong.
        let text = e.to_string();
        let why = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or(&text);
        format!(
            "invalid regex {s:?}: {}",
            why.trim().trim_start_matches("error: ")
        )
    })
}

pub(super) fn selector(s: &str) -> Result<Selector, String> {
    crate::extract::parse_selector(s)
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
    }
    Some(Follow {
        links: links?,
        allow,
        deny,
        max_depth: max_depth?,
        same_host,
    })
}
#[cfg(test)]
mod tests {
    use super::expand_env;

    #[test]
    fn expands_defined_variables_only() {
        let env = |v: &str| (v == "TOKEN").then(|| "s3cret".to_owned());
        assert_eq!(
            expand_env("Bearer ${TOKEN}", &env).unwrap(),
            "Bearer s3cret"
        );
        assert_eq!(expand_env("plain", &env).unwrap(), "plain");
        assert!(expand_env("${MISSING}", &env)
            .unwrap_err()
            .contains("MISSING is not set"));
        assert!(expand_env("${TOKEN", &env).is_err());
    }
}
