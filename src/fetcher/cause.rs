//! What happened to a request that got no answer, in words a user knows
//! ("connection refused", "DNS lookup failed", …). reqwest's own text,
//! "error sending request for url (…)", does not say; the answer is in the
//! error's source chain: an `io::Error` kind, a `hyper::Error`, or the
//! resolver's [`DnsFailed`].

use std::error::Error;
use std::fmt;

use crate::address::DnsFailed;

/// What happened, as one short phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Happened {
    /// Nothing listens on the port (or a firewall rejects it).
    Refused,
    /// The host name does not resolve.
    Dns,
    /// No route to the host or its network.
    Unreachable,
    /// The server reset or dropped the connection mid-way.
    Reset,
    /// The server closed the connection before a whole answer.
    Closed,
    /// The answer is not HTTP hyper can read.
    BadHttp,
    /// The connection or the answer took longer than the profile's timeout.
    TimedOut,
}

impl fmt::Display for Happened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Happened::Refused => "connection refused (nothing listens on that port?)",
            Happened::Dns => "DNS lookup failed (is the host name right?)",
            Happened::Unreachable => "host or network unreachable",
            Happened::Reset => "connection reset by the server",
            Happened::Closed => "the server closed the connection before it answered in full",
            Happened::BadHttp => "the server's answer is not valid HTTP",
            Happened::TimedOut => "timed out",
        })
    }
}

/// hyper-util reports a failed lookup as a `ConnectError` whose text is
/// this; the type is private, so its text is all there is to match (only
/// when crawld's own resolver is off: `allow_private_networks`, proxies).
const HYPER_DNS_ERROR: &str = "dns error";

/// What happened, from the first link of `e`'s source chain that says.
pub fn happened(e: &(dyn Error + 'static)) -> Option<Happened> {
    let mut link: Option<&(dyn Error + 'static)> = Some(e);
    while let Some(e) = link {
        if let Some(h) = one(e) {
            return Some(h);
        }
        // An io::Error's `source()` skips the error it wraps: look inside.
        link = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// What one link of a chain says, if anything.
fn one(e: &(dyn Error + 'static)) -> Option<Happened> {
    use std::io::ErrorKind as K;
    if e.is::<DnsFailed>() || e.to_string() == HYPER_DNS_ERROR {
        return Some(Happened::Dns);
    }
    if let Some(h) = e.downcast_ref::<hyper::Error>() {
        if h.is_timeout() {
            return Some(Happened::TimedOut);
        }
        if h.is_incomplete_message() {
            return Some(Happened::Closed);
        }
        if h.is_parse() {
            return Some(Happened::BadHttp);
        }
        return None;
    }
    let io = e.downcast_ref::<std::io::Error>()?;
    match io.kind() {
        K::ConnectionRefused => Some(Happened::Refused),
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => Some(Happened::Reset),
        K::TimedOut => Some(Happened::TimedOut),
        K::HostUnreachable | K::NetworkUnreachable => Some(Happened::Unreachable),
        K::UnexpectedEof => Some(Happened::Closed),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Error as IoError, ErrorKind};

    /// An error wrapping another, as reqwest and hyper-util do.
    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Wrap {
        text: &'static str,
        #[source]
        source: Box<dyn Error + Send + Sync>,
    }

    fn wrap(text: &'static str, source: impl Error + Send + Sync + 'static) -> Wrap {
        Wrap {
            text,
            source: Box::new(source),
        }
    }

    #[test]
    fn names_the_cause_deep_in_the_chain() {
        let refused = wrap(
            "error sending request",
            wrap(
                "tcp connect error",
                IoError::from(ErrorKind::ConnectionRefused),
            ),
        );
        assert_eq!(happened(&refused), Some(Happened::Refused));
        let dns = wrap(
            "error sending request",
            DnsFailed {
                name: "shop.invalid".into(),
                source: IoError::other("Name or service not known"),
            },
        );
        assert_eq!(happened(&dns), Some(Happened::Dns));
        let hyper_dns = wrap(
            "error sending request",
            wrap(HYPER_DNS_ERROR, IoError::other("failed to lookup")),
        );
        assert_eq!(happened(&hyper_dns), Some(Happened::Dns));
        // An io::Error around another io::Error (as TLS and proxies wrap).
        let inner = IoError::other(IoError::from(ErrorKind::ConnectionReset));
        assert_eq!(happened(&wrap("x", inner)), Some(Happened::Reset));
        assert_eq!(happened(&wrap("x", IoError::other("what"))), None);
    }
}
