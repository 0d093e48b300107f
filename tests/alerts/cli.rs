//! `crawld alert test CHANNEL` against real receivers, and the errors of
//! channel configs as `crawld check` reports them.

use predicates::prelude::*;
use serde_json::{json, Value};

use super::common::sinks::{SmtpSink, WebhookSink};
use super::{crawld, write};

/// The keys every notice has: README's schema.
const NOTICE_KEYS: [&str; 11] = [
    "version",
    "target",
    "monitor",
    "subject",
    "state",
    "value",
    "threshold",
    "run",
    "message",
    "since",
    "at",
];

#[test]
fn alert_test_posts_each_webhook_kind_in_its_shape() {
    let sink = WebhookSink::start();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[channels.hook]
kind = "webhook"
url = "{hook}"
[channels.hook.headers]
Authorization = "Bearer ${{HOOK_TOKEN}}"
[channels.team]
kind = "slack"
url = "{slack}"
[channels.chat]
kind = "discord"
url = "{discord}"
"#,
        hook = sink.url("/hook?key=k"),
        slack = sink.url("/services/T0/B0/secret"),
        discord = sink.url("/api/webhooks/1/secret"),
    );
    write(dir.path(), &[("alerts.toml", &text)]);
    for name in ["hook", "team", "chat"] {
        crawld()
            .args(["alert", "test", name, "--configs"])
            .arg(dir.path())
            .env("HOOK_TOKEN", "t0k3n")
            .assert()
            .code(0)
            .stdout(predicate::str::contains(format!(
                "Test alert delivered to channel {name}"
            )))
            .stdout(predicate::str::contains("answered 200"))
            .stdout(predicate::str::contains("secret").not());
    }
    let hooks = sink.hooks();
    assert_eq!(hooks.len(), 3);

    let hook = &hooks[0];
    assert_eq!(hook.path, "/hook?key=k");
    let auth = hook.headers.iter().find(|(k, _)| k == "authorization");
    assert_eq!(auth.map(|(_, v)| v.as_str()), Some("Bearer t0k3n"));
    let ct = hook.headers.iter().find(|(k, _)| k == "content-type");
    assert_eq!(ct.map(|(_, v)| v.as_str()), Some("application/json"));
    for key in NOTICE_KEYS {
        assert!(hook.body.get(key).is_some(), "{key} in {}", hook.body);
    }
    assert_eq!(hook.body["version"], 1);
    assert!(
        hook.body["host"].as_str().is_some_and(|h| !h.is_empty()),
        "{}",
        hook.body
    );
    assert_eq!(hook.body["state"], "test");
    assert_eq!(hook.body["monitor"], "test");

    // Discord's message mentions no one, whatever the text says.
    assert_eq!(hooks[2].body["allowed_mentions"], json!({"parse": []}));
    for (h, key, keys) in [
        (&hooks[1], "text", &["text"][..]),
        (&hooks[2], "content", &["content", "allowed_mentions"][..]),
    ] {
        let object = h.body.as_object().unwrap();
        assert_eq!(object.keys().collect::<Vec<_>>(), keys, "{}", h.body);
        let text = object[key].as_str().unwrap();
        assert!(text.starts_with("🧪 crawld test alert"), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "the alert, then where crawld runs: {text}");
        assert!(lines[1].starts_with("crawld on "), "{text}");
    }
}

#[test]
fn alert_test_mails_through_smtp() {
    let smtp = SmtpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[channels.mail]
kind = "email"
smtp = "smtp://{}"
from = "crawld <crawld@example.org>"
to = ["ops@example.org", "Second <second@example.org>"]
"#,
        smtp.addr
    );
    write(dir.path(), &[("alerts.toml", &text)]);
    crawld()
        .args(["alert", "test", "mail", "--configs"])
        .arg(dir.path())
        .assert()
        .code(0)
        .stdout(predicate::str::contains("the SMTP server accepted it (250"));
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!(m.from, "<crawld@example.org>");
    assert_eq!(m.to, ["<ops@example.org>", "<second@example.org>"]);
    assert_eq!(
        m.header("From").as_deref(),
        Some("crawld <crawld@example.org>")
    );
    let to = m.header("To").unwrap();
    assert!(
        to.contains("ops@example.org") && to.contains("second@example.org"),
        "{to}"
    );
    assert_eq!(m.header("Subject").as_deref(), Some("[crawld] test alert"));
    assert!(m.data.contains("state:     test"), "{}", m.data);
    // What mail filters and clients expect of a well-formed message.
    assert_eq!(
        m.header("MIME-Version").as_deref(),
        Some("1.0"),
        "{}",
        m.data
    );
    let id = m.header("Message-ID").unwrap_or_default();
    assert!(
        id.starts_with('<') && id.contains('@') && id.ends_with('>'),
        "{id}"
    );
    assert!(
        m.data.contains("Sent by crawld on "),
        "the host is named: {}",
        m.data
    );
}

#[test]
fn alert_test_runs_the_exec_command_with_the_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("alert.json");
    let text = format!(
        r#"
[channels.page]
kind = "exec"
command = ["sh", "-c", "cat > \"$0\"", "{}"]
"#,
        out.display()
    );
    write(&dir.path().join("configs"), &[("alerts.toml", &text)]);
    crawld()
        .args(["alert", "test", "page", "--configs"])
        .arg(dir.path().join("configs"))
        .assert()
        .code(0)
        .stdout(predicate::str::contains("the command exited 0"));
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    for key in NOTICE_KEYS {
        assert!(json.get(key).is_some(), "{key} in {json}");
    }
    assert_eq!(json["state"], "test");
}

#[test]
fn alert_test_names_the_known_channels_of_an_unknown_one() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
[channels.ops]
kind = "webhook"
url = "http://127.0.0.1:9/hook"
[channels.pager]
kind = "exec"
command = ["true"]
"#;
    write(dir.path(), &[("alerts.toml", text)]);
    crawld()
        .args(["alert", "test", "opz", "--configs"])
        .arg(dir.path())
        .assert()
        .code(78)
        .stderr(predicate::str::contains("no channel \"opz\" in "))
        .stderr(predicate::str::contains("(channels: ops, pager)"));
}

#[test]
fn alert_test_says_why_a_down_channel_did_not_take_it() {
    let sink = WebhookSink::start();
    sink.answer(500);
    let closed = WebhookSink::start();
    closed.close();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[channels.failing]
kind = "webhook"
url = "{}"
[channels.refused]
kind = "webhook"
url = "{}"
[channels.mail]
kind = "email"
smtp = "smtp://bot:${{SMTP_PASS}}@{}?tls=none"
from = "crawld@example.org"
to = ["ops@example.org"]
[channels.script]
kind = "exec"
command = ["sh", "-c", "echo no pager configured >&2; exit 3"]
"#,
        sink.url("/hook"),
        closed.url("/hook?token=s3cr3t"),
        closed.addr,
    );
    write(dir.path(), &[("alerts.toml", &text)]);
    let cases = [
        ("failing", "/hook answered 500: sink said"),
        ("refused", "cannot reach http://127.0.0.1:"),
        ("mail", "SMTP server smtp://bot:***@127.0.0.1:"),
        ("script", "exited with exit status: 3: no pager configured"),
    ];
    for (name, why) in cases {
        crawld()
            .args(["alert", "test", name, "--configs"])
            .arg(dir.path())
            .env("SMTP_PASS", "hunter2")
            .assert()
            .code(69)
            .stderr(predicate::str::contains(format!("error: channel {name} ")))
            .stderr(predicate::str::contains("did not take the test alert"))
            .stderr(predicate::str::contains(why))
            .stderr(predicate::str::contains("hunter2").not())
            .stderr(predicate::str::contains("s3cr3t").not());
    }
}

#[test]
fn check_points_at_every_channel_error() {
    let dir = tempfile::tempdir().unwrap();
    let alerts = r#"[channels.ops]
kind = "webhook"
url = "http://127.0.0.1:9/hook"

[channels.sms]
kind = "sms"

[channels.chat]
kind = "slack"
default = true
"#;
    let more = r#"[channels.ops]
kind = "exec"
command = ["true"]
"#;
    let target = r#"start_urls = ["http://127.0.0.1:1/"]
alerts = ["ops", "opz"]
"#;
    write(
        dir.path(),
        &[
            ("alerts.toml", alerts),
            ("more.toml", more),
            ("books.toml", target),
        ],
    );
    let d = dir.path().display();
    crawld()
        .args(["check", "--configs"])
        .arg(dir.path())
        .assert()
        .code(78)
        .stderr(predicate::str::contains(format!(
            "{d}/alerts.toml:6:8: channels.sms.kind: unknown channel kind \"sms\": use webhook, slack, discord, email or exec"
        )))
        .stderr(predicate::str::contains(format!(
            "{d}/alerts.toml:8:1: channels.chat: a slack channel needs url = \"https://…\""
        )))
        .stderr(predicate::str::contains(format!(
            "{d}/more.toml:1:1: channels.ops: channel \"ops\" is already defined in {d}/alerts.toml"
        )))
        .stderr(predicate::str::contains(format!(
            "{d}/books.toml:2:18: alerts: unknown channel \"opz\"; known: ops"
        )))
        .stderr(predicate::str::contains("4 configuration error(s)"));
}

#[test]
fn check_counts_the_alert_channels() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
[channels.ops]
kind = "webhook"
url = "http://127.0.0.1:9/hook"
default = true
[channels.page]
kind = "exec"
command = ["true"]
"#;
    write(&dir.path().join("configs"), &[("alerts.toml", text)]);
    crawld()
        .args(["check", "--configs"])
        .arg(dir.path().join("configs"))
        .assert()
        .code(0)
        .stdout(predicate::str::contains(
            "0 target(s), 3 profile(s), 2 alert channel(s), no errors",
        ));
}

/// A receiver's answer is the network's text: a forged "all good" with a
/// screen clear and a window title change reaches the terminal as visible
/// escapes, never as control sequences.
#[test]
fn alert_test_escapes_the_control_characters_of_a_receivers_answer() {
    use super::common::tcp::TcpServer;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hostile = TcpServer::start(|mut tcp| async move {
        let mut buf = vec![0u8; 8192];
        let _ = tcp.read(&mut buf).await;
        let body = "\x1b[2J\x1b]0;all good\x07\r\u{9b}32mDelivered: all good";
        let answer = format!(
            "HTTP/1.1 502 Bad\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = tcp.write_all(answer.as_bytes()).await;
    });
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[channels.evil]\nkind = \"webhook\"\nurl = \"http://{}/hook\"\n",
        hostile.addr
    );
    write(dir.path(), &[("alerts.toml", &text)]);
    let out = crawld()
        .args(["alert", "test", "evil", "--configs"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        !stderr.chars().any(|c| c.is_control() && c != '\n'),
        "{stderr:?}"
    );
    assert!(
        stderr.contains(r"answered 502: \x1b[2J\x1b]0;all good\x07\x0d\u{9b}32mDelivered"),
        "{stderr}"
    );
}
