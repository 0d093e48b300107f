//! Files of the configs directory that cannot be read are errors `check`
//! reports (exit 78), never silently skipped: a dangling symlink, a symlink
//! loop, a name that is not UTF-8, a file over the size cap. A huge file
//! costs `check` little memory, and a huge line a short message.

mod common;

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use common::crawld;

const GOOD: &str = "start_urls = [\"http://127.0.0.1:9/\"]\n";

fn configs_with_good(tmp: &Path) -> std::path::PathBuf {
    let configs = tmp.join("configs");
    std::fs::create_dir(&configs).unwrap();
    std::fs::write(configs.join("good.toml"), GOOD).unwrap();
    configs
}

/// `crawld check` of `configs`: its exit code and its output, both streams.
fn check(configs: &Path) -> (Option<i32>, String) {
    let out = crawld()
        .args(["check", "--configs"])
        .arg(configs)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn a_dangling_symlink_is_an_error_of_check() {
    let tmp = tempfile::tempdir().unwrap();
    let configs = configs_with_good(tmp.path());
    std::os::unix::fs::symlink(tmp.path().join("nowhere.toml"), configs.join("gone.toml")).unwrap();
    let (code, text) = check(&configs);
    assert_eq!(code, Some(78), "{text}");
    assert!(
        text.contains("gone.toml: a symlink to") && text.contains("which does not exist"),
        "{text}"
    );
}

#[test]
fn a_symlink_loop_is_an_error_of_check() {
    let tmp = tempfile::tempdir().unwrap();
    let configs = configs_with_good(tmp.path());
    std::os::unix::fs::symlink("b.toml", configs.join("a.toml")).unwrap();
    std::os::unix::fs::symlink("a.toml", configs.join("b.toml")).unwrap();
    let (code, text) = check(&configs);
    assert_eq!(code, Some(78), "{text}");
    assert!(
        text.contains("a.toml: a symlink that leads back to itself"),
        "{text}"
    );
    assert!(
        text.contains("b.toml: a symlink that leads back to itself"),
        "{text}"
    );
}

#[test]
fn a_name_that_is_not_utf8_is_an_error_of_check() {
    let tmp = tempfile::tempdir().unwrap();
    let configs = configs_with_good(tmp.path());
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.toml");
    std::fs::write(configs.join(name), GOOD).unwrap();
    let (code, text) = check(&configs);
    assert_eq!(code, Some(78), "{text}");
    assert!(text.contains("its name is not valid UTF-8"), "{text}");
}

#[test]
fn a_huge_file_is_refused_without_reading_it_and_a_huge_line_makes_a_short_message() {
    let tmp = tempfile::tempdir().unwrap();
    let configs = configs_with_good(tmp.path());
    // Sparse: 200 MiB that take no disk.
    let big = std::fs::File::create(configs.join("big.toml")).unwrap();
    big.set_len(200 << 20).unwrap();
    // A syntax error at the end of a line just under the cap.
    let line = format!("x = \"{}\" oops\n", "a".repeat(1_000_000));
    std::fs::write(configs.join("long.toml"), line).unwrap();

    let (code, text) = check(&configs);
    assert_eq!(code, Some(78), "{}", &text[..text.len().min(2000)]);
    assert!(
        text.contains("big.toml: larger than 1048576 bytes"),
        "{}",
        &text[..text.len().min(2000)]
    );
    assert!(
        text.contains("long.toml:1:"),
        "{}",
        &text[..text.len().min(2000)]
    );
    assert!(text.len() < 10_000, "{} bytes of output", text.len());
    // The children of this test binary are `check`s of files like these: the
    // biggest of them stayed far from reading 200 MiB.
    // SAFETY: rusage is plain integers, for which zero is a value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given.
    assert_eq!(
        unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) },
        0
    );
    let peak_kib = usage.ru_maxrss;
    assert!(peak_kib < 100 * 1024, "a check took {peak_kib} KiB");
}
