//! Charset decoding of HTML bodies.

use std::borrow::Cow;

use encoding_rs::Encoding;

/// Decodes an HTML body: a BOM wins, then the Content-Type charset, then a
/// `<meta>` charset in the first 1024 bytes, then UTF-8. Invalid sequences
/// become U+FFFD rather than failing the page.
pub fn decode<'a>(body: &'a [u8], content_type: Option<&str>) -> Cow<'a, str> {
    let encoding = Encoding::for_bom(body)
        .map(|(e, _)| e)
        .or_else(|| {
            content_type
                .and_then(charset_param)
                .and_then(|l| Encoding::for_label(l.as_bytes()))
        })
        .or_else(|| meta_charset(&body[..body.len().min(1024)]))
        .unwrap_or(encoding_rs::UTF_8);
    // `decode` strips a BOM of the encoding it uses and only allocates when it must.
    encoding.decode(body).0
}

fn charset_param(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"'))
    })
}

fn meta_charset(head: &[u8]) -> Option<&'static Encoding> {
    static META: std::sync::OnceLock<Option<regex::bytes::Regex>> = std::sync::OnceLock::new();
    let re = META
        .get_or_init(|| {
            regex::bytes::Regex::new(r#"(?i)<meta[^>]*charset\s*=\s*["']?\s*([a-z0-9_:.\-]+)"#).ok()
        })
        .as_ref()?;
    let label = re.captures(head)?.get(1)?;
    // A page that declares UTF-16 in ASCII is not UTF-16 (HTML spec): read it as UTF-8.
    Encoding::for_label(label.as_bytes()).map(|e| e.output_encoding())
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn charset_sources_in_order() {
        let latin1 = b"<p>caf\xe9</p>";
        assert_eq!(
            decode(latin1, Some("text/html; charset=ISO-8859-1")),
            "<p>café</p>"
        );
        let meta = b"<meta charset=\"windows-1252\"><p>caf\xe9</p>";
        assert!(decode(meta, Some("text/html")).contains("café"));
        let meta2 = b"<meta http-equiv=Content-Type content='text/html; charset=iso-8859-1'>\xe9";
        assert!(decode(meta2, None).ends_with('é'));
        let bom = b"\xef\xbb\xbf<p>\xc3\xa9</p>";
        assert_eq!(
            decode(bom, Some("text/html; charset=iso-8859-1")),
            "<p>é</p>"
        );
        assert_eq!(decode("é".as_bytes(), None), "é");
        assert_eq!(decode(b"\xff", None), "\u{fffd}");
    }
}
