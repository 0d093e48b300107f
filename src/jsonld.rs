//! JSON-LD, the structured data in a page's `<script type="application/ld+json">`
//! blocks: the path of a `jsonld = "Product.offers.price"` field, and a reader
//! that parses a page's blocks once and answers paths with raw strings (the
//! same raw strings a CSS query yields, so that one conversion serves both).
//!
//! Pure: from the blocks' texts to values. It lives on the lowest floor
//! because the config compiles paths and extraction reads pages with them.
//!
//! Rules (documented for users in the configuration reference):
//! - The objects of a type are found depth-first, in document order, through
//!   `@graph`, top-level arrays and nested objects; an object whose `@type`
//!   matches is taken whole (objects of the same type nested inside it are
//!   its data, not further matches).
//! - `@type` may be a string or an array of strings; `"Product"`,
//!   `"schema:Product"` and `"http(s)://schema.org/Product"` all match
//!   `Product`. Matching is exact otherwise (case-sensitive, no subtypes).
//! - A path steps through keys; an array met at any step is flattened.
//! - Leaves: strings trimmed (empty ones skipped), numbers and booleans as
//!   their JSON text, `null` skipped, an object as its `@value` or else its
//!   `name` (so `Product.brand` gives the brand's name), otherwise skipped.
//! - Hostile pages: at most [`MAX_BLOCKS`] blocks of at most
//!   [`MAX_BLOCK_BYTES`] each are parsed; serde_json's nesting limit (128)
//!   is kept, so a block nested deeper is malformed, never a stack overflow.

use std::fmt;

use serde_json::{Map, Value};

/// Blocks parsed per page; further ones are counted as skipped.
pub const MAX_BLOCKS: usize = 32;

/// The largest block parsed (its text as in the page); a bigger one is
/// skipped. Real product pages, reviews included, stay far below.
pub const MAX_BLOCK_BYTES: usize = 1024 * 1024;

/// A JSON-LD object (a node: `@type`, its keys).
pub type LdObject = Map<String, Value>;

/// A compiled `jsonld` field path: a type, then keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdPath {
    ty: String,
    keys: Vec<String>,
}

/// Why a `jsonld` path is refused at load time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LdPathError {
    #[error("an empty jsonld path: write a type and keys, like \"Product.offers.price\"")]
    Empty,
    #[error("jsonld path {0:?} has an empty segment (two dots, or a dot at an end)")]
    EmptySegment(String),
    #[error(
        "jsonld path {0:?}: the first segment is a schema.org type name like \"Product\" \
         (full IRIs in pages match it), not an IRI"
    )]
    TypeIri(String),
    #[error("jsonld path {0:?} contains whitespace")]
    Whitespace(String),
}

impl LdPath {
    /// Compiles `"Type.key.key"`.
    pub fn parse(s: &str) -> Result<Self, LdPathError> {
        if s.is_empty() {
            return Err(LdPathError::Empty);
        }
        if s.contains(char::is_whitespace) {
            return Err(LdPathError::Whitespace(s.to_owned()));
        }
        let mut parts = s.split('.').map(str::to_owned);
        let ty = parts.next().unwrap_or_default();
        let keys: Vec<String> = parts.collect();
        if ty.is_empty() || keys.iter().any(String::is_empty) {
            return Err(LdPathError::EmptySegment(s.to_owned()));
        }
        if ty.contains(':') || ty.contains('/') {
            return Err(LdPathError::TypeIri(s.to_owned()));
        }
        Ok(LdPath { ty, keys })
    }

    /// The `@type` its objects have (the first segment).
    pub fn ty(&self) -> &str {
        &self.ty
    }
}

impl fmt::Display for LdPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.ty)?;
        for k in &self.keys {
            write!(f, ".{k}")?;
        }
        Ok(())
    }
}

/// A page's JSON-LD, parsed once.
#[derive(Debug, Default)]
pub struct JsonLd {
    docs: Vec<Value>,
    /// Blocks that were not valid JSON-LD even read leniently (what was read
    /// of them before the fault is kept).
    pub invalid: u32,
    /// Blocks not parsed: past [`MAX_BLOCKS`] or bigger than [`MAX_BLOCK_BYTES`].
    pub skipped: u32,
}

impl JsonLd {
    /// Parses the texts of a page's blocks, in page order, within the caps.
    pub fn read<I, S>(blocks: I) -> JsonLd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out = JsonLd::default();
        for (i, block) in blocks.into_iter().enumerate() {
            let text = block.as_ref();
            if i >= MAX_BLOCKS || text.len() > MAX_BLOCK_BYTES {
                out.skipped = out.skipped.saturating_add(1);
                continue;
            }
            let ok = parse_block(text, &mut out.docs);
            if !ok {
                out.invalid = out.invalid.saturating_add(1);
            }
        }
        out
    }

    /// Whether some block was malformed or skipped: the page's warning.
    pub fn has_faults(&self) -> bool {
        self.invalid + self.skipped > 0
    }

    /// Every object of `ty`, in document order.
    pub fn objects(&self, ty: &str) -> Vec<&Map<String, Value>> {
        let mut out = Vec::new();
        for d in &self.docs {
            find(d, ty, &mut out);
        }
        out
    }

    /// The values of `path` over every object of its type, in document
    /// order: the first is a single field's value, all of them `many`'s.
    pub fn values(&self, path: &LdPath) -> Vec<String> {
        let mut out = Vec::new();
        for obj in self.objects(&path.ty) {
            walk_keys(obj, &path.keys, &mut out);
        }
        out
    }
}

impl JsonLd {
    /// The values of `path` in the first object of its type only: a page's
    /// field. A page's main `Product` without a price must not take the
    /// price of a related product listed after it, so one item never mixes
    /// two objects (a kind reading every object gives one item per object).
    pub fn first_object_values(&self, path: &LdPath) -> Vec<String> {
        let mut first = None;
        for d in &self.docs {
            let mut found = Vec::new();
            find(d, &path.ty, &mut found);
            if let Some(obj) = found.first() {
                first = Some(*obj);
                break;
            }
        }
        first.map_or_else(Vec::new, |obj| values_in(obj, path))
    }
}

/// The values of `path` inside one object of its type (from
/// [`JsonLd::objects`]): an item kind with one item per object.
pub fn values_in(obj: &Map<String, Value>, path: &LdPath) -> Vec<String> {
    let mut out = Vec::new();
    walk_keys(obj, &path.keys, &mut out);
    out
}

/// Parses one block into `docs`; `false` when it is malformed. Lenient where
/// real sites are: HTML comment and CDATA wrappers, a trailing `;`, several
/// values one after another, and raw control characters (newlines, tabs)
/// inside strings, which browsers' JSON-LD consumers accept.
fn parse_block(text: &str, docs: &mut Vec<Value>) -> bool {
    let text = unwrap(text);
    if text.is_empty() {
        return true;
    }
    let before = docs.len();
    if parse_values(text, docs) {
        return true;
    }
    // Read again with the two faults hand-written blocks have most: raw
    // control characters inside strings and trailing commas.
    docs.truncate(before);
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let cleaned = drop_trailing_commas(&cleaned);
    if parse_values(&cleaned, docs) {
        return true;
    }
    docs.truncate(before);
    // What was read before the fault is kept.
    parse_values(text, docs);
    false
}

/// `text` without the commas that stand right before a `}` or `]` (outside
/// strings): `{"price": "9.99",}` is a common hand-written fault.
fn drop_trailing_commas(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for (i, c) in text.char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if c == ',' && text[i + 1..].trim_start().starts_with(['}', ']']) {
            continue;
        }
        out.push(c);
    }
    out
}

/// Values one after another, separated by whitespace or `;`; `false` at the
/// first fault (values before it are kept).
fn parse_values(mut text: &str, docs: &mut Vec<Value>) -> bool {
    loop {
        text = text.trim_start_matches(|c: char| c.is_whitespace() || c == ';');
        if text.is_empty() {
            return true;
        }
        let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
        match stream.next() {
            Some(Ok(v)) => {
                docs.push(v);
                text = &text[stream.byte_offset()..];
            }
            _ => return false,
        }
    }
}

/// The JSON inside the wrappers sites put around it: `<!-- … -->`,
/// `<![CDATA[ … ]]>` and their commented forms (`//<![CDATA[`, `/*<![CDATA[*/`).
fn unwrap(text: &str) -> &str {
    const OPEN: &[&str] = &["<!--", "//<![CDATA[", "/*<![CDATA[*/", "<![CDATA["];
    const CLOSE: &[&str] = &["-->", "//]]>", "/*]]>*/", "]]>"];
    let mut t = text.trim();
    // Wrappers nest at most a few deep; the bound keeps this linear.
    for _ in 0..4 {
        t = t.trim_end_matches(|c: char| c == ';' || c.is_whitespace());
        let before = t.len();
        if let Some(rest) = OPEN.iter().find_map(|o| t.strip_prefix(o)) {
            t = rest.trim();
        }
        if let Some(rest) = CLOSE.iter().find_map(|c| t.strip_suffix(c)) {
            t = rest.trim();
        }
        if t.len() == before {
            break;
        }
    }
    t
}

/// Collects the objects of `ty` below `v`, depth-first; a match is not
/// searched further. Recursion is bounded by serde_json's nesting limit.
fn find<'a>(v: &'a Value, ty: &str, out: &mut Vec<&'a Map<String, Value>>) {
    match v {
        Value::Array(a) => a.iter().for_each(|e| find(e, ty, out)),
        Value::Object(o) => {
            if has_type(o, ty) {
                out.push(o);
            } else {
                o.values().for_each(|e| find(e, ty, out));
            }
        }
        _ => {}
    }
}

fn has_type(o: &Map<String, Value>, ty: &str) -> bool {
    let is = |t: &Value| t.as_str().is_some_and(|t| local_name(t) == ty);
    match o.get("@type") {
        Some(Value::Array(a)) => a.iter().any(is),
        Some(t) => is(t),
        None => false,
    }
}

/// `Product` of `http://schema.org/Product`, `https://schema.org/Product`
/// and `schema:Product`; any other name as it is.
fn local_name(t: &str) -> &str {
    let t = t.trim();
    ["http://schema.org/", "https://schema.org/", "schema:"]
        .iter()
        .find_map(|p| t.strip_prefix(p))
        .unwrap_or(t)
}

fn walk_keys(obj: &Map<String, Value>, keys: &[String], out: &mut Vec<String>) {
    match keys.split_first() {
        None => leaf_object(obj, out),
        Some((k, rest)) => {
            if let Some(v) = obj.get(k) {
                walk(v, rest, out);
            }
        }
    }
}

/// Steps along `keys` from `v`, flattening arrays.
fn walk(v: &Value, keys: &[String], out: &mut Vec<String>) {
    match v {
        Value::Array(a) => a.iter().for_each(|e| walk(e, keys, out)),
        Value::Object(o) => walk_keys(o, keys, out),
        _ if keys.is_empty() => leaf(v, out),
        _ => {}
    }
}

fn leaf(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            let s = s.trim();
            if !s.is_empty() {
                out.push(s.to_owned());
            }
        }
        Value::Number(n) => out.push(n.to_string()),
        Value::Bool(b) => out.push(b.to_string()),
        Value::Null => {}
        Value::Array(a) => a.iter().for_each(|e| leaf(e, out)),
        Value::Object(o) => leaf_object(o, out),
    }
}

/// An object where a value was asked for: its `@value` (a JSON-LD value
/// object) or else its `name` (a brand, an author); otherwise nothing.
fn leaf_object(o: &Map<String, Value>, out: &mut Vec<String>) {
    for k in ["@value", "name"] {
        if let Some(v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) = o.get(k) {
            return leaf(v, out);
        }
    }
}

#[cfg(test)]
mod tests;
