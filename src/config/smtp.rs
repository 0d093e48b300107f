//! The SMTP URL of an email channel (`smtp = "smtp[s]://user:pass@host:port?tls=…"`):
//! where mail is submitted, with which credentials and which TLS policy.
//!
//! The policy: `smtps://` is TLS from the first byte; `smtp://` requires
//! STARTTLS, except to a loopback host (a local relay), which gets plain
//! SMTP; `?tls=none|opportunistic|required` overrides it for `smtp://`.

use std::net::IpAddr;

use url::Url;

use super::secret::Secret;
use super::values::expand_env;

/// The port of `smtp://` URLs that name none (submission, with STARTTLS).
pub const SMTP_PORT: u16 = 587;
/// The port of `smtps://` URLs that name none (TLS from the start).
pub const SMTPS_PORT: u16 = 465;

/// Where and how mail is submitted, from `smtp = "smtp[s]://[user:pass@]host[:port][?tls=…]"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpServer {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub user: Option<String>,
    pub password: Option<Secret>,
}

/// The TLS policy of an SMTP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtps://`: TLS from the first byte.
    Implicit,
    /// `smtp://`, and `?tls=required`: STARTTLS or no mail (the default but
    /// to a loopback host).
    StartTls,
    /// `?tls=opportunistic`: STARTTLS when the server offers it.
    Opportunistic,
    /// `?tls=none`: plain text (the default to a loopback host).
    None,
}

impl std::fmt::Display for SmtpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match self.security {
            SmtpSecurity::Implicit => "smtps",
            _ => "smtp",
        };
        let user = match (&self.user, &self.password) {
            (Some(u), Some(_)) => format!("{u}:***@"),
            (Some(u), None) => format!("{u}@"),
            _ => String::new(),
        };
        write!(f, "{scheme}://{user}{}:{}", self.host, self.port)
    }
}

/// `smtp[s]://[user[:password]@]host[:port][?tls=none|opportunistic|required]`.
///
/// `${VAR}` values are inserted percent-encoded, so that a password may hold
/// any character (`@`, `/`, `:`); a value that is exactly one `${VAR}` is
/// the whole URL, inserted as it is.
pub(super) fn smtp_url(
    s: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SmtpServer, String> {
    let whole = s.starts_with("${") && s.ends_with('}') && s.matches("${").count() == 1;
    let expanded = if whole {
        expand_env(s, env)?
    } else {
        let encoded = |v: &str| env(v).map(|value| percent_encode(&value));
        expand_env(s, &encoded)?
    };
    let url = Url::parse(expanded.trim())
        .map_err(|e| format!("not a valid SMTP URL: {e} (write smtp://user:${{PASS}}@host:587)"))?;
    let implicit = match url.scheme() {
        "smtp" => false,
        "smtps" => true,
        _ => {
            return Err("the SMTP URL must start with smtp:// (STARTTLS) or smtps:// (TLS)".into())
        }
    };
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("the SMTP URL has no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    if !matches!(url.path(), "" | "/") || url.fragment().is_some() {
        return Err("the SMTP URL takes no path: smtp://user:pass@host:port".into());
    }
    let mut security = if implicit {
        SmtpSecurity::Implicit
    } else if is_loopback(&host) {
        SmtpSecurity::None
    } else {
        SmtpSecurity::StartTls
    };
    for (k, v) in url.query_pairs() {
        security = match (k.as_ref(), v.as_ref(), implicit) {
            ("tls", _, true) => {
                return Err("smtps:// is always TLS: ?tls= is for smtp:// URLs".into())
            }
            ("tls", "required", false) => SmtpSecurity::StartTls,
            ("tls", "opportunistic", false) => SmtpSecurity::Opportunistic,
            ("tls", "none", false) => SmtpSecurity::None,
            ("tls", other, false) => {
                return Err(format!(
                    "tls is none, opportunistic or required, not {other:?}"
                ))
            }
            (other, _, _) => {
                return Err(format!(
                    "unknown SMTP URL parameter {other:?}: only tls= is known"
                ))
            }
        };
    }
    let decode = |s: &str| {
        percent_decode(s)
            .ok_or_else(|| "the SMTP URL's user or password is not valid UTF-8".to_owned())
    };
    let user = Some(decode(url.username())?).filter(|u| !u.is_empty());
    let password = url.password().map(decode).transpose()?.map(Secret::new);
    let port = url
        .port()
        .unwrap_or(if implicit { SMTPS_PORT } else { SMTP_PORT });
    Ok(SmtpServer {
        host,
        port,
        security,
        user,
        password,
    })
}

/// `localhost`, `127.0.0.0/8` or `::1`: where plain SMTP stays on the machine.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Every byte but the unreserved ones of RFC 3986, as `%XX`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(v: &str) -> Option<String> {
        (v == "PASS").then(|| "p@ss/w:rd".to_owned())
    }

    #[test]
    fn smtp_urls_and_their_tls_policy() {
        let s = smtp_url("smtp://bot:${PASS}@mail.example.org", &env).unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.security, s.user.as_deref()),
            ("mail.example.org", 587, SmtpSecurity::StartTls, Some("bot"))
        );
        assert_eq!(s.password.as_ref().map(Secret::expose), Some("p@ss/w:rd"));
        assert_eq!(s.to_string(), "smtp://bot:***@mail.example.org:587");
        let local = smtp_url("smtp://127.0.0.1:2525", &env).unwrap();
        assert_eq!(local.security, SmtpSecurity::None);
        let tls = smtp_url("smtps://mail.example.org", &env).unwrap();
        assert_eq!((tls.port, tls.security), (465, SmtpSecurity::Implicit));
        let opp = smtp_url("smtp://mail.example.org?tls=opportunistic", &env).unwrap();
        assert_eq!(opp.security, SmtpSecurity::Opportunistic);
        let forced = smtp_url("smtp://localhost?tls=required", &env).unwrap();
        assert_eq!(forced.security, SmtpSecurity::StartTls);
        assert!(smtp_url("smtps://h?tls=none", &env).is_err());
        assert!(smtp_url("smtp://h?tls=maybe", &env).is_err());
        assert!(smtp_url("http://h", &env).is_err());
        assert!(smtp_url("smtp://h:25/path", &env).is_err());
        let err = smtp_url("smtp://u:${NOPE}@h", &env).unwrap_err();
        assert!(err.contains("NOPE is not set"), "{err}");
    }
}
