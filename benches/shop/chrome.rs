//! The chrome every shop page shares: `<head>` with stylesheets, scripts and
//! structured data, a header with a search form and two-level nav menus,
//! and a footer of link lists, a newsletter form and the legal line. Built
//! once (the same on every page, as on a real site).

use std::fmt::Write as _;
use std::sync::OnceLock;

use super::slug;

/// Top-level categories and their subcategories, for the nav menus and the
/// products' breadcrumbs.
pub const CATEGORIES: [(&str, [&str; 6]); 8] = [
    (
        "Kitchen",
        [
            "Coffee Machines",
            "Kettles",
            "Toasters",
            "Blenders",
            "Knives",
            "Pans",
        ],
    ),
    (
        "Home",
        ["Lamps", "Rugs", "Cushions", "Clocks", "Mirrors", "Vases"],
    ),
    (
        "Garden",
        [
            "Planters", "Hoses", "Shears", "Benches", "Lanterns", "Trowels",
        ],
    ),
    (
        "Tech",
        [
            "Headphones",
            "Speakers",
            "Chargers",
            "Keyboards",
            "Monitors",
            "Webcams",
        ],
    ),
    (
        "Outdoors",
        [
            "Tents",
            "Backpacks",
            "Flasks",
            "Torches",
            "Stoves",
            "Hammocks",
        ],
    ),
    (
        "Fitness",
        [
            "Dumbbells",
            "Mats",
            "Bottles",
            "Trackers",
            "Bands",
            "Rollers",
        ],
    ),
    (
        "Office",
        [
            "Chairs",
            "Desks",
            "Notebooks",
            "Pens",
            "Shelves",
            "Organisers",
        ],
    ),
    (
        "Kids",
        ["Puzzles", "Blocks", "Scooters", "Books", "Games", "Easels"],
    ),
];

const CART_ICON: &str = r#"<svg class="icon" width="24" height="24" viewBox="0 0 24 24" aria-hidden="true"><path d="M7 18c-1.1 0-2 .9-2 2s.9 2 2 2 2-.9 2-2-.9-2-2-2zM1 2v2h2l3.6 7.59-1.35 2.45c-.16.28-.25.61-.25.96 0 1.1.9 2 2 2h12v-2H7.42c-.14 0-.25-.11-.25-.25l.03-.12.9-1.63h7.45c.75 0 1.41-.41 1.75-1.03l3.58-6.49A1.003 1.003 0 0 0 20 4H5.21l-.94-2H1z"/></svg>"#;

/// `<!DOCTYPE html>` to `</head>`, with `json_ld` as structured data if any.
pub fn head(s: &mut String, title: &str, json_ld: &str) {
    let _ = write!(
        s,
        r#"<!DOCTYPE html>
<html lang="en-GB"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><meta name="description" content="{title}: free delivery on orders over £40, 30-day free returns.">
<meta property="og:title" content="{title}">
<link rel="preconnect" href="https://cdn.example.net" crossorigin><link rel="preload" href="/static/fonts/inter-var.woff2" as="font" type="font/woff2" crossorigin>
<link rel="stylesheet" href="/static/css/site.3f9a1c.css"><link rel="icon" href="/favicon.ico" sizes="32x32">
"#
    );
    if !json_ld.is_empty() {
        let _ = write!(
            s,
            r#"<script type="application/ld+json">{json_ld}</script>"#
        );
    }
    s.push_str(
        r#"<script>window.dataLayer=window.dataLayer||[];function gtag(){dataLayer.push(arguments)}gtag('js',new Date());gtag('config','G-BENCH0001',{anonymize_ip:true});</script>
</head>
"#,
    );
}

/// The site header: skip link, promo bar, logo, search, account, nav menus.
pub fn header() -> &'static str {
    static HEADER: OnceLock<String> = OnceLock::new();
    HEADER.get_or_init(|| {
        let mut s = String::with_capacity(8192);
        let _ = write!(
            s,
            r##"<a class="skip-link" href="#main">Skip to content</a>
<div class="promo-bar"><p>Free delivery on orders over £40 · <a href="/offers">Spring offers: up to 30% off</a></p></div>
<header class="site-header"><div class="container"><div class="topbar"><ul class="topbar-links"><li><a href="/help">Help</a></li><li><a href="/stores">Find a store</a></li><li><a href="/track">Track your order</a></li></ul></div>
<div class="masthead"><a class="logo" href="/" aria-label="Bench Shop home"><img src="/static/img/logo.svg" alt="Bench Shop" width="140" height="40"></a>
<form class="search" action="/search" method="get" role="search"><label class="visually-hidden" for="q">Search</label><input id="q" type="search" name="q" placeholder="Search 10,000+ products" autocomplete="off"><button type="submit" class="btn">Search</button></form>
<div class="account"><a href="/account">Account</a> <a href="/basket" class="basket">{CART_ICON}<span>Basket</span> <span class="badge">0</span></a></div></div>
<nav class="main-nav" aria-label="Main"><ul class="menu">"##
        );
        for (cat, subs) in CATEGORIES {
            let cs = slug(cat);
            let _ = write!(
                s,
                r#"<li class="menu-item has-children"><a href="/c/{cs}">{cat}</a><div class="mega"><ul class="submenu">"#
            );
            // Four of each category's subcategories, as a menu shows its top ones.
            for sub in &subs[..4] {
                let _ = write!(s, r#"<li><a href="/c/{cs}/{}">{sub}</a></li>"#, slug(sub));
            }
            let _ = writeln!(
                s,
                r#"</ul><a class="see-all" href="/c/{cs}">All {cat}</a></div></li>"#
            );
        }
        s.push_str("</ul></nav></div></header>\n");
        s
    })
}

const FOOTER_COLUMNS: [(&str, [&str; 5]); 4] = [
    (
        "Customer service",
        [
            "Help centre",
            "Delivery",
            "Returns",
            "Track order",
            "Contact us",
        ],
    ),
    (
        "About us",
        [
            "Our story",
            "Careers",
            "Press",
            "Sustainability",
            "Affiliates",
        ],
    ),
    (
        "Shop",
        ["Gift cards", "Offers", "New in", "Bestsellers", "Brands"],
    ),
    (
        "Legal",
        [
            "Terms and conditions",
            "Privacy",
            "Cookies",
            "Accessibility",
            "Modern slavery statement",
        ],
    ),
];

/// The site footer: link lists, newsletter sign-up, social links, legal.
pub fn footer() -> &'static str {
    static FOOTER: OnceLock<String> = OnceLock::new();
    FOOTER.get_or_init(|| {
        let mut s = String::with_capacity(4096);
        s.push_str(r#"<footer class="site-footer"><div class="container"><div class="footer-columns">"#);
        for (title, links) in FOOTER_COLUMNS {
            let _ = write!(s, r#"<div class="footer-col"><h3>{title}</h3><ul>"#);
            for l in links {
                let _ = write!(s, r#"<li><a href="/info/{}">{l}</a></li>"#, slug(l));
            }
            s.push_str("</ul></div>\n");
        }
        s.push_str(
            r#"</div><form class="newsletter" action="/newsletter" method="post"><label for="email">Offers and new products, once a week</label><input id="email" type="email" name="email" placeholder="you@example.com" required><button type="submit" class="btn">Sign up</button></form>
<ul class="social"><li><a href="https://social.example.com/benchshop" rel="noopener">Social</a></li><li><a href="https://video.example.com/benchshop" rel="noopener">Video</a></li><li><a href="https://photos.example.com/benchshop" rel="noopener">Photos</a></li></ul>
<ul class="payments" aria-label="We accept"><li>Visa</li><li>Mastercard</li><li>American Express</li><li>PayPal</li><li>Apple Pay</li></ul>
<p class="legal">© 2025 Bench Shop Ltd. Registered in England and Wales, company no. 01234567. VAT no. GB 123 4567 89.</p></div></footer>
<script src="/static/js/app.8c1d2e.js" defer></script>
"#,
        );
        s
    })
}
