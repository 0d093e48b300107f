//! What a change notice looks like to a person: a digest of the run's item
//! changes (old → new, with the item's key and page) for Slack, Discord and
//! email. The generic webhook and exec channels get the notice's JSON.

use serde_json::Value;

use super::text::{number, slack_escape};
use crate::store::{ChangeNotice, ItemChange, ItemChangeKind};

/// Slack truncates a message's text beyond 40,000 characters and advises
/// at most 4,000: a digest stays within the advice.
pub const SLACK_CHARS: usize = 4_000;
/// Discord refuses a message whose content exceeds 2,000 characters.
pub const DISCORD_CHARS: usize = 2_000;
/// A value is shown with at most this many characters.
const VALUE_CHARS: usize = 80;

/// `📦 shop, run 12: 5 changed, 1 removed`.
pub fn headline(n: &ChangeNotice) -> String {
    format!("📦 {}, run {}: {}", n.target, n.run, counts(n))
}

/// `5 changed, 1 removed` (the kinds with changes, in a fixed order).
fn counts(n: &ChangeNotice) -> String {
    let parts: Vec<String> = [
        (n.counts.new, "new"),
        (n.counts.changed, "changed"),
        (n.counts.removed, "removed"),
    ]
    .into_iter()
    .filter(|(c, _)| *c > 0)
    .map(|(c, w)| format!("{c} {w}"))
    .collect();
    if parts.is_empty() {
        "no changes".to_owned()
    } else {
        parts.join(", ")
    }
}

/// One change on one line:
/// `changed product p-3 — price: 51.77 → 52.77 · https://shop/p/3`.
pub fn change_line(c: &ItemChange) -> String {
    let what = match c.change {
        ItemChangeKind::Changed => {
            let fields: Vec<String> = c
                .fields
                .iter()
                .map(|(name, v)| format!("{name}: {} → {}", value(&v["old"]), value(&v["new"])))
                .collect();
            fields.join(", ")
        }
        ItemChangeKind::New => {
            let fields: Vec<String> = c
                .fields
                .iter()
                .map(|(name, v)| format!("{name}: {}", value(&v["new"])))
                .collect();
            fields.join(", ")
        }
        ItemChangeKind::Removed => String::new(),
    };
    let what = if what.is_empty() {
        what
    } else {
        format!(" — {what}")
    };
    format!("{} {} {}{what} · {}", c.change.name(), c.kind, c.key, c.url)
}

/// A value as a person reads it: numbers without noise, text unquoted,
/// none as `—`, long ones cut.
fn value(v: &Value) -> String {
    let s = match v {
        Value::Null => "—".to_owned(),
        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), number),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    // Page text on one line: a value must not break the digest's layout.
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let s = crate::printable::line(&s).into_owned();
    if s.chars().count() <= VALUE_CHARS {
        return s;
    }
    let mut cut: String = s.chars().take(VALUE_CHARS).collect();
    cut.push('…');
    cut
}

/// The digest for Slack: every line escaped ([`slack_escape`]) before it
/// is counted, so a page's `<!channel>` is text and the digest stays
/// within [`SLACK_CHARS`] as Slack shows it.
pub fn slack(n: &ChangeNotice) -> String {
    chat(n, SLACK_CHARS, |s| slack_escape(s).into_owned())
}

/// The digest for Discord (sent with no mentions allowed, see
/// [`super::text::discord_body`]).
pub fn discord(n: &ChangeNotice) -> String {
    chat(n, DISCORD_CHARS, str::to_owned)
}

/// The digest for a chat message: the headline, a line per change while
/// they fit in `max_chars`, and how many more there are and where to read
/// them all. `esc` makes each line (crawld's words and the page's) safe
/// for the channel's markup.
pub fn chat(n: &ChangeNotice, max_chars: usize, esc: fn(&str) -> String) -> String {
    let more = |k: u64| {
        esc(&format!(
            "… and {k} more: crawld export {} --changes",
            n.target
        ))
    };
    let mut out = esc(&headline(n));
    let mut shown = 0u64;
    let listed = n.changes.len() as u64;
    for c in &n.changes {
        let line = esc(&change_line(c));
        let rest = listed - shown - 1 + n.truncated;
        // Room for this line and, if more follow, the line that says so.
        let tail = if rest > 0 {
            more(rest).chars().count() + 1
        } else {
            0
        };
        if out.chars().count() + 1 + line.chars().count() + tail > max_chars {
            break;
        }
        out.push('\n');
        out.push_str(&line);
        shown += 1;
    }
    let rest = listed - shown + n.truncated;
    if rest > 0 {
        out.push('\n');
        out.push_str(&more(rest));
    }
    // A headline alone past the cap (a huge target name) is cut, never refused.
    if out.chars().count() > max_chars {
        out = out.chars().take(max_chars.saturating_sub(1)).collect();
        out.push('…');
    }
    out
}

/// `[crawld] shop: 5 changed, 1 removed (run 12)`.
pub fn email_subject(n: &ChangeNotice) -> String {
    format!("[crawld] {}: {} (run {})", n.target, counts(n), n.run)
}

/// The headline, every listed change, and how many more there are.
pub fn email_body(n: &ChangeNotice, host: Option<&str>) -> String {
    let mut out = format!("{}\n\n", headline(n));
    for c in &n.changes {
        out.push_str(&change_line(c));
        out.push('\n');
    }
    if n.truncated > 0 {
        out.push_str(&format!(
            "\n… and {} more: crawld export {} --changes\n",
            n.truncated, n.target
        ));
    }
    if let Some(h) = host {
        out.push_str(&format!("\nSent by crawld on {h}.\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ChangeCounts, CHANGES_TYPE};
    use serde_json::json;

    fn change(key: &str, change: ItemChangeKind, fields: Value) -> ItemChange {
        ItemChange {
            kind: "product".into(),
            key: key.into(),
            change,
            url: format!("http://shop/p/{key}.html"),
            fields: fields.as_object().unwrap().clone(),
        }
    }

    fn notice(changes: Vec<ItemChange>, truncated: u64) -> ChangeNotice {
        let mut counts = ChangeCounts::default();
        for c in &changes {
            match c.change {
                ItemChangeKind::New => counts.new += 1,
                ItemChangeKind::Changed => counts.changed += 1,
                ItemChangeKind::Removed => counts.removed += 1,
            }
        }
        counts.changed += truncated;
        ChangeNotice {
            version: 1,
            kind: CHANGES_TYPE.into(),
            target: "shop".into(),
            run: 12,
            counts,
            changes,
            truncated,
        }
    }

    #[test]
    fn a_digest_says_what_changed_old_to_new() {
        let n = notice(
            vec![
                change(
                    "p1",
                    ItemChangeKind::Changed,
                    json!({"price": {"old": 51.77, "new": 52.77}, "name": {"old": "A", "new": null}}),
                ),
                change(
                    "p2",
                    ItemChangeKind::New,
                    json!({"name": {"old": null, "new": "Lamp\nshade"}, "price": {"old": null, "new": 3.0}}),
                ),
                change(
                    "p3",
                    ItemChangeKind::Removed,
                    json!({"price": {"old": 1.5, "new": null}}),
                ),
            ],
            0,
        );
        assert_eq!(
            slack(&n),
            "📦 shop, run 12: 1 new, 1 changed, 1 removed\n\
             changed product p1 — price: 51.77 → 52.77, name: A → — · http://shop/p/p1.html\n\
             new product p2 — name: Lamp shade, price: 3 · http://shop/p/p2.html\n\
             removed product p3 · http://shop/p/p3.html"
        );
        assert_eq!(
            email_subject(&n),
            "[crawld] shop: 1 new, 1 changed, 1 removed (run 12)"
        );
        let body = email_body(&n, Some("crawler-1"));
        assert!(
            body.starts_with("📦 shop, run 12: 1 new, 1 changed, 1 removed\n\nchanged product p1 — price: 51.77 → 52.77"),
            "{body}"
        );
        assert!(body.ends_with("\nSent by crawld on crawler-1.\n"), "{body}");
    }

    #[test]
    fn a_digest_fits_its_channel_and_counts_what_it_leaves_out() {
        let changes: Vec<ItemChange> = (0..100)
            .map(|i| {
                change(
                    &format!("p{i}"),
                    ItemChangeKind::Changed,
                    json!({"price": {"old": i, "new": i + 1}}),
                )
            })
            .collect();
        let n = notice(changes, 400);
        let text = discord(&n);
        assert!(text.chars().count() <= DISCORD_CHARS, "{}", text.len());
        let shown = text.lines().filter(|l| l.starts_with("changed ")).count();
        assert!(shown > 10, "{text}");
        let last = text.lines().last().unwrap();
        assert_eq!(
            last,
            format!("… and {} more: crawld export shop --changes", 500 - shown)
        );
        // Everything fits: no "more" line.
        let small = notice(n.changes[..2].to_vec(), 0);
        assert!(!discord(&small).contains("more"));
        // A long value is cut.
        let long = change(
            "p",
            ItemChangeKind::New,
            json!({"desc": {"old": null, "new": "x".repeat(500)}}),
        );
        assert!(change_line(&long).contains(&format!("{}…", "x".repeat(80))));
        // Even a cap smaller than the headline gives a message within it.
        assert!(chat(&n, 10, str::to_owned).chars().count() <= 10);
    }

    #[test]
    fn a_page_s_words_cannot_ping_or_disguise_a_link() {
        let mut c = change(
            "<!channel>",
            ItemChangeKind::New,
            json!({"name": {"old": null, "new": "<https://evil|Log in> & @everyone"}}),
        );
        c.url = "http://shop/p?a=1&b=<2>".into();
        c.kind = "<@U1>".into();
        let n = notice(vec![c], 3);
        let text = slack(&n);
        assert_eq!(
            text,
            "📦 shop, run 12: 1 new, 3 changed\n\
             new &lt;@U1&gt; &lt;!channel&gt; — name: &lt;https://evil|Log in&gt; &amp; @everyone \
             · http://shop/p?a=1&amp;b=&lt;2&gt;\n\
             … and 3 more: crawld export shop --changes"
        );
        let body = crate::alert::text::slack_body(text);
        assert!(!body["text"].as_str().unwrap().contains('<'), "{body}");
        let body = crate::alert::text::discord_body(discord(&n));
        assert_eq!(body["allowed_mentions"], json!({"parse": []}));
        assert!(body["content"].as_str().unwrap().contains("<!channel>"));
        // The cap counts escaped characters.
        let many: Vec<ItemChange> = (0..200)
            .map(|i| {
                change(
                    &format!("p{i}"),
                    ItemChangeKind::New,
                    json!({"name": {"old": null, "new": "<<<<<<<<<<&&&&&&&&&&"}}),
                )
            })
            .collect();
        assert!(slack(&notice(many, 0)).chars().count() <= SLACK_CHARS);
    }
}
