//! The crawl benchmark's shop: product and listing pages with the markup of
//! a real shop (header with nav menus, breadcrumb, gallery, specs table,
//! price and availability, description with inline markup, reviews,
//! related products, footer), so that parsing and extracting them costs what
//! a real site's pages cost. Everything is deterministic from the page
//! number: the server and the floor measurement generate the same bytes.
//!
//! Product pages are 16.7–31 KB: a size is drawn per page between 15 KiB
//! and 30.5 KB, reviews fill it up to their drawn number and description
//! paragraphs reach it, but the chrome, five reviews and one paragraph
//! come to 16.7 KB at least (a tenth of the pages are under 18.3 KB, half
//! under 23 KB). They carry 5–30 reviews, 10–20 spec rows and
//! 5–10 related products spread over the whole shop. Listing pages (about
//! 61 KB) hold 100 product cards and numbered pagination.

mod chrome;
mod text;

use std::fmt::Write as _;

use chrome::{footer, head, header, CATEGORIES};
use text::{paragraph, sentence, Rng};

/// Products per listing page.
pub const PER_LIST: usize = 100;

/// The target the crawl and cluster benches crawl the shop with: 8
/// fields per product (`{addr}` and `{max_pages}` filled in by the bench).
pub const TARGET: &str = r#"
start_urls = ["http://{addr}/list/1"]
profile = "bench"
max_pages = {max_pages}
[follow]
allow = ['^/list/', '^/p/']
max_depth = 1000
[items.product]
pages = '^/p/'
[items.product.fields]
title = { css = "main h1.product-title::text", required = true }
price = { css = "div.price-block p.price span.amount::text", type = "number", required = true }
sku = "div.product-meta span.sku::text"
availability = "div.availability-block p.availability::text"
rating = { css = "div.rating-summary span.rating-value::text", type = "number" }
review_count = { css = "div.rating-summary a.review-count::text", type = "number" }
weight = "section.specifications table.specs tr[data-spec='weight'] > td::text"
image = { css = "section.gallery figure.main img::attr(src)", type = "url" }
"#;

/// Product pages are drawn between these sizes, in bytes.
const MIN_SIZE: usize = 15 * 1024;
const MAX_SIZE: usize = 30_500;

const BRANDS: [&str; 12] = [
    "Kestrel",
    "Northwind",
    "Aldgate",
    "Brightwater",
    "Corvid",
    "Fenwick",
    "Halden",
    "Juniper",
    "Marlow",
    "Oakridge",
    "Penrose",
    "Thistle",
];
const ADJECTIVES: [&str; 12] = [
    "Compact",
    "Classic",
    "Pro",
    "Deluxe",
    "Essential",
    "Ultra",
    "Smart",
    "Heritage",
    "Travel",
    "Premium",
    "Everyday",
    "Signature",
];
const AVAILABILITY: [&str; 4] = ["In stock", "In stock", "Only a few left", "Pre-order"];

/// What the listing, the product page and related cards say of a product.
struct Facts {
    name: String,
    brand: &'static str,
    cat: usize,
    sub: usize,
    pence: u64,
    /// Rating in tenths (10–50).
    rating: u64,
    reviews: u64,
}

fn facts(i: usize) -> Facts {
    let mut r = Rng::new(i as u64, 1);
    let cat = r.below(CATEGORIES.len());
    let sub = r.below(CATEGORIES[cat].1.len());
    let brand = r.pick(&BRANDS);
    let noun = CATEGORIES[cat].1[sub].trim_end_matches('s');
    let model = format!(
        "{}{}-{}",
        (b'A' + r.below(26) as u8) as char,
        (b'A' + r.below(26) as u8) as char,
        100 + r.below(900)
    );
    Facts {
        name: format!("{brand} {} {noun} {model}", r.pick(&ADJECTIVES)),
        brand,
        cat,
        sub,
        pence: 499 + r.below(250_000) as u64,
        rating: 25 + r.below(26) as u64,
        reviews: 5 + r.below(400) as u64,
    }
}

/// `1,299.00`: thousands separated, as shops print prices.
fn money(pence: u64) -> String {
    let pounds = pence / 100;
    let whole = if pounds >= 1000 {
        format!("{},{:03}", pounds / 1000, pounds % 1000)
    } else {
        pounds.to_string()
    };
    format!("{whole}.{:02}", pence % 100)
}

fn stars(rating: u64) -> String {
    let full = ((rating + 5) / 10) as usize;
    "★".repeat(full) + &"☆".repeat(5 - full)
}

fn slug(s: &str) -> String {
    s.to_ascii_lowercase().replace(' ', "-")
}

/// One product card of a listing.
fn card(s: &mut String, i: usize) {
    let f = facts(i);
    let _ = write!(
        s,
        r#"<li class="card" data-sku="BS-{i:07}"><a class="card-link" href="/p/{i}.html"><img src="/img/p/{i}/1-300.jpg" alt="{name}" width="300" height="300" loading="lazy"><h3 class="card-title">{name}</h3></a>
<div class="card-rating" title="{r} out of 5"><span aria-hidden="true">{stars}</span> <span class="count">({n})</span></div><p class="card-price">£{price}</p><button type="button" class="btn btn-small add" data-sku="BS-{i:07}">Add to basket</button></li>
"#,
        name = f.name,
        r = f.rating as f64 / 10.0,
        stars = stars(f.rating),
        n = f.reviews,
        price = money(f.pence),
    );
}

/// A related product's card: smaller than a listing's.
fn related(s: &mut String, i: usize) {
    let f = facts(i);
    let _ = write!(
        s,
        r#"<li class="card"><a href="/p/{i}.html"><img src="/img/p/{i}/1-200.jpg" alt="" width="200" height="200" loading="lazy"><span class="card-title">{}</span></a><span class="card-price">£{}</span></li>"#,
        f.name,
        money(f.pence)
    );
}

/// The product page of product `i` of `total`.
pub fn product(i: usize, total: usize) -> String {
    let f = facts(i);
    let mut r = Rng::new(i as u64, 2);
    let size = MIN_SIZE + r.below(MAX_SIZE - MIN_SIZE + 1);
    let top = product_top(i, &f, &mut r);
    let specs = specs(&f, &mut r);
    let mut tail = String::with_capacity(4096);
    tail.push_str(
        r#"<section class="related"><h2>Customers also viewed</h2><ul class="product-grid">"#,
    );
    for _ in 0..5 + r.below(6) {
        related(&mut tail, r.below(total));
    }
    tail.push_str("</ul></section>\n</main>\n");
    tail.push_str(footer());
    tail.push_str("</body></html>\n");
    let fixed = top.len() + specs.len() + tail.len();
    // Reviews up to the page's drawn size (at least 5), keeping 1.5 KB for
    // the description; description paragraphs then fill the rest.
    let mut reviews = String::with_capacity(16 * 1024);
    for k in 0..5 + r.below(26) {
        let one = review(i, k, &mut r);
        if k >= 5 && fixed + reviews.len() + one.len() + 1536 > size {
            break;
        }
        reviews.push_str(&one);
    }
    let mut desc = String::with_capacity(8 * 1024);
    desc.push_str(r#"<section class="description"><h2>Description</h2><div class="rte">"#);
    paragraph(&mut desc, &mut r);
    desc.push_str(r#"<ul class="features">"#);
    for _ in 0..4 + r.below(3) {
        desc.push_str("<li>");
        sentence(&mut desc, &mut r, false);
        desc.push_str("</li>");
    }
    desc.push_str("</ul>");
    while fixed + reviews.len() + desc.len() + 200 < size {
        paragraph(&mut desc, &mut r);
    }
    desc.push_str("</div></section>\n");
    let mut page = String::with_capacity(size + 1024);
    page.push_str(&top);
    page.push_str(&desc);
    page.push_str(&specs);
    let _ = write!(
        page,
        r#"<section id="reviews" class="reviews"><h2>Customer reviews <span class="count">({})</span></h2><div class="review-list">
{reviews}</div><a class="more" href="/reviews/{i}?page=2">See all {} reviews</a></section>
"#,
        f.reviews, f.reviews
    );
    page.push_str(&tail);
    page
}

/// From the doctype to the end of the buy box.
fn product_top(i: usize, f: &Facts, r: &mut Rng) -> String {
    let (cat, subs) = CATEGORIES[f.cat];
    let sub = subs[f.sub];
    let price = money(f.pence);
    let avail = AVAILABILITY[r.below(AVAILABILITY.len())];
    let mut s = String::with_capacity(12 * 1024);
    let ld = format!(
        r#"{{"@context":"https://schema.org","@type":"Product","name":"{}","sku":"BS-{i:07}","brand":{{"@type":"Brand","name":"{}"}},"image":"/img/p/{i}/1-800.jpg","offers":{{"@type":"Offer","price":"{}.{:02}","priceCurrency":"GBP","availability":"https://schema.org/InStock"}},"aggregateRating":{{"@type":"AggregateRating","ratingValue":"{}","reviewCount":"{}"}}}}"#,
        f.name,
        f.brand,
        f.pence / 100,
        f.pence % 100,
        f.rating as f64 / 10.0,
        f.reviews
    );
    head(&mut s, &format!("{} | Bench Shop", f.name), &ld);
    s.push_str(r#"<body class="page-product">"#);
    s.push_str(header());
    let _ = write!(
        s,
        r#"<main id="main" class="container">
<nav class="breadcrumb" aria-label="Breadcrumb"><ol><li><a href="/">Home</a></li><li><a href="/c/{cs}">{cat}</a></li><li><a href="/c/{cs}/{ss}">{sub}</a></li><li aria-current="page">{name}</li></ol></nav>
<div class="product-layout"><section class="gallery"><figure class="main"><img src="/img/p/{i}/1-800.jpg" srcset="/img/p/{i}/1-400.jpg 400w, /img/p/{i}/1-800.jpg 800w" sizes="(max-width: 600px) 100vw, 50vw" alt="{name}" width="800" height="800"></figure><ul class="thumbs">"#,
        cs = slug(cat),
        ss = slug(sub),
        name = f.name,
    );
    for k in 1..=3 + r.below(3) {
        let _ = write!(
            s,
            r#"<li><button type="button" class="thumb" data-index="{k}"><img src="/img/p/{i}/{k}-120.jpg" alt="{name}, view {k}" width="120" height="120" loading="lazy"></button></li>"#,
            name = f.name
        );
    }
    let was = (r.below(3) == 0).then(|| {
        format!(
            r#"<p class="was-price">Was <del>£{}</del> <span class="saving">Save {}%</span></p>"#,
            money(f.pence * 100 / 85),
            15
        )
    });
    let _ = write!(
        s,
        r##"</ul></section>
<section class="summary"><h1 class="product-title">{name}</h1>
<div class="product-meta"><span class="brand">by <a href="/brand/{bs}">{brand}</a></span> <span class="sku-label">SKU:</span> <span class="sku">BS-{i:07}</span></div>
<div class="rating-summary"><span class="stars" aria-hidden="true">{stars}</span> <span class="rating-value">{rating}</span> out of 5 <a href="#reviews" class="review-count">{reviews} reviews</a></div>
<div class="price-block"><p class="price"><span class="currency">£</span><span class="amount">{price}</span></p>{was}<p class="vat-note">Price includes VAT. <a href="/help/delivery">Delivery costs</a> are shown at checkout.</p></div>
<div class="availability-block"><p class="availability in-stock"><span class="dot" aria-hidden="true"></span>{avail}</p><p class="delivery">Order within <strong>{h} hrs {m} mins</strong> for delivery <time datetime="2025-03-{d:02}">{d} March</time>.</p></div>
<form class="add-to-cart" action="/cart/add" method="post"><input type="hidden" name="sku" value="BS-{i:07}"><label for="qty">Quantity</label><select id="qty" name="qty"><option selected>1</option><option>2</option><option>3</option><option>4</option><option>5</option></select><button type="submit" class="btn btn-primary">Add to basket</button><button type="button" class="btn btn-link wishlist">Save for later</button></form>
<ul class="usp"><li>Free delivery on orders over £40</li><li>30-day free returns</li><li>2-year guarantee</li></ul></section></div>
"##,
        name = f.name,
        bs = slug(f.brand),
        brand = f.brand,
        stars = stars(f.rating),
        rating = f.rating as f64 / 10.0,
        reviews = f.reviews,
        was = was.unwrap_or_default(),
        h = 1 + r.below(9),
        m = r.below(60),
        d = 1 + r.below(28),
    );
    s
}

/// Spec names; `weight` (index 3) is always shown, since the target reads it.
const SPECS: [(&str, &str); 20] = [
    ("brand", "Brand"),
    ("model", "Model number"),
    ("colour", "Colour"),
    ("weight", "Weight"),
    ("dimensions", "Dimensions (H × W × D)"),
    ("material", "Material"),
    ("warranty", "Warranty"),
    ("power", "Power"),
    ("capacity", "Capacity"),
    ("origin", "Country of origin"),
    ("ean", "EAN"),
    ("connectivity", "Connectivity"),
    ("care", "Care instructions"),
    ("assembly", "Assembly required"),
    ("contents", "In the box"),
    ("finish", "Finish"),
    ("energy", "Energy rating"),
    ("year", "Year of release"),
    ("batteries", "Batteries"),
    ("age", "Recommended age"),
];

fn specs(f: &Facts, r: &mut Rng) -> String {
    let mut s = String::with_capacity(2048);
    s.push_str(
        r#"<section class="specifications"><h2>Specifications</h2><table class="specs"><tbody>"#,
    );
    for &(key, label) in &SPECS[..10 + r.below(11)] {
        let value = match key {
            "brand" => f.brand.to_owned(),
            "weight" => format!("{}.{} kg", r.below(12), r.below(10)),
            "dimensions" => format!(
                "{} × {} × {} cm",
                5 + r.below(60),
                5 + r.below(60),
                2 + r.below(40)
            ),
            "ean" => format!("50{:011}", r.next() % 100_000_000_000),
            "warranty" => format!("{} years", 1 + r.below(5)),
            "year" => format!("{}", 2018 + r.below(8)),
            _ => {
                let mut v = String::new();
                let n = 1 + r.below(4);
                text::words(&mut v, r, n);
                v
            }
        };
        let _ = write!(
            s,
            r#"<tr data-spec="{key}"><th scope="row">{label}</th><td>{value}</td></tr>"#
        );
    }
    s.push_str("</tbody></table></section>\n");
    s
}

const AUTHORS: [&str; 16] = [
    "Amelia", "Oliver", "Isla", "George", "Ava", "Noah", "Mia", "Arthur", "Grace", "Leo", "Freya",
    "Oscar", "Lily", "Harry", "Evie", "Jack",
];

fn review(i: usize, k: usize, r: &mut Rng) -> String {
    let rating = 1 + r.below(5) as u64;
    let (y, m, d) = (2022 + r.below(4), 1 + r.below(12), 1 + r.below(28));
    let mut s = String::with_capacity(1024);
    let _ = write!(
        s,
        r#"<article class="review" id="review-{i}-{k}"><header><span class="author">{} {}.</span> <time datetime="{y}-{m:02}-{d:02}">{d}/{m}/{y}</time> <span class="stars" title="{rating} out of 5">{}</span>{}</header><h4 class="review-title">"#,
        AUTHORS[r.below(AUTHORS.len())],
        (b'A' + r.below(26) as u8) as char,
        stars(rating * 10),
        if r.below(2) == 0 {
            r#" <span class="verified">Verified</span>"#
        } else {
            ""
        },
    );
    let n = 2 + r.below(5);
    text::words(&mut s, r, n);
    s.push_str(r#"</h4><p>"#);
    for _ in 0..1 + r.below(2) {
        sentence(&mut s, r, true);
        s.push(' ');
    }
    let _ = writeln!(
        s,
        r#"</p><footer>{} found this helpful · <a href="/report/review/{i}-{k}" rel="nofollow">Report</a></footer></article>"#,
        r.below(60)
    );
    s
}

/// Listing page `l` (from 1) of `lists`, over `total` products.
pub fn listing(l: usize, lists: usize, total: usize) -> String {
    let mut s = String::with_capacity(64 * 1024);
    head(
        &mut s,
        &format!("All products – page {l} of {lists} | Bench Shop"),
        "",
    );
    s.push_str(r#"<body class="page-listing">"#);
    s.push_str(header());
    let first = (l - 1) * PER_LIST;
    let last = (l * PER_LIST).min(total);
    let _ = write!(
        s,
        r#"<main id="main" class="container">
<nav class="breadcrumb" aria-label="Breadcrumb"><ol><li><a href="/">Home</a></li><li aria-current="page">All products</li></ol></nav>
<h1>All products</h1><div class="listing-layout"><aside class="filters"><form action="/list/1" method="get"><fieldset><legend>Brand</legend>"#
    );
    for b in BRANDS {
        let _ = write!(
            s,
            r#"<label><input type="checkbox" name="brand" value="{}"> {b}</label>"#,
            slug(b)
        );
    }
    s.push_str(r#"</fieldset><fieldset><legend>Price</legend><label><input type="radio" name="price" value="0-50"> Under £50</label><label><input type="radio" name="price" value="50-200"> £50 – £200</label><label><input type="radio" name="price" value="200-"> Over £200</label></fieldset><button type="submit" class="btn">Apply</button></form></aside>
"#);
    let _ = writeln!(
        s,
        r#"<section class="results"><div class="toolbar"><p class="count">Showing {}–{last} of {total}</p><label>Sort by <select name="sort"><option>Relevance</option><option>Price: low to high</option><option>Price: high to low</option><option>Rating</option></select></label></div><ul class="product-grid">"#,
        first + 1
    );
    for i in first..last {
        card(&mut s, i);
    }
    s.push_str(r#"</ul><nav class="pagination" aria-label="Pages">"#);
    if l > 1 {
        let _ = write!(s, r#"<a rel="prev" href="/list/{}">Previous</a> "#, l - 1);
    }
    let window = l.saturating_sub(2).max(1)..=(l + 2).min(lists);
    if *window.start() > 1 {
        s.push_str(r#"<a href="/list/1">1</a> <span class="gap">…</span> "#);
    }
    for p in window.clone() {
        if p == l {
            let _ = write!(s, r#"<span aria-current="page">{p}</span> "#);
        } else {
            let _ = write!(s, r#"<a href="/list/{p}">{p}</a> "#);
        }
    }
    if *window.end() < lists {
        let _ = write!(
            s,
            r#"<span class="gap">…</span> <a href="/list/{lists}">{lists}</a> "#
        );
    }
    if l < lists {
        let _ = write!(
            s,
            r#"<a rel="next" class="next" href="/list/{}">Next</a>"#,
            l + 1
        );
    }
    s.push_str("</nav></section></div>\n</main>\n");
    s.push_str(footer());
    s.push_str("</body></html>\n");
    s
}
