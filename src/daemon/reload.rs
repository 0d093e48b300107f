//! Loading the configs directory for the daemon: a broken file falls back to
//! its last good version (kept in `STATE/last-good/`, so a restart keeps it
//! too), the difference with the running set is computed, and the directory
//! is watched for changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_mini::{new_debouncer, notify::RecursiveMode, DebounceEventResult, Debouncer};
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
}

/// Loads `configs`, substituting the last good copy of each broken file.
pub fn load(configs: &Path, last_good: &Path) -> Result<Loaded, ConfigError> {
    let env = |v: &str| std::env::var(v).ok();
    let current = config::load_dir(configs)?;
    let broken: Vec<PathBuf> = current.errors.keys().cloned().collect();
    let substitutes: Vec<&PathBuf> = broken
        .iter()
        .filter(|p| p.file_name().is_some_and(|n| last_good.join(n).is_file()))
        .collect();
    if substitutes.is_empty() {
        return Ok(Loaded {
            errors: current.all_errors(),
            set: current.set,
            stale: Vec::new(),
        });
    }
    // Second pass: the same files, with the last good text of the broken ones.
    let mut files: config::ConfigFiles = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(configs)
        .map_err(|e| ConfigError::file(configs, format!("cannot read the configs directory: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| config::is_config_file(p))
        .collect();
    entries.sort();
    for path in entries {
        let text = match path.file_name() {
            Some(name) if substitutes.contains(&&path) => {
                std::fs::read_to_string(last_good.join(name))
            }
            _ => std::fs::read_to_string(&path),
        };
        files.push((path, text));
    }
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
    })
}

/// Keeps a copy of every file that loaded without errors, and drops copies
/// of files that are gone, so that a deleted target stays deleted.
pub fn save_last_good(
    configs: &Path,
    last_good: &Path,
    errors: &[ConfigError],
) -> std::io::Result<()> {
    std::fs::create_dir_all(last_good)?;
    let broken: Vec<&Path> = errors.iter().map(|e| e.file.as_path()).collect();
    for entry in std::fs::read_dir(configs)? {
        let path = entry?.path();
        if !config::is_config_file(&path) || broken.contains(&path.as_path()) {
            continue;
        }
        if let Some(name) = path.file_name() {
            let copy = last_good.join(name);
            let text = std::fs::read(&path)?;
            if std::fs::read(&copy).ok().as_deref() != Some(text.as_slice()) {
                let tmp = copy.with_extension("tmp");
                std::fs::write(&tmp, &text)?;
                std::fs::rename(&tmp, &copy)?;
            }
        }
    }
    for entry in std::fs::read_dir(last_good)? {
        let copy = entry?.path();
        if let Some(name) = copy.file_name() {
            if !configs.join(name).exists() {
                std::fs::remove_file(&copy)?;
            }
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
            Some(o) if o.source_hash != t.source_hash || o.profile != t.profile => {
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
/// renaming) and sends a signal for each batch of relevant changes. Errors,
/// including a kernel queue overflow, also signal: the reload rescans all.
pub fn watch(
    configs: &Path,
    tx: mpsc::UnboundedSender<()>,
) -> Result<Debouncer<notify_debouncer_mini::notify::RecommendedWatcher>, String> {
    let mut debouncer = new_debouncer(
        Duration::from_millis(200),
        move |res: DebounceEventResult| {
            let matters = match res {
                Ok(events) => events.iter().any(|e| relevant(&e.path)),
                Err(_) => true,
            };
            if matters {
                let _ = tx.send(());
            }
        },
    )
    .map_err(|e| format!("cannot watch {}: {e}", configs.display()))?;
    debouncer
        .watcher()
        .watch(configs, RecursiveMode::NonRecursive)
        .map_err(|e| format!("cannot watch {}: {e}", configs.display()))?;
    Ok(debouncer)
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
