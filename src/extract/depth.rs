//! How deep the HTML parser would nest a page's elements, estimated in one
//! linear pass over its text before it is parsed.
//!
//! html5ever walks its stack of open elements on most tags (to close an open
//! `<p>`, to find an element "in scope"), so a parse costs about tags ×
//! depth: 100,000 nested `<div>`s took 26.6 s of CPU, the cost growing with
//! the square of the nesting, and 10 MiB of `<li>`s opened under 1,000
//! elements would take longer still. A page nested deeper than [`MAX_DEPTH`], or
//! whose [`Nesting::work`] passes [`MAX_WORK`], is not parsed at all (the
//! crawl records it as `too_deep`).
//!
//! The estimate follows the tree builder's rules where they decide depth: void
//! elements, raw text (`<script>`, `<style>`, `<textarea>`, …), comments,
//! end tags that are optional (`<p>`, `<li>`, `<dd>`, `<option>`, table
//! parts), end tags that close what was left open inside them (`</div>`,
//! `</td>`, `</table>`), stray end tags that close nothing, and SVG/MathML,
//! where `<g/>` closes itself. Where following a rule exactly would take the
//! parser's whole state, it leaves the element open: the estimate errs on
//! the deep side, so a hostile page cannot hide its depth from it.

mod names;
mod tree;

use tree::Tree;

/// Pages whose elements nest deeper than this are not parsed. Real pages
/// stay far below it (the 3,758 HTML documents on a test machine: median 7,
/// deepest 28; heavy framework pages rarely pass 100), and Chromium and
/// WebKit themselves stop nesting at 512: no page a browser renders as
/// written comes near it, estimation slack included.
pub const MAX_DEPTH: u32 = 1024;

/// Pages whose [`Nesting::work`] is larger are not parsed. The largest real
/// page measured (8.4 MB, the one-page Node.js manual) costs 2.8 million; a
/// page at 100 million parses in under a second (0.9 s, debug build), where
/// 10 MiB of `<div></div>` under 1,000 open elements (1.9 billion) took 8.7 s.
pub const MAX_WORK: u64 = 100_000_000;

/// Both limits.
pub const LIMITS: Nesting = Nesting {
    depth: MAX_DEPTH,
    work: MAX_WORK,
};

/// What the scan of a page found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nesting {
    /// The deepest its elements nest (inside `<body>`).
    pub depth: u32,
    /// The parser's work: the sum over its tags of the elements open when
    /// it meets each (its walks up the stack), plus its comparisons of each
    /// attribute's name with the tag's earlier ones.
    pub work: u64,
}

/// Pages at most this long, with at most [`MAX_DEPTH`] `<`s, are parsed
/// without the scan: they cannot nest deeper than the limit (every element
/// needs a `<`), and what html5ever does with them is bounded by their size
/// (at most 16 K attributes in one tag, about 0.1 s of its name checks at
/// worst). Most pages a crawl meets are of this kind, and the scan would cost
/// them a tenth of their parse (the crawl benchmark's 15–30 KB pages).
const UNSCANNED_BYTES: usize = 32 * 1024;

/// Whether `html` must be scanned before it is parsed (see
/// [`UNSCANNED_BYTES`]): counting its `<`s is a vectorised pass, far
/// cheaper than the scan.
pub fn needs_scan(html: &str) -> bool {
    html.len() > UNSCANNED_BYTES
        || memchr::memchr_iter(b'<', html.as_bytes()).count() > MAX_DEPTH as usize
}

/// Scans `html`, and stops as soon as it nests deeper than `max.depth` or
/// costs more than `max.work`.
pub fn nesting(html: &str, max: Nesting) -> Nesting {
    let mut scan = Scan::new(html.as_bytes());
    while let Some(tag) = scan.next_tag() {
        scan.work += u64::from(scan.tree.depth());
        let raw = match tag {
            Tag::Start { closed } => scan.tree.start(&scan.name, closed),
            Tag::End => {
                scan.tree.end(&scan.name);
                None
            }
        };
        match raw {
            Some(Raw::ToEndTag) => scan.skip_raw_text(),
            Some(Raw::Rest) => break,
            None => {}
        }
        if scan.tree.deepest() > max.depth || scan.work > max.work {
            break;
        }
    }
    Nesting {
        depth: scan.tree.deepest(),
        work: scan.work,
    }
}

/// Content that is text, not markup.
enum Raw {
    /// Up to the element's end tag (`<script>`, `<style>`, `<textarea>`, …).
    ToEndTag,
    /// The rest of the page (`<plaintext>`).
    Rest,
}

/// A tag, its name in [`Scan::name`].
enum Tag {
    /// `closed`: written `<x/>`.
    Start {
        closed: bool,
    },
    End,
}

/// The tokenizer's part: tags, with comments, doctypes and attribute values
/// (where `>` and `<` do not count) skipped.
struct Scan<'a> {
    html: &'a [u8],
    at: usize,
    /// The last tag's name, lowercased.
    name: Vec<u8>,
    tree: Tree,
    /// The parser's work so far (see [`Nesting::work`]).
    work: u64,
}

fn is_space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ')
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay.get(from..)?, needle).map(|i| from + i)
}

/// Where byte `c` next occurs at or after `from`. Pages are mostly text:
/// this search is the scan's hot loop, hence memchr's vectorised one.
fn find_byte(hay: &[u8], from: usize, c: u8) -> Option<usize> {
    memchr::memchr(c, hay.get(from..)?).map(|i| from + i)
}

/// Where a comment that starts at `from` ends (after `-->` or `--!>`).
fn comment_end(b: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    loop {
        let dashes = find(b, at, b"--")?;
        match b.get(dashes + 2..) {
            Some([b'>', ..]) => return Some(dashes + 3),
            Some([b'!', b'>', ..]) => return Some(dashes + 4),
            _ => at = dashes + 1,
        }
    }
}

impl<'a> Scan<'a> {
    fn new(html: &'a [u8]) -> Self {
        Scan {
            html,
            at: 0,
            name: Vec::new(),
            tree: Tree::new(),
            work: 0,
        }
    }

    /// The next tag, or `None` at the end of the text.
    fn next_tag(&mut self) -> Option<Tag> {
        let b = self.html;
        loop {
            let lt = find_byte(b, self.at, b'<')?;
            self.at = lt + 1;
            match b.get(lt + 1).copied() {
                Some(c) if c.is_ascii_alphabetic() => {
                    self.read_name();
                    let closed = self.attributes()?;
                    return Some(Tag::Start { closed });
                }
                Some(b'/') if b.get(lt + 2).is_some_and(u8::is_ascii_alphabetic) => {
                    self.at = lt + 2;
                    self.read_name();
                    self.attributes()?;
                    return Some(Tag::End);
                }
                Some(b'!') if b[lt..].starts_with(b"<!--") => {
                    // `<!-->` and `<!--->` are whole (empty) comments.
                    let body = lt + 4;
                    self.at = if b[body..].starts_with(b">") {
                        body + 1
                    } else if b[body..].starts_with(b"->") {
                        body + 2
                    } else {
                        comment_end(b, body)?
                    };
                }
                Some(b'!') if b[lt..].starts_with(b"<![CDATA[") && self.tree.in_foreign() => {
                    self.at = find(b, lt, b"]]>")? + 3;
                }
                // Doctypes, `<?…>`, `</1>`: bogus comments up to `>`.
                Some(b'!' | b'?' | b'/') => {
                    self.at = find_byte(b, lt + 1, b'>')? + 1;
                }
                // A `<` of text.
                _ => {}
            }
        }
    }

    /// Reads the tag name at `self.at` into `self.name`, lowercased.
    fn read_name(&mut self) {
        let b = self.html;
        let len = b[self.at..]
            .iter()
            .position(|&c| is_space(c) || c == b'/' || c == b'>')
            .unwrap_or(b.len() - self.at);
        self.name.clear();
        self.name.extend_from_slice(&b[self.at..self.at + len]);
        self.name.make_ascii_lowercase();
        self.at += len;
    }

    /// Skips a tag's attributes up to its `>`: `Some(true)` when the tag
    /// ends with `/>`, `None` when the text ends first (the tag is dropped).
    /// The tokenizer compares each attribute's name with those before it:
    /// that work is counted too.
    fn attributes(&mut self) -> Option<bool> {
        let b = self.html;
        let mut i = self.at;
        let mut count = 0u64;
        let space = |i: &mut usize| {
            while b.get(*i).is_some_and(|&c| is_space(c)) {
                *i += 1;
            }
        };
        loop {
            space(&mut i);
            match *b.get(i)? {
                b'>' => {
                    self.at = i + 1;
                    self.work += count * count.saturating_sub(1) / 2;
                    return Some(false);
                }
                b'/' => {
                    i += 1;
                    if b.get(i) == Some(&b'>') {
                        self.at = i + 1;
                        self.work += count * count.saturating_sub(1) / 2;
                        return Some(true);
                    }
                    continue;
                }
                _ => {}
            }
            // The name (its first character may be `=`), then maybe a value.
            count += 1;
            i += 1;
            while b
                .get(i)
                .is_some_and(|&c| !is_space(c) && !matches!(c, b'/' | b'>' | b'='))
            {
                i += 1;
            }
            space(&mut i);
            if b.get(i) != Some(&b'=') {
                continue;
            }
            i += 1;
            space(&mut i);
            match *b.get(i)? {
                q @ (b'"' | b'\'') => i = find_byte(b, i + 1, q)? + 1,
                b'>' => {}
                _ => {
                    while b.get(i).is_some_and(|&c| !is_space(c) && c != b'>') {
                        i += 1;
                    }
                }
            }
        }
    }

    /// Skips the text of the raw-text element just opened up to its end tag
    /// (left to be read as a tag). Without one, the rest is its text.
    fn skip_raw_text(&mut self) {
        let (b, name) = (self.html, &self.name);
        let mut from = self.at;
        while let Some(lt) = find(b, from, b"</") {
            let end = lt + 2 + name.len();
            let named = b
                .get(lt + 2..end)
                .is_some_and(|n| n.eq_ignore_ascii_case(name));
            if named
                && b.get(end)
                    .is_none_or(|&c| is_space(c) || c == b'/' || c == b'>')
            {
                self.at = lt;
                return;
            }
            from = lt + 2;
        }
        self.at = b.len();
    }
}

#[cfg(test)]
mod tests;
