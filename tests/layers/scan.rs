//! The scanner of tests/layers: the paths a Rust file names into the
//! crate's top-level modules, read from its tokens with comments and
//! strings stripped.

/// One path from one top-level module into another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    pub line: usize,
    /// The top-level module it names (`store` for `crate::store::Store`).
    pub module: String,
}

/// The paths of `text` (a file of module `path`) into top-level modules:
/// `crate::x`, `$crate::x`, each item of `crate::{x, y::z}`, and `super::x`
/// when the `super`s climb to the crate root. Inline `mod name { … }`
/// blocks count as a level for `super`.
pub fn imports(text: &str, path: &[String]) -> Vec<Import> {
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
pub fn reexports(text: &str) -> Vec<Import> {
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
pub enum Tok {
    Ident(String),
    Punct(char),
}

/// Identifiers (keywords included) and single punctuation characters, each
/// with its 1-based line.
pub fn tokens(text: &str) -> Vec<(usize, Tok)> {
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
pub fn strip(text: &str) -> String {
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
