//! Config loading (`config::load_files`) of arbitrary and damaged files:
//! never panics, and every located error points inside the text.

use std::path::PathBuf;

use proptest::prelude::*;

use crawld::config::load_files;

use super::cases;

const SHOP: &str = include_str!("../../configs/shop.toml");
const PROFILES: &str = include_str!("../../configs/profiles.toml");

/// Real config files with a slice replaced by arbitrary text: mostly
/// near-valid TOML, which reaches the type checks and the compiler.
fn config_text() -> impl Strategy<Value = String> {
    let mutated = (
        prop::sample::select(vec![SHOP, PROFILES]),
        any::<prop::sample::Index>(),
        0usize..40,
        "(.|\n){0,40}",
    )
        .prop_map(|(base, at, len, insert)| {
            let mut start = at.index(base.len() + 1);
            while !base.is_char_boundary(start) {
                start -= 1;
            }
            let mut end = (start + len).min(base.len());
            while !base.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}{insert}{}", &base[..start], &base[end..])
        });
    prop_oneof![mutated, any::<String>()]
}

proptest! {
    #![proptest_config(cases(128))]

    #[test]
    fn config_errors_point_inside_the_text(text in config_text()) {
        let files = vec![(PathBuf::from("prop.toml"), Ok(text.clone()))];
        let report = load_files(files, &|_| Some("x".to_owned()));
        let lines: Vec<&str> = text.split('\n').collect();
        for e in report.all_errors() {
            prop_assert!(!e.message.is_empty());
            let rendered = e.to_string();
            prop_assert!(rendered.starts_with("prop.toml"), "{}", rendered);
            if let Some(p) = e.position {
                prop_assert!(p.line >= 1 && p.line <= lines.len(), "line {} of {}: {}", p.line, lines.len(), rendered);
                let width = lines[p.line - 1].chars().count();
                prop_assert!(p.column >= 1 && p.column <= width + 1, "column {} of {}: {}", p.column, width, rendered);
            }
        }
    }
}
