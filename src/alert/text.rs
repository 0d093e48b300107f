//! What a notice looks like to a person: the one line of Slack and Discord,
//! and the subject and plain body of an email. The generic webhook and exec
//! channels get the notice's JSON instead.

use std::borrow::Cow;

use serde_json::{json, Value};

use crate::store::{Notice, NoticeState};

/// `s` with `&`, `<` and `>` written as `&amp;`, `&lt;` and `&gt;`, as
/// Slack asks of every text it must not read as markup: a scraped value
/// or a site's error then cannot mention `<!channel>` or show a link
/// (`<https://evil|Log in>`) under words of its own.
pub fn slack_escape(s: &str) -> Cow<'_, str> {
    if !s.contains(['&', '<', '>']) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A Slack message of `text`, escaped already ([`slack_escape`]).
pub fn slack_body(text: String) -> Value {
    json!({ "text": text })
}

/// A Discord message of `text` that mentions no one: `@everyone`, `@here`
/// or `<@id>` in it stay words (Discord's `allowed_mentions`).
pub fn discord_body(text: String) -> Value {
    json!({ "content": text, "allowed_mentions": { "parse": [] } })
}

/// One readable line: `🔥 books: failure_rate 0.33 (threshold 0.1, run 12) — …`.
pub fn line(n: &Notice) -> String {
    let subject = if n.subject.is_empty() {
        String::new()
    } else {
        format!(" {}", n.subject)
    };
    match n.state {
        NoticeState::Firing => {
            let run = n.run.map(|r| format!(", run {r}")).unwrap_or_default();
            format!(
                "🔥 {}: {}{subject} {} (threshold {}{run}) — {}",
                n.target,
                n.monitor,
                number(n.value),
                number(n.threshold),
                n.message
            )
        }
        NoticeState::Resolved => format!(
            "✅ resolved {}: {}{subject} — {}",
            n.target, n.monitor, n.message
        ),
        NoticeState::Test => format!("🧪 crawld test alert — {}", n.message),
    }
}

/// Several notices of one judgement as one Slack or Discord message: a
/// line each, then where crawld runs.
pub fn lines(notices: &[Notice]) -> String {
    let mut out: Vec<String> = notices.iter().map(line).collect();
    if let Some(origin) = notices.first().and_then(origin) {
        out.push(origin);
    }
    out.join("\n")
}

/// The Slack message of [`lines`]: a site's words (an error, a host name)
/// escaped.
pub fn slack_lines(notices: &[Notice]) -> Value {
    slack_body(slack_escape(&lines(notices)).into_owned())
}

/// The Discord message of [`lines`], mentioning no one.
pub fn discord_lines(notices: &[Notice]) -> Value {
    discord_body(lines(notices))
}

/// `crawld on HOST · dashboard URL`, when the notice names either.
fn origin(n: &Notice) -> Option<String> {
    let parts: Vec<String> = [
        n.host.as_ref().map(|h| format!("crawld on {h}")),
        n.dashboard.as_ref().map(|d| format!("dashboard {d}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    (!parts.is_empty()).then(|| parts.join(" · "))
}

/// `[crawld] FIRING books failure_rate`, `[crawld] resolved …`, `[crawld]
/// test alert`; for several, `[crawld] books: FIRING failure_rate, host_blocked a:80`.
pub fn email_subject(notices: &[Notice]) -> String {
    let label = |n: &Notice| {
        if n.subject.is_empty() {
            n.monitor.clone()
        } else {
            format!("{} {}", n.monitor, n.subject)
        }
    };
    let word = |s: NoticeState| match s {
        NoticeState::Firing => "FIRING",
        NoticeState::Resolved => "resolved",
        NoticeState::Test => "test",
    };
    match notices {
        [] => "[crawld]".to_owned(),
        [n] if n.state == NoticeState::Test => "[crawld] test alert".to_owned(),
        [n] => format!("[crawld] {} {} {}", word(n.state), n.target, label(n)),
        [n, ..] => {
            let mut parts = Vec::new();
            for state in [NoticeState::Firing, NoticeState::Resolved] {
                let of: Vec<String> = notices
                    .iter()
                    .filter(|m| m.state == state)
                    .map(label)
                    .collect();
                if !of.is_empty() {
                    parts.push(format!("{} {}", word(state), of.join(", ")));
                }
            }
            format!("[crawld] {}: {}", n.target, parts.join("; "))
        }
    }
}

/// Each notice's line and message, then its fields, then where crawld runs.
pub fn email_body(notices: &[Notice]) -> String {
    let mut out = String::new();
    for n in notices {
        let run = n.run.map(|r| r.to_string()).unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{}\n\n{}\n\ntarget:    {}\nmonitor:   {}\nsubject:   {}\nstate:     {}\nvalue:     {}\nthreshold: {}\nrun:       {run}\nsince:     {}\nat:        {}\n\n",
            line(n),
            n.message,
            n.target,
            n.monitor,
            n.subject,
            n.state.name(),
            number(n.value),
            number(n.threshold),
            n.since,
            n.at,
        ));
    }
    if let Some(n) = notices.first() {
        if let Some(h) = &n.host {
            out.push_str(&format!("Sent by crawld on {h}.\n"));
        }
        if let Some(d) = &n.dashboard {
            out.push_str(&format!("Dashboard: {d}\n"));
        }
    }
    out
}

/// A figure as a person reads it: integers without decimals, shares with
/// at most four.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(state: NoticeState) -> Notice {
        Notice {
            version: 1,
            target: "books".into(),
            monitor: "failure_rate".into(),
            subject: String::new(),
            state,
            value: 1.0 / 3.0,
            threshold: 0.1,
            run: Some(12),
            message: "12 of 36 pages failed".into(),
            since: "2024-05-01T12:00:00Z".into(),
            at: "2024-05-01T12:00:00Z".into(),
            host: None,
            dashboard: None,
        }
    }

    #[test]
    fn lines_read_well() {
        assert_eq!(
            line(&notice(NoticeState::Firing)),
            "🔥 books: failure_rate 0.3333 (threshold 0.1, run 12) — 12 of 36 pages failed"
        );
        assert_eq!(
            line(&notice(NoticeState::Resolved)),
            "✅ resolved books: failure_rate — 12 of 36 pages failed"
        );
        assert_eq!(
            email_subject(&[notice(NoticeState::Firing)]),
            "[crawld] FIRING books failure_rate"
        );
        let mut other = notice(NoticeState::Firing);
        other.monitor = "host_blocked".into();
        other.subject = "a:80".into();
        let group = [
            notice(NoticeState::Firing),
            other,
            notice(NoticeState::Resolved),
        ];
        assert_eq!(
            email_subject(&group),
            "[crawld] books: FIRING failure_rate, host_blocked a:80; resolved failure_rate"
        );
        let mut n = notice(NoticeState::Firing);
        n.host = Some("crawler-1".into());
        n.dashboard = Some("http://crawler-1:8080/".into());
        let body = email_body(&[n.clone()]);
        assert!(
            body.contains("Sent by crawld on crawler-1.\nDashboard: http://crawler-1:8080/\n"),
            "{body}"
        );
        assert!(lines(&[n]).ends_with("\ncrawld on crawler-1 · dashboard http://crawler-1:8080/"));
        assert_eq!(number(20.0), "20");
        assert_eq!(number(0.5), "0.5");
    }

    #[test]
    fn chat_messages_carry_a_site_s_words_as_text() {
        let mut n = notice(NoticeState::Firing);
        n.message = "<!channel> @everyone <https://evil|Log in> & more".into();
        let slack = slack_lines(&[n.clone()]);
        assert_eq!(
            slack["text"],
            "🔥 books: failure_rate 0.3333 (threshold 0.1, run 12) — &lt;!channel&gt; @everyone \
             &lt;https://evil|Log in&gt; &amp; more"
        );
        let discord = discord_lines(&[n]);
        assert_eq!(discord["allowed_mentions"], json!({ "parse": [] }));
        assert!(discord["content"]
            .as_str()
            .unwrap()
            .ends_with("— <!channel> @everyone <https://evil|Log in> & more"));
        assert_eq!(slack_escape("plain"), Cow::Borrowed("plain"));
    }
}
