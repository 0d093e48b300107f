//! Who holds a state dir: the lock file names a pid, and that process's
//! command line says whether it is the daemon (reading commands then go
//! through its socket) or a foreground command such as `crawld crawl`
//! (they wait for it to finish: exit 75 at once, saying so).

use std::path::Path;

use clap::CommandFactory;

use super::args::Cli;

/// The process that holds a state dir's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Holder {
    /// `crawld run`.
    Daemon,
    /// Another crawld command: `crawl`, `demo`, `store restore`, …
    Command(String),
    /// Not a crawld process we can see (another pid namespace, no /proc).
    Unknown,
}

/// Who `pid` is, from its command line.
pub(super) fn holder(pid: &str) -> Holder {
    let Ok(pid) = pid.parse::<u32>() else {
        return Holder::Unknown;
    };
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(raw) => from_cmdline(&raw),
        Err(_) => Holder::Unknown,
    }
}

/// Who a process is, from its NUL-separated command line.
fn from_cmdline(raw: &[u8]) -> Holder {
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let crawld = args.first().is_some_and(|a0| {
        Path::new(a0)
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("crawld"))
    });
    if !crawld {
        return Holder::Unknown;
    }
    let Ok(matches) = Cli::command().try_get_matches_from(&args) else {
        return Holder::Unknown;
    };
    match matches.subcommand() {
        Some(("run", _)) => Holder::Daemon,
        Some((name, sub)) => Holder::Command(match sub.subcommand_name() {
            Some(action) => format!("{name} {action}"),
            None => name.to_owned(),
        }),
        None => Holder::Unknown,
    }
}

/// "state dir X is in use by …", naming the holder as well as we can.
pub(super) fn in_use(dir: &Path, pid: &str, holder: &Holder) -> String {
    let dir = dir.display();
    match holder {
        Holder::Daemon => format!("state dir {dir} is in use by the crawld daemon (pid {pid})"),
        Holder::Command(name) => {
            format!("state dir {dir} is in use by `crawld {name}` (pid {pid})")
        }
        Holder::Unknown => format!("state dir {dir} is in use by crawld pid {pid}"),
    }
}

/// Why a command that needs the state dir to itself cannot run, and what to do.
pub(super) fn locked_message(dir: &Path, pid: &str) -> String {
    let holder = holder(pid);
    let what = in_use(dir, pid, &holder);
    match holder {
        Holder::Daemon => format!(
            "{what}: this command needs the state dir to itself; stop the daemon first \
             (`crawld export`, `runs`, `history`, `failures` and `store backup` go through it)"
        ),
        Holder::Command(_) | Holder::Unknown => {
            format!("{what}: run this again when it finishes")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmdline(args: &[&str]) -> Vec<u8> {
        args.iter()
            .flat_map(|a| [a.as_bytes(), b"\0"].concat())
            .collect()
    }

    #[test]
    fn a_holder_is_told_by_its_command_line() {
        let crawl = cmdline(&["/usr/bin/crawld", "crawl", "shop", "--state", "/s"]);
        assert_eq!(from_cmdline(&crawl), Holder::Command("crawl".into()));
        let daemon = cmdline(&["crawld", "-v", "run", "--configs", "/c"]);
        assert_eq!(from_cmdline(&daemon), Holder::Daemon);
        let restore = cmdline(&["crawld", "store", "restore", "f.bak"]);
        assert_eq!(
            from_cmdline(&restore),
            Holder::Command("store restore".into())
        );
        // Another program with the same pid (another pid namespace).
        let other = cmdline(&["/usr/bin/python3", "crawl", "shop"]);
        assert_eq!(from_cmdline(&other), Holder::Unknown);
        assert_eq!(holder("unknown"), Holder::Unknown);
    }
}
