//! Which addresses a crawl may reach. Links and redirects found on the web
//! must not turn crawld into a probe of its own network: loopback, private,
//! link-local and similar addresses are refused unless the target allows
//! them (`allow_private_networks`, or a start URL on such an address).
//!
//! Raw-IP URLs are checked before the request; host names are checked after
//! resolution, in the HTTP client's resolver, so that a name cannot resolve
//! to one address when checked and another when connected. Behind a proxy
//! the proxy resolves names: only raw-IP URLs can be checked there.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use url::{Host, Url};

/// Decides whether an address is internal (loopback, private, link-local…).
/// Injectable so that tests on loopback can call a host public.
#[derive(Clone)]
pub struct AddressPolicy {
    internal: Arc<Classifier>,
}

/// Whether an address, reached by a host name, is internal.
type Classifier = dyn Fn(&str, IpAddr) -> bool + Send + Sync;

impl Default for AddressPolicy {
    fn default() -> Self {
        AddressPolicy {
            internal: Arc::new(|_, ip| is_internal(ip)),
        }
    }
}

impl std::fmt::Debug for AddressPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AddressPolicy")
    }
}

impl AddressPolicy {
    /// A policy from a classifier of (host name as written, address).
    pub fn new(internal: impl Fn(&str, IpAddr) -> bool + Send + Sync + 'static) -> Self {
        AddressPolicy {
            internal: Arc::new(internal),
        }
    }

    /// Whether `ip`, reached as `host`, is internal.
    pub fn is_internal(&self, host: &str, ip: IpAddr) -> bool {
        (self.internal)(host, ip)
    }

    /// Why a URL may not be fetched by a crawl confined to public addresses:
    /// a scheme other than http(s), or a raw IP that is internal.
    pub fn refuses(&self, url: &Url) -> Option<&'static str> {
        if !matches!(url.scheme(), "http" | "https") {
            return Some("not an http(s) URL");
        }
        let ip = match url.host()? {
            Host::Ipv4(ip) => IpAddr::V4(ip),
            Host::Ipv6(ip) => IpAddr::V6(ip),
            Host::Domain(_) => return None,
        };
        let name = url.host_str().unwrap_or("");
        self.is_internal(name, ip)
            .then_some("an internal (loopback, private or link-local) address")
    }

    /// Whether a URL is on an internal address, resolving its name if need
    /// be (used for start URLs, which then allow internal addresses).
    pub async fn url_is_internal(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        if self.refuses(url).is_some() {
            return true;
        }
        let port = url.port_or_known_default().unwrap_or(80);
        let name = host.trim_start_matches('[').trim_end_matches(']');
        match tokio::net::lookup_host((name, port)).await {
            Ok(addrs) => addrs
                .into_iter()
                .any(|a: SocketAddr| self.is_internal(host, a.ip())),
            Err(_) => false,
        }
    }
}

/// Anything but a global unicast address: loopback, private (RFC 1918,
/// unique local), link-local, site-local, shared (CGNAT), unspecified,
/// broadcast, multicast, documentation, benchmarking and reserved ranges;
/// IPv6 forms that embed an IPv4 address (mapped, compatible, NAT64, 6to4)
/// are judged by that address.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                std::net::Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)
            };
            if v6.is_loopback() || v6.is_unspecified() {
                return true;
            }
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            // ::a.b.c.d (compatible) and 64:ff9b::a.b.c.d (NAT64).
            if s[..6] == [0; 6] || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return is_internal(IpAddr::V4(embedded(s[6], s[7])));
            }
            // 2002:AABB:CCDD::/48 (6to4).
            if s[0] == 0x2002 {
                return is_internal(IpAddr::V4(embedded(s[1], s[2])));
            }
            (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                || (s[0] & 0xff00) == 0xff00
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                // Local-use NAT64, discard-only, benchmarking, documentation.
                || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1)
                || s[..4] == [0x100, 0, 0, 0]
                || (s[0] == 0x2001 && s[1] == 2 && s[2] == 0)
                || (s[0] & 0xfff0) == 0x3ff0
        }
    }
}

/// The error a resolver gives for a name with internal addresses only.
#[derive(Debug, thiserror::Error)]
#[error("{name} resolves to internal addresses only ({ip})")]
pub struct InternalAddress {
    pub name: String,
    pub ip: IpAddr,
}

/// The failed lookup of a host name, from [`GuardResolver`]: typed, so that
/// a fetch error can say "DNS lookup failed" (see `fetcher::cause`).
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve {name}: {source}")]
pub struct DnsFailed {
    pub name: String,
    #[source]
    pub source: std::io::Error,
}

/// A resolver that drops internal addresses.
pub(crate) struct GuardResolver {
    pub(crate) policy: AddressPolicy,
}

impl reqwest::dns::Resolve for GuardResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let name = name.as_str().to_owned();
        Box::pin(async move {
            let found: Result<Vec<SocketAddr>, _> = tokio::net::lookup_host((name.as_str(), 0))
                .await
                .map(Iterator::collect);
            let addrs = match found {
                Ok(addrs) => addrs,
                Err(source) => return Err(Box::new(DnsFailed { name, source }) as _),
            };
            let public: Vec<SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|a| !policy.is_internal(&name, a.ip()))
                .collect();
            match (public.is_empty(), addrs.first()) {
                (true, Some(first)) => Err(Box::new(InternalAddress {
                    name,
                    ip: first.ip(),
                })
                    as Box<dyn std::error::Error + Send + Sync>),
                _ => Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "2002:7f00:1::",
            "fec0::1",
            "ff02::1",
            "224.0.0.1",
            "198.18.0.1",
            "240.0.0.1",
            "192.0.0.8",
            "2001:db8::1",
            "64:ff9b:1::a",
            "100::1",
            "2001:2::1",
            "3fff::1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "172.32.0.1",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
        let p = AddressPolicy::default();
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(p.refuses(&u("http://127.0.0.1:8080/x")).is_some());
        assert!(p.refuses(&u("http://[::1]/")).is_some());
        assert!(p.refuses(&u("ftp://example.org/")).is_some());
        assert!(p.refuses(&u("https://example.org/")).is_none());
    }
}
