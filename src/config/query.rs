//! Field queries, compiled with the rest of the config (a bad one is a load
//! error with its line), with parsel (Scrapy) semantics: a CSS selector optionally
//! followed by `::text` or `::attr(name)`.
//!
//! | query            | yields, for each match                                   |
//! |------------------|----------------------------------------------------------|
//! | `p.price`        | the element's whole text, whitespace collapsed           |
//! | `p::text`        | the element's own text nodes (not its children's)        |
//! | `div *::text`    | text nodes of every element below `div`, in page order   |
//! | `div ::text`     | every text node inside `div`, its own included           |
//! | `a::attr(href)`  | the attribute's value                                    |
//! | `::attr(href)`   | an attribute of the item element itself                  |
//!
//! Values are trimmed; text nodes that are only whitespace are skipped.
//!
//! A group (`h1 > a::text, h1::text`) yields, as parsel's XPath union does,
//! what each alternative picks, in document order of the picked nodes (an
//! element, or a text node), a node picked the same way twice only once.
//! Each alternative may end in its own `::text` or `::attr(name)`.

use std::collections::{HashMap, HashSet};

use ego_tree::NodeId;
use scraper::{ElementRef, Node, Selector};

/// A compiled field query: one selector, or a group of alternatives.
#[derive(Debug)]
pub struct Query {
    first: Alt,
    /// The group's other alternatives; empty for one selector (the common
    /// case, which costs what it did before groups).
    rest: Vec<Alt>,
}

/// One alternative of a query: a CSS selector and what it picks.
#[derive(Debug)]
struct Alt {
    /// `None` when the query addresses the item element itself (`::attr(x)`).
    css: Option<Selector>,
    pick: Pick,
}

/// What a group query yields from one node, for parsel's union semantics:
/// a node picked the same way by two alternatives yields once.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Picked<'q> {
    Text,
    Full,
    Attr(&'q str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pick {
    /// No pseudo-element: the element's whole text, whitespace collapsed.
    FullText,
    /// `::text`: the matched elements' own text nodes.
    OwnText,
    /// `x ::text`: every text node inside each match.
    AllText,
    /// `::attr(name)`.
    Attr(String),
}

impl Query {
    /// Compiles a query; the error says what is wrong with it, and for a
    /// group, which alternative.
    pub fn parse(query: &str) -> Result<Self, String> {
        let alts = split_group(query);
        // Plain CSS alternatives stay one selector list, as before groups:
        // scraper yields its matches in document order, each once.
        if alts.len() == 1 || alts.iter().all(|a| !a.contains("::")) {
            return Ok(Query {
                first: Alt::parse(query)?,
                rest: Vec::new(),
            });
        }
        let n = alts.len();
        let mut parsed = Vec::with_capacity(n);
        for (i, a) in alts.iter().enumerate() {
            if a.trim().is_empty() {
                return Err(format!(
                    "alternative {} of {n} of the group {query:?} is empty",
                    i + 1
                ));
            }
            let alt = Alt::parse(a.trim())
                .map_err(|e| format!("alternative {} of {n} ({:?}): {e}", i + 1, a.trim()))?;
            parsed.push(alt);
        }
        let mut it = parsed.into_iter();
        let first = it.next().ok_or("empty CSS query")?;
        Ok(Query {
            first,
            rest: it.collect(),
        })
    }

    /// Every value the query yields inside `scope`, in page order.
    pub fn values<'a>(&self, scope: ElementRef<'a>) -> Vec<String> {
        let mut out = Vec::new();
        self.each(scope, &mut |v| {
            out.push(v);
            true
        });
        out
    }

    /// The first value the query yields inside `scope`.
    pub fn first(&self, scope: ElementRef<'_>) -> Option<String> {
        let mut found = None;
        self.each(scope, &mut |v| {
            found = Some(v);
            false
        });
        found
    }

    /// Calls `f` with each value until it returns false.
    fn each(&self, scope: ElementRef<'_>, f: &mut dyn FnMut(String) -> bool) {
        if self.rest.is_empty() {
            self.first.each(scope, &mut |_, v| f(v));
            return;
        }
        // A group: like parsel's XPath union, the nodes every alternative
        // picks, each once, in document order.
        let mut by_node: HashMap<NodeId, Vec<(Picked<'_>, String)>> = HashMap::new();
        for alt in std::iter::once(&self.first).chain(&self.rest) {
            let how = alt.picked();
            alt.each(scope, &mut |id, v| {
                let at = by_node.entry(id).or_default();
                if !at.iter().any(|(p, _)| *p == how) {
                    at.push((how.clone(), v));
                }
                true
            });
        }
        if by_node.is_empty() {
            return;
        }
        for node in scope.descendants() {
            if let Some(found) = by_node.remove(&node.id()) {
                for (_, v) in found {
                    if !f(v) {
                        return;
                    }
                }
                if by_node.is_empty() {
                    return;
                }
            }
        }
    }
}

/// Splits a selector group at its top-level commas: not inside parentheses,
/// brackets or quotes (`:is(a, b)`, `[title="a,b"]` stay one alternative).
fn split_group(query: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut quote, mut escaped) = (0usize, None, false);
    let mut start = 0;
    for (i, c) in query.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match (quote, c) {
            (_, '\\') => escaped = true,
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '(' | '[') => depth += 1,
            (None, ')' | ']') => depth = depth.saturating_sub(1),
            (None, ',') if depth == 0 => {
                parts.push(&query[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&query[start..]);
    parts
}

impl Alt {
    /// How this alternative's values are told apart in a group.
    fn picked(&self) -> Picked<'_> {
        match &self.pick {
            Pick::FullText => Picked::Full,
            Pick::OwnText | Pick::AllText => Picked::Text,
            Pick::Attr(name) => Picked::Attr(name),
        }
    }

    fn parse(query: &str) -> Result<Self, String> {
        let (css, pick) = if let Some(css) = query.strip_suffix("::text") {
            if css.is_empty() || css.ends_with(char::is_whitespace) {
                (
                    css.trim(),
                    if css.is_empty() {
                        Pick::OwnText
                    } else {
                        Pick::AllText
                    },
                )
            } else {
                (css, Pick::OwnText)
            }
        } else if let Some(rest) = query.strip_suffix(')') {
            match rest.rsplit_once("::attr(") {
                Some((css, name)) => {
                    if name.contains('(') {
                        return Err(format!("invalid ::attr(name) in {query:?}"));
                    }
                    let name = name.trim().trim_matches(|c| c == '"' || c == '\'');
                    if name.is_empty() || name.contains(char::is_whitespace) {
                        return Err(format!("invalid attribute name in {query:?}"));
                    }
                    (css, Pick::Attr(name.to_ascii_lowercase()))
                }
                None => (query, Pick::FullText),
            }
        } else {
            (query, Pick::FullText)
        };
        let css = css.trim();
        if css.contains("::attr(") {
            return Err(format!(
                "::attr(name) in {query:?} is missing its closing parenthesis or is not at the end"
            ));
        }
        if css.contains("::") {
            return Err(format!(
                "unsupported pseudo-element in {query:?}: only ::text and ::attr(name) are known, at the end"
            ));
        }
        let css = if css.is_empty() {
            if pick == Pick::FullText {
                return Err("empty CSS query".into());
            }
            None
        } else {
            Some(parse_selector(css)?)
        };
        Ok(Alt { css, pick })
    }

    /// Calls `f` with each value and the node it comes from (the element,
    /// or the text node) until it returns false.
    fn each(&self, scope: ElementRef<'_>, f: &mut dyn FnMut(NodeId, String) -> bool) {
        let matches: Vec<ElementRef> = match &self.css {
            Some(sel) => scope.select(sel).collect(),
            None => vec![scope],
        };
        match &self.pick {
            Pick::FullText => {
                for el in matches {
                    let text = collapse(el.text());
                    if !text.is_empty() && !f(el.id(), text) {
                        return;
                    }
                }
            }
            Pick::Attr(name) => {
                for el in matches {
                    if let Some(v) = el.value().attr(name) {
                        let v = v.trim();
                        if !v.is_empty() && !f(el.id(), v.to_owned()) {
                            return;
                        }
                    }
                }
            }
            Pick::AllText => {
                for el in matches {
                    for node in el.descendants() {
                        if let Node::Text(t) = node.value() {
                            let t = t.trim();
                            if !t.is_empty() && !f(node.id(), t.to_owned()) {
                                return;
                            }
                        }
                    }
                }
            }
            Pick::OwnText => {
                if matches.len() == 1 {
                    own_text(matches[0], f);
                    return;
                }
                // Walk the scope once so that text comes out in page order even
                // when matched elements are nested in each other.
                let parents: HashSet<NodeId> = matches.iter().map(|e| e.id()).collect();
                for node in scope.descendants() {
                    if let Node::Text(t) = node.value() {
                        let in_match = node.parent().is_some_and(|p| parents.contains(&p.id()));
                        let t = t.trim();
                        if in_match && !t.is_empty() && !f(node.id(), t.to_owned()) {
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// Compiles a CSS selector with an error message fit for a user.
pub fn parse_selector(css: &str) -> Result<Selector, String> {
    Selector::parse(css).map_err(|e| {
        use scraper::error::SelectorErrorKind as K;
        let why = match &e {
            // scraper's Display for these asks to report a bug; the kind names the problem.
            K::UnexpectedSelectorParseError(kind) => {
                let debug = format!("{kind:?}");
                let (name, detail) = debug.split_once('(').unwrap_or((&debug, ""));
                let mut words = String::new();
                for (i, c) in name.chars().enumerate() {
                    if c.is_uppercase() && i > 0 {
                        words.push(' ');
                    }
                    words.push(c.to_ascii_lowercase());
                }
                let detail = detail.trim_end_matches(')');
                if detail.is_empty() {
                    words
                } else {
                    format!("{words} {detail}")
                }
            }
            other => other.to_string(),
        };
        format!("invalid CSS selector {css:?}: {why}")
    })
}

fn own_text(el: ElementRef<'_>, f: &mut dyn FnMut(NodeId, String) -> bool) {
    for child in el.children() {
        if let Node::Text(t) = child.value() {
            let t = t.trim();
            if !t.is_empty() && !f(child.id(), t.to_owned()) {
                return;
            }
        }
    }
}

/// Joins text nodes and collapses runs of whitespace to one space.
fn collapse<'a>(parts: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for part in parts {
        for word in part.split_whitespace() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(word);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use scraper::Html;

    fn run(q: &str, html: &str) -> Vec<String> {
        let doc = Html::parse_document(html);
        Query::parse(q).unwrap().values(doc.root_element())
    }

    #[test]
    fn text_variants_follow_parsel() {
        let html = "<div class=d>lead <p>one <b>two</b> three</p> tail</div>";
        assert_eq!(run("div.d::text", html), ["lead", "tail"]);
        assert_eq!(run("div.d *::text", html), ["one", "two", "three"]);
        assert_eq!(
            run("div.d ::text", html),
            ["lead", "one", "two", "three", "tail"]
        );
        assert_eq!(run("div.d p", html), ["one two three"]);
        assert_eq!(run("p b::text", html), ["two"]);
    }

    #[test]
    fn attributes_and_errors() {
        assert_eq!(
            run("a::attr(href)", "<a href=' /x '>x</a><a>no</a>"),
            ["/x"]
        );
        assert!(Query::parse("p..x").is_err());
        assert!(Query::parse("p::before").is_err());
        assert!(Query::parse("a::attr()").is_err());
        assert!(Query::parse("").is_err());
    }

    const SPHINX: &str = r##"<h1>json — JSON encoder<a class="headerlink" href="#m" title="Link, here">¶</a></h1>
        <h2>Basic<a class="headerlink" href="#b">¶</a></h2>"##;

    #[test]
    fn groups_yield_in_document_order() {
        assert_eq!(
            run("h1 > a::text, h1::text", SPHINX),
            ["json — JSON encoder", "¶"]
        );
        assert_eq!(
            run("h2::text, h1::text", SPHINX),
            ["json — JSON encoder", "Basic"]
        );
        // The same text node picked by two alternatives comes once.
        assert_eq!(
            run("h1::text, h1 ::text", SPHINX),
            ["json — JSON encoder", "¶"]
        );
        assert_eq!(
            run("a::attr(href), h2::text", SPHINX),
            ["#m", "Basic", "#b"]
        );
        assert_eq!(run("h2, h1", SPHINX), ["json — JSON encoder ¶", "Basic ¶"]);
        let doc = Html::parse_document(SPHINX);
        let q = Query::parse("h2::text, h1 > a::attr(title)").unwrap();
        assert_eq!(q.first(doc.root_element()).as_deref(), Some("Link, here"));
    }

    #[test]
    fn groups_split_at_top_level_commas_only() {
        assert_eq!(split_group("a, b::text"), ["a", " b::text"]);
        assert_eq!(split_group(":is(a, b)::text"), [":is(a, b)::text"]);
        assert_eq!(
            split_group(r#"[title="a,b"]::text"#),
            [r#"[title="a,b"]::text"#]
        );
        assert_eq!(split_group(r"a\,b"), [r"a\,b"]);
        assert_eq!(
            run(r#"a[title="Link, here"]::attr(href), h2::text"#, SPHINX),
            ["#m", "Basic"]
        );
    }

    #[test]
    fn group_errors_name_the_alternative() {
        let e = Query::parse("h1::text, h2::before").unwrap_err();
        assert!(e.starts_with("alternative 2 of 2 (\"h2::before\"):"), "{e}");
        let e = Query::parse("h1::text, , h2::text").unwrap_err();
        assert!(e.contains("alternative 2 of 3"), "{e}");
        let e = Query::parse("h1::text, p..x::text").unwrap_err();
        assert!(
            e.contains("alternative 2 of 2") && e.contains("invalid CSS selector"),
            "{e}"
        );
    }
}
