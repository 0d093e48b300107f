//! The command line's shape: every command, its arguments and their
//! defaults (directories from the environment and systemd).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::export::Format;

#[derive(Debug, Parser)]
#[command(
    name = "crawld",
    version,
    about = "Keeps structured data from websites fresh."
)]
pub(super) struct Cli {
    /// More log output on stderr (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub(super) verbose: u8,
    #[command(subcommand)]
    pub(super) command: Command,
}

#[derive(Debug, Subcommand)]
pub(super) enum Command {
    /// Validate every file of the configs directory.
    Check {
        /// The configs directory to check [default: --configs, $CRAWLD_CONFIGS, $CONFIGURATION_DIRECTORY, else ./configs]
        #[arg(value_name = "DIR")]
        dir: Option<PathBuf>,
        #[command(flatten)]
        configs: ConfigsArg,
    },
    /// Show what a target's selectors extract from one page.
    Test {
        /// The target: its config file's name without .toml (`crawld status` lists them).
        target: String,
        /// The page to fetch (with --file: the URL the file's content stands for).
        url: Option<String>,
        /// Read the page from this file instead of fetching it.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        configs: ConfigsArg,
    },
    /// Run one crawl of a target in the foreground.
    Crawl {
        /// The target: its config file's name without .toml (`crawld status` lists them).
        target: String,
        /// Refetch everything (default: an incremental run).
        #[arg(long)]
        full: bool,
        /// No progress bar, even on a terminal.
        #[arg(long)]
        no_progress: bool,
        /// Exit 3 when a monitor fires at the end of the run (for cron and CI).
        #[arg(long)]
        fail_on_alert: bool,
        /// Send alerts to the target's channels for monitors that start
        /// firing or resolve, as the daemon would.
        #[arg(long)]
        alert: bool,
        /// Send the run's item changes to the channels of the target's
        /// `[notify]`, as the daemon would.
        #[arg(long)]
        notify: bool,
        #[command(flatten)]
        configs: ConfigsArg,
        #[command(flatten)]
        state: StateArg,
        #[command(flatten)]
        cluster: ClusterArg,
    },
    /// Write a target's current items (or its changes) to stdout or a file.
    Export {
        /// The target: its config file's name without .toml (`crawld status` lists them).
        target: String,
        /// The change feed of the last run instead of the current items.
        #[arg(long)]
        changes: bool,
        /// With --changes: every change after this run id.
        #[arg(long, requires = "changes")]
        since: Option<u64>,
        #[arg(long, value_enum, default_value = "jsonl")]
        format: Format,
        /// Only items of this kind (needed for CSV when a target has several).
        #[arg(long)]
        kind: Option<String>,
        /// Write here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        reader: ReaderArgs,
    },
    /// Run the daemon: every target on its schedules, configs reloaded on change.
    Run {
        #[command(flatten)]
        configs: ConfigsArg,
        #[command(flatten)]
        state: StateArg,
        #[command(flatten)]
        cluster: ClusterArg,
        /// With --cluster: how long this node's runs stay its own when it
        /// stops answering (killed, cut off); then another node resumes them.
        #[arg(long, default_value = "30s", value_parser = parse_lease)]
        lease: humantime::Duration,
        /// Runs in progress across all targets, at most; further ones queue.
        #[arg(long, default_value_t = 4)]
        max_runs: usize,
        /// How long running runs get to checkpoint on SIGTERM.
        #[arg(long, default_value = "30s")]
        grace: humantime::Duration,
        /// Do not watch the configs directory (reload with SIGHUP or `crawld reload`).
        #[arg(long)]
        no_watch: bool,
        /// Also log to daily files in this directory (crawld.YYYY-MM-DD.log).
        #[arg(long)]
        log_dir: Option<PathBuf>,
        /// Log files kept with --log-dir.
        #[arg(long, default_value_t = 14)]
        log_keep: usize,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// The running daemon's targets, next fire times, runs and config errors.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArg,
    },
    /// Ask the running daemon to start a run of a target now.
    Trigger {
        /// The target: its config file's name without .toml (`crawld status` lists them).
        target: String,
        /// A full run (default: incremental).
        #[arg(long)]
        full: bool,
        #[command(flatten)]
        state: StateArg,
    },
    /// Ask the running daemon to stop a target's run; it resumes at its next start.
    StopRun {
        /// The target: its config file's name without .toml (`crawld status` lists them).
        target: String,
        #[command(flatten)]
        state: StateArg,
    },
    /// Ask the running daemon to re-read the configs directory (like SIGHUP).
    Reload {
        #[command(flatten)]
        state: StateArg,
    },
    /// The stored versions of one item, oldest first.
    History {
        /// The target: its config file's name without .toml (`crawld status` lists them).
        target: String,
        /// The item's key (its `_key` in `crawld export`).
        key: String,
        /// The item kind (needed when several kinds have this key).
        #[arg(long)]
        kind: Option<String>,
        #[command(flatten)]
        reader: ReaderArgs,
    },
    /// The URLs that failed in a run (default: the last one), with why.
    Failures {
        /// The target: its config file's name without .toml (`crawld status` lists them).
        target: String,
        /// The run (default: the target's last run).
        #[arg(long)]
        run: Option<u64>,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        reader: ReaderArgs,
    },
    /// A target's runs: id, mode, status, counts, duration.
    Runs {
        /// The target: its config file's name without .toml (`crawld status` lists them).
        target: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        reader: ReaderArgs,
    },
    /// Check, back up or restore the store.
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Alert channels.
    Alert {
        #[command(subcommand)]
        action: AlertAction,
    },
    /// Print the shell completion script for SHELL to stdout.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Write the man pages and completion scripts into DIR (for packaging).
    #[command(hide = true)]
    Manual {
        /// The directory to write man1/, man5/ and completions/ into.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Serve the bundled demo shop on 127.0.0.1 and crawl it.
    Demo {
        /// Port of the demo site on 127.0.0.1; the crawl follows it.
        #[arg(long, default_value_t = 8088)]
        port: u16,
        /// Only serve the site, until Ctrl-C; do not crawl.
        #[arg(long)]
        serve: bool,
        /// The site's files (default: examples/shop).
        #[arg(long)]
        site: Option<PathBuf>,
        #[command(flatten)]
        configs: ConfigsArg,
        #[command(flatten)]
        state: StateArg,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum StoreAction {
    /// Decode every record and verify the store's invariants (exit 74 on a problem).
    Check {
        #[command(flatten)]
        state: StateArg,
    },
    /// Write a consistent copy of the store to FILE.
    Backup {
        file: PathBuf,
        #[command(flatten)]
        state: StateArg,
    },
    /// Restore FILE into the state dir, which must hold no store yet.
    Restore {
        file: PathBuf,
        #[command(flatten)]
        state: StateArg,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum AlertAction {
    /// Send a test alert to a channel now (exit 69 when it refuses or is unreachable).
    Test {
        /// The channel's name ([channels.NAME]).
        channel: String,
        #[command(flatten)]
        configs: ConfigsArg,
    },
}

#[derive(Debug, Args)]
pub(super) struct ConfigsArg {
    /// Configs directory [default: $CONFIGURATION_DIRECTORY, else ./configs]
    #[arg(long, env = "CRAWLD_CONFIGS")]
    pub(super) configs: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(super) struct StateArg {
    /// State directory [default: $STATE_DIRECTORY, else ./state]
    #[arg(long, env = "CRAWLD_STATE")]
    pub(super) state: Option<PathBuf>,
    /// The daemon's control socket [default: $RUNTIME_DIRECTORY/control.sock, else STATE/control.sock]
    #[arg(long, env = "CRAWLD_SOCKET")]
    pub(super) socket: Option<PathBuf>,
}

/// The options of every command that reads a target's data (`export`,
/// `history`, `runs`, `failures`): one struct, so that they all take the
/// same ones. The configs say which targets exist and order CSV columns.
#[derive(Debug, Args)]
pub(super) struct ReaderArgs {
    #[command(flatten)]
    pub(super) configs: ConfigsArg,
    #[command(flatten)]
    pub(super) state: StateArg,
    #[command(flatten)]
    pub(super) cluster: ClusterArg,
}

#[derive(Debug, Args)]
pub(super) struct ClusterArg {
    /// Keep the store in this PostgreSQL database instead of in the state
    /// dir (postgres://USER[:PASSWORD]@HOST[:PORT]/DB; prefer the
    /// environment variable, which `ps` does not show)
    #[arg(
        long,
        env = "CRAWLD_CLUSTER",
        value_name = "URL",
        hide_env_values = true
    )]
    pub(super) cluster: Option<String>,
}

/// A lease time: from 1 s (a heartbeat is a sixth of it) to a day.
fn parse_lease(s: &str) -> Result<humantime::Duration, String> {
    let d: humantime::Duration = s.parse().map_err(|e| format!("{e}"))?;
    let secs = std::time::Duration::from(d).as_secs_f64();
    if !(1.0..=86_400.0).contains(&secs) {
        return Err(
            "give a lease between 1s and 1day (the default, 30s, suits most clusters)".into(),
        );
    }
    Ok(d)
}

impl ConfigsArg {
    pub(super) fn dir(&self) -> PathBuf {
        self.configs
            .clone()
            .unwrap_or_else(|| systemd_dir("CONFIGURATION_DIRECTORY", "configs"))
    }
}

impl StateArg {
    pub(super) fn dir(&self) -> PathBuf {
        self.state
            .clone()
            .unwrap_or_else(|| systemd_dir("STATE_DIRECTORY", "state"))
    }
}

/// systemd passes `StateDirectory=`/`ConfigurationDirectory=` as a
/// colon-separated list; the first entry is ours.
pub(super) fn systemd_dir(var: &str, fallback: &str) -> PathBuf {
    std::env::var_os(var)
        .and_then(|v| {
            v.to_str()
                .and_then(|s| s.split(':').next())
                .map(PathBuf::from)
        })
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from(fallback))
}

/// `crawld run`'s HTTP listener: the dashboard, /metrics and /api/.
#[derive(Debug, clap::Args)]
pub(super) struct HttpArgs {
    /// Serve the dashboard, /metrics and /api/ on this address (IP:PORT;
    /// port 0 picks a free one); `--http` alone means 127.0.0.1:9464.
    #[arg(
        long,
        env = "CRAWLD_HTTP",
        value_name = "ADDR",
        num_args = 0..=1,
        default_missing_value = "127.0.0.1:9464"
    )]
    pub(super) http: Option<String>,
    /// A file holding the token that every HTTP request must carry (or
    /// the token itself in CRAWLD_HTTP_TOKEN); required off loopback.
    #[arg(
        long,
        env = "CRAWLD_HTTP_TOKEN_FILE",
        value_name = "PATH",
        requires = "http"
    )]
    pub(super) http_token_file: Option<PathBuf>,
    /// Without a token, also answer requests for this host name (e.g. a
    /// reverse proxy's; repeatable). Loopback names always work.
    #[arg(
        long,
        env = "CRAWLD_HTTP_ALLOW_HOST",
        value_name = "NAME",
        value_delimiter = ',',
        requires = "http"
    )]
    pub(super) http_allow_host: Vec<String>,
    /// HTTP connections open at once, at most (also held under a quarter
    /// of the open-file limit); when full, the longest idle one closes.
    #[arg(long, value_name = "N", default_value_t = crate::web::MAX_CONNECTIONS, requires = "http")]
    pub(super) http_max_connections: usize,
    /// How long an HTTP client has to send a request's headers; an idle
    /// connection closes after it too.
    #[arg(
        long,
        value_name = "DURATION",
        default_value_t = crate::web::HEADER_TIMEOUT.into(),
        requires = "http"
    )]
    pub(super) http_header_timeout: humantime::Duration,
}

impl HttpArgs {
    /// The listener's config, when `--http` asks for one.
    pub(super) fn config(self) -> Option<crate::web::HttpConfig> {
        let addr = self.http?;
        Some(crate::web::HttpConfig {
            addr,
            token_file: self.http_token_file,
            allow_hosts: self.http_allow_host,
            max_connections: self.http_max_connections,
            header_timeout: self.http_header_timeout.into(),
        })
    }
}
