//! Process exit codes, one table used by every command (README mirrors it),
//! and [`chain`], an error told with its sources.

/// How a crawld process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Completed (failed pages are counted in the summary, not here).
    Ok = 0,
    /// The run failed or was interrupted.
    Failed = 1,
    /// Bad command line.
    Usage = 2,
    /// A monitor fires (`crawld crawl --fail-on-alert`).
    Alert = 3,
    /// An alert channel refused the alert or could not be reached
    /// (sysexits EX_UNAVAILABLE).
    Unavailable = 69,
    /// Store I/O error or corrupt store (sysexits EX_IOERR).
    Store = 74,
    /// The state dir is held by another process (EX_TEMPFAIL).
    Locked = 75,
    /// Configuration error (EX_CONFIG).
    Config = 78,
}

impl Exit {
    /// The exit code of a number, for codes passed between processes.
    pub fn from_code(code: u8) -> Option<Exit> {
        [
            Exit::Ok,
            Exit::Failed,
            Exit::Usage,
            Exit::Alert,
            Exit::Unavailable,
            Exit::Store,
            Exit::Locked,
            Exit::Config,
        ]
        .into_iter()
        .find(|e| *e as u8 == code)
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
    }
}

/// An error and its sources, each once (some errors repeat their source).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
