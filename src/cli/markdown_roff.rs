//! Markdown to a man page: what docs/configuration.md uses (headings,
//! paragraphs, lists, code blocks, tables, inline code, emphasis, links),
//! walked with pulldown-cmark and written with the `roff` crate (as
//! clap_mangen re-exports it), which
//! escapes dashes, backslashes, apostrophes and leading dots. Tables become
//! `.TP` lists (first cell as the tag), which read better on a terminal than
//! tbl(1) boxes and need no preprocessor.

use clap_mangen::roff::{bold, italic, line_break, roman, Inline, Roff};
use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};

/// The man page's title line, NAME and SEE ALSO.
pub(super) struct Title<'a> {
    /// The page's name, e.g. `crawld.toml`.
    pub name: &'a str,
    pub section: &'a str,
    /// Where it comes from, e.g. `crawld 0.1.0`.
    pub source: &'a str,
    /// The manual's name, e.g. `File Formats`.
    pub manual: &'a str,
    /// NAME's one line, after "name -".
    pub summary: &'a str,
    pub see_also: &'a str,
}

/// The man page of a Markdown document. Its `# h1` is dropped (NAME stands
/// for it), what precedes the first `## h2` is DESCRIPTION, and each `##`
/// is a section.
pub(super) fn page(title: &Title, markdown: &str) -> String {
    let mut writer = Writer::default();
    writer
        .roff
        .control("SH", ["NAME"])
        .text([roman(format!("{} - {}", title.name, title.summary))])
        .control("SH", ["DESCRIPTION"]);
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
    for event in Parser::new_ext(markdown, options) {
        writer.on_event(event);
    }
    writer
        .roff
        .control("SH", ["SEE ALSO"])
        .text([roman(title.see_also)]);
    // No date: the page is the same whenever it is built.
    let th = format!(
        ".TH {} {} \"\" {} {}\n",
        title.name,
        title.section,
        quoted(title.source),
        quoted(title.manual)
    );
    ascii(&(th + &writer.roff.render()))
}

/// Non-ASCII characters as groff's `\[uXXXX]` escapes: the page then reads
/// the same whatever encoding the man viewer assumes (no preconv needed).
pub(super) fn ascii(roff: &str) -> String {
    let mut out = String::with_capacity(roff.len());
    for c in roff.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            out.push_str(&format!("\\[u{:04X}]", u32::from(c)));
        }
    }
    out
}

/// A roff macro argument: quoted, with its own quotes as `\(dq`.
fn quoted(arg: &str) -> String {
    format!("\"{}\"", arg.replace('"', r"\(dq"))
}

/// The state of one walk: a block's inlines are gathered until its end
/// event, then written as one text line.
#[derive(Default)]
struct Writer {
    roff: Roff,
    /// The current block's inlines.
    inlines: Vec<Inline>,
    /// The current block's text without styles (for headings and table heads).
    plain: String,
    bold: usize,
    italic: usize,
    /// The destination of the link being read.
    link: Option<String>,
    code: Option<String>,
    /// List items open (a paragraph inside one keeps the item's indent).
    items: usize,
    table: Option<Table>,
}

#[derive(Default)]
struct Table {
    head: Vec<String>,
    rows: Vec<Vec<Vec<Inline>>>,
    row: Vec<Vec<Inline>>,
}

impl Writer {
    fn on_event(&mut self, event: Event) {
        match event {
            Event::Start(tag) => self.on_start(tag),
            Event::End(tag) => self.on_end(tag),
            Event::Text(text) => self.on_text(&text),
            Event::Code(code) => {
                self.plain.push_str(&code);
                self.inlines.push(bold(code.as_ref()));
            }
            Event::SoftBreak => self.on_text(" "),
            Event::HardBreak => self.inlines.push(line_break()),
            // Raw HTML, rules, footnotes: nothing the reference uses.
            _ => {}
        }
    }

    fn on_start(&mut self, tag: Tag) {
        match tag {
            Tag::Strong => self.bold += 1,
            Tag::Emphasis => self.italic += 1,
            Tag::Link { dest_url, .. } => self.link = Some(dest_url.to_string()),
            Tag::CodeBlock(_) => self.code = Some(String::new()),
            Tag::Item => {
                self.items += 1;
                self.roff.control("IP", [r"\(bu", "2"]);
            }
            Tag::Table(_) => self.table = Some(Table::default()),
            Tag::Heading { .. } | Tag::Paragraph | Tag::TableCell => {
                self.take();
            }
            _ => {}
        }
    }

    fn on_end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Strong => self.bold -= 1,
            TagEnd::Emphasis => self.italic -= 1,
            TagEnd::Link => {
                // A page of docs/ cannot be followed from a terminal; a web
                // address can be.
                if let Some(url) = self.link.take().filter(|u| u.starts_with("http")) {
                    self.inlines.push(roman(format!(" <{url}>")));
                }
            }
            TagEnd::Heading(level) => self.on_heading(level),
            TagEnd::Paragraph => {
                if self.items == 0 {
                    self.roff.control("PP", []);
                }
                self.flush();
            }
            TagEnd::Item => {
                // A tight list's item has its text without a paragraph.
                self.flush();
                self.items -= 1;
            }
            TagEnd::CodeBlock => self.on_code_block(),
            TagEnd::TableCell => {
                let (inlines, plain) = self.take();
                if let Some(table) = &mut self.table {
                    table.row.push(inlines);
                    if table.rows.is_empty() && table.head.len() < table.row.len() {
                        table.head.push(plain);
                    }
                }
            }
            TagEnd::TableHead => {
                // The head's cells are not a row of values.
                if let Some(table) = &mut self.table {
                    table.row.clear();
                    table.rows.push(Vec::new());
                }
            }
            TagEnd::TableRow => {
                if let Some(table) = &mut self.table {
                    let row = std::mem::take(&mut table.row);
                    table.rows.push(row);
                }
            }
            TagEnd::Table => {
                if let Some(table) = self.table.take() {
                    self.on_table(table);
                }
            }
            _ => {}
        }
    }

    fn on_text(&mut self, text: &str) {
        if let Some(code) = &mut self.code {
            code.push_str(text);
            return;
        }
        self.plain.push_str(text);
        let inline = if self.bold > 0 {
            bold(text)
        } else if self.italic > 0 {
            italic(text)
        } else {
            roman(text)
        };
        self.inlines.push(inline);
    }

    /// `#` is the page's title (NAME stands for it), `##` a section, deeper
    /// ones subsections. A heading that names a table (`` `[follow]` ``)
    /// keeps its case; the others are upper case, as man pages write them.
    fn on_heading(&mut self, level: HeadingLevel) {
        let has_code = self.inlines.iter().any(|i| matches!(i, Inline::Bold(_)));
        let (_, plain) = self.take();
        let name = if has_code {
            plain
        } else {
            plain.to_uppercase()
        };
        let name = name.replace('"', r"\(dq");
        match level {
            HeadingLevel::H1 => {}
            HeadingLevel::H2 => {
                self.roff.control("SH", [name.as_str()]);
            }
            _ => {
                self.roff.control("SS", [name.as_str()]);
            }
        }
    }

    /// Verbatim and indented, one text line per line.
    fn on_code_block(&mut self) {
        let code = self.code.take().unwrap_or_default();
        self.roff
            .control("PP", [])
            .control("RS", ["4"])
            .control("nf", []);
        for line in code.lines() {
            self.roff.text([roman(line)]);
        }
        self.roff.control("fi", []).control("RE", []);
    }

    /// Each row is a `.TP` entry: its first cell is the tag; the middle
    /// cells follow as "head: value" (`type: integer; default: 10`), then
    /// the last cell (the meaning) on its own line.
    fn on_table(&mut self, table: Table) {
        let Table { head, rows, .. } = table;
        for row in rows.into_iter().filter(|r| !r.is_empty()) {
            let mut cells = row.into_iter();
            let tag = cells.next().unwrap_or_default();
            let mut rest: Vec<Vec<Inline>> = cells.collect();
            let last = if rest.is_empty() {
                Vec::new()
            } else {
                rest.pop().unwrap_or_default()
            };
            let mut body = Vec::new();
            for (i, cell) in rest.into_iter().enumerate() {
                if cell.is_empty() {
                    continue;
                }
                if !body.is_empty() {
                    body.push(roman("; "));
                }
                if let Some(name) = head.get(i + 1).filter(|h| !h.is_empty()) {
                    body.push(roman(format!("{name}: ")));
                }
                body.extend(cell);
            }
            if !body.is_empty() && !last.is_empty() {
                body.push(line_break());
            }
            body.extend(last);
            self.roff.control("TP", []).text(tag);
            if !body.is_empty() {
                self.roff.text(body);
            }
        }
    }

    /// Writes the gathered inlines as one text line.
    fn flush(&mut self) {
        let (inlines, _) = self.take();
        if !inlines.is_empty() {
            self.roff.text(inlines);
        }
    }

    fn take(&mut self) -> (Vec<Inline>, String) {
        (
            std::mem::take(&mut self.inlines),
            std::mem::take(&mut self.plain),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(markdown: &str) -> String {
        let title = Title {
            name: "x.toml",
            section: "5",
            source: "x 1.0",
            manual: "File Formats",
            summary: "the files",
            see_also: "x(1)",
        };
        page(&title, markdown)
    }

    #[test]
    fn sections_paragraphs_and_code() {
        let out = render(
            "# Title\n\nIntro `key` text.\n\n## Cron expressions\n\n```toml\n.dot = 1\n  indented = \"a-b\"\n```\n",
        );
        assert!(out.starts_with(".TH x.toml 5 \"\" \"x 1.0\" \"File Formats\"\n"));
        assert!(out.contains(".SH NAME\nx.toml \\- the files\n"));
        assert!(out.contains(".PP\nIntro \\fBkey\\fR text.\n"), "{out}");
        assert!(out.contains(".SH \"CRON EXPRESSIONS\"\n"), "{out}");
        assert!(
            out.contains(".nf\n\\&.dot = 1\n  indented = \"a\\-b\"\n.fi\n"),
            "{out}"
        );
        assert!(!out.contains("Title"), "the h1 is NAME's: {out}");
    }

    #[test]
    fn a_table_is_a_tagged_list() {
        let out = render(
            "## `[follow]`\n\n| key | default | meaning |\n|---|---|---|\n| `max_depth` | 10 | links followed |\n| `deny` | | not \\| followed |\n",
        );
        assert!(out.contains(".SH [follow]\n"), "{out}");
        assert!(
            out.contains(".TP\n\\fBmax_depth\\fR\ndefault: 10\n.br\nlinks followed\n"),
            "{out}"
        );
        assert!(out.contains(".TP\n\\fBdeny\\fR\nnot | followed\n"), "{out}");
        assert!(!out.contains("meaning"), "the head is not a row: {out}");
    }

    #[test]
    fn non_ascii_is_escaped() {
        let out = render("a … b → c\n");
        assert!(out.contains("a \\[u2026] b \\[u2192] c"), "{out}");
    }

    #[test]
    fn links_and_lists() {
        let out =
            render("See [profiles](profiles.md) and [web](https://x.org/).\n\n- one\n- two\n");
        assert!(
            out.contains("See profiles and web <https://x.org/>."),
            "{out}"
        );
        assert!(out.contains(".IP \\(bu 2\none\n"), "{out}");
    }
}
