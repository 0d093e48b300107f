//! Reads a configs directory: every `*.toml` file is parsed, profiles are
//! resolved across files, and each target file is compiled. Errors are
//! collected per file so that a broken file costs only its own targets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::compile::{self, Context};
use super::error::{ConfigError, Source};
use super::profile::{self, Declared};
use super::raw::RawFile;
use super::TargetSet;
use crate::ids::{ProfileName, TargetId};

/// The outcome of loading a directory: what is valid, and what is not.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Every target and profile that compiled.
    pub set: TargetSet,
    /// Errors by file, in file order.
    pub errors: BTreeMap<PathBuf, Vec<ConfigError>>,
    /// Targets whose file exists but did not compile.
    pub invalid_targets: BTreeMap<TargetId, PathBuf>,
}

impl LoadReport {
    /// Every error of the load, in file order.
    pub fn all_errors(&self) -> Vec<ConfigError> {
        self.errors.values().flatten().cloned().collect()
    }

    /// The errors that stop `target` from running.
    pub fn target_errors(&self, target: &TargetId) -> Vec<ConfigError> {
        self.invalid_targets
            .get(target)
            .and_then(|f| self.errors.get(f))
            .cloned()
            .unwrap_or_default()
    }
}

/// Loads the configs directory, reading `${VAR}` from the process environment.
pub fn load_dir(dir: &Path) -> Result<LoadReport, ConfigError> {
    load_dir_with_env(dir, &|v| std::env::var(v).ok())
}

/// Loads the configs directory with a given environment (for tests).
pub fn load_dir_with_env(
    dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<LoadReport, ConfigError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| ConfigError::file(dir, format!("cannot read the configs directory: {e}")))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_config_file(p))
        .collect();
    paths.sort();

    let mut report = LoadReport::default();
    let mut parsed: Vec<(Source, RawFile)> = Vec::new();
    for path in paths {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                push(
                    &mut report,
                    ConfigError::file(&path, format!("cannot read: {e}")),
                );
                report.invalid_targets.insert(TargetId::new(stem), path);
                continue;
            }
        };
        let source = Source {
            path: path.clone(),
            text: text.into(),
        };
        match toml::from_str::<RawFile>(&source.text) {
            Ok(raw) => parsed.push((source, raw)),
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                let message = e.message().trim_end().to_owned();
                push(&mut report, source.error(span, None, message));
                // Whatever this file declared is unknown; a target of the same name must not run.
                report.invalid_targets.insert(TargetId::new(stem), path);
            }
        }
    }

    // Profiles are global: gather them from every file, then resolve.
    let builtins = profile::builtins();
    let mut declared: BTreeMap<String, Declared> = BTreeMap::new();
    let mut declared_in: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (source, raw) in &mut parsed {
        for (name, p) in std::mem::take(&mut raw.profiles) {
            let key = Some(format!("profiles.{name}"));
            if builtins.contains_key(&ProfileName::new(name.as_str())) {
                let e = source.error(p.span(), key, format!("{name:?} is a built-in profile and cannot be redefined; use extends = \"{name}\" in a profile of another name"));
                push(&mut report, e);
            } else if let Some(first) = declared_in.get(&name) {
                let e = source.error(
                    p.span(),
                    key,
                    format!("profile {name:?} is already defined in {}", first.display()),
                );
                push(&mut report, e);
            } else if !valid_name(&name) {
                let e = source.error(
                    p.span(),
                    key,
                    "profile names may use letters, digits, - and _",
                );
                push(&mut report, e);
            } else {
                declared_in.insert(name.clone(), source.path.clone());
                declared.insert(
                    name,
                    Declared {
                        raw: p,
                        source: source.clone(),
                    },
                );
            }
        }
    }
    let mut profile_errors = Vec::new();
    let profiles = profile::resolve(&declared, &mut profile_errors);
    for e in profile_errors {
        push(&mut report, e);
    }
    let broken: BTreeMap<String, PathBuf> = declared_in
        .into_iter()
        .filter(|(n, _)| !profiles.contains_key(&ProfileName::new(n.as_str())))
        .collect();

    let env_lookup = env;
    let cx = Context {
        profiles: &profiles,
        broken_profiles: &broken,
        env: env_lookup,
    };
    for (source, raw) in &parsed {
        let stem = source
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if raw.start_urls.is_none() {
            if has_target_keys(raw) {
                push(&mut report, ConfigError::file(&source.path, "this file sets target keys but has no start_urls; a target needs start_urls (a file of profiles only may hold nothing but [profiles.*])"));
            }
            continue;
        }
        let id = TargetId::new(stem.as_str());
        if !valid_name(&stem) {
            push(&mut report, ConfigError::file(&source.path, format!("target name {stem:?} (from the file name) may use only letters, digits, - and _")));
            report.invalid_targets.insert(id, source.path.clone());
            continue;
        }
        match compile::target(id.clone(), raw, source, &cx) {
            Ok(t) => {
                report.set.targets.insert(id, Arc::new(t));
            }
            Err(errors) => {
                for e in errors {
                    push(&mut report, e);
                }
                report.invalid_targets.insert(id, source.path.clone());
            }
        }
    }
    report.set.profiles = profiles;
    for errors in report.errors.values_mut() {
        errors.sort_by_key(|e| e.position.map(|p| (p.line, p.column)));
    }
    Ok(report)
}

fn push(report: &mut LoadReport, e: ConfigError) {
    report.errors.entry(e.file.clone()).or_default().push(e);
}

/// `*.toml`, not hidden, not an editor's backup or swap file.
fn is_config_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.') && name.ends_with(".toml") && path.is_file()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn has_target_keys(raw: &RawFile) -> bool {
    raw.profile.is_some()
        || raw.max_pages.is_some()
        || raw.schedule.is_some()
        || raw.full_schedule.is_some()
        || raw.headers.is_some()
        || raw.strip_params.is_some()
        || raw.follow.is_some()
        || raw.items.is_some()
        || raw.resume_within.is_some()
        || raw.keep_versions.is_some()
        || raw.keep_runs.is_some()
        || raw.output.is_some()
}
