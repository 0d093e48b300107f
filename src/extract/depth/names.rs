//! The names the tree builder's rules single out, and the classes of
//! elements (`names::class`) the estimate keeps positions for.

/// Classes of open elements (bits); each keeps a stack of its positions.
pub(super) mod class {
    /// The HTML "special" category: a stray end tag stops there.
    pub const SPECIAL: u32 = 1;
    /// Special, but not `address`, `div` or `p`: where `<li>`, `<dd>` and
    /// `<dt>` stop looking for the item they close.
    pub const STRICT: u32 = 1 << 1;
    /// Bounds "has an element in scope".
    pub const SCOPE: u32 = 1 << 2;
    pub const BUTTON: u32 = 1 << 3;
    /// `ol`, `ul`: bound "in list item scope".
    pub const LIST: u32 = 1 << 4;
    pub const TABLE: u32 = 1 << 5;
    /// `tbody`, `thead`, `tfoot`.
    pub const SECTION: u32 = 1 << 6;
    pub const ROW: u32 = 1 << 7;
    /// `td`, `th`, `caption`: what opens there is content, not table structure.
    pub const CELL: u32 = 1 << 8;
    pub const HEADING: u32 = 1 << 9;
    /// An HTML element (not SVG or MathML).
    pub const HTML: u32 = 1 << 10;
    /// A foreign element whose content is HTML again (`foreignObject`, `mi`, …).
    pub const INTEGRATION: u32 = 1 << 11;
    // Single elements that the rules look for (a class is faster than a name).
    pub const P: u32 = 1 << 12;
    pub const A: u32 = 1 << 13;
    pub const LI: u32 = 1 << 14;
    /// `dd`, `dt`.
    pub const DEF: u32 = 1 << 15;
    pub const FORM: u32 = 1 << 16;
    pub const OPTION: u32 = 1 << 17;
    pub const COUNT: usize = 18;
}
use class::*;

/// The commonest HTML names, by how often pages open them: their slots are
/// found without hashing.
pub(super) const COMMON: [&[u8]; 24] = [
    b"div", b"a", b"span", b"li", b"p", b"td", b"tr", b"i", b"b", b"ul", b"strong", b"em", b"h2",
    b"h3", b"label", b"button", b"option", b"table", b"tbody", b"small", b"section", b"h1", b"h4",
    b"form",
];

pub(super) fn common(name: &[u8]) -> Option<u32> {
    Some(match name {
        b"div" => 0,
        b"a" => 1,
        b"span" => 2,
        b"li" => 3,
        b"p" => 4,
        b"td" => 5,
        b"tr" => 6,
        b"i" => 7,
        b"b" => 8,
        b"ul" => 9,
        b"strong" => 10,
        b"em" => 11,
        b"h2" => 12,
        b"h3" => 13,
        b"label" => 14,
        b"button" => 15,
        b"option" => 16,
        b"table" => 17,
        b"tbody" => 18,
        b"small" => 19,
        b"section" => 20,
        b"h1" => 21,
        b"h4" => 22,
        b"form" => 23,
        _ => return None,
    })
}

pub(super) fn is_void(name: &[u8]) -> bool {
    matches!(
        name,
        b"area"
            | b"base"
            | b"basefont"
            | b"bgsound"
            | b"br"
            | b"embed"
            | b"frame"
            | b"hr"
            | b"image"
            | b"img"
            | b"input"
            | b"keygen"
            | b"link"
            | b"meta"
            | b"param"
            | b"source"
            | b"track"
            | b"wbr"
    )
}

pub(super) fn is_heading(name: &[u8]) -> bool {
    matches!(name, b"h1" | b"h2" | b"h3" | b"h4" | b"h5" | b"h6")
}

/// Start tags that close an open `<p>` first.
pub(super) fn closes_p(name: &[u8]) -> bool {
    matches!(
        name,
        b"address"
            | b"article"
            | b"aside"
            | b"blockquote"
            | b"center"
            | b"details"
            | b"dialog"
            | b"dir"
            | b"div"
            | b"dl"
            | b"fieldset"
            | b"figcaption"
            | b"figure"
            | b"footer"
            | b"header"
            | b"hgroup"
            | b"listing"
            | b"main"
            | b"menu"
            | b"nav"
            | b"ol"
            | b"p"
            | b"pre"
            | b"search"
            | b"section"
            | b"summary"
            | b"ul"
    )
}

/// End tags that close everything open inside their element, when it is in
/// scope.
pub(super) fn closes_in_scope(name: &[u8]) -> bool {
    (closes_p(name) && name != b"p")
        || matches!(
            name,
            b"button" | b"dd" | b"dt" | b"applet" | b"marquee" | b"object"
        )
}

/// Start tags that end SVG or MathML content.
pub(super) fn breaks_out_of_foreign(name: &[u8]) -> bool {
    is_heading(name)
        || matches!(
            name,
            b"b" | b"big"
                | b"blockquote"
                | b"body"
                | b"br"
                | b"center"
                | b"code"
                | b"dd"
                | b"div"
                | b"dl"
                | b"dt"
                | b"em"
                | b"embed"
                | b"head"
                | b"hr"
                | b"i"
                | b"img"
                | b"li"
                | b"listing"
                | b"menu"
                | b"meta"
                | b"nobr"
                | b"ol"
                | b"p"
                | b"pre"
                | b"ruby"
                | b"s"
                | b"small"
                | b"span"
                | b"strong"
                | b"strike"
                | b"sub"
                | b"sup"
                | b"table"
                | b"tt"
                | b"u"
                | b"ul"
                | b"var"
        )
}

/// The classes of an element, from its name and namespace.
pub(super) fn classes_of(name: &[u8], html: bool) -> u32 {
    if !html {
        return match name {
            b"mi" | b"mo" | b"mn" | b"ms" | b"mtext" | b"annotation-xml" | b"foreignobject"
            | b"desc" | b"title" => SPECIAL | STRICT | SCOPE | INTEGRATION,
            _ => 0,
        };
    }
    let mut c = HTML;
    let special = closes_p(name) && name != b"dialog"
        || is_heading(name)
        || matches!(
            name,
            b"applet"
                | b"button"
                | b"caption"
                | b"dd"
                | b"dt"
                | b"form"
                | b"li"
                | b"marquee"
                | b"object"
                | b"select"
                | b"table"
                | b"tbody"
                | b"td"
                | b"template"
                | b"tfoot"
                | b"th"
                | b"thead"
                | b"tr"
        );
    if special {
        c |= SPECIAL;
        if !matches!(name, b"address" | b"div" | b"p") {
            c |= STRICT;
        }
    }
    c |= match name {
        b"applet" | b"marquee" | b"object" | b"template" => SCOPE,
        b"caption" => SCOPE | CELL,
        b"td" | b"th" => SCOPE | CELL,
        b"table" => SCOPE | TABLE,
        b"button" => BUTTON,
        b"ol" | b"ul" => LIST,
        b"tbody" | b"thead" | b"tfoot" => SECTION,
        b"tr" => ROW,
        b"p" => P,
        b"a" => A,
        b"li" => LI,
        b"dd" | b"dt" => DEF,
        b"form" => FORM,
        b"option" => OPTION,
        _ if is_heading(name) => HEADING,
        _ => 0,
    };
    c
}
