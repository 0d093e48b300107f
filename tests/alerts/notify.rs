//! Change notices (`[notify]`) the whole way: a shop whose prices change
//! and whose products go, a daemon (and `crawld crawl --notify`) sending one
//! message per run and channel to a loopback webhook receiver, a Slack
//! receiver and an exec command; a restart sends nothing twice.

use std::path::PathBuf;

use serde_json::{json, Value};

use super::common::daemon::{wait_for, Daemon};
use super::common::sinks::{SmtpSink, WebhookSink};
use super::common::{shop, write_configs, Resource, Site, FAST_PROFILE};
use super::{full_run, paged};

const TARGET: &str = r#"
start_urls = ["{base}/"]
profile = "fast"
strip_params = ["utm_*"]
alerts = ["hook", "team", "pager", "mail"]
[follow]
allow = ['^/$', '^/list/', '^/p/']
[items.product]
pages = '^/p/'
[items.product.fields]
name = { css = "h1::text", required = true }
price = { css = "p.price::text", type = "number" }
"#;

/// A shop of 30 products, a webhook receiver (which is also the Slack
/// endpoint, under another path), an SMTP sink, an exec channel's file, and
/// a configs dir.
struct Scene {
    site: Site,
    hook: WebhookSink,
    smtp: SmtpSink,
    tmp: tempfile::TempDir,
    pager: PathBuf,
    configs: PathBuf,
}

impl Scene {
    /// `notify`: the lines of the target's `[notify]` table.
    fn new(notify: &str) -> Scene {
        let site = Site::start(shop(3, 10));
        let hook = WebhookSink::start();
        let smtp = SmtpSink::start();
        let tmp = tempfile::tempdir().unwrap();
        let pager = tmp.path().join("pager.jsonl");
        let configs = tmp.path().join("configs");
        let s = Scene {
            site,
            hook,
            smtp,
            tmp,
            pager,
            configs,
        };
        s.configure(notify);
        s
    }

    fn configure(&self, notify: &str) {
        let channels = format!(
            r#"
[channels.hook]
kind = "webhook"
url = "{}"
[channels.team]
kind = "slack"
url = "{}"
[channels.pager]
kind = "exec"
command = ["sh", "-c", "cat >> \"$0\"", "{}"]
[channels.mail]
kind = "email"
smtp = "smtp://{}"
from = "crawld@example.org"
to = ["ops@example.org"]
"#,
            self.hook.url("/hook"),
            self.hook.url("/slack"),
            self.pager.display(),
            self.smtp.addr
        );
        let target = format!("{TARGET}[notify]\n{notify}\n");
        write_configs(
            &self.configs,
            &self.site.url(""),
            &[
                ("t.toml", &target),
                ("profiles.toml", FAST_PROFILE),
                ("alerts.toml", &channels),
            ],
        );
    }

    fn state(&self) -> PathBuf {
        self.tmp.path().join("state")
    }

    /// The webhook's change notices, in order (alerts left out).
    fn notices(&self) -> Vec<Value> {
        self.hook
            .hooks()
            .into_iter()
            .filter(|h| h.path == "/hook" && (200..300).contains(&h.status))
            .map(|h| h.body)
            .filter(|b| b["type"] == "changes")
            .collect()
    }

    /// The Slack digests' texts (alerts left out).
    fn slack(&self) -> Vec<String> {
        self.hook
            .hooks()
            .into_iter()
            .filter(|h| h.path == "/slack")
            .map(|h| h.body["text"].as_str().unwrap_or_default().to_owned())
            .filter(|t| t.starts_with("📦"))
            .collect()
    }

    /// The exec channel's change notices (one JSON per line).
    fn paged(&self) -> Vec<Value> {
        paged(&self.pager)
            .into_iter()
            .filter(|b| b["type"] == "changes")
            .collect()
    }

    /// The subjects of the change notices' mails.
    fn mailed(&self) -> Vec<String> {
        self.smtp
            .mails()
            .iter()
            .filter_map(|m| m.header("Subject"))
            .filter(|s| s.contains("(run "))
            .collect()
    }

    /// Product `i`'s price is now `price` (its page's other text unchanged).
    fn price(&self, i: usize, price: &str) {
        self.edit(i, &format!("£{i}.99"), &format!("£{price}"));
    }

    /// Product `i`'s page with `from` replaced by `to`.
    fn edit(&self, i: usize, from: &str, to: &str) {
        let path = format!("/p/{i}.html");
        let page = self.site.get(&path).unwrap();
        let body = String::from_utf8(page.body).unwrap();
        assert!(body.contains(from), "{body}");
        self.site.set(&path, Resource::html(body.replace(from, to)));
    }

    /// `crawld crawl t --full --notify`: exit code and stdout.
    fn crawl(&self) -> (Option<i32>, String) {
        let out = super::crawld()
            .args(["crawl", "t", "--full", "--no-progress", "--notify"])
            .arg("--configs")
            .arg(&self.configs)
            .arg("--state")
            .arg(self.state())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let err = String::from_utf8_lossy(&out.stderr);
        (out.status.code(), format!("{text}{err}"))
    }
}

/// The changes of a notice by key suffix (`/p/3.html` → its entry).
fn entry<'a>(notice: &'a Value, path: &str) -> &'a Value {
    notice["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"].as_str().unwrap().ends_with(path))
        .unwrap_or_else(|| panic!("no change of {path} in {notice}"))
}

#[test]
fn a_run_s_changes_are_one_message_per_channel_and_a_restart_sends_nothing_twice() {
    let s = Scene::new("");
    let d = Daemon::start(&s.configs, &s.state(), &[]);
    let first = full_run(&d);
    wait_for(
        || s.notices().len() == 1 && s.slack().len() == 1 && s.paged().len() == 1,
        "the first run's notice arrives on each channel",
    );
    let n = &s.notices()[0];
    assert_eq!(n["type"], "changes");
    assert_eq!(n["run"], first);
    assert_eq!(n["counts"], json!({"new": 30, "changed": 0, "removed": 0}));
    assert_eq!(n["changes"].as_array().unwrap().len(), 30);
    assert_eq!(
        entry(n, "/p/4.html")["fields"]["price"],
        json!({"old": null, "new": 4.99})
    );

    for i in [1, 3, 5, 7, 9] {
        s.price(i, &format!("{i}.49"));
    }
    s.site.remove("/p/20.html");
    let second = full_run(&d);
    wait_for(
        || {
            s.notices().len() == 2
                && s.slack().len() == 2
                && s.paged().len() == 2
                && s.mailed().len() == 2
        },
        "the second run's notice arrives on each channel",
    );
    assert_eq!(
        s.mailed()[1],
        format!("[crawld] t: 5 changed, 1 removed (run {second})")
    );
    let n = &s.notices()[1];
    let keys: Vec<&str> = n.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "version",
            "type",
            "target",
            "run",
            "counts",
            "changes",
            "truncated"
        ]
    );
    assert_eq!(
        (&n["version"], &n["target"], &n["run"], &n["truncated"]),
        (&json!(1), &json!("t"), &json!(second), &json!(0))
    );
    assert_eq!(n["counts"], json!({"new": 0, "changed": 5, "removed": 1}));
    let changes = n["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 6, "{n}");
    for i in [1, 3, 5, 7, 9] {
        let c = entry(n, &format!("/p/{i}.html"));
        assert_eq!(c["change"], "changed");
        assert_eq!(c["kind"], "product");
        assert_eq!(c["url"], s.site.url(&format!("/p/{i}.html")));
        let (old, new) = (format!("{i}.99"), format!("{i}.49"));
        assert_eq!(
            c["fields"],
            json!({"price": {"old": old.parse::<f64>().unwrap(), "new": new.parse::<f64>().unwrap()}})
        );
    }
    let gone = entry(n, "/p/20.html");
    assert_eq!(gone["change"], "removed");
    assert_eq!(gone["fields"]["price"], json!({"old": 20.99, "new": null}));
    // The exec channel gets the same JSON; Slack a digest, old → new.
    assert_eq!(&s.paged()[1], n);
    let text = &s.slack()[1];
    assert!(
        text.starts_with(&format!("📦 t, run {second}: 5 changed, 1 removed\n")),
        "{text}"
    );
    assert!(text.contains("price: 3.99 → 3.49"), "{text}");
    assert!(text.contains("removed product "), "{text}");

    // A restart: nothing is sent again. The next message, of a run after
    // it, is the third on every channel, and says only its own change.
    assert_eq!(d.stop(), Some(0));
    let d = Daemon::start(&s.configs, &s.state(), &[]);
    let quiet = full_run(&d);
    s.price(2, "2.25");
    // A page's words are text in Slack: no `<!channel>`, no disguised link.
    s.edit(
        2,
        "<h1>Product 2 ",
        "<h1>&lt;!channel&gt; &lt;https://evil|Log in&gt; &amp; ",
    );
    let third = full_run(&d);
    wait_for(
        || {
            s.notices().len() >= 3
                && s.slack().len() >= 3
                && s.paged().len() >= 3
                && s.mailed().len() >= 3
        },
        "the third notice arrives",
    );
    let n = &s.notices()[2];
    assert_eq!(n["run"], third, "run {quiet} changed nothing: {n}");
    assert_eq!(n["counts"], json!({"new": 0, "changed": 1, "removed": 0}));
    let text = &s.slack()[2];
    assert!(
        text.contains("→ &lt;!channel&gt; &lt;https://evil|Log in&gt; &amp;, price"),
        "{text}"
    );
    assert!(
        !text.contains("<!channel>") && !text.contains("<https://"),
        "{text}"
    );
    assert_eq!(s.notices().len(), 3);
    assert_eq!(s.paged().len(), 3);
    assert_eq!(s.slack().len(), 3);
    assert_eq!(s.mailed().len(), 3);
    assert_eq!(d.stop(), Some(0));
}

/// A run the daemon did not see end (it was down: a foreground crawl, or a
/// stop between the run's end and its notice) is sent when it starts.
#[test]
fn the_daemon_sends_at_start_the_last_run_it_did_not_notify() {
    let s = Scene::new("channels = [\"hook\"]");
    let d = Daemon::start(&s.configs, &s.state(), &[]);
    full_run(&d);
    wait_for(|| s.notices().len() == 1, "the first notice arrives");
    assert_eq!(d.stop(), Some(0));
    s.price(6, "6.10");
    let out = super::crawld()
        .args(["crawl", "t", "--full", "--no-progress"])
        .arg("--configs")
        .arg(&s.configs)
        .arg("--state")
        .arg(s.state())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        s.notices().len(),
        1,
        "a crawl without --notify sends nothing"
    );
    let d = Daemon::start(&s.configs, &s.state(), &[]);
    wait_for(|| s.notices().len() == 2, "the missed run's notice arrives");
    assert_eq!(
        s.notices()[1]["counts"],
        json!({"new": 0, "changed": 1, "removed": 0})
    );
    assert!(
        s.slack().is_empty() && s.paged().is_empty() && s.mailed().is_empty(),
        "channels = [\"hook\"] only"
    );
    assert_eq!(d.stop(), Some(0));
}

/// `crawld crawl --notify` with `fields`, `on` and `max_items`.
#[test]
fn a_foreground_crawl_notifies_what_notify_asks_for() {
    let s = Scene::new("on = [\"changed\", \"removed\"]\nfields = [\"price\"]\nmax_items = 3\nchannels = [\"hook\"]");
    let (code, out) = s.crawl();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("Change notices: nothing to send"), "{out}");
    assert!(
        s.notices().is_empty(),
        "30 new items, but on has no \"new\""
    );

    for i in [1, 3, 5, 7, 9] {
        s.price(i, "1.00");
    }
    // Another field changed: filtered out by fields = ["price"].
    s.edit(11, "Product 11", "Product eleven");
    s.site.remove("/p/20.html");
    let (code, out) = s.crawl();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("Notices: 1 delivered"), "{out}");
    let sent = s.notices();
    assert_eq!(sent.len(), 1, "{out}");
    let n = &sent[0];
    assert_eq!(n["counts"], json!({"new": 0, "changed": 5, "removed": 1}));
    assert_eq!(n["changes"].as_array().unwrap().len(), 3, "max_items = 3");
    assert_eq!(n["truncated"], 3);
    assert!(
        !n.to_string().contains("/p/11.html"),
        "a name change is not a price change: {n}"
    );

    // Only a name change: nothing matched, nothing sent.
    s.edit(12, "Product 12", "Product twelve");
    let (code, out) = s.crawl();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("Change notices: nothing to send"), "{out}");
    assert_eq!(s.notices().len(), 1);

    // on = ["removed"]: price changes are not sent, a removal is.
    s.configure("on = [\"removed\"]\nchannels = [\"hook\"]");
    s.price(2, "0.50");
    s.site.remove("/p/21.html");
    let (code, out) = s.crawl();
    assert_eq!(code, Some(0), "{out}");
    let sent = s.notices();
    assert_eq!(sent.len(), 2, "{out}");
    assert_eq!(
        sent[1]["counts"],
        json!({"new": 0, "changed": 0, "removed": 1})
    );
    assert_eq!(sent[1]["changes"][0]["change"], "removed");
    assert!(sent[1]["changes"][0]["key"]
        .as_str()
        .unwrap()
        .ends_with("/p/21.html"));
}

/// `[notify]`'s keys are checked when the config loads.
#[test]
fn notify_errors_name_the_key_at_fault() {
    let s = Scene::new(
        "on = [\"new\", \"gone\"]\nfields = [\"prize\"]\nchannels = [\"nowhere\"]\nmax_items = 0",
    );
    let out = super::crawld()
        .args(["check", "--configs"])
        .arg(&s.configs)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    for needle in [
        "notify.on",
        "unknown change \"gone\"",
        "notify.fields",
        "unknown field \"prize\"; the items have name, price",
        "notify.channels",
        "unknown channel \"nowhere\"",
        "notify.max_items",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
}
