//! Where alerts say crawld runs: the dashboard's address they link to.

/// The dashboard's address that alerts name: `$CRAWLD_DASHBOARD_URL`
/// (behind a proxy, say), else the `--http` listener's, with this host's
/// name for an address that listens on every interface.
pub(super) fn dashboard_url(listening: Option<&str>) -> Option<String> {
    if let Ok(url) = std::env::var(DASHBOARD_URL_ENV) {
        return Some(url).filter(|u| !u.trim().is_empty());
    }
    let addr: std::net::SocketAddr = listening?.parse().ok()?;
    let host = if addr.ip().is_unspecified() {
        hostname::get().ok()?.into_string().ok()?
    } else if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    Some(format!("http://{host}:{}/", addr.port()))
}

/// Overrides the dashboard address that alerts name.
pub const DASHBOARD_URL_ENV: &str = "CRAWLD_DASHBOARD_URL";
