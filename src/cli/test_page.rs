//! `crawld test TARGET URL`: what a target's selectors extract from one
//! page, and which of its links the crawl would follow.

use std::path::Path;

use super::{fail, pick_target};
use crate::error::Exit;
use crate::extract::{self, Kinds};
use crate::fetcher::{self, Fetcher};
use crate::frontier::{Frontier, Refusal};

pub(super) async fn test(
    configs: &Path,
    name: &str,
    url: Option<&str>,
    file: Option<&Path>,
    json: bool,
) -> Exit {
    let target = match pick_target(configs, name) {
        Ok(t) => t,
        Err(exit) => return exit,
    };
    let page_url = match url.map(url::Url::parse) {
        Some(Ok(u)) => Some(u),
        Some(Err(e)) => {
            return fail(
                Exit::Usage,
                format!("invalid URL {:?}: {e}", url.unwrap_or_default()),
            )
        }
        None => None,
    };
    let (html, page_url, kinds, status) = match (file, page_url) {
        (Some(path), u) => {
            let bytes = match std::fs::read(path) {
                Ok(b) => b,
                Err(e) => {
                    return fail(Exit::Failed, format!("cannot read {}: {e}", path.display()))
                }
            };
            let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
            let kinds = if u.is_some() {
                Kinds::Matching
            } else {
                Kinds::All
            };
            let u = u.or_else(|| url::Url::from_file_path(&abs).ok());
            let Some(u) = u else {
                return fail(Exit::Usage, "give the page's URL along with --file");
            };
            (fetcher::decode(&bytes, None).into_owned(), u, kinds, None)
        }
        (None, Some(u)) => {
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
                Err(e) => return fail(Exit::Failed, e),
            };
            if !(200..300).contains(&resp.status) {
                return fail(
                    Exit::Failed,
                    format!("{} answered HTTP {}", resp.url, resp.status),
                );
            }
            if !resp.is_html() {
                return fail(
                    Exit::Failed,
                    format!(
                        "{} is not HTML ({})",
                        resp.url,
                        resp.content_type.as_deref().unwrap_or("no type")
                    ),
                );
            }
            let status = Some(resp.status);
            (resp.text().into_owned(), resp.url, Kinds::Matching, status)
        }
        (None, None) => return fail(Exit::Usage, "give a URL to fetch, or --file PAGE.html"),
    };
    let t = target.clone();
    let u = page_url.clone();
    let page =
        match tokio::task::spawn_blocking(move || extract::extract(&t, &html, &u, kinds)).await {
            Ok(Ok(p)) => p,
            Ok(Err(deep)) => {
                return fail(
                    Exit::Failed,
                    format!(
                        "{page_url} is not parsed: {deep}; a crawl records such a page \
                         as a too_deep failure (see \"Extract\" in README)"
                    ),
                )
            }
            Err(e) => return fail(Exit::Failed, format!("extraction failed: {e}")),
        };
    let mut frontier = Frontier::new(&target);
    let mut refused: std::collections::BTreeMap<&'static str, u64> = Default::default();
    let mut followed = Vec::new();
    for link in &page.links {
        match frontier.offer(&target, link.clone(), 1) {
            Ok(()) => followed.push(link.as_str().to_owned()),
            Err(r) => *refused.entry(refusal_name(r)).or_default() += 1,
        }
    }
    if json {
        let out = serde_json::json!({
            "url": page_url.as_str(),
            "status": status,
            "items": page.items.iter().map(|i| serde_json::json!({"kind": i.kind, "key": i.key, "value": i.value})).collect::<Vec<_>>(),
            "invalid": page.invalid.iter().map(|i| serde_json::json!({"kind": i.kind, "missing": i.missing})).collect::<Vec<_>>(),
            "links": page.links.iter().map(|l| l.as_str()).collect::<Vec<_>>(),
            "followed": followed,
        });
        outln!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Exit::Ok;
    }
    match status {
        Some(s) => outln!("{page_url} → HTTP {s}"),
        None => outln!("{page_url} (from file)"),
    }
    for kind in &target.items {
        let items: Vec<_> = page.items.iter().filter(|i| i.kind == kind.name).collect();
        let invalid: Vec<_> = page
            .invalid
            .iter()
            .filter(|i| i.kind == kind.name)
            .collect();
        if items.is_empty() && invalid.is_empty() {
            let applies = kinds == Kinds::All
                || kind
                    .pages
                    .as_ref()
                    .is_none_or(|re| re.is_match(&page_url[url::Position::BeforePath..]));
            let why = if applies {
                "no match on this page"
            } else {
                "`pages` does not match this URL"
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
        for item in items {
            outln!("  key {}", item.key);
            for (field, value) in &item.value {
                outln!("    {field:<12} {value}");
            }
        }
        for bad in invalid {
            outln!("  invalid: missing {}", bad.missing.join(", "));
        }
    }
    let refused: Vec<String> = refused.iter().map(|(k, n)| format!("{n} {k}")).collect();
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
    Exit::Ok
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
    }
}
