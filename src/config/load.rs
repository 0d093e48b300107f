//! Reads a configs directory: every `*.toml` file is parsed, profiles and
//! alert channels are resolved across files, and each target file is compiled. Errors are
//! collected per file so that a broken file costs only its own targets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::channel::{self, Channel};
use super::compile::{self, Context};
use super::error::{ConfigError, Source};
use super::profile::{self, Declared};
use super::raw::RawFile;
use super::typed;
use super::TargetSet;
use crate::ids::{ChannelName, ProfileName, TargetId};

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
    Ok(load_files(read_dir(dir)?, env))
}

/// A config file larger than this is an error, read no further: a real one
/// is a few kilobytes, and a 2 GB one must not take gigabytes to reject.
pub const MAX_CONFIG_FILE: u64 = 1024 * 1024;

/// Why a file of the configs directory could not be read. Each is an error
/// of its file: `check` reports it, and the daemon keeps running the file's
/// last good version, as for any broken file.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read: {0}")]
    Io(#[source] std::io::Error),
    #[error("larger than {cap} bytes, the most a config file may hold")]
    TooLarge { cap: u64 },
    #[error("a symlink to {}, which does not exist", target.display())]
    Dangling { target: PathBuf },
    #[error("a symlink that leads back to itself (a loop)")]
    Loop,
    #[error("its name is not valid UTF-8: rename it")]
    NameNotUtf8,
}

/// The configs directory's files, in order: their paths and what reading each gave.
pub type ConfigFiles = Vec<(PathBuf, Result<String, ReadError>)>;

/// Reads the configs directory's files (see [`is_config_file`]), in name
/// order. A `.toml` entry that cannot be read (a dangling symlink, a loop,
/// a name that is not UTF-8, a file over [`MAX_CONFIG_FILE`]) is listed
/// with its error, never skipped: a skipped file would look removed.
pub fn read_dir(dir: &Path) -> Result<ConfigFiles, ConfigError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| ConfigError::file(dir, format!("cannot read the configs directory: {e}")))?;
    let mut files: ConfigFiles = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let read = match p.file_name().map(|n| n.to_str()) {
                Some(Some(_)) if !is_config_file(&p) => return None,
                Some(Some(_)) => read_file(&p),
                // `x.toml` with a stray byte in its name is a config file
                // the user cannot otherwise learn is ignored.
                _ if looks_like_config(&p) => Err(ReadError::NameNotUtf8),
                _ => return None,
            };
            Some((p, read))
        })
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

/// Reads a config file, at most [`MAX_CONFIG_FILE`] bytes of it.
fn read_file(path: &Path) -> Result<String, ReadError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| link_error(path, e))?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > MAX_CONFIG_FILE {
        return Err(ReadError::TooLarge {
            cap: MAX_CONFIG_FILE,
        });
    }
    String::from_utf8(bytes).map_err(|e| {
        ReadError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text ({e})"),
        ))
    })
}

/// What opening `path` failed for, in the words of a symlink's trouble when
/// it is one.
fn link_error(path: &Path, e: std::io::Error) -> ReadError {
    if rustix::io::Errno::from_io_error(&e) == Some(rustix::io::Errno::LOOP) {
        return ReadError::Loop;
    }
    match std::fs::read_link(path) {
        Ok(target) if e.kind() == std::io::ErrorKind::NotFound => ReadError::Dangling { target },
        _ => ReadError::Io(e),
    }
}

/// Loads a set of config files already read (the daemon substitutes the last
/// good version of a broken file this way).
pub fn load_files(files: ConfigFiles, env: &dyn Fn(&str) -> Option<String>) -> LoadReport {
    let mut report = LoadReport::default();
    let mut parsed: Vec<(Source, RawFile)> = files
        .into_iter()
        .filter_map(|(path, text)| parse_file(path, text, &mut report))
        .collect();

    // Profiles are global: gather them from every file, then resolve.
    let (declared, declared_in) = declare_profiles(&mut parsed, &mut report);
    let mut profile_errors = Vec::new();
    let profiles = profile::resolve(&declared, env, &mut profile_errors);
    for e in profile_errors {
        push(&mut report, e);
    }
    let broken: BTreeMap<String, PathBuf> = declared_in
        .into_iter()
        .filter(|(n, _)| !profiles.contains_key(&ProfileName::new(n.as_str())))
        .collect();
    // Channels are global too.
    let (channels, broken_channels) = declare_channels(&mut parsed, env, &mut report);

    let unreadable: Vec<PathBuf> = report
        .errors
        .keys()
        .filter(|p| !parsed.iter().any(|(src, _)| &src.path == *p))
        .cloned()
        .collect();
    let cx = Context {
        profiles: &profiles,
        broken_profiles: &broken,
        unreadable: &unreadable,
        channels: &channels,
        broken_channels: &broken_channels,
        env,
    };
    for (source, raw) in &parsed {
        compile_file(source, raw, &cx, &mut report);
    }
    report.set.profiles = profiles;
    report.set.channels = channels;
    for errors in report.errors.values_mut() {
        errors.sort_by_key(|e| e.position.map(|p| (p.line, p.column)));
    }
    report
}

/// Parses one file into its raw form; `None` when it cannot be read or has
/// syntax, type or key errors (all pushed to `report`, and the target of its
/// name marked invalid).
fn parse_file(
    path: PathBuf,
    text: Result<String, ReadError>,
    report: &mut LoadReport,
) -> Option<(Source, RawFile)> {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            push(report, ConfigError::file(&path, e.to_string()));
            report.invalid_targets.insert(TargetId::new(stem), path);
            return None;
        }
    };
    let source = Source {
        path: path.clone(),
        text: text.into(),
    };
    // Every syntax error of the file at once; then every type or key error,
    // located and named by its dotted key.
    let (doc, syntax) = toml::de::DeTable::parse_recoverable(&source.text);
    if !syntax.is_empty() {
        // The first error of each line: later ones on a line are mostly its echoes.
        let mut lines = std::collections::BTreeSet::new();
        for e in syntax {
            let span = e.span().unwrap_or(0..0);
            let error = source.error(span, None, e.message().trim_end().to_owned());
            if lines.insert(error.position.map(|p| p.line)) {
                push(report, error);
            }
        }
        report.invalid_targets.insert(TargetId::new(stem), path);
        return None;
    }
    match typed::raw_file(&source, &doc) {
        Ok(raw) => Some((source, raw)),
        Err(errors) => {
            for e in errors {
                push(report, e);
            }
            // Whatever this file declared is unknown; a target of the same name must not run.
            report.invalid_targets.insert(TargetId::new(stem), path);
            None
        }
    }
}

/// Takes the profiles out of every parsed file: those that may be declared,
/// by name, and the file that declared each. A built-in name, a second
/// declaration or an invalid name is an error pushed to `report`.
fn declare_profiles(
    parsed: &mut [(Source, RawFile)],
    report: &mut LoadReport,
) -> (BTreeMap<String, Declared>, BTreeMap<String, PathBuf>) {
    let builtins = profile::builtins();
    let mut declared: BTreeMap<String, Declared> = BTreeMap::new();
    let mut declared_in: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (source, raw) in parsed {
        for (name, p) in std::mem::take(&mut raw.profiles) {
            let key = Some(format!("profiles.{name}"));
            if builtins.contains_key(&ProfileName::new(name.as_str())) {
                let e = source.error(p.span(), key, format!("{name:?} is a built-in profile and cannot be redefined; use extends = \"{name}\" in a profile of another name"));
                push(report, e);
            } else if let Some(first) = declared_in.get(&name) {
                let e = source.error(
                    p.span(),
                    key,
                    format!("profile {name:?} is already defined in {}", first.display()),
                );
                push(report, e);
            } else if !valid_name(&name) {
                let e = source.error(
                    p.span(),
                    key,
                    "profile names may use letters, digits, - and _",
                );
                push(report, e);
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
    (declared, declared_in)
}

/// The compiled channels of every file, and the names of those that were
/// declared but did not compile, with their file.
type DeclaredChannels = (
    BTreeMap<ChannelName, Arc<Channel>>,
    BTreeMap<String, PathBuf>,
);

/// Takes the channels out of every parsed file and compiles them. A second
/// declaration of a name, an invalid name or a channel's errors are pushed
/// to `report`.
fn declare_channels(
    parsed: &mut [(Source, RawFile)],
    env: &dyn Fn(&str) -> Option<String>,
    report: &mut LoadReport,
) -> DeclaredChannels {
    let mut compiled = BTreeMap::new();
    let mut declared_in: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (source, raw) in parsed {
        for (name, c) in std::mem::take(&mut raw.channels) {
            let key = Some(format!("channels.{name}"));
            if let Some(first) = declared_in.get(&name) {
                let message = format!("channel {name:?} is already defined in {}", first.display());
                push(report, source.error(c.span(), key, message));
                continue;
            }
            if !valid_name(&name) {
                let message = "channel names may use letters, digits, - and _";
                push(report, source.error(c.span(), key, message));
                continue;
            }
            declared_in.insert(name.clone(), source.path.clone());
            match channel::compile(&name, &c, source, env) {
                Ok(ch) => {
                    compiled.insert(ch.name.clone(), Arc::new(ch));
                }
                Err(errors) => {
                    for e in errors {
                        push(report, e);
                    }
                }
            }
        }
    }
    let broken = declared_in
        .into_iter()
        .filter(|(n, _)| !compiled.contains_key(&ChannelName::new(n.as_str())))
        .collect();
    (compiled, broken)
}

/// Compiles the target a parsed file declares, named by its file, into
/// `report`; a file without `start_urls` holds only profiles and channels.
fn compile_file(source: &Source, raw: &RawFile, cx: &Context, report: &mut LoadReport) {
    let stem = source
        .path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if raw.start_urls.is_none() {
        if let Some((key, span)) = first_target_key(raw) {
            let message = format!("`{key}` is a target key, but this file has no start_urls; a target needs start_urls, and a file of profiles and channels holds only [profiles.*] and [channels.*]");
            push(report, source.error(span, Some(key.to_owned()), message));
        }
        return;
    }
    let id = TargetId::new(stem.as_str());
    if !valid_name(&stem) {
        push(report, ConfigError::file(&source.path, format!("target name {stem:?} (from the file name) may use only letters, digits, - and _")));
        report.invalid_targets.insert(id, source.path.clone());
        return;
    }
    match compile::target(id.clone(), raw, source, cx) {
        Ok(t) => {
            report.set.targets.insert(id, Arc::new(t));
        }
        Err(errors) => {
            for e in errors {
                push(report, e);
            }
            report.invalid_targets.insert(id, source.path.clone());
        }
    }
}

fn push(report: &mut LoadReport, e: ConfigError) {
    report.errors.entry(e.file.clone()).or_default().push(e);
}

/// `*.toml`, not hidden, not an editor's backup or swap file, and not a
/// directory, FIFO or device (a symlink counts as what it leads to; one
/// that leads nowhere counts as a file, so that its error is reported).
pub fn is_config_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.')
        && name.ends_with(".toml")
        && match std::fs::metadata(path) {
            Ok(m) => m.is_file(),
            Err(_) => path.symlink_metadata().is_ok_and(|m| m.is_symlink()),
        }
}

/// A name that is not UTF-8 but reads as `*.toml`, not hidden.
fn looks_like_config(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    path.file_name()
        .map(|n| n.as_bytes())
        .is_some_and(|n| !n.starts_with(b".") && n.ends_with(b".toml"))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The first target key set in a file, with its span.
fn first_target_key(raw: &RawFile) -> Option<(&'static str, std::ops::Range<usize>)> {
    let spans = [
        ("profile", raw.profile.as_ref().map(|v| v.span())),
        ("max_pages", raw.max_pages.as_ref().map(|v| v.span())),
        ("schedule", raw.schedule.as_ref().map(|v| v.span())),
        (
            "full_schedule",
            raw.full_schedule.as_ref().map(|v| v.span()),
        ),
        ("headers", raw.headers.as_ref().map(|v| v.span())),
        ("strip_params", raw.strip_params.as_ref().map(|v| v.span())),
        ("follow", raw.follow.as_ref().map(|v| v.span())),
        ("items", raw.items.as_ref().map(|v| v.span())),
        ("domains", raw.domains.as_ref().map(|v| v.span())),
        (
            "resume_within",
            raw.resume_within.as_ref().map(|v| v.span()),
        ),
        (
            "keep_versions",
            raw.keep_versions.as_ref().map(|v| v.span()),
        ),
        ("keep_runs", raw.keep_runs.as_ref().map(|v| v.span())),
        ("output", raw.output.as_ref().map(|v| v.span())),
        ("monitor", raw.monitor.as_ref().map(|v| v.span())),
        ("alerts", raw.alerts.as_ref().map(|v| v.span())),
        ("notify", raw.notify.as_ref().map(|v| v.span())),
    ];
    spans
        .into_iter()
        .filter_map(|(k, s)| Some((k, s?)))
        .min_by_key(|(_, s)| s.start)
}
