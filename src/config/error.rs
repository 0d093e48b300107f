//! Configuration errors. Each one names the file, line, column and key, and
//! renders the offending line with a caret under the bad value, so that a user
//! can fix every error of a load in one pass.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// One problem found while loading the configs directory. It travels typed
/// through the daemon into `crawld status --json` and `/api/status`, as
/// [`ConfigErrorJson`] says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "ConfigErrorJson", from = "ConfigErrorJson")]
pub struct ConfigError {
    /// The file, as it was found in the configs directory.
    pub file: PathBuf,
    /// 1-based line and column of the bad value; `None` for file-level errors.
    pub position: Option<Position>,
    /// Dotted key path (`items.book.fields.price`) when the error is about a key.
    pub key: Option<String>,
    /// What is wrong, in words a user can act on.
    pub message: String,
    /// The source line with a caret marker, when known.
    snippet: Option<String>,
}

/// A 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// A file's text, kept so that errors can be located after parsing.
#[derive(Clone)]
pub struct Source {
    pub path: PathBuf,
    pub text: Arc<str>,
}

impl Source {
    /// An error about the bytes at `span` of this file.
    pub fn error(
        &self,
        span: Range<usize>,
        key: Option<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let (position, snippet) = locate(&self.text, span);
        ConfigError {
            file: self.path.clone(),
            position: Some(position),
            key,
            message: cut(message.into(), MAX_MESSAGE),
            snippet: Some(snippet),
        }
    }
}

impl ConfigError {
    /// An error about a whole file (unreadable, badly named).
    pub fn file(path: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            file: path.to_path_buf(),
            position: None,
            key: None,
            message: message.into(),
            snippet: None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(p) = self.position {
            write!(f, ":{}:{}", p.line, p.column)?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(snippet) = &self.snippet {
            write!(f, "\n{snippet}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A [`ConfigError`] in JSON: `{"file", "line", "column", "key", "message",
/// "snippet"}`, `line`, `column`, `key` and `snippet` null when unknown
/// (an unreadable file has no line). Flat, so that `jq '.errors[].line'`
/// reads it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigErrorJson {
    /// The path, as the daemon found it (lossy for a path that is not UTF-8).
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub key: Option<String>,
    pub message: String,
    /// The offending line with a caret under the bad value, as `crawld
    /// check` shows it.
    #[serde(default)]
    pub snippet: Option<String>,
}

impl From<ConfigError> for ConfigErrorJson {
    fn from(e: ConfigError) -> Self {
        ConfigErrorJson {
            file: e.file.display().to_string(),
            line: e.position.map(|p| p.line),
            column: e.position.map(|p| p.column),
            key: e.key,
            message: e.message,
            snippet: e.snippet,
        }
    }
}

impl From<ConfigErrorJson> for ConfigError {
    fn from(j: ConfigErrorJson) -> Self {
        ConfigError {
            file: j.file.into(),
            position: j
                .line
                .zip(j.column)
                .map(|(line, column)| Position { line, column }),
            key: j.key,
            message: j.message,
            snippet: j.snippet,
        }
    }
}

/// Errors grouped by file, each as `crawld check` prints it: the blocks of
/// the dashboard and the `config_broken` monitor's message.
pub fn errors_by_file(errors: &[ConfigError]) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut out: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for e in errors {
        out.entry(e.file.display().to_string())
            .or_default()
            .push(e.to_string());
    }
    out
}

/// Every error of one load, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "error: {e}")?;
        }
        write!(f, "{} configuration error(s)", self.0.len())
    }
}

impl std::error::Error for ConfigErrors {}

/// Characters of a line shown around an error, at most: a 5 MB one-line
/// file must not make a 10 MB message (the line, and as many spaces before
/// the caret).
pub const EXCERPT: usize = 200;
/// Characters of a message kept, at most: serde's messages quote the bad
/// value, however long.
pub const MAX_MESSAGE: usize = 500;

/// `s` cut to `max` characters, with `…` when it was longer.
fn cut(mut s: String, max: usize) -> String {
    if let Some((i, _)) = s.char_indices().nth(max) {
        s.truncate(i);
        s.push('…');
    }
    s
}

/// Line, column and a rendered snippet for a byte span of `text`; the
/// snippet shows at most [`EXCERPT`] characters of the line, around the span.
fn locate(text: &str, span: Range<usize>) -> (Position, String) {
    let start = floor_char_boundary(text, span.start.min(text.len()));
    let end = floor_char_boundary(text, span.end.clamp(start, text.len()));
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line_no = text[..start].matches('\n').count() + 1;
    let column = text[line_start..start].chars().count() + 1;
    let line = text[line_start..line_end].trim_end_matches('\r');
    let width = text[start..end.min(line_end)].chars().count().max(1);
    // A long line is shown from a little before the column.
    let chars = line.chars().count();
    let first = (column - 1)
        .saturating_sub(EXCERPT / 4)
        .min(chars.saturating_sub(EXCERPT));
    let mut shown: String = line.chars().skip(first).take(EXCERPT).collect();
    let mut caret_at = column - 1 - first;
    if first > 0 {
        shown.insert(0, '…');
        caret_at += 1;
    }
    if chars > first + EXCERPT {
        shown.push('…');
    }
    let width = width.min(shown.chars().count().saturating_sub(caret_at).max(1));
    let gutter = line_no.to_string().len();
    let snippet = format!(
        "{:gutter$} |\n{line_no} | {shown}\n{:gutter$} | {}{}",
        "",
        "",
        " ".repeat(caret_at),
        "^".repeat(width),
    );
    (
        Position {
            line: line_no,
            column,
        },
        snippet,
    )
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_goes_through_json_flat_and_comes_back_the_same() {
        let src = Source {
            path: "/etc/crawld/x.toml".into(),
            text: "a = 1\nb = \"oops\"\n".into(),
        };
        let e = src.error(10..16, Some("b".into()), "bad");
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["file"], "/etc/crawld/x.toml");
        assert_eq!(
            (json["line"].clone(), json["column"].clone()),
            (2.into(), 5.into())
        );
        assert_eq!(
            (json["key"].clone(), json["message"].clone()),
            ("b".into(), "bad".into())
        );
        let back: ConfigError = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.to_string(), e.to_string(), "rendered as before");
        let whole = ConfigError::file(Path::new("y.toml"), "unreadable");
        let json = serde_json::to_value(&whole).unwrap();
        assert!(json["line"].is_null() && json["key"].is_null(), "{json}");
        assert_eq!(serde_json::from_value::<ConfigError>(json).unwrap(), whole);
    }

    #[test]
    fn locates_line_and_column_in_characters() {
        let src = Source {
            path: "x.toml".into(),
            text: "a = 1\nbé = \"oops\"\n".into(),
        };
        let start = src.text.find("\"oops").unwrap();
        let e = src.error(start..start + 6, Some("bé".into()), "bad");
        assert_eq!(e.position, Some(Position { line: 2, column: 6 }));
        assert_eq!(
            e.to_string(),
            "x.toml:2:6: bé: bad\n  |\n2 | bé = \"oops\"\n  |      ^^^^^^"
        );
    }

    #[test]
    fn a_long_line_shows_an_excerpt_around_the_column_and_a_long_message_is_cut() {
        let line = format!("a = \"{}\" {} = 1", "x".repeat(5_000_000), "é".repeat(10));
        let src = Source {
            path: "x.toml".into(),
            text: line.clone().into(),
        };
        let start = line.find('é').unwrap();
        let e = src.error(start..start + 2, None, "y".repeat(5_000_000));
        let column = 5_000_000 + 8;
        assert_eq!(e.position, Some(Position { line: 1, column }));
        let shown = e.to_string();
        assert!(
            shown.len() < 2 * (EXCERPT + MAX_MESSAGE) + 100,
            "{}",
            shown.len()
        );
        // The caret still points at the é.
        let lines: Vec<&str> = shown.lines().collect();
        let caret = lines[3].find('^').unwrap();
        assert_eq!(lines[2].chars().nth(caret), Some('é'), "{shown}");
        assert!(
            lines[2].starts_with("1 | …") && lines[2].ends_with(" = 1"),
            "{shown}"
        );
    }
}
