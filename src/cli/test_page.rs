//! `crawld test TARGET URL`: what a target's selectors extract from one
//! page, and which of its links the crawl would follow.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use url::Url;

use super::{fail, pick_target};
use crate::config::Target;
use crate::error::Exit;
use crate::extract::{self, Kinds, PageExtract};
use crate::fetcher::{self, Fetcher};
use crate::frontier::{Frontier, Refusal};

/// `crawld test`: extracts one page, fetched or read from a file, and
/// prints its items and the links a crawl would follow.
pub(super) async fn test(
    configs: &Path,
    name: &str,
    url: Option<&str>,
    file: Option<&Path>,
    json: bool,
) -> Exit {
    match run(configs, name, url, file, json).await {
        Ok(()) => Exit::Ok,
        Err(exit) => exit,
    }
}

/// `crawld test`, its failures already reported.
async fn run(
    configs: &Path,
    name: &str,
    url: Option<&str>,
    file: Option<&Path>,
    json: bool,
) -> Result<(), Exit> {
    let target = pick_target(configs, name)?;
    let page_url = match url.map(Url::parse) {
        Some(Ok(u)) => Some(u),
        Some(Err(e)) => {
            return Err(fail(
                Exit::Usage,
                format!("invalid URL {:?}: {e}", url.unwrap_or_default()),
            ))
        }
        None => None,
    };
    let (html, source) = match (file, page_url) {
        (Some(path), u) => from_file(path, u)?,
        (None, Some(u)) => fetch(&target, u).await?,
        (None, None) => {
            return Err(fail(
                Exit::Usage,
                "give a URL to fetch, or --file PAGE.html",
            ))
        }
    };
    let page = extract_page(&target, html, &source).await?;
    let links = offer_links(&target, &page);
    if json {
        print_json(&source, &page, &links);
        return Ok(());
    }
    match source.status {
        Some(s) => outln!("{} → HTTP {s}", source.url),
        None => outln!("{} (from file)", source.url),
    }
    print_items(&target, &source, &page);
    if page.jsonld_faults > 0 {
        outln!(
            "\nwarning: {} JSON-LD block(s) malformed or past the caps: not read (a crawl counts the page in jsonld_invalid)",
            page.jsonld_faults
        );
    }
    print_links(&page, &links);
    Ok(())
}

/// Where the page under test came from: its URL, which item kinds apply
/// to it, and the HTTP status when it was fetched.
struct PageSource {
    url: Url,
    kinds: Kinds,
    status: Option<u16>,
}

/// A page read from a file: every item kind applies, unless the page's URL
/// is given too (it also resolves the links).
fn from_file(path: &Path, u: Option<Url>) -> Result<(String, PageSource), Exit> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            return Err(fail(
                Exit::Failed,
                format!("cannot read {}: {e}", path.display()),
            ))
        }
    };
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let kinds = if u.is_some() {
        Kinds::Matching
    } else {
        Kinds::All
    };
    let u = u.or_else(|| Url::from_file_path(&abs).ok());
    let Some(u) = u else {
        return Err(fail(Exit::Usage, "give the page's URL along with --file"));
    };
    let source = PageSource {
        url: u,
        kinds,
        status: None,
    };
    Ok((fetcher::decode(&bytes, None).into_owned(), source))
}

/// A page fetched with the target's profile and headers, redirects
/// followed; it must answer 2xx with HTML.
async fn fetch(target: &Target, u: Url) -> Result<(String, PageSource), Exit> {
    let fetcher = Fetcher::default();
    let host = crate::ids::HostKey::of(&u);
    let request = fetcher::Request {
        url: &u,
        profile: host
            .as_ref()
            .map_or(&target.profile, |h| target.profile_for(h)),
        headers: &target.headers,
        validators: Default::default(),
        // The user names the page: any address they can reach is fine.
        internal_ok: true,
        private_session: None,
    };
    let resp = match fetcher.get_following(request).await {
        Ok(r) => r,
        Err(e) => return Err(fail(Exit::Failed, e)),
    };
    if !(200..300).contains(&resp.status) {
        return Err(fail(
            Exit::Failed,
            format!("{} answered HTTP {}", resp.url, resp.status),
        ));
    }
    if !resp.is_html() {
        return Err(fail(
            Exit::Failed,
            format!(
                "{} is not HTML ({})",
                resp.url,
                resp.content_type.as_deref().unwrap_or("no type")
            ),
        ));
    }
    let status = Some(resp.status);
    let html = resp.text().into_owned();
    let source = PageSource {
        url: resp.url,
        kinds: Kinds::Matching,
        status,
    };
    Ok((html, source))
}

/// Items and links of the page, extracted off the async threads as a crawl does.
#[allow(
    clippy::disallowed_methods,
    reason = "extraction is CPU work, not store work"
)]
async fn extract_page(
    target: &Arc<Target>,
    html: String,
    source: &PageSource,
) -> Result<PageExtract, Exit> {
    let t = target.clone();
    let (u, kinds) = (source.url.clone(), source.kinds);
    match tokio::task::spawn_blocking(move || extract::extract_explained(&t, &html, &u, kinds))
        .await
    {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(deep)) => Err(fail(
            Exit::Failed,
            format!(
                "{} is not parsed: {deep}; a crawl records such a page \
                 as a too_deep failure (see \"Extract\" in README)",
                source.url
            ),
        )),
        Err(e) => Err(fail(Exit::Failed, format!("extraction failed: {e}"))),
    }
}

/// What a crawl would do with the page's links: those it would follow,
/// and how many it would refuse, by reason.
struct Links {
    followed: Vec<String>,
    refused: BTreeMap<&'static str, u64>,
}

/// Offers the page's links to a fresh frontier of the target, as a crawl
/// does with the links of a start page.
fn offer_links(target: &Target, page: &PageExtract) -> Links {
    let mut frontier = Frontier::new(target);
    let mut links = Links {
        followed: Vec::new(),
        refused: BTreeMap::new(),
    };
    for link in &page.links {
        match frontier.offer(target, link.clone(), 1) {
            Ok(()) => links.followed.push(link.as_str().to_owned()),
            Err(r) => *links.refused.entry(refusal_name(r)).or_default() += 1,
        }
    }
    links
}

/// `--json`: the whole result as one object.
fn print_json(source: &PageSource, page: &PageExtract, links: &Links) {
    let out = serde_json::json!({
        "url": source.url.as_str(),
        "status": source.status,
        "items": page.items.iter().enumerate().map(|(n, i)| with_raw(serde_json::json!({"kind": i.kind, "key": i.key, "value": i.value}), page.raw.get(n))).collect::<Vec<_>>(),
        "invalid": page.invalid.iter().enumerate().map(|(n, i)| with_raw(serde_json::json!({"kind": i.kind, "missing": i.missing}), page.invalid_raw.get(n))).collect::<Vec<_>>(),
        "links": page.links.iter().map(|l| l.as_str()).collect::<Vec<_>>(),
        "followed": links.followed,
        "jsonld_faults": page.jsonld_faults,
    });
    outln!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
}

/// Adds `"raw"` (each field's value before processing and typing, for the
/// fields where it differs) to an item's JSON object; no key when none
/// differs, so the object is what it was before processing existed.
fn with_raw(
    mut item: serde_json::Value,
    raw: Option<&serde_json::Map<String, serde_json::Value>>,
) -> serde_json::Value {
    if let (Some(obj), Some(raw)) = (item.as_object_mut(), raw.filter(|r| !r.is_empty())) {
        obj.insert("raw".into(), serde_json::Value::Object(raw.clone()));
    }
    item
}

/// A field's value, and its raw value beside it when they differ.
fn field_line(field: &str, value: &serde_json::Value, raw: Option<&serde_json::Value>) -> String {
    match raw {
        Some(serde_json::Value::Null) => {
            format!("    {field:<12} {value}    (default: the page gave nothing)")
        }
        Some(r) => format!("    {field:<12} {value}    (raw: {r})"),
        None => format!("    {field:<12} {value}"),
    }
}

/// The items of each kind of the target, and why a kind found none.
fn print_items(target: &Target, source: &PageSource, page: &PageExtract) {
    for kind in &target.items {
        let items: Vec<_> = page
            .items
            .iter()
            .zip(raws(&page.raw))
            .filter(|(i, _)| i.kind == kind.name)
            .collect();
        let invalid: Vec<_> = page
            .invalid
            .iter()
            .zip(raws(&page.invalid_raw))
            .filter(|(i, _)| i.kind == kind.name)
            .collect();
        if items.is_empty() && invalid.is_empty() {
            let applies = source.kinds == Kinds::All
                || kind
                    .pages
                    .as_ref()
                    .is_none_or(|re| re.is_match(&source.url[url::Position::BeforePath..]));
            let why = match &kind.ld_type {
                _ if !applies => "`pages` does not match this URL".to_owned(),
                Some(ty) => format!("no JSON-LD {ty} object on this page"),
                None => "no match on this page".to_owned(),
            };
            outln!("\n[{}] 0 items ({why})", kind.name);
            continue;
        }
        outln!(
            "\n[{}] {} item(s), {} invalid",
            kind.name,
            items.len(),
            invalid.len()
        );
        for (item, raw) in items {
            outln!("  key {}", item.key);
            for (field, value) in &item.value {
                outln!(
                    "{}",
                    field_line(field, value, raw.and_then(|r| r.get(field)))
                );
            }
        }
        for (bad, raw) in invalid {
            outln!("  invalid: missing {}", bad.missing.join(", "));
            // What the page gave for the missing fields: why `re` found nothing, etc.
            for (field, r) in raw.into_iter().flatten() {
                outln!("    {field:<12} (raw: {r})");
            }
        }
    }
}

/// Each item's raw values, then `None` for ever (the raw list is empty
/// when extraction did not keep them).
fn raws(
    raw: &[serde_json::Map<String, serde_json::Value>],
) -> impl Iterator<Item = Option<&serde_json::Map<String, serde_json::Value>>> {
    raw.iter().map(Some).chain(std::iter::repeat(None))
}

/// The link counts, and the first [`SHOWN_LINKS`] links to follow.
fn print_links(page: &PageExtract, links: &Links) {
    let followed = &links.followed;
    let refused: Vec<String> = links
        .refused
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    outln!(
        "\nlinks: {} found, {} would be followed{}",
        page.links.len(),
        followed.len(),
        if refused.is_empty() {
            String::new()
        } else {
            format!(" (refused: {})", refused.join(", "))
        }
    );
    for link in followed.iter().take(SHOWN_LINKS) {
        outln!("  follow {link}");
    }
    if followed.len() > SHOWN_LINKS {
        outln!(
            "  …and {} more (--json lists them all)",
            followed.len() - SHOWN_LINKS
        );
    }
}

/// Links to follow listed by `crawld test`; `--json` lists every one.
const SHOWN_LINKS: usize = 20;

fn refusal_name(r: Refusal) -> &'static str {
    match r {
        Refusal::AlreadySeen => "already seen",
        Refusal::OffHost => "off host",
        Refusal::NotAllowed => "not allowed",
        Refusal::Denied => "denied",
        Refusal::TooDeep => "too deep",
        Refusal::OverBudget => "over budget",
        Refusal::Internal => "internal address",
        Refusal::TooManyHosts => "too many hosts",
    }
}
