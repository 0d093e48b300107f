//! One delivery of one notice to one channel: a JSON POST (webhook, Slack,
//! Discord), a mail over SMTP, or a command with the notice on stdin. Every
//! delivery is bounded by the channel's `timeout`; every error names the
//! channel's endpoint with its credentials removed.

use std::process::Stdio;
use std::time::Duration;

use lettre::message::{Message, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::io::AsyncWriteExt;

use super::{digest, text};
use crate::config::{Channel, ChannelKind, Email, Exec, SmtpSecurity, Webhook};
use crate::error::chain;
use crate::printable;
use crate::store::{ChangeNotice, Notice};

/// Bytes of an answer's body or a command's stderr kept for the error.
const DETAIL_BYTES: usize = 200;

/// Why a delivery failed. Each names where it went, never a credential.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{url} answered {status}{detail}")]
    Refused {
        url: String,
        status: u16,
        /// `: ` and the start of the body, or nothing.
        detail: String,
    },
    #[error("cannot reach {url}: {}", chain(.source))]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("SMTP server {server}: {}", chain(.source))]
    Smtp {
        server: String,
        #[source]
        source: lettre::transport::smtp::Error,
    },
    #[error("the mail cannot be built: {source}")]
    Mail {
        #[source]
        source: lettre::error::Error,
    },
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} exited with {status}{stderr}")]
    Exit {
        program: String,
        status: std::process::ExitStatus,
        /// `: ` and the last line of its stderr, or nothing.
        stderr: String,
    },
    #[error("{endpoint} did not finish within {}: it was stopped", humantime::format_duration(*.timeout))]
    Timeout { endpoint: String, timeout: Duration },
}

/// What a channel said when it took a notice, for `crawld alert test`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// The HTTP status (2xx).
    Http(u16),
    /// The SMTP server's last answer.
    Smtp(String),
    /// The command exited 0.
    Exec,
}

impl std::fmt::Display for Delivered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Delivered::Http(status) => write!(f, "answered {status}"),
            Delivered::Smtp(answer) => write!(f, "the SMTP server accepted it ({answer})"),
            Delivered::Exec => f.write_str("the command exited 0"),
        }
    }
}

/// Sends notices; one per process or delivery, sharing its HTTP client.
#[derive(Clone)]
pub struct Sender {
    http: reqwest::Client,
    /// The host crawld runs on, named in every notice.
    host: Option<String>,
    /// The dashboard's address, when the daemon serves one.
    dashboard: Option<String>,
}

impl Default for Sender {
    fn default() -> Self {
        Sender::new()
    }
}

impl Sender {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .user_agent(concat!("crawld/", env!("CARGO_PKG_VERSION")))
            // A webhook that redirects is misconfigured: a POST is not replayed elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            // INVARIANT: the builder fails only on a TLS backend that cannot
            // start; the same build as the fetcher's, which starts first.
            .unwrap_or_default();
        let host = hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .filter(|h| !h.is_empty());
        Sender {
            http,
            host,
            dashboard: None,
        }
    }

    /// Names the dashboard's address in every notice.
    pub fn with_dashboard(mut self, url: Option<String>) -> Self {
        self.dashboard = url;
        self
    }

    /// Delivers `notice` to `channel`, within the channel's timeout.
    pub async fn send(&self, channel: &Channel, notice: &Notice) -> Result<Delivered, SendError> {
        self.send_all(channel, std::slice::from_ref(notice)).await
    }

    /// Delivers `notices` (one or more) to `channel` as one message, within
    /// the channel's timeout. A webhook or a command takes them one at a
    /// time: give it one.
    pub async fn send_all(
        &self,
        channel: &Channel,
        notices: &[Notice],
    ) -> Result<Delivered, SendError> {
        let notices: Vec<Notice> = notices
            .iter()
            .map(|n| Notice {
                host: self.host.clone(),
                dashboard: self.dashboard.clone(),
                ..n.clone()
            })
            .collect();
        let Some(first) = notices.first() else {
            return Ok(Delivered::Exec);
        };
        let work = async {
            match &channel.kind {
                ChannelKind::Webhook(w) => {
                    let body = serde_json::to_value(first).unwrap_or_default();
                    self.post(w, &body, channel.timeout).await
                }
                ChannelKind::Slack(w) => {
                    let body = text::slack_lines(&notices);
                    self.post(w, &body, channel.timeout).await
                }
                ChannelKind::Discord(w) => {
                    let body = text::discord_lines(&notices);
                    self.post(w, &body, channel.timeout).await
                }
                ChannelKind::Email(e) => {
                    let (subject, body) =
                        (text::email_subject(&notices), text::email_body(&notices));
                    mail(e, subject, body, channel.timeout).await
                }
                ChannelKind::Exec(x) => {
                    exec(x, serde_json::to_vec(first).unwrap_or_default()).await
                }
            }
        };
        bounded(channel, work).await
    }

    /// Delivers a run's change notice to `channel` as one message, within
    /// the channel's timeout: its JSON to a webhook or a command, a digest
    /// to people (cut to what Slack and Discord take).
    pub async fn send_changes(
        &self,
        channel: &Channel,
        notice: &ChangeNotice,
    ) -> Result<Delivered, SendError> {
        let work = async {
            match &channel.kind {
                ChannelKind::Webhook(w) => {
                    let body = serde_json::to_value(notice).unwrap_or_default();
                    self.post(w, &body, channel.timeout).await
                }
                ChannelKind::Slack(w) => {
                    let body = text::slack_body(digest::slack(notice));
                    self.post(w, &body, channel.timeout).await
                }
                ChannelKind::Discord(w) => {
                    let body = text::discord_body(digest::discord(notice));
                    self.post(w, &body, channel.timeout).await
                }
                ChannelKind::Email(e) => {
                    let subject = digest::email_subject(notice);
                    let body = digest::email_body(notice, self.host.as_deref());
                    mail(e, subject, body, channel.timeout).await
                }
                ChannelKind::Exec(x) => {
                    exec(x, serde_json::to_vec(notice).unwrap_or_default()).await
                }
            }
        };
        bounded(channel, work).await
    }

    async fn post(
        &self,
        w: &Webhook,
        body: &serde_json::Value,
        timeout: Duration,
    ) -> Result<Delivered, SendError> {
        let url = w.url.to_string();
        let answer = self
            .http
            .post(w.url.expose().clone())
            .headers(w.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(body).unwrap_or_default())
            .timeout(timeout)
            .send()
            .await
            // reqwest's message repeats the URL, token and all.
            .map_err(|e| SendError::Unreachable {
                url: url.clone(),
                source: e.without_url(),
            })?;
        let status = answer.status();
        if status.is_success() {
            return Ok(Delivered::Http(status.as_u16()));
        }
        let body = answer.text().await.unwrap_or_default();
        let first = body.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        let detail = if first.is_empty() {
            String::new()
        } else {
            // A receiver's words, shown on terminals and in logs.
            format!(": {}", printable::line(&cut(first.trim(), DETAIL_BYTES)))
        };
        Err(SendError::Refused {
            url,
            status: status.as_u16(),
            detail,
        })
    }
}

/// `work` within the channel's timeout. Every kind bounds itself too; this
/// also bounds what they do not (a command that never reads its stdin, an
/// SMTP server that trickles).
async fn bounded(
    channel: &Channel,
    work: impl std::future::Future<Output = Result<Delivered, SendError>>,
) -> Result<Delivered, SendError> {
    tokio::time::timeout(channel.timeout, work)
        .await
        .unwrap_or_else(|_| {
            Err(SendError::Timeout {
                endpoint: channel.endpoint(),
                timeout: channel.timeout,
            })
        })
}

/// One mail over a fresh SMTP connection, with the channel's TLS policy.
async fn mail(
    e: &Email,
    subject: String,
    body: String,
    timeout: Duration,
) -> Result<Delivered, SendError> {
    let server = e.server.to_string();
    let smtp = |source| SendError::Smtp {
        server: server.clone(),
        source,
    };
    let host = e.server.host.clone();
    let tls = match e.server.security {
        SmtpSecurity::None => Tls::None,
        SmtpSecurity::Opportunistic => Tls::Opportunistic(TlsParameters::new(host).map_err(smtp)?),
        SmtpSecurity::StartTls => Tls::Required(TlsParameters::new(host).map_err(smtp)?),
        SmtpSecurity::Implicit => Tls::Wrapper(TlsParameters::new(host).map_err(smtp)?),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&e.server.host)
        .port(e.server.port)
        .timeout(Some(timeout))
        .tls(tls);
    if let (Some(user), Some(password)) = (&e.server.user, &e.server.password) {
        builder = builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
    }
    // lettre makes the Message-ID (with this host's name), the Date and,
    // for a MIME part, MIME-Version.
    let mut message = Message::builder()
        .from(e.from.clone())
        .subject(subject)
        .message_id(None)
        .user_agent(concat!("crawld/", env!("CARGO_PKG_VERSION")).to_owned());
    for to in &e.to {
        message = message.to(to.clone());
    }
    let message = message
        .singlepart(SinglePart::plain(body))
        .map_err(|source| SendError::Mail { source })?;
    let answer = builder.build().send(message).await.map_err(smtp)?;
    let said: Vec<&str> = answer.message().collect();
    let said = format!("{} {}", answer.code(), said.join(" "));
    Ok(Delivered::Smtp(printable::line(&said).into_owned()))
}

/// Runs the command with `json` (a notice) on stdin; exit 0 is delivered.
/// The child is killed when the delivery is dropped (its timeout).
async fn exec(x: &Exec, mut json: Vec<u8>) -> Result<Delivered, SendError> {
    let program = x.command.first().cloned().unwrap_or_default();
    let mut child = tokio::process::Command::new(&program)
        .args(&x.command[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| SendError::Spawn {
            program: program.clone(),
            source,
        })?;
    json.push(b'\n');
    if let Some(mut stdin) = child.stdin.take() {
        // A command may exit without reading its stdin: its exit status decides.
        let _ = stdin.write_all(&json).await;
        drop(stdin);
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|source| SendError::Spawn {
            program: program.clone(),
            source,
        })?;
    if out.status.success() {
        return Ok(Delivered::Exec);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
    Err(SendError::Exit {
        program,
        status: out.status,
        stderr: last
            .map(|l| format!(": {}", printable::line(&cut(l.trim(), DETAIL_BYTES))))
            .unwrap_or_default(),
    })
}

/// At most `max` bytes of `s`, on a character boundary.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
