//! URL normalisation: the one canonical form of a URL that the config (start
//! URLs), extraction (links and `url` fields) and the frontier (dedup) all
//! share. It sits below all three so that none of them imports another for it.

use url::Url;

/// A query parameter name or a `prefix*` pattern to drop when normalising URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamPattern {
    Exact(String),
    Prefix(String),
}

impl ParamPattern {
    /// `utm_*` → prefix `utm_`; anything else is matched exactly.
    pub fn parse(s: &str) -> Self {
        match s.strip_suffix('*') {
            Some(prefix) => ParamPattern::Prefix(prefix.to_owned()),
            None => ParamPattern::Exact(s.to_owned()),
        }
    }

    pub fn matches(&self, name: &str) -> bool {
        match self {
            ParamPattern::Exact(n) => n == name,
            ParamPattern::Prefix(p) => name.starts_with(p.as_str()),
        }
    }
}

/// The canonical form of a URL: fragment dropped, listed query parameters
/// removed, empty query dropped. `url` already lowercases scheme and host,
/// drops default ports, resolves dot segments and writes IDN hosts in punycode.
pub fn normalize_url(mut url: Url, strip: &[ParamPattern]) -> Url {
    url.set_fragment(None);
    if let Some(query) = url.query() {
        if query.is_empty() {
            url.set_query(None);
        } else if !strip.is_empty()
            && url
                .query_pairs()
                .any(|(k, _)| strip.iter().any(|p| p.matches(&k)))
        {
            // Rewrite only when something goes, so other parameters keep their encoding.
            let kept: Vec<(String, String)> = url
                .query_pairs()
                .filter(|(k, _)| !strip.iter().any(|p| p.matches(k)))
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            if kept.is_empty() {
                url.set_query(None);
            } else {
                url.query_pairs_mut().clear().extend_pairs(kept);
            }
        }
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        let strip = [
            ParamPattern::parse("utm_*"),
            ParamPattern::parse("sessionid"),
        ];
        normalize_url(Url::parse(s).unwrap(), &strip).to_string()
    }

    #[test]
    fn normalises_urls() {
        assert_eq!(
            norm("HTTP://Example.COM:80/a/./b/../c#frag"),
            "http://example.com/a/c"
        );
        assert_eq!(norm("https://example.com:443/?"), "https://example.com/");
        assert_eq!(
            norm("http://x.org/p?utm_source=a&id=3&sessionid=9"),
            "http://x.org/p?id=3"
        );
        assert_eq!(norm("http://x.org/p?utm_source=a"), "http://x.org/p");
        assert_eq!(
            norm("http://x.org/p?q=a%20b&z=1"),
            "http://x.org/p?q=a%20b&z=1"
        );
        assert_eq!(
            norm("http://bücher.example/"),
            "http://xn--bcher-kva.example/"
        );
    }
}
