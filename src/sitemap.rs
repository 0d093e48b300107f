//! The sitemaps.org format, read: a `<urlset>` (pages, each with its
//! `<lastmod>`) or a `<sitemapindex>` (more sitemaps), plain or gzip.
//!
//! Pure and streaming: the XML is read event by event (quick-xml) through a
//! gzip decoder when the body starts with gzip's magic bytes, so that no DOM
//! of a 50 MB file is ever built, and what is read stops at the sitemaps.org
//! limits ([`MAX_ENTRIES`], [`MAX_BYTES`] uncompressed). What was read before
//! a limit or a syntax error is kept: a sitemap cut short still names pages.
//! Nothing here fetches; `crawl` decides what the entries become.

use std::io::{BufRead, BufReader, Read};

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};
use quick_xml::events::Event;
use quick_xml::Reader;

/// URLs (or child sitemaps) per file, at most (sitemaps.org).
pub const MAX_ENTRIES: usize = 50_000;
/// Uncompressed bytes per file, at most (sitemaps.org: 50 MB).
pub const MAX_BYTES: u64 = 50 * 1024 * 1024;
/// Longest `<loc>` or `<lastmod>` kept; what is longer is no URL a crawler
/// wants, and the cap bounds what one hostile element costs.
const MAX_TEXT: usize = 8 * 1024;

/// The limits a file is read within (tests use smaller ones).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub entries: usize,
    pub bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            entries: MAX_ENTRIES,
            bytes: MAX_BYTES,
        }
    }
}

/// What a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `<urlset>`: pages.
    UrlSet,
    /// `<sitemapindex>`: more sitemaps.
    Index,
    /// Neither root element was seen.
    Unknown,
}

/// One `<url>` or `<sitemap>` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The `<loc>` text, trimmed, entities resolved (not yet a checked URL).
    pub loc: String,
    /// `<lastmod>` in ms since the Unix epoch; `None`: absent or unreadable.
    pub lastmod_ms: Option<i64>,
}

/// Why reading a file stopped before its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// More entries than [`Limits::entries`]: the rest were not read.
    TooManyEntries(usize),
    /// More uncompressed bytes than [`Limits::bytes`]: the rest were not read.
    TooLarge(u64),
    /// The XML (or the gzip stream) is broken at this point.
    Malformed(String),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::TooManyEntries(n) => write!(
                f,
                "more than {n} entries (the sitemaps.org limit): the rest was not read"
            ),
            Stop::TooLarge(n) => write!(
                f,
                "more than {n} bytes uncompressed (the sitemaps.org limit): the rest was not read"
            ),
            Stop::Malformed(e) => write!(f, "malformed: {e}"),
        }
    }
}

/// A file as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sitemap {
    pub kind: Kind,
    pub entries: Vec<Entry>,
    /// Whether the body was gzip.
    pub gzip: bool,
    /// Why reading stopped early, if it did.
    pub stop: Option<Stop>,
}

/// Whether a body is gzip (by its magic bytes, whatever its name says: a
/// `.gz` file a server sent with `Content-Encoding: gzip` arrives decoded).
pub fn is_gzip(body: &[u8]) -> bool {
    body.starts_with(&[0x1f, 0x8b])
}

/// Reads a sitemap or sitemap index within `limits`. Never fails: a broken
/// file gives what was read before the break, and says why in `stop`.
pub fn parse(body: &[u8], limits: Limits) -> Sitemap {
    let gzip = is_gzip(body);
    let counted = Counted {
        inner: if gzip {
            Box::new(flate2::read::MultiGzDecoder::new(body)) as Box<dyn Read + '_>
        } else {
            Box::new(body)
        },
        read: 0,
        // One byte past the limit tells a file over it from one exactly at it.
        cap: limits.bytes.saturating_add(1),
    };
    let mut reader = Reader::from_reader(BufReader::new(counted));
    let (kind, entries, stop) = read_entries(&mut reader, limits.entries);
    let over = reader.get_ref().get_ref().read > limits.bytes;
    let stop = match stop {
        // Past the byte cap the XML looks cut: the cap is the reason.
        _ if over => Some(Stop::TooLarge(limits.bytes)),
        stop => stop,
    };
    Sitemap {
        kind,
        entries,
        gzip,
        stop,
    }
}

/// Which text of an entry is being read.
#[derive(Clone, Copy, PartialEq)]
enum Field {
    None,
    Loc,
    Lastmod,
}

fn read_entries<R: BufRead>(
    reader: &mut Reader<R>,
    max: usize,
) -> (Kind, Vec<Entry>, Option<Stop>) {
    let mut kind = Kind::Unknown;
    let mut entries = Vec::new();
    let mut buf = Vec::new();
    // Elements open; the depth of the open `<url>`/`<sitemap>`, if any. Only
    // its direct children are its `<loc>` and `<lastmod>`: the extensions'
    // elements nested in an entry (`<image:image><image:loc>`, `<video:video>`,
    // `<news:news>`) are not the page's.
    let mut depth = 0usize;
    let (mut entry, mut field) = (None::<usize>, Field::None);
    let (mut loc, mut lastmod) = (String::new(), String::new());
    loop {
        buf.clear();
        let event = match reader.read_event_into(&mut buf) {
            Ok(e) => e,
            Err(e) => return (kind, entries, Some(Stop::Malformed(e.to_string()))),
        };
        match event {
            Event::Eof => return (kind, entries, None),
            Event::Start(e) => {
                depth += 1;
                field = Field::None;
                let child = entry.is_some_and(|d| depth == d + 1);
                match e.local_name().as_ref() {
                    b"urlset" if kind == Kind::Unknown => kind = Kind::UrlSet,
                    b"sitemapindex" if kind == Kind::Unknown => kind = Kind::Index,
                    b"url" | b"sitemap" if entry.is_none() => {
                        entry = Some(depth);
                        loc.clear();
                        lastmod.clear();
                    }
                    b"loc" if child => field = Field::Loc,
                    b"lastmod" if child => field = Field::Lastmod,
                    _ => {}
                }
            }
            Event::End(_) => {
                field = Field::None;
                let closes_entry = entry == Some(depth);
                depth = depth.saturating_sub(1);
                if closes_entry {
                    entry = None;
                    let text = loc.trim();
                    if text.is_empty() {
                        continue;
                    }
                    if entries.len() == max {
                        return (kind, entries, Some(Stop::TooManyEntries(max)));
                    }
                    entries.push(Entry {
                        loc: text.to_owned(),
                        lastmod_ms: parse_lastmod(lastmod.trim()),
                    });
                }
            }
            Event::Text(t) => {
                if let Ok(text) = t.decode() {
                    push(field, &mut loc, &mut lastmod, &text);
                }
            }
            Event::CData(t) => {
                if let Ok(text) = t.decode() {
                    push(field, &mut loc, &mut lastmod, &text);
                }
            }
            Event::GeneralRef(r) => {
                let ch = match r.resolve_char_ref() {
                    Ok(Some(c)) => Some(c),
                    _ => match &*r {
                        b"amp" => Some('&'),
                        b"lt" => Some('<'),
                        b"gt" => Some('>'),
                        b"quot" => Some('"'),
                        b"apos" => Some('\''),
                        _ => None,
                    },
                };
                if let Some(c) = ch {
                    push(field, &mut loc, &mut lastmod, c.encode_utf8(&mut [0; 4]));
                }
            }
            _ => {}
        }
    }
}

/// Appends text to the field being read, up to [`MAX_TEXT`].
fn push(field: Field, loc: &mut String, lastmod: &mut String, text: &str) {
    let to = match field {
        Field::Loc => loc,
        Field::Lastmod => lastmod,
        Field::None => return,
    };
    if to.len() + text.len() <= MAX_TEXT {
        to.push_str(text);
    }
}

/// A W3C datetime (the profile of ISO 8601 sitemaps use) in ms since the
/// epoch: `YYYY`, `YYYY-MM`, `YYYY-MM-DD`, or a date with a time
/// (`hh:mm`, `hh:mm:ss`, fractions) and a zone (`Z`, `+hh:mm`). A date
/// without a time stands for the *end* of its year, month or day (UTC):
/// the page may have changed at any time in it, and a crawler that takes the
/// start would skip a page fetched that morning and changed that evening.
/// Anything else is `None` (unknown: the page is fetched).
pub fn parse_lastmod(text: &str) -> Option<i64> {
    if text.contains('T') {
        if let Ok(t) = DateTime::parse_from_rfc3339(text) {
            return Some(t.timestamp_millis());
        }
        // `hh:mm` without seconds, which RFC 3339 lacks.
        let zoned = text.replace('Z', "+00:00");
        return DateTime::parse_from_str(&zoned, "%Y-%m-%dT%H:%M%:z")
            .ok()
            .map(|t| t.timestamp_millis());
    }
    let parts: Vec<&str> = text.split('-').collect();
    let num = |s: &str, len: usize| {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u32>().ok())
            .flatten()
    };
    // The first day after the period, whose start is the period's end.
    let next = match parts.as_slice() {
        [y] => NaiveDate::from_ymd_opt(num(y, 4)? as i32 + 1, 1, 1)?,
        [y, m] => {
            let (y, m) = (num(y, 4)? as i32, num(m, 2)?);
            let first = NaiveDate::from_ymd_opt(y, m, 1)?;
            first.checked_add_months(chrono::Months::new(1))?
        }
        [y, m, d] => {
            NaiveDate::from_ymd_opt(num(y, 4)? as i32, num(m, 2)?, num(d, 2)?)?.succ_opt()?
        }
        _ => return None,
    };
    let end = NaiveDateTime::new(next, NaiveTime::MIN).and_utc();
    Some(end.timestamp_millis() - 1)
}

/// A reader that counts what it gives and stops at a cap.
struct Counted<R> {
    inner: R,
    read: u64,
    cap: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.cap.saturating_sub(self.read);
        if left == 0 {
            return Ok(0);
        }
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let got = self.inner.read(&mut buf[..n])?;
        self.read += got as u64;
        Ok(got)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(text: &str) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(text.as_bytes()).expect("gzip");
        e.finish().expect("gzip")
    }

    const URLSET: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <url><loc>http://a.test/p?x=1&amp;y=2</loc><lastmod>2026-12-01T10:00:00+01:00</lastmod></url>
  <url><loc> http://a.test/q </loc><changefreq>daily</changefreq></url>
  <url><loc><![CDATA[http://a.test/r]]></loc><lastmod>yesterday</lastmod></url>
  <url><lastmod>2026-12-01</lastmod></url>
</urlset>"#;

    #[test]
    fn reads_a_urlset_with_entities_cdata_and_lastmods() {
        let s = parse(URLSET.as_bytes(), Limits::default());
        assert_eq!(s.kind, Kind::UrlSet);
        assert_eq!(s.stop, None);
        let locs: Vec<&str> = s.entries.iter().map(|e| e.loc.as_str()).collect();
        assert_eq!(
            locs,
            [
                "http://a.test/p?x=1&y=2",
                "http://a.test/q",
                "http://a.test/r"
            ]
        );
        assert_eq!(s.entries[0].lastmod_ms, Some(1_796_115_600_000));
        assert_eq!(s.entries[1].lastmod_ms, None);
        assert_eq!(s.entries[2].lastmod_ms, None, "unreadable: unknown");
    }

    #[test]
    fn reads_a_gzip_index_by_its_magic_bytes() {
        let text = r#"<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
            <sitemap><loc>http://a.test/s1.xml.gz</loc></sitemap>
            <sitemap><loc>http://a.test/s2.xml</loc><lastmod>2026</lastmod></sitemap>
        </sitemapindex>"#;
        let s = parse(&gz(text), Limits::default());
        assert!(s.gzip);
        assert_eq!(s.kind, Kind::Index);
        assert_eq!(s.entries.len(), 2);
        assert_eq!(s.entries[1].loc, "http://a.test/s2.xml");
    }

    #[test]
    fn stops_at_the_entry_limit_keeping_what_was_read() {
        let s = parse(
            URLSET.as_bytes(),
            Limits {
                entries: 2,
                bytes: MAX_BYTES,
            },
        );
        assert_eq!(s.entries.len(), 2);
        assert_eq!(s.stop, Some(Stop::TooManyEntries(2)));
    }

    #[test]
    fn stops_at_the_byte_limit_of_the_uncompressed_text() {
        let limits = Limits {
            entries: MAX_ENTRIES,
            bytes: 200,
        };
        let s = parse(&gz(URLSET), limits);
        assert_eq!(s.stop, Some(Stop::TooLarge(200)));
        assert!(s.entries.len() < 3);
        // Exactly at the limit is within it.
        let exact = Limits {
            entries: MAX_ENTRIES,
            bytes: URLSET.len() as u64,
        };
        assert_eq!(parse(URLSET.as_bytes(), exact).stop, None);
    }

    #[test]
    fn a_broken_file_keeps_what_came_before_the_break() {
        let text = "<urlset><url><loc>http://a.test/1</loc></url><url><loc>x</lo></url>";
        let s = parse(text.as_bytes(), Limits::default());
        assert_eq!(s.entries.len(), 1);
        assert!(matches!(s.stop, Some(Stop::Malformed(_))));
        let cut = &gz(URLSET)[..40];
        assert!(parse(cut, Limits::default()).stop.is_some());
    }

    #[test]
    fn image_extension_locs_are_not_the_pages() {
        // As Yoast (WordPress) and Shopify write them.
        let text = r#"<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">
  <url>
    <loc>https://shop.example/p/1</loc>
    <lastmod>2026-12-01T10:00:00+00:00</lastmod>
    <image:image><image:loc>https://shop.example/img/1.jpg</image:loc></image:image>
    <image:image><image:loc>https://shop.example/img/2.jpg</image:loc><image:title>Two</image:title></image:image>
  </url>
  <url>
    <image:image><image:loc>https://shop.example/img/3.jpg</image:loc></image:image>
    <loc>https://shop.example/p/2</loc>
  </url>
  <url><image:image><image:loc>https://shop.example/img/4.jpg</image:loc></image:image></url>
</urlset>"#;
        let s = parse(text.as_bytes(), Limits::default());
        assert_eq!(s.stop, None);
        let locs: Vec<&str> = s.entries.iter().map(|e| e.loc.as_str()).collect();
        assert_eq!(
            locs,
            ["https://shop.example/p/1", "https://shop.example/p/2"]
        );
        assert_eq!(s.entries[0].lastmod_ms, Some(1_796_119_200_000));
    }

    #[test]
    fn video_and_news_extension_elements_are_not_the_pages() {
        let text = r#"<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"
    xmlns:video="http://www.google.com/schemas/sitemap-video/1.1"
    xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">
  <url>
    <loc>https://v.example/watch/1</loc>
    <video:video>
      <video:thumbnail_loc>https://v.example/t/1.jpg</video:thumbnail_loc>
      <video:content_loc>https://v.example/v/1.mp4</video:content_loc>
      <video:player_loc>https://v.example/player?v=1</video:player_loc>
      <video:publication_date>2026-11-01T00:00:00+00:00</video:publication_date>
      <video:uploader info="https://v.example/u/1">someone</video:uploader>
    </video:video>
    <news:news><news:publication><news:name>V</news:name></news:publication>
      <news:publication_date>2026-11-02</news:publication_date></news:news>
  </url>
</urlset>"#;
        let s = parse(text.as_bytes(), Limits::default());
        assert_eq!(s.stop, None);
        assert_eq!(s.entries.len(), 1);
        assert_eq!(s.entries[0].loc, "https://v.example/watch/1");
        assert_eq!(s.entries[0].lastmod_ms, None);
    }

    #[test]
    fn lastmod_takes_w3c_datetimes_and_dates_as_their_end() {
        let ms = |s: &str| parse_lastmod(s);
        assert_eq!(ms("2026-12-07T00:00:00Z"), Some(1_796_601_600_000));
        assert_eq!(ms("2026-12-07T01:00+01:00"), Some(1_796_601_600_000));
        assert_eq!(ms("2026-12-07T00:00:00.5Z"), Some(1_796_601_600_500));
        assert_eq!(ms("2026-12-06"), Some(1_796_601_600_000 - 1));
        assert_eq!(ms("2026-11"), ms("2026-11-30"));
        assert_eq!(ms("2025"), ms("2025-12-31"));
        for bad in [
            "",
            "soon",
            "2026-13-01",
            "2026-12-07T25:00Z",
            "20261207",
            "2026-1-1",
        ] {
            assert_eq!(ms(bad), None, "{bad}");
        }
    }
}
