//! Floors that go one way: every path into another top-level module of the
//! library (`use crate::x::…`, `crate::x::f()` in code, `use crate::{x, y}`
//! groups over several lines, and `super::x` that climbs to the crate root)
//! must point to a strictly lower floor of [`FLOORS`]. A module may always
//! use itself and its own submodules. A new upward import fails here with
//! the file, the line, both modules and their floors. Nor may a module
//! re-export another's items (`pub use crate::x::…`): shared vocabulary is
//! imported from where it lives, never through a neighbour.
//!
//! The floors follow the data flow of `src/lib.rs` (config → schedule →
//! frontier → limiter → fetcher → extract → store), read as "who may name
//! whom": shared vocabulary at the bottom, the compiled configuration above
//! it, then the pure extraction whose items the store keeps, the store, the
//! stages of a crawl that persist through it, the crawl that wires them, and
//! the daemon and the command line on top.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

mod scan;

use scan::{imports, reexports, strip, tokens, Import, Tok};

/// Each top-level module of `src/` and its floor. A module may import only
/// from floors strictly below its own.
const FLOORS: &[(&str, u8)] = &[
    // 0 — vocabulary every floor may share; these import nothing of the crate.
    ("address", 0),
    ("error", 0),
    ("failure", 0),
    ("files", 0),
    ("ids", 0),
    // JSON-LD paths (compiled by config) and the pure reader (used by extract).
    ("jsonld", 0),
    ("printable", 0),
    ("urlnorm", 0),
    // 1 — the words for a target's health (monitor kinds and states).
    ("health", 1),
    // 2 — the compiled configuration (targets, profiles, compiled selectors).
    ("config", 2),
    // 3 — what each answer means, and a host's back-off wait (reads a profile).
    ("retry", 3),
    // 4 — extraction: pure, from a page and its target to items and links.
    ("extract", 4),
    // A sitemap read (pure, like extraction: from a body to its entries).
    ("sitemap", 4),
    // 5 — the store keeps extraction's items, failures and monitor states.
    ("store", 5),
    // 6 — the crawl's stages and readers that persist through the store.
    ("export", 6),
    ("frontier", 6),
    ("limiter", 6),
    ("monitor", 6),
    // 7 — fetching (holds a limiter slot) and the reading commands.
    ("fetcher", 7),
    ("query", 7),
    // 8 — robots.txt (fetched through the fetcher), and the control types
    //     the daemon's socket server and its client share.
    ("control", 8),
    ("robots", 8),
    // 9 — one run of one target; alert delivery; the HTTP listener.
    ("alert", 9),
    ("crawl", 9),
    ("web", 9),
    // 10 — the daemon (runs crawls, feeds web and alert); run reports.
    ("daemon", 10),
    ("report", 10),
    // 11 — the command line, on top of everything.
    ("cli", 11),
];

/// Deliberate upward imports: (importing module, imported module, why).
/// Empty by design; an entry here must say why the type cannot move down.
const EXCEPTIONS: &[(&str, &str, &str)] = &[];

#[test]
fn every_import_goes_down_a_floor() {
    let floors: BTreeMap<&str, u8> = FLOORS.iter().copied().collect();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut problems = Vec::new();
    let mut used_exceptions = BTreeSet::new();

    let modules = top_level_modules(&src);
    for m in &modules {
        if !floors.contains_key(m.as_str()) {
            problems.push(format!(
                "src/lib.rs declares module `{m}`, which has no floor: add it to FLOORS in tests/layers.rs"
            ));
        }
    }
    for m in floors.keys() {
        if !modules.contains(*m) {
            problems.push(format!(
                "FLOORS in tests/layers.rs names `{m}`, which src/lib.rs does not declare"
            ));
        }
    }

    for file in rust_files(&src) {
        let rel = file.strip_prefix(&src).unwrap().to_path_buf();
        let path = module_path(&rel);
        let Some(own) = path.first() else {
            continue; // lib.rs, main.rs: the crate root.
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for import in reexports(&text) {
            if &import.module != own {
                problems.push(format!(
                    "src/{}:{}: `{own}` re-exports items of `{}` (`pub use crate::{}::…`): \
                     import them from `{}`, where they live",
                    rel.display(),
                    import.line,
                    import.module,
                    import.module,
                    import.module
                ));
            }
        }
        for import in imports(&text, &path) {
            if &import.module == own {
                continue;
            }
            let shown = format!("src/{}:{}", rel.display(), import.line);
            let (Some(&from), Some(&to)) =
                (floors.get(own.as_str()), floors.get(import.module.as_str()))
            else {
                if !floors.contains_key(import.module.as_str()) {
                    problems.push(format!(
                        "{shown}: `{own}` imports `{}`, which is not a module in FLOORS",
                        import.module
                    ));
                }
                continue;
            };
            if to < from {
                continue;
            }
            if let Some(e) = EXCEPTIONS
                .iter()
                .find(|(a, b, _)| a == own && *b == import.module)
            {
                used_exceptions.insert((e.0, e.1));
                continue;
            }
            problems.push(format!(
                "{shown}: `{own}` (floor {from}) imports `{}` (floor {to}): a module may import only \
                 from lower floors; move the shared type down to a module below both, or import it from where it lives",
                import.module
            ));
        }
    }
    for (a, b, _) in EXCEPTIONS {
        if !used_exceptions.contains(&(*a, *b)) {
            problems.push(format!(
                "EXCEPTIONS in tests/layers.rs lists `{a}` → `{b}`, which no file imports any more: remove it"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} import(s) against the floors:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The modules `src/lib.rs` declares (`pub mod x;`, `mod x;`).
fn top_level_modules(src: &Path) -> BTreeSet<String> {
    let lib = strip(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    let tokens = tokens(&lib);
    let mut out = BTreeSet::new();
    for w in tokens.windows(3) {
        if let [(_, Tok::Ident(m)), (_, Tok::Ident(name)), (_, Tok::Punct(';'))] = w {
            if m == "mod" {
                out.insert(name.clone());
            }
        }
    }
    out
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The module path of a file below `src/`: `store/mod.rs` → `[store]`,
/// `config/profile/overlay.rs` → `[config, profile, overlay]`, `lib.rs` → `[]`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_owned());
    }
    parts
}

fn names(found: &[Import]) -> Vec<(usize, &str)> {
    found.iter().map(|i| (i.line, i.module.as_str())).collect()
}

fn path(p: &[&str]) -> Vec<String> {
    p.iter().map(|s| s.to_string()).collect()
}

#[test]
fn the_scanner_finds_every_form_of_path() {
    let text = r##"//! Uses [`crate::nope`] in a doc comment: not an import.
use crate::config::Target;
use crate::{
    store::{Store, StoreError},
    ids,
    self,
};
fn f() -> u8 {
    let s = "crate::nope in a string";
    let r = r#"crate::nope "raw""#;
    let c = '"';
    /* crate::nope /* nested */ crate::nope */
    crate::retry::backoff(c, s, r) + super::failure::X
}
pub(crate) fn g<'a>(x: &'a str) -> &'a str { $crate::urlnorm::f(x) }
mod tests {
    use super::*;
    use super::super::extract::Item;
}
"##;
    let found = imports(text, &path(&["monitor"]));
    assert_eq!(
        names(&found),
        [
            (2, "config"),
            (4, "store"),
            (5, "ids"),
            (13, "retry"),
            (13, "failure"),
            (15, "urlnorm"),
            (18, "extract"),
        ]
    );
    // Re-exports, with any visibility, single or grouped; plain `use` is none.
    let text = "pub use crate::store::Notice;\npub(crate) use crate::{query::R,\n ids};\nuse crate::x::Y;\npub use self::a::B;";
    assert_eq!(
        names(&reexports(text)),
        [(1, "store"), (2, "query"), (3, "ids")]
    );
    // Deeper in the tree, `super` climbs one module less far.
    let found = imports("use super::super::x;\nuse super::y;", &path(&["a", "b"]));
    assert_eq!(names(&found), [(1, "x")]);
}

#[test]
fn module_paths_of_files() {
    assert_eq!(module_path(Path::new("store/mod.rs")), ["store"]);
    assert_eq!(module_path(Path::new("retry.rs")), ["retry"]);
    assert_eq!(
        module_path(Path::new("config/profile/overlay.rs")),
        ["config", "profile", "overlay"]
    );
    assert!(module_path(Path::new("lib.rs")).is_empty());
}
