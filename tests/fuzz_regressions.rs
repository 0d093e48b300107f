//! Crashes the fuzz targets in `fuzz/` found, each kept as a regression
//! test with its minimised input (see fuzz/README.md).

use std::time::Duration;

use assert_cmd::Command;

/// Address space the restore below runs in: far more than crawld needs,
/// far less than the 4 GB the damaged length asks for.
const ADDRESS_SPACE_KIB: u64 = 2_000_000;

/// Found by the `backup` target (out-of-memory, malloc(4060117765)): a
/// backup whose first record length is 0xF2000000 made `store restore`
/// allocate the whole 4 GB before reading a byte of it. Where the memory is
/// not there (a small machine, strict overcommit, a ulimit) crawld aborted
/// (exit 134) and left its scratch store `db.restoring` behind. Now the
/// record is read as it arrives, and the file is "truncated".
#[test]
fn a_huge_record_length_in_a_backup_is_a_truncated_file_not_an_abort() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("min.bin");
    std::fs::write(&file, b"CRAWLD-BACKUP 1\n\xf2\x00\x00\x00").unwrap();
    let state = dir.path().join("state");
    let crawld = assert_cmd::cargo::cargo_bin("crawld");
    let script = format!("ulimit -v {ADDRESS_SPACE_KIB} && exec \"$0\" \"$@\"");
    let out = Command::new("sh")
        .args(["-c", &script])
        .arg(&crawld)
        .args(["store", "restore", "--state"])
        .arg(&state)
        .arg(&file)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(74), "{stderr}");
    assert!(stderr.contains("truncated"), "{stderr}");
    assert!(!state.join("db").exists());
    assert!(
        !state.join("db.restoring").exists(),
        "scratch store left behind"
    );
}
