//! Man pages and shell completions, generated from the clap definitions in
//! [`super::args`] (and crawld.toml(5) from the configuration reference), so
//! that they never drift from what the binary accepts. `crawld completions
//! SHELL` prints one script; the hidden `crawld manual --out DIR` writes
//! everything a package installs (see packaging/build-deb).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

use super::args::Cli;
use super::markdown_roff;
use crate::error::Exit;

/// The configuration reference, which is also crawld.toml(5).
const CONFIGURATION_MD: &str = include_str!("../../docs/configuration.md");

/// The completion scripts a package installs, with the file name each
/// shell's loader looks for (bash-completion and fish by command name, zsh
/// by `_command`).
pub(super) const PACKAGED_SHELLS: [(Shell, &str); 3] = [
    (Shell::Bash, "crawld"),
    (Shell::Zsh, "_crawld"),
    (Shell::Fish, "crawld.fish"),
];

/// What `crawld(1)` says about exit codes, one line per [`Exit`]. A unit
/// test checks that every code `Exit::from_code` knows is here.
const EXIT_CODES: [(Exit, &str); 8] = [
    (
        Exit::Ok,
        "Completed (failed pages are counted in the summary, not here).",
    ),
    (Exit::Failed, "The run failed or was interrupted."),
    (Exit::Usage, "Bad command line, or an unknown target."),
    (
        Exit::Alert,
        "A monitor fires (crawld crawl --fail-on-alert).",
    ),
    (
        Exit::Unavailable,
        "An alert channel refused the alert or could not be reached.",
    ),
    (Exit::Store, "Store I/O error or corrupt store."),
    (
        Exit::Locked,
        "The state directory is held by another process.",
    ),
    (Exit::Config, "Configuration error."),
];

/// Why the man pages or completions could not be written.
#[derive(Debug, thiserror::Error)]
pub(super) enum ManualError {
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `crawld completions SHELL`: the script on stdout.
pub(super) fn completions(shell: Shell) -> Exit {
    let script = completion(shell);
    // A closed pipe (`crawld completions bash | head`) is not an error.
    let _ = std::io::stdout().lock().write_all(&script);
    Exit::Ok
}

/// `crawld manual --out DIR`: man1/, man5/ and completions/ under DIR.
pub(super) fn write_all(out: &Path) -> Exit {
    match write_manual(out) {
        Ok(()) => Exit::Ok,
        Err(e) => super::fail(Exit::Failed, e),
    }
}

/// The completion script for one shell.
pub(super) fn completion(shell: Shell) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut visible_command(), "crawld", &mut script);
    script
}

/// The command line without its hidden subcommands, which clap_complete
/// would otherwise offer (clap has no way to remove a subcommand, so this
/// is the root rebuilt with the visible ones).
fn visible_command() -> clap::Command {
    let cli = Cli::command();
    clap::Command::new("crawld")
        .version(env!("CARGO_PKG_VERSION"))
        .args(cli.get_arguments().cloned())
        .subcommands(cli.get_subcommands().filter(|s| !s.is_hide_set()).cloned())
}

/// Writes crawld(1), one page per subcommand (crawld-export(1), …),
/// crawld.toml(5), and the completion scripts of [`PACKAGED_SHELLS`].
fn write_manual(out: &Path) -> Result<(), ManualError> {
    let man1 = out.join("man1");
    let man5 = out.join("man5");
    let completions = out.join("completions");
    for dir in [&man1, &man5, &completions] {
        std::fs::create_dir_all(dir).map_err(|source| ManualError::Write {
            path: dir.clone(),
            source,
        })?;
    }
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, &man1)?;
    }
    write(&man1.join("crawld.1"), &main_page(&cmd))?;
    write(&man5.join("crawld.toml.5"), config_page().as_bytes())?;
    for (shell, name) in PACKAGED_SHELLS {
        write(&completions.join(name), &completion(shell))?;
    }
    Ok(())
}

/// A subcommand's page and those of its own subcommands
/// (crawld-store-backup(1)).
fn write_pages(cmd: &clap::Command, dir: &Path) -> Result<(), ManualError> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir)?;
    }
    let man = clap_mangen::Man::new(cmd.clone()).source(SOURCE);
    let mut page = Vec::new();
    man.render(&mut page).map_err(|source| ManualError::Write {
        path: dir.join(man.get_filename()),
        source,
    })?;
    let page = markdown_roff::ascii(&String::from_utf8_lossy(&page));
    write(&dir.join(man.get_filename()), page.as_bytes())
}

/// A page's footer names crawld and its version (clap_mangen's default is
/// the subcommand's own name).
const SOURCE: &str = concat!("crawld ", env!("CARGO_PKG_VERSION"));

/// crawld(1): clap's sections, with exit status, files and see also before
/// the version.
fn main_page(cmd: &clap::Command) -> Vec<u8> {
    use clap_mangen::roff::{bold, roman, Roff};
    let man = clap_mangen::Man::new(cmd.clone()).source(SOURCE);
    let mut page = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = man.render(&mut page);
    let page = String::from_utf8_lossy(&page);
    let mut extra = Roff::new();
    extra.control("SH", ["EXIT STATUS"]);
    for (exit, meaning) in EXIT_CODES {
        extra
            .control("TP", [])
            .text([bold((exit as u8).to_string())])
            .text([roman(meaning)]);
    }
    extra.control("SH", ["FILES"]);
    for (path, what) in [
        (
            "/etc/crawld/",
            "The configs directory under systemd: every *.toml file is a target or holds profiles and channels; see crawld.toml(5).",
        ),
        ("/var/lib/crawld/", "The state directory under systemd: the store."),
        (
            "/run/crawld/control.sock",
            "The running daemon's control socket (group crawld).",
        ),
    ] {
        extra.control("TP", []).text([bold(path)]).text([roman(what)]);
    }
    // Not hyphenated: a page name split at its dash reads as two.
    extra
        .control("SH", ["SEE ALSO"])
        .control("nh", [])
        .text([roman(see_also(cmd))])
        .control("hy", []);
    // clap_mangen's sections, then ours, then its VERSION (rendered one by
    // one, each would repeat the roff preamble).
    let at = page.find("\n.SH VERSION\n").map_or(page.len(), |i| i + 1);
    let page = format!("{}{}{}", &page[..at], extra.to_roff(), &page[at..]);
    markdown_roff::ascii(&page).into_bytes()
}

/// crawld.toml(5) and one page per subcommand.
fn see_also(cmd: &clap::Command) -> String {
    let mut pages = vec!["crawld.toml(5)".to_owned()];
    pages.extend(
        cmd.get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| format!("crawld-{}(1)", s.get_name())),
    );
    pages.push("systemd.exec(5)".to_owned());
    pages.join(", ")
}

/// crawld.toml(5), the configuration reference turned into roff.
pub(super) fn config_page() -> String {
    markdown_roff::page(
        &markdown_roff::Title {
            name: "crawld.toml",
            section: "5",
            source: SOURCE,
            manual: "File Formats",
            summary: "crawld's configuration files (targets, profiles, alert channels)",
            see_also: "crawld(1), crawld-check(1), crawld-test(1)",
        },
        CONFIGURATION_MD,
    )
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), ManualError> {
    std::fs::write(path, bytes).map_err(|source| ManualError::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exit_code_is_in_the_man_page() {
        for code in 0..=u8::MAX {
            if let Some(exit) = Exit::from_code(code) {
                assert!(
                    EXIT_CODES.iter().any(|(e, _)| *e == exit),
                    "exit code {code} is missing from crawld(1)'s EXIT STATUS"
                );
            }
        }
    }

    #[test]
    fn completions_leave_hidden_commands_out() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let script = String::from_utf8(completion(shell)).unwrap();
            assert!(!script.contains("manual"), "{shell}: {script}");
            assert!(script.contains("verbose"), "{shell}: the global flag");
        }
    }

    #[test]
    fn completions_name_every_subcommand() {
        let script = String::from_utf8(completion(Shell::Bash)).unwrap();
        for sub in Cli::command()
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
        {
            assert!(
                script.contains(sub.get_name()),
                "bash completion lacks {}",
                sub.get_name()
            );
        }
    }
}
