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

use std::collections::HashSet;

use ego_tree::NodeId;
use scraper::{ElementRef, Node, Selector};

/// A compiled field query.
#[derive(Debug)]
pub struct Query {
    /// `None` when the query addresses the item element itself (`::attr(x)`).
    css: Option<Selector>,
    pick: Pick,
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
    /// Compiles a query; the error says what is wrong with it.
    pub fn parse(query: &str) -> Result<Self, String> {
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
        Ok(Query { css, pick })
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
        let matches: Vec<ElementRef> = match &self.css {
            Some(sel) => scope.select(sel).collect(),
            None => vec![scope],
        };
        match &self.pick {
            Pick::FullText => {
                for el in matches {
                    let text = collapse(el.text());
                    if !text.is_empty() && !f(text) {
                        return;
                    }
                }
            }
            Pick::Attr(name) => {
                for el in matches {
                    if let Some(v) = el.value().attr(name) {
                        let v = v.trim();
                        if !v.is_empty() && !f(v.to_owned()) {
                            return;
                        }
                    }
                }
            }
            Pick::AllText => {
                for el in matches {
                    for t in el.text() {
                        let t = t.trim();
                        if !t.is_empty() && !f(t.to_owned()) {
                            return;
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
                        if in_match && !t.is_empty() && !f(t.to_owned()) {
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

fn own_text(el: ElementRef<'_>, f: &mut dyn FnMut(String) -> bool) {
    for child in el.children() {
        if let Node::Text(t) = child.value() {
            let t = t.trim();
            if !t.is_empty() && !f(t.to_owned()) {
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
}
