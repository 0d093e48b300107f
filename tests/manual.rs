//! The man pages and shell completions a package installs: generated from
//! the binary itself (`crawld manual --out DIR`, `crawld completions SHELL`).

use std::path::Path;
use std::time::Duration;

use assert_cmd::Command;

fn crawld() -> Command {
    let mut cmd = Command::cargo_bin("crawld").unwrap();
    cmd.env_remove("RUST_LOG").timeout(Duration::from_secs(60));
    cmd
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The subcommands a user types, as `crawld --help` lists them.
const SUBCOMMANDS: [&str; 17] = [
    "check",
    "test",
    "crawl",
    "export",
    "run",
    "status",
    "trigger",
    "stop-run",
    "reload",
    "history",
    "failures",
    "runs",
    "store",
    "alert",
    "completions",
    "demo",
    "help",
];

/// `crawld manual --out DIR` into a new temporary DIR.
fn manual() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    crawld()
        .args(["manual", "--out"])
        .arg(dir.path())
        .assert()
        .success();
    dir
}

#[test]
fn manual_writes_every_page_and_completion() {
    let dir = manual();
    let man1 = dir.path().join("man1");
    let main = read(&man1.join("crawld.1"));
    assert!(main.contains(".TH crawld 1"), "{main}");
    assert!(main.contains(".SH \"EXIT STATUS\""), "{main}");
    // One page per subcommand (not `help`, not the hidden `manual`), and
    // per nested subcommand.
    for sub in SUBCOMMANDS.iter().filter(|s| **s != "help") {
        let page = read(&man1.join(format!("crawld-{sub}.1")));
        assert!(page.contains(&format!(".TH crawld-{sub} 1")), "{page}");
    }
    for nested in ["store-check", "store-backup", "store-restore", "alert-test"] {
        assert!(
            man1.join(format!("crawld-{nested}.1")).is_file(),
            "{nested}"
        );
    }
    assert!(!man1.join("crawld-manual.1").exists());
    assert!(!man1.join("crawld-help.1").exists());

    let toml5 = read(&dir.path().join("man5/crawld.toml.5"));
    assert!(toml5.starts_with(".TH crawld.toml 5"), "{toml5}");
    assert!(toml5.contains(".SH NAME\ncrawld.toml \\-"), "{toml5}");
    // Every key the parser accepts: the reference sets each as a code span,
    // which the page sets in bold.
    let mut missing = Vec::new();
    for (heading, keys) in crawld::config::documented_keys() {
        for key in keys {
            if !toml5.contains(&format!("\\fB{key}\\fR")) {
                missing.push(format!("{key} ({heading})"));
            }
        }
    }
    assert!(missing.is_empty(), "crawld.toml(5) lacks: {missing:?}");
    assert!(toml5.is_ascii(), "non-ASCII must be escaped");

    let completions = dir.path().join("completions");
    assert!(read(&completions.join("crawld")).contains("complete -F _crawld"));
    assert!(read(&completions.join("_crawld")).starts_with("#compdef crawld"));
    assert!(read(&completions.join("crawld.fish")).contains("complete -c crawld"));
}

#[test]
fn completions_print_the_script_for_each_shell() {
    let out = crawld().args(["completions", "bash"]).output().unwrap();
    assert!(out.status.success());
    let bash = String::from_utf8(out.stdout).unwrap();
    assert!(bash.contains("complete -F _crawld"), "{bash}");
    for sub in SUBCOMMANDS {
        assert!(bash.contains(sub), "bash completion lacks {sub}");
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = crawld().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        assert!(String::from_utf8(out.stdout).unwrap().contains("crawld"));
    }
    // An unknown shell is a usage error naming the ones there are.
    let out = crawld().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bash"));
}

#[test]
fn man_renders_the_pages_without_warnings() {
    // man-db's renderer is what a user runs; without it there is nothing
    // to check here (CI installs it for the package test).
    if std::process::Command::new("groff")
        .arg("--version")
        .output()
        .is_err()
    {
        return;
    }
    let dir = manual();
    for page in [
        "man1/crawld.1",
        "man1/crawld-export.1",
        "man5/crawld.toml.5",
    ] {
        let out = std::process::Command::new("groff")
            // Every warning but `break` (a long URL that cannot be
            // adjusted to the line width is no fault of the page).
            .args(["-man", "-Tutf8", "-ww", "-Wbreak", "-z"])
            .arg(dir.path().join(page))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.is_empty(),
            "{page}: {stderr}"
        );
    }
}

/// `crawld check DIR`, as an admin runs it on /etc/crawld: what it prints, if it passes.
fn check(dir: &Path) -> String {
    let out = crawld().arg("check").arg(dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The package's /etc/crawld holds only example.toml.disabled: a fresh
/// install has no target, and the example is a valid one once renamed.
#[test]
fn packaged_example_is_inactive_until_renamed() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/example.toml.disabled");
    let etc = tempfile::tempdir().unwrap();
    std::fs::copy(&example, etc.path().join("example.toml.disabled")).unwrap();
    let stdout = check(etc.path());
    assert!(stdout.contains(": 0 target(s)"), "{stdout}");

    std::fs::copy(&example, etc.path().join("books.toml")).unwrap();
    let stdout = check(etc.path());
    assert!(stdout.contains(": 1 target(s)"), "{stdout}");
}
