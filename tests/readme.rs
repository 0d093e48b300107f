//! The README and docs/ say what crawld does: every TOML example is a valid
//! config file, every key the parser accepts is in the configuration
//! reference, and every link between the pages leads somewhere.

use std::path::{Path, PathBuf};

use std::process::Command;

use crawld::config::documented_keys;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// README.md and every page of docs/.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![Path::new(ROOT).join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    assert!(docs.len() >= 10, "docs/ has its pages: {docs:?}");
    pages.extend(docs);
    pages
}

fn read(page: &Path) -> String {
    std::fs::read_to_string(page).unwrap()
}

/// The bodies of a page's fenced blocks of one language.
fn blocks<'a>(text: &'a str, lang: &str) -> Vec<&'a str> {
    let fence = format!("```{lang}\n");
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(&fence) {
        let body = &rest[start + fence.len()..];
        let end = body.find("```").expect("a closed block");
        found.push(&body[..end]);
        rest = &body[end + 3..];
    }
    found
}

#[test]
fn every_toml_block_of_the_readme_and_docs_passes_crawld_check() {
    let mut checked = 0;
    for page in pages() {
        let text = read(&page);
        let toml = blocks(&text, "toml");
        if toml.is_empty() {
            continue;
        }
        // A page's blocks form one configs directory, as a user would copy
        // them: a target may name a channel or profile another block defines.
        let dir = tempfile::tempdir().unwrap();
        for (i, body) in toml.iter().enumerate() {
            std::fs::write(dir.path().join(format!("block{i}.toml")), body).unwrap();
        }
        let state = tempfile::tempdir().unwrap();
        // The examples read their secrets from these variables.
        let out = Command::new(env!("CARGO_BIN_EXE_crawld"))
            .arg("check")
            .arg("--configs")
            .arg(dir.path())
            .env("CRAWLD_STATE", state.path())
            .envs(
                [
                    "BOOKS_TOKEN",
                    "PROXY_USER",
                    "PROXY_PASS",
                    "HOOK_TOKEN",
                    "SMTP_PASS",
                ]
                .map(|v| (v, "t")),
            )
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: `crawld check` refuses its TOML blocks (block N is the page's N+1th):\n{}{}",
            page.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += toml.len();
    }
    assert!(checked >= 10, "the pages have TOML examples ({checked})");
}

/// The lines of the configuration reference's section whose heading holds `heading`.
fn section<'a>(reference: &'a str, heading: &str) -> Vec<&'a str> {
    let mut lines = reference
        .lines()
        .skip_while(|l| !(l.starts_with("## ") && l.contains(heading)));
    let Some(first) = lines.next() else {
        panic!("docs/configuration.md has no `## ` section headed {heading}");
    };
    std::iter::once(first)
        .chain(lines.take_while(|l| !l.starts_with("## ")))
        .collect()
}

#[test]
fn every_key_the_parser_accepts_is_in_the_configuration_reference() {
    let reference = read(&Path::new(ROOT).join("docs/configuration.md"));
    let mut missing = Vec::new();
    let mut keys = 0;
    for (heading, table_keys) in documented_keys() {
        let lines = section(&reference, heading);
        for key in table_keys {
            keys += 1;
            let in_table = format!("`{key}`");
            let as_toml = format!("{key} ");
            let documented = lines.iter().any(|l| {
                l.contains(&in_table)
                    || l.trim_start_matches("# ").starts_with(&as_toml)
                    || l.trim_start().starts_with(&format!("{{ {key} ="))
            });
            if !documented {
                missing.push(format!("{key} (section {heading})"));
            }
        }
    }
    assert!(keys > 80, "the raw structs' keys were read ({keys})");
    assert!(
        missing.is_empty(),
        "keys the parser accepts but docs/configuration.md does not document:\n{}",
        missing.join("\n")
    );
}

/// GitHub's anchor for a heading: lowercase, punctuation dropped, spaces as `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn every_link_between_the_pages_leads_to_a_file_and_heading() {
    let mut broken = Vec::new();
    for page in pages() {
        let text = read(&page);
        let mut rest = text.as_str();
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            let Some(end) = rest.find(')') else { break };
            let link = &rest[..end];
            if link.contains("://") || link.contains(' ') {
                continue;
            }
            let (file, fragment) = link.split_once('#').unwrap_or((link, ""));
            let target = if file.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(file)
            };
            if !target.exists() {
                broken.push(format!("{}: {link} (no file)", page.display()));
                continue;
            }
            if !fragment.is_empty() && target.extension().is_some_and(|e| e == "md") {
                let headings = read(&target);
                let found = headings
                    .lines()
                    .filter_map(|l| l.strip_prefix('#'))
                    .map(|l| anchor(l.trim_start_matches('#')))
                    .any(|a| a == fragment);
                if !found {
                    broken.push(format!("{}: {link} (no such heading)", page.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_is_a_front_page() {
    let readme = read(&Path::new(ROOT).join("README.md"));
    let lines = readme.lines().count();
    assert!(
        lines <= 250,
        "README.md has {lines} lines: reference belongs in docs/"
    );
    let first_block = blocks(&readme, "sh")[0];
    assert!(first_block.contains("cargo run --release -- demo"));
    assert!(first_block.contains("cargo test --locked"));
}
