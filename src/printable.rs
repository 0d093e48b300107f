//! Text from the network made safe to show: a webhook's error body, an SMTP
//! server's answer, a scraped value or a URL may hold terminal control
//! sequences (`ESC[2J` clears the screen, `ESC]0;…BEL` retitles the
//! window, a forged line can follow a carriage return). Shown on a
//! terminal or written into a message, every control character is written
//! as a visible escape instead (`\x1b`, `\u{9b}`), the way `ls` and
//! `systemctl` show odd file names. Logs are escaped by tracing-subscriber.

use std::borrow::Cow;

/// Whether `c` can steer a terminal: C0 controls, DEL and C1 controls.
fn is_control(c: char) -> bool {
    c.is_control()
}

fn escape(s: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(|c| is_control(c) && !keep(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !is_control(c) || keep(c) {
            out.push(c);
        } else if (c as u32) < 0x80 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        }
    }
    Cow::Owned(out)
}

/// `s` with its control characters escaped, line breaks and tabs kept:
/// for whole messages of several lines.
pub fn text(s: &str) -> Cow<'_, str> {
    escape(s, |c| c == '\n' || c == '\t')
}

/// `s` with every control character escaped, line breaks included: for a
/// value shown on one line.
pub fn line(s: &str) -> Cow<'_, str> {
    escape(s, |_| false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_become_visible() {
        let forged = "ok\x1b[2J\x1b]0;pwned\x07\rall good\u{9b}31m";
        assert_eq!(
            line(forged),
            "ok\\x1b[2J\\x1b]0;pwned\\x07\\x0dall good\\u{9b}31m"
        );
        assert_eq!(text("a\nb\tc\x1b"), "a\nb\tc\\x1b");
        assert_eq!(line("a\nb"), "a\\x0ab");
        assert!(matches!(text("plain — ünïcode"), Cow::Borrowed(_)));
    }
}
