//! Every TOML example in README.md is a valid config file, as documented.

use crawld::config::load_dir_with_env;

#[test]
fn every_toml_block_of_the_readme_loads_without_errors() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut blocks = 0;
    let mut rest = readme.as_str();
    while let Some(start) = rest.find("```toml\n") {
        let body = &rest[start + 8..];
        let end = body.find("```").unwrap();
        blocks += 1;
        std::fs::write(dir.path().join(format!("block{blocks}.toml")), &body[..end]).unwrap();
        rest = &body[end + 3..];
    }
    assert!(blocks >= 2, "README has TOML examples");
    let env = |v: &str| {
        [
            "BOOKS_TOKEN",
            "PROXY_USER",
            "PROXY_PASS",
            "HOOK_TOKEN",
            "SMTP_PASS",
        ]
        .contains(&v)
        .then(|| "t".to_owned())
    };
    let report = load_dir_with_env(dir.path(), &env).unwrap();
    let errors: Vec<String> = report.all_errors().iter().map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    assert!(!report.set.targets.is_empty());
}
