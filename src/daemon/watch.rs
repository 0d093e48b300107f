//! Watching the configs directory for changes that call for a reload.
//!
//! The directory is watched (not its files: editors replace them by
//! renaming), and so is its parent, because the directory itself may be
//! replaced: `mv configs configs.old; mkdir configs`, or a symlink to it
//! swapped. A watch follows an inode, not a name, so the watcher is armed
//! again on the directory the path names now whenever that changed; the
//! supervisor asks before each reload and on a periodic check.
//!
//! Kubernetes mounts a ConfigMap as `configs/books.toml -> ..data/books.toml`
//! and `..data -> ..2026_01_01_…/`, and updates it by renaming a new
//! `..data` symlink over the old one: that rename is a change, though
//! `..data` is hidden.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// How often the supervisor checks that the watched directory is still the
/// one the configs path names (in case the parent's events were missed).
pub const RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// The ConfigMap symlink whose replacement is a change of every file.
const CONFIGMAP_DATA: &str = "..data";

/// A watch on the configs directory and its parent.
pub struct ConfigWatcher {
    /// The configs directory, absolute.
    configs: PathBuf,
    tx: mpsc::UnboundedSender<()>,
    watcher: RecommendedWatcher,
    /// Device and inode of the directory the watch is on.
    watched: Option<(u64, u64)>,
}

impl ConfigWatcher {
    /// Watches `configs`; every change of content is signalled on `tx` (the
    /// daemon waits for a quiet period before it reloads, which debounces
    /// bursts). Watcher errors also signal: a reload rescans everything.
    pub fn start(configs: &Path, tx: mpsc::UnboundedSender<()>) -> Result<Self, String> {
        let configs = std::path::absolute(configs)
            .map_err(|e| format!("cannot watch {}: {e}", configs.display()))?;
        let (watcher, watched) = arm(&configs, &tx)?;
        Ok(ConfigWatcher {
            configs,
            tx,
            watcher,
            watched,
        })
    }

    /// Arms the watch again when the configs path names another directory
    /// than the one watched; true when it did (a reload is due).
    pub fn rearm(&mut self) -> bool {
        let now = identity(&self.configs);
        if now == self.watched {
            return false;
        }
        match arm(&self.configs, &self.tx) {
            Ok((watcher, watched)) => {
                self.watcher = watcher;
                self.watched = watched;
            }
            Err(e) => {
                tracing::warn!(error = %e, "Config changes will need SIGHUP or `crawld reload`.");
                // Checked again at the next reload or periodic check.
                self.watched = now;
            }
        }
        true
    }
}

impl std::fmt::Debug for ConfigWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigWatcher")
            .field("configs", &self.configs)
            .field("watched", &self.watched)
            .finish_non_exhaustive()
    }
}

/// Device and inode of the directory `path` names now (symlinks followed).
fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// A watcher on `configs` (when it exists) and its parent.
fn arm(
    configs: &Path,
    tx: &mpsc::UnboundedSender<()>,
) -> Result<(RecommendedWatcher, Option<(u64, u64)>), String> {
    let dir = configs.to_path_buf();
    let tx = tx.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let matters = match res {
            Ok(event) => relevant(&dir, &event),
            Err(_) => true,
        };
        if matters {
            let _ = tx.send(());
        }
    })
    .map_err(|e| format!("cannot watch {}: {e}", configs.display()))?;
    // Before the directory, so that a replacement between the two is seen.
    // Without it (a parent we may not watch), the periodic check still
    // notices a replaced directory, only later.
    if let Some(parent) = configs.parent() {
        if let Err(e) = watcher.watch(parent, RecursiveMode::NonRecursive) {
            tracing::debug!(dir = %parent.display(), error = %e, "Cannot watch the configs directory's parent.");
        }
    }
    let watched = identity(configs);
    // A directory missing now (mid-replacement) is watched once it is back.
    if watched.is_some() {
        watcher
            .watch(configs, RecursiveMode::NonRecursive)
            .map_err(|e| format!("cannot watch {}: {e}", configs.display()))?;
    }
    Ok((watcher, watched))
}

/// Whether a changed name inside the configs directory can matter: not
/// hidden (but the ConfigMap's `..data`), not an editor's backup, swap or
/// temporary file.
fn relevant_name(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        // A name that is not UTF-8 is reported by the load: reload.
        return true;
    };
    if name == CONFIGMAP_DATA {
        return true;
    }
    !(name.starts_with('.')
        || name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".tmp"))
}

/// Whether an event can change what a load reads: a file created, written,
/// renamed, removed or made (un)readable. Opens, reads and closes after
/// reading are not: the daemon's own reload reads every file, so reacting
/// to them reloads forever.
fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Modify(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    }
}

/// Whether a watcher event calls for a reload: a change of a relevant name
/// in the configs directory, or of the directory itself (the parent's events
/// about its other entries are not). A kernel queue overflow ("rescan")
/// does: changes may have been lost.
fn relevant(configs: &Path, event: &notify::Event) -> bool {
    event.need_rescan()
        || (changes_content(&event.kind)
            && event
                .paths
                .iter()
                .any(|p| p == configs || (p.parent() == Some(configs) && relevant_name(p))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, ModifyKind, RemoveKind, RenameMode};

    fn event(kind: EventKind, path: &str) -> notify::Event {
        notify::Event::new(kind).add_path(PathBuf::from(path))
    }

    #[test]
    fn reads_of_the_configs_are_not_changes() {
        let configs = Path::new("/etc/configs");
        // What the daemon's own reload causes: it must not cause the next one.
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
        ] {
            assert!(!relevant(configs, &event(kind, "/etc/configs/shop.toml")));
        }
        for kind in [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Remove(RemoveKind::File),
        ] {
            assert!(relevant(configs, &event(kind, "/etc/configs/shop.toml")));
            assert!(!relevant(
                configs,
                &event(kind, "/etc/configs/.shop.toml.swp")
            ));
            // The ConfigMap's swap, and the directory replaced.
            assert!(relevant(configs, &event(kind, "/etc/configs/..data")));
            assert!(relevant(configs, &event(kind, "/etc/configs")));
            // Another entry of the parent.
            assert!(!relevant(configs, &event(kind, "/etc/other.toml")));
        }
        let overflow = notify::Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan);
        assert!(relevant(configs, &overflow));
    }
}
