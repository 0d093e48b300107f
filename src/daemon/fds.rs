//! The daemon's file descriptor budget. Crawls open a socket per host
//! connection and spill files, the store its files, and the HTTP servers a
//! socket per client: the soft `RLIMIT_NOFILE` (often 1024) is raised to
//! the hard limit at start, so that the crawl and the store are not the
//! first to run short; the HTTP servers cap their own share
//! ([`crate::web::accept`]).

use tracing::{debug, warn};

/// Raises the soft open-file limit to the hard one.
pub fn raise_open_files() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return;
    }
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => debug!(
            from = ?limit.current,
            to = ?limit.maximum,
            "Raised the open-file limit."
        ),
        Err(e) => warn!(
            limit = ?limit.current,
            error = %e,
            "Cannot raise the open-file limit: crawls and connections share the current one."
        ),
    }
}
