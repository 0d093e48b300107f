//! Alert channels (`[channels.NAME]`): where alerts go. Named like profiles
//! (global names, in any file of the configs directory), compiled here into
//! a [`Channel`] with every value checked at load time: URLs, the SMTP URL
//! and its TLS policy, mail addresses, the command, `${VAR}` references.
//! Secrets in them are wrapped so that they never reach a log or a status.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::Mailbox;
use reqwest::header::HeaderMap;
use toml::Spanned;
use url::Url;

use super::compile::{Compiler, Context};
use super::error::{ConfigError, Source};
use super::raw::{RawChannel, RawFile};
use super::secret::{PathShown, SecretUrl};
use super::smtp::{smtp_url, SmtpServer};
use super::values::{duration, expand_env};
use crate::ids::ChannelName;

/// Alerts a channel sends per minute, at most (`max_per_minute`): more wait
/// in the queue, never dropped.
pub const DEFAULT_MAX_PER_MINUTE: u32 = 20;
/// How long one delivery may take (`timeout`): an HTTP request, an SMTP
/// session, or the exec command, which is killed past it.
pub const DEFAULT_CHANNEL_TIMEOUT: Duration = Duration::from_secs(10);

/// One alert channel, validated.
#[derive(Debug)]
pub struct Channel {
    pub name: ChannelName,
    pub kind: ChannelKind,
    /// Used by every target that names no channels (`alerts` unset).
    pub default: bool,
    pub max_per_minute: u32,
    pub timeout: Duration,
    /// The file that declares it.
    pub file: PathBuf,
}

/// How a channel delivers.
#[derive(Debug)]
pub enum ChannelKind {
    /// A JSON POST of the notice.
    Webhook(Webhook),
    /// A Slack incoming webhook: `{"text": "…"}`.
    Slack(Webhook),
    /// A Discord webhook: `{"content": "…", "allowed_mentions": {"parse": []}}`.
    Discord(Webhook),
    /// A plain-text mail over SMTP.
    Email(Email),
    /// A command run with the notice's JSON on stdin.
    Exec(Exec),
}

/// The URL (and headers) of a webhook-like channel.
#[derive(Debug)]
pub struct Webhook {
    pub url: SecretUrl,
    /// Extra headers (webhook kind only), `${VAR}` expanded, marked sensitive.
    pub headers: HeaderMap,
}

/// An email channel.
#[derive(Debug)]
pub struct Email {
    pub server: SmtpServer,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
}

/// An exec channel.
#[derive(Debug)]
pub struct Exec {
    /// The program and its arguments; never empty.
    pub command: Vec<String>,
}

impl ChannelKind {
    /// The kind as written in `kind = "…"`.
    pub fn name(&self) -> &'static str {
        match self {
            ChannelKind::Webhook(_) => "webhook",
            ChannelKind::Slack(_) => "slack",
            ChannelKind::Discord(_) => "discord",
            ChannelKind::Email(_) => "email",
            ChannelKind::Exec(_) => "exec",
        }
    }

    /// Whether people read it (Slack, Discord, email): the notices of one
    /// judgement then go out as one message. A webhook or a command gets
    /// one notice each, as machine receivers keep one incident per alert.
    pub fn read_by_people(&self) -> bool {
        matches!(
            self,
            ChannelKind::Slack(_) | ChannelKind::Discord(_) | ChannelKind::Email(_)
        )
    }
}

impl Channel {
    /// Where the channel delivers, credentials removed: for messages.
    pub fn endpoint(&self) -> String {
        match &self.kind {
            ChannelKind::Webhook(w) | ChannelKind::Slack(w) | ChannelKind::Discord(w) => {
                w.url.to_string()
            }
            ChannelKind::Email(e) => {
                let to: Vec<String> = e.to.iter().map(|m| m.email.to_string()).collect();
                format!("{} to {}", e.server, to.join(", "))
            }
            ChannelKind::Exec(x) => x.command.join(" "),
        }
    }
}

/// The kinds, as written.
const KINDS: [&str; 5] = ["webhook", "slack", "discord", "email", "exec"];

/// Compiles `[channels.NAME]`, or returns every error of it.
pub(super) fn compile(
    name: &str,
    raw: &Spanned<RawChannel>,
    src: &Source,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Channel, Vec<ConfigError>> {
    let mut c = Compiler {
        src,
        errors: Vec::new(),
    };
    let prefix = format!("channels.{name}");
    let r = raw.get_ref();
    let kind = c.check(&r.kind, &format!("{prefix}.kind"), |k| {
        KINDS
            .contains(&k.as_str())
            .then(|| k.clone())
            .ok_or_else(|| {
                format!("unknown channel kind {k:?}: use webhook, slack, discord, email or exec")
            })
    });
    let max_per_minute = match &r.max_per_minute {
        None => Some(DEFAULT_MAX_PER_MINUTE),
        Some(n) => c.check(n, &format!("{prefix}.max_per_minute"), |&n| {
            u32::try_from(n)
                .ok()
                .filter(|n| (1..=10_000).contains(n))
                .ok_or_else(|| "max_per_minute must be between 1 and 10000".to_owned())
        }),
    };
    let timeout = match &r.timeout {
        None => Some(DEFAULT_CHANNEL_TIMEOUT),
        Some(t) => c.check(t, &format!("{prefix}.timeout"), |s| {
            duration(s).and_then(|d| {
                (!d.is_zero())
                    .then_some(d)
                    .ok_or_else(|| "timeout must be above zero".to_owned())
            })
        }),
    };
    let kind = kind.and_then(|k| {
        stray_keys(&mut c, &prefix, &k, r);
        compile_kind(&mut c, &prefix, &k, raw, env)
    });
    match (c.errors.is_empty(), kind, max_per_minute, timeout) {
        (true, Some(kind), Some(max_per_minute), Some(timeout)) => Ok(Channel {
            name: ChannelName::new(name),
            kind,
            default: r.default.unwrap_or(false),
            max_per_minute,
            timeout,
            file: src.path.clone(),
        }),
        _ => Err(c.errors),
    }
}

/// A key of another kind (`smtp` in a webhook channel) is an error that says
/// which keys the kind takes.
fn stray_keys(c: &mut Compiler, prefix: &str, kind: &str, r: &RawChannel) {
    let keys = [
        (
            "url",
            r.url.as_ref().map(|v| v.span()),
            "webhook slack discord",
        ),
        ("headers", r.headers.as_ref().map(|v| v.span()), "webhook"),
        ("smtp", r.smtp.as_ref().map(|v| v.span()), "email"),
        ("from", r.from.as_ref().map(|v| v.span()), "email"),
        ("to", r.to.as_ref().map(|v| v.span()), "email"),
        ("command", r.command.as_ref().map(|v| v.span()), "exec"),
    ];
    let takes = match kind {
        "webhook" => "url and headers",
        "slack" | "discord" => "url",
        "email" => "smtp, from and to",
        _ => "command",
    };
    for (key, span, kinds) in keys {
        if let Some(span) = span.filter(|_| !kinds.split(' ').any(|k| k == kind)) {
            let message = format!(
                "`{key}` is not a key of {kind} channels (it is one of {} channels): a {kind} channel takes {takes}",
                kinds.replace(' ', ", ")
            );
            c.err(span, format!("{prefix}.{key}"), message);
        }
    }
}

/// The part of a channel its kind decides; `None` on errors (recorded).
fn compile_kind(
    c: &mut Compiler,
    prefix: &str,
    kind: &str,
    raw: &Spanned<RawChannel>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<ChannelKind> {
    let r = raw.get_ref();
    let missing = |c: &mut Compiler, what: &str| {
        let message = format!("a {kind} channel needs {what}");
        c.err(raw.span(), prefix.to_owned(), message);
        None::<ChannelKind>
    };
    match kind {
        "webhook" | "slack" | "discord" => {
            let Some(url) = &r.url else {
                return missing(c, "url = \"https://…\"");
            };
            let shown = if kind == "webhook" {
                PathShown::Whole
            } else {
                PathShown::First
            };
            let url = c.check(url, &format!("{prefix}.url"), |s| {
                webhook_url(s, env, shown)
            })?;
            let headers = super::compile::header_map(
                c,
                r.headers.as_ref(),
                &format!("{prefix}.headers"),
                env,
            );
            let hook = Webhook { url, headers };
            Some(match kind {
                "webhook" => ChannelKind::Webhook(hook),
                "slack" => ChannelKind::Slack(hook),
                _ => ChannelKind::Discord(hook),
            })
        }
        "email" => {
            let (Some(smtp), Some(from), Some(to)) = (&r.smtp, &r.from, &r.to) else {
                return missing(c, "smtp = \"smtp://…\", from = \"…\" and to = [\"…\"]");
            };
            let server = c.check(smtp, &format!("{prefix}.smtp"), |s| smtp_url(s, env));
            let from = c.check(from, &format!("{prefix}.from"), |s| mailbox(s));
            if to.get_ref().is_empty() {
                c.err(
                    to.span(),
                    format!("{prefix}.to"),
                    "to is empty: give at least one address",
                );
            }
            let to: Vec<Mailbox> = to
                .get_ref()
                .iter()
                .filter_map(|a| c.check(a, &format!("{prefix}.to"), |s| mailbox(s)))
                .collect();
            Some(ChannelKind::Email(Email {
                server: server?,
                from: from?,
                to,
            }))
        }
        _ => {
            let Some(command) = &r.command else {
                return missing(c, "command = [\"program\", \"arg\", …]");
            };
            let mut args = Vec::new();
            for a in command.get_ref() {
                args.push(c.check(a, &format!("{prefix}.command"), |s| expand_env(s, env))?);
            }
            if args.first().is_none_or(|p| p.trim().is_empty()) {
                let message = "command must name a program: command = [\"program\", \"arg\", …]";
                c.err(command.span(), format!("{prefix}.command"), message);
                return None;
            }
            Some(ChannelKind::Exec(Exec { command: args }))
        }
    }
}

/// An http(s) URL with a host, `${VAR}` expanded. Errors never repeat the
/// expanded text: it may hold a token.
fn webhook_url(
    s: &str,
    env: &dyn Fn(&str) -> Option<String>,
    shown: PathShown,
) -> Result<SecretUrl, String> {
    let expanded = expand_env(s, env)?;
    let url = Url::parse(expanded.trim()).map_err(|e| format!("not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("url must be an http:// or https:// URL with a host".into());
    }
    Ok(SecretUrl::new(url, shown))
}

fn mailbox(s: &str) -> Result<Mailbox, String> {
    s.parse::<Mailbox>().map_err(|e| {
        format!("{s:?} is not a mail address (write \"ops@example.org\" or \"Ops <ops@example.org>\"): {e}")
    })
}

/// `alerts`: the channels a target's alerts go to, each one declared.
pub(super) fn alerts(c: &mut Compiler, raw: &RawFile, cx: &Context) -> Option<Vec<ChannelName>> {
    let names = raw.alerts.as_ref()?;
    let mut out = Vec::new();
    for name in names.get_ref() {
        if let Some(n) = c.check(name, "alerts", |n| lookup_channel(n, cx)) {
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    Some(out)
}

pub(super) fn lookup_channel(name: &str, cx: &Context) -> Result<ChannelName, String> {
    let id = ChannelName::new(name);
    if cx.channels.contains_key(&id) {
        return Ok(id);
    }
    if let Some(file) = cx.broken_channels.get(name) {
        return Err(format!(
            "channel {name:?} has errors (see {})",
            file.display()
        ));
    }
    let known: Vec<&str> = cx.channels.keys().map(|c| c.as_str()).collect();
    let mut msg = if known.is_empty() {
        format!("unknown channel {name:?}; no channels are declared (add a [channels.{name}] table to a file of the configs directory)")
    } else {
        format!("unknown channel {name:?}; known: {}", known.join(", "))
    };
    msg.push_str(&super::compile::unreadable_hint(cx));
    Err(msg)
}
