//! Loads and compiles one fuzzed TOML file as the only file of a configs
//! directory (`config::load_files`, the path `load_dir` and reloads take).
//! Checks that it never panics and that every located error points inside
//! the text.

#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let files = vec![(PathBuf::from("fuzz.toml"), Ok(text.to_owned()))];
    // `${VAR}` expands to something, so the code past expansion runs too.
    let report = crawld::config::load_files(files, &|_| Some("x".to_owned()));
    let lines: Vec<&str> = text.split('\n').collect();
    for e in report.all_errors() {
        let _ = e.to_string();
        if let Some(p) = e.position {
            assert!(
                p.line >= 1 && p.line <= lines.len(),
                "line {} of {}",
                p.line,
                lines.len()
            );
            let width = lines[p.line - 1].chars().count();
            assert!(
                p.column >= 1 && p.column <= width + 1,
                "column {} of {width}",
                p.column
            );
        }
    }
});
