//! Loading the configs directory for the daemon: a broken file falls back to
//! its last good version (kept in `STATE/last-good/`, so a restart keeps it
//! too), and the difference with the running set is computed. A file that
//! cannot be read (a dangling symlink, a loop, a name that is not UTF-8, a
//! file over the size cap) is broken like one with a syntax error: its
//! target keeps its last good version, never counts as removed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{error, info};

use crate::config::{self, ConfigError, Target, TargetSet};
use crate::ids::TargetId;

/// The configs as the daemon runs them.
#[derive(Debug, Default)]
pub struct Loaded {
    pub set: TargetSet,
    /// Every error of the current files, also of files whose last good version runs.
    pub errors: Vec<ConfigError>,
    /// Targets running their last good version because their file is broken.
    pub stale: Vec<TargetId>,
    /// The files that loaded without errors, with the text that was loaded:
    /// the next last good versions.
    pub good: Vec<(PathBuf, String)>,
}

/// Loads `configs`, substituting the last good copy of each broken file.
pub fn load(configs: &Path, last_good: &Path) -> Result<Loaded, ConfigError> {
    let env = |v: &str| std::env::var(v).ok();
    let files = config::read_dir(configs)?;
    let texts: Vec<(PathBuf, Option<String>)> = files
        .iter()
        .map(|(p, t)| (p.clone(), t.as_ref().ok().cloned()))
        .collect();
    let current = config::load_files(files, &env);
    // Exactly the texts that compiled become the last good versions.
    let good: Vec<(PathBuf, String)> = texts
        .iter()
        .filter(|(p, _)| !current.errors.contains_key(p))
        .filter_map(|(p, t)| Some((p.clone(), t.clone()?)))
        .collect();
    let substitutes: Vec<(PathBuf, String)> = texts
        .iter()
        .filter(|(p, _)| current.errors.contains_key(p))
        .filter_map(|(p, _)| {
            let copy = last_good.join(p.file_name()?);
            Some((p.clone(), std::fs::read_to_string(copy).ok()?))
        })
        .collect();
    if substitutes.is_empty() {
        return Ok(Loaded {
            errors: current.all_errors(),
            set: current.set,
            stale: Vec::new(),
            good,
        });
    }
    // Second pass: the same texts, with the last good version of the broken files.
    let files: config::ConfigFiles = texts
        .into_iter()
        .filter_map(|(p, t)| match substitutes.iter().find(|(s, _)| s == &p) {
            Some((_, old)) => Some((p, Ok(old.clone()))),
            None => Some((p, Ok(t?))),
        })
        .collect();
    let merged = config::load_files(files, &env);
    let stale = merged
        .set
        .targets
        .keys()
        .filter(|id| current.invalid_targets.contains_key(*id))
        .cloned()
        .collect();
    Ok(Loaded {
        set: merged.set,
        errors: current.all_errors(),
        stale,
        good,
    })
}

/// Keeps a copy of every file that loaded without errors, and drops copies
/// of files that are gone, so that a deleted target stays deleted.
pub fn save_last_good(last_good: &Path, loaded: &Loaded) -> std::io::Result<()> {
    crate::files::create_private_dir(last_good)?;
    for (path, text) in &loaded.good {
        let Some(name) = path.file_name() else {
            continue;
        };
        let copy = last_good.join(name);
        if std::fs::read_to_string(&copy).ok().as_deref() != Some(text.as_str()) {
            let tmp = copy.with_extension("tmp");
            std::fs::write(&tmp, text)?;
            private(&tmp)?;
            std::fs::rename(&tmp, &copy)?;
        } else {
            // A copy an older crawld made under the umask.
            private(&copy)?;
        }
    }
    let present: Vec<&std::ffi::OsStr> = loaded
        .good
        .iter()
        .filter_map(|(p, _)| p.file_name())
        .chain(loaded.errors.iter().filter_map(|e| e.file.file_name()))
        .collect();
    for entry in std::fs::read_dir(last_good)? {
        let copy = entry?.path();
        if copy.file_name().is_some_and(|n| !present.contains(&n)) {
            std::fs::remove_file(&copy)?;
        }
    }
    Ok(())
}

/// Makes a last good copy 0600: a config may hold a token, whatever mode
/// the file had before.
fn private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

/// What a reload changes.
#[derive(Debug, Default)]
pub struct Diff {
    pub added: Vec<Arc<Target>>,
    pub removed: Vec<TargetId>,
    pub changed: Vec<Arc<Target>>,
}

/// The difference between the running set and a new one.
pub fn diff(old: &TargetSet, new: &TargetSet) -> Diff {
    let mut d = Diff::default();
    for (id, t) in &new.targets {
        match old.targets.get(id) {
            None => d.added.push(t.clone()),
            Some(o) if o.source_hash != t.source_hash || !o.profiles().eq(t.profiles()) => {
                d.changed.push(t.clone())
            }
            Some(_) => {}
        }
    }
    d.removed = old
        .targets
        .keys()
        .filter(|id| !new.targets.contains_key(*id))
        .cloned()
        .collect();
    d
}

/// What a load changed in the configuration errors, so that each is logged
/// once when it appears rather than at every reload.
#[derive(Debug, Default, PartialEq)]
pub struct ErrorNews<'a> {
    /// Every error of each file whose errors differ from the last load's.
    pub appeared: Vec<&'a ConfigError>,
    /// Files that had errors and now load.
    pub fixed: Vec<&'a Path>,
    /// Files that had errors and are gone.
    pub gone: Vec<&'a Path>,
}

/// Compares the errors of the running configuration (`old`) with a new load's.
pub fn error_news<'a>(old: &'a [ConfigError], new: &'a Loaded) -> ErrorNews<'a> {
    fn by_file(errors: &[ConfigError]) -> BTreeMap<&Path, Vec<&ConfigError>> {
        let mut out: BTreeMap<&Path, Vec<&ConfigError>> = BTreeMap::new();
        for e in errors {
            out.entry(e.file.as_path()).or_default().push(e);
        }
        out
    }
    let (old, current) = (by_file(old), by_file(&new.errors));
    let mut news = ErrorNews::default();
    for (file, errors) in &current {
        if old.get(file) != Some(errors) {
            news.appeared.extend(errors);
        }
    }
    for file in old.keys().filter(|f| !current.contains_key(*f)) {
        if new.good.iter().any(|(p, _)| p == file) {
            news.fixed.push(file);
        } else {
            news.gone.push(file);
        }
    }
    news
}

/// Logs each error when it appears, and each file that had errors and no longer has.
pub fn log_error_news(old: &[ConfigError], new: &Loaded) {
    let news = error_news(old, new);
    for e in &news.appeared {
        error!("Config error: {e}");
    }
    for file in &news.fixed {
        info!(file = %file.display(), "Config file fixed: it loads again.");
    }
    for file in &news.gone {
        info!(file = %file.display(), "Config file with errors removed.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(errors: &[ConfigError], good: &[&str]) -> Loaded {
        Loaded {
            errors: errors.to_vec(),
            good: good
                .iter()
                .map(|p| (PathBuf::from(p), String::new()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn an_error_is_news_once_and_its_fix_is_news() {
        let a = ConfigError::file(Path::new("a.toml"), "bad");
        let a2 = ConfigError::file(Path::new("a.toml"), "worse");
        let b = ConfigError::file(Path::new("b.toml"), "bad");
        let first = loaded(&[a.clone(), b.clone()], &[]);
        assert_eq!(error_news(&[], &first).appeared, vec![&a, &b]);
        // The same errors again: nothing to say.
        assert_eq!(error_news(&first.errors, &first), ErrorNews::default());
        // a changed, b fixed.
        let next = loaded(std::slice::from_ref(&a2), &["b.toml"]);
        let news = error_news(&first.errors, &next);
        assert_eq!(news.appeared, vec![&a2]);
        assert_eq!(news.fixed, vec![Path::new("b.toml")]);
        // a deleted.
        let last = loaded(&[], &["b.toml"]);
        let news = error_news(&next.errors, &last);
        assert_eq!(news.gone, vec![Path::new("a.toml")]);
    }
}
