//! Deterministic prose for the shop: a small seeded generator, and words,
//! sentences and paragraphs with the inline markup of real product copy
//! (`<strong>`, `<em>`, links to buying guides).

/// splitmix64: tiny, fast, and the same sequence on every machine.
pub struct Rng(u64);

impl Rng {
    /// A stream per (page, purpose), so that one page's layout draws do not
    /// shift what another part of the shop says about the same product.
    pub fn new(page: u64, stream: u64) -> Self {
        Rng(page.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03))
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

const WORDS: [&str; 64] = [
    "the",
    "and",
    "with",
    "for",
    "a",
    "of",
    "to",
    "in",
    "is",
    "it",
    "this",
    "that",
    "design",
    "quality",
    "durable",
    "lightweight",
    "stainless",
    "steel",
    "finish",
    "easy",
    "clean",
    "comfortable",
    "grip",
    "handle",
    "every",
    "day",
    "kitchen",
    "home",
    "perfect",
    "gift",
    "warranty",
    "includes",
    "features",
    "adjustable",
    "settings",
    "battery",
    "lasts",
    "hours",
    "charging",
    "compact",
    "storage",
    "sturdy",
    "base",
    "premium",
    "materials",
    "great",
    "value",
    "performance",
    "reliable",
    "build",
    "modern",
    "look",
    "fits",
    "most",
    "spaces",
    "simple",
    "controls",
    "quiet",
    "motor",
    "recycled",
    "packaging",
    "tested",
    "safety",
    "standards",
];

const GUIDES: [&str; 6] = [
    "how-to-choose",
    "care-and-cleaning",
    "buying-guide",
    "size-guide",
    "warranty-explained",
    "recycling",
];

/// `n` plain words, space separated.
pub fn words(s: &mut String, r: &mut Rng, n: usize) {
    for k in 0..n {
        if k > 0 {
            s.push(' ');
        }
        s.push_str(WORDS[r.below(WORDS.len())]);
    }
}

/// One sentence of 8–20 words; with `plain` false, some words carry inline
/// markup.
pub fn sentence(s: &mut String, r: &mut Rng, plain: bool) {
    let n = 8 + r.below(13);
    for k in 0..n {
        let w = WORDS[r.below(WORDS.len())];
        if k > 0 {
            s.push(' ');
        }
        let w = if k == 0 { capitalised(w) } else { w.to_owned() };
        match if plain { 99 } else { r.below(24) } {
            0 => {
                s.push_str("<strong>");
                s.push_str(&w);
                s.push_str("</strong>");
            }
            1 => {
                s.push_str("<em>");
                s.push_str(&w);
                s.push_str("</em>");
            }
            2 => {
                s.push_str(r#"<a href="/guides/"#);
                s.push_str(GUIDES[r.below(GUIDES.len())]);
                s.push_str(r#"">"#);
                s.push_str(&w);
                s.push_str("</a>");
            }
            _ => s.push_str(&w),
        }
    }
    s.push('.');
}

/// A paragraph of 3–6 sentences.
pub fn paragraph(s: &mut String, r: &mut Rng) {
    s.push_str("<p>");
    for k in 0..3 + r.below(4) {
        if k > 0 {
            s.push(' ');
        }
        sentence(s, r, false);
    }
    s.push_str("</p>\n");
}

fn capitalised(w: &str) -> String {
    let mut c = w.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}
