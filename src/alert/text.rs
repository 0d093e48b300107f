//! What a notice looks like to a person: the one line of Slack and Discord,
//! and the subject and plain body of an email. The generic webhook and exec
//! channels get the notice's JSON instead.

use crate::store::{Notice, NoticeState};

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

/// `[crawld] FIRING books failure_rate`, `[crawld] resolved …`, `[crawld] test alert`.
pub fn email_subject(n: &Notice) -> String {
    let subject = if n.subject.is_empty() {
        String::new()
    } else {
        format!(" {}", n.subject)
    };
    match n.state {
        NoticeState::Firing => format!("[crawld] FIRING {} {}{subject}", n.target, n.monitor),
        NoticeState::Resolved => {
            format!("[crawld] resolved {} {}{subject}", n.target, n.monitor)
        }
        NoticeState::Test => "[crawld] test alert".to_owned(),
    }
}

/// The message, then every field of the notice on a line of its own.
pub fn email_body(n: &Notice) -> String {
    let run = n.run.map(|r| r.to_string()).unwrap_or_else(|| "-".into());
    format!(
        "{}\n\n{}\n\ntarget:    {}\nmonitor:   {}\nsubject:   {}\nstate:     {}\nvalue:     {}\nthreshold: {}\nrun:       {run}\nsince:     {}\nat:        {}\n",
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
    )
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
            email_subject(&notice(NoticeState::Firing)),
            "[crawld] FIRING books failure_rate"
        );
        assert_eq!(number(20.0), "20");
        assert_eq!(number(0.5), "0.5");
    }
}
