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

/// Each top-level module of `src/` and its floor. A module may import only
/// from floors strictly below its own.
const FLOORS: &[(&str, u8)] = &[
    // 0 — vocabulary every floor may share; these import nothing of the crate.
    ("address", 0),
    ("error", 0),
    ("failure", 0),
    ("files", 0),
    ("ids", 0),
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

/// One path from one top-level module into another.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Import {
    line: usize,
    /// The top-level module it names (`store` for `crate::store::Store`).
    module: String,
}

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

/// The paths of `text` (a file of module `path`) into top-level modules:
/// `crate::x`, `$crate::x`, each item of `crate::{x, y::z}`, and `super::x`
/// when the `super`s climb to the crate root. Inline `mod name { … }`
/// blocks count as a level for `super`.
fn imports(text: &str, path: &[String]) -> Vec<Import> {
    let tokens = tokens(&strip(text));
    let mut out = Vec::new();
    // The file's module path, plus the inline modules we are inside, each
    // with the brace depth at which it closes.
    let mut inline: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        let (line, tok) = &tokens[i];
        match tok {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                depth = depth.saturating_sub(1);
                if inline.last() == Some(&depth) {
                    inline.pop();
                }
            }
            Tok::Ident(w) if w == "mod" => {
                if let (Some((_, Tok::Ident(_))), Some((_, Tok::Punct('{')))) =
                    (tokens.get(i + 1), tokens.get(i + 2))
                {
                    inline.push(depth);
                }
            }
            Tok::Ident(w) if w == "crate" && is_sep(&tokens, i + 1) => {
                // `pub(crate)` is not followed by `::`, so it never gets here.
                collect_roots(&tokens, i + 3, *line, &mut out);
                i += 3;
                continue;
            }
            Tok::Ident(w) if w == "super" && is_sep(&tokens, i + 1) => {
                // Not preceded by `::`: the start of a path.
                let starts = i == 0 || !is_sep_end(&tokens, i - 1);
                if starts {
                    let mut ups = 1;
                    let mut j = i + 3;
                    while matches!(tokens.get(j), Some((_, Tok::Ident(w))) if w == "super")
                        && is_sep(&tokens, j + 1)
                    {
                        ups += 1;
                        j += 3;
                    }
                    let level = path.len() + inline.len();
                    if ups == level {
                        collect_roots(&tokens, j, *line, &mut out);
                    }
                    i = j;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The top-level modules that `pub use crate::…` (or `pub(crate) use`)
/// statements of `text` re-export from.
fn reexports(text: &str) -> Vec<Import> {
    let tokens = tokens(&strip(text));
    let mut out = Vec::new();
    for (i, (line, tok)) in tokens.iter().enumerate() {
        if *tok != Tok::Ident("pub".into()) {
            continue;
        }
        // `pub`, or `pub(crate)`, `pub(super)`, `pub(in path)`.
        let mut j = i + 1;
        if tokens.get(j).map(|t| &t.1) == Some(&Tok::Punct('(')) {
            while j < tokens.len() && tokens[j].1 != Tok::Punct(')') {
                j += 1;
            }
            j += 1;
        }
        let is = |k: usize, w: &str| tokens.get(k).map(|t| &t.1) == Some(&Tok::Ident(w.into()));
        if is(j, "use") && is(j + 1, "crate") && is_sep(&tokens, j + 2) {
            collect_roots(&tokens, j + 4, *line, &mut out);
        }
    }
    out
}

/// Whether `tokens[i]` and `tokens[i + 1]` are `::`.
fn is_sep(tokens: &[(usize, Tok)], i: usize) -> bool {
    matches!(tokens.get(i), Some((_, Tok::Punct(':'))))
        && matches!(tokens.get(i + 1), Some((_, Tok::Punct(':'))))
}

/// Whether `tokens[i]` ends a `::`.
fn is_sep_end(tokens: &[(usize, Tok)], i: usize) -> bool {
    i >= 1 && is_sep(tokens, i - 1)
}

/// The first segment of the path at `tokens[at]` (after `crate::`): an
/// identifier, or each first segment inside a `{ … }` group.
fn collect_roots(tokens: &[(usize, Tok)], at: usize, line: usize, out: &mut Vec<Import>) {
    match tokens.get(at) {
        Some((_, Tok::Ident(m))) => out.push(Import {
            line,
            module: m.clone(),
        }),
        Some((_, Tok::Punct('{'))) => {
            let mut depth = 0;
            let mut expect = true;
            for (l, t) in &tokens[at..] {
                match t {
                    Tok::Punct('{') => {
                        depth += 1;
                        expect = depth == 1;
                    }
                    Tok::Punct('}') => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    Tok::Punct(',') if depth == 1 => expect = true,
                    Tok::Ident(m) if expect && depth == 1 => {
                        expect = false;
                        if m != "self" {
                            out.push(Import {
                                line: *l,
                                module: m.clone(),
                            });
                        }
                    }
                    _ => {
                        if depth == 1 {
                            expect = false;
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Punct(char),
}

/// Identifiers (keywords included) and single punctuation characters, each
/// with its 1-based line.
fn tokens(text: &str) -> Vec<(usize, Tok)> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\n' {
            line += 1;
        } else if c.is_alphabetic() || c == '_' {
            let mut word = String::from(c);
            while let Some(&n) = chars.peek() {
                if n.is_alphanumeric() || n == '_' {
                    word.push(n);
                    chars.next();
                } else {
                    break;
                }
            }
            out.push((line, Tok::Ident(word)));
        } else if !c.is_whitespace() && !c.is_numeric() {
            out.push((line, Tok::Punct(c)));
        }
    }
    out
}

/// `text` with comments, string literals and char literals blanked out
/// (newlines kept, so lines still count), so that a doc link or a message
/// that mentions `crate::x` is not an import.
fn strip(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    // Blanks chars[from..to], keeping newlines.
    let blank = |out: &mut String, from: usize, to: usize| {
        for &c in &chars[from..to.min(chars.len())] {
            out.push(if c == '\n' { '\n' } else { ' ' });
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            let end = chars[i..]
                .iter()
                .position(|&c| c == '\n')
                .map_or(chars.len(), |p| i + p);
            blank(&mut out, i, end);
            i = end;
        } else if c == '/' && next == Some('*') {
            // Block comments nest in Rust.
            let (mut j, mut depth) = (i + 2, 1);
            while j < chars.len() && depth > 0 {
                if chars[j] == '/' && chars.get(j + 1) == Some(&'*') {
                    depth += 1;
                    j += 2;
                } else if chars[j] == '*' && chars.get(j + 1) == Some(&'/') {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !(i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_'))
        {
            // A raw string r"…", r#"…"#: ends at `"` and as many `#`.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            blank(&mut out, i, j);
            i = j;
        } else if c == '"' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                if chars[j] == '\\' {
                    j += 1;
                }
                j += 1;
            }
            blank(&mut out, i, j + 1);
            i = j + 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}'), or a lifetime ('a).
            let end = if next == Some('\\') {
                // The escaped character may itself be a quote: '\''.
                chars
                    .get(i + 3..)
                    .and_then(|rest| rest.iter().position(|&c| c == '\''))
                    .map(|p| i + 3 + p + 1)
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 3)
            } else {
                None
            };
            match end {
                Some(end) => {
                    blank(&mut out, i, end);
                    i = end;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
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
