//! Loading the configs directory for the daemon: a broken file falls back to
//! its last good version (kept in `STATE/last-good/`, so a restart keeps it
//! too), the difference with the running set is computed, and the directory
//! is watched for changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use notify_debouncer_mini::notify::{self, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

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

/// Reads the configs directory's files, in order.
fn read_files(configs: &Path) -> Result<config::ConfigFiles, ConfigError> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(configs)
        .map_err(|e| ConfigError::file(configs, format!("cannot read the configs directory: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| config::is_config_file(p))
        .collect();
    paths.sort();
    Ok(paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p);
            (p, text)
        })
        .collect())
}

/// Loads `configs`, substituting the last good copy of each broken file.
pub fn load(configs: &Path, last_good: &Path) -> Result<Loaded, ConfigError> {
    let env = |v: &str| std::env::var(v).ok();
    let files = read_files(configs)?;
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
    std::fs::create_dir_all(last_good)?;
    for (path, text) in &loaded.good {
        let Some(name) = path.file_name() else {
            continue;
        };
        let copy = last_good.join(name);
        if std::fs::read_to_string(&copy).ok().as_deref() != Some(text.as_str()) {
            let tmp = copy.with_extension("tmp");
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, &copy)?;
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

/// Whether a changed path can matter: not hidden, not an editor's backup,
/// swap or temporary file.
fn relevant(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !(name.starts_with('.')
        || name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".tmp"))
}

/// Watches the configs directory (not its files: editors replace them by
/// renaming) and signals every relevant change; the daemon waits for a quiet
/// period before it reloads, which debounces bursts. Errors, and a kernel
/// queue overflow ("rescan"), also signal: a reload rescans everything.
pub fn watch(configs: &Path, tx: mpsc::UnboundedSender<()>) -> Result<RecommendedWatcher, String> {
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let matters = match res {
            Ok(event) => event.need_rescan() || event.paths.iter().any(|p| relevant(p)),
            Err(_) => true,
        };
        if matters {
            let _ = tx.send(());
        }
    })
    .map_err(|e| format!("cannot watch {}: {e}", configs.display()))?;
    watcher
        .watch(configs, RecursiveMode::NonRecursive)
        .map_err(|e| format!("cannot watch {}: {e}", configs.display()))?;
    Ok(watcher)
}

/// Errors by file, for status.
pub fn errors_by_file(errors: &[ConfigError]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in errors {
        out.entry(e.file.display().to_string())
            .or_default()
            .push(e.to_string());
    }
    out
}
