//! Writing a target's current items out as JSON Lines or CSV.
//!
//! Each item is its fields (in config order) plus metadata under names that
//! start with `_`, which field names may not use: `_kind`, `_key`, `_page`,
//! `_first_seen`, `_last_seen`, `_last_changed` (RFC 3339, UTC).

use std::io::Write;

use serde_json::{Map, Value};

use crate::config::Target;
use crate::ids::RunId;
use crate::ids::TargetId;
use crate::store::{ChangeEvent, ChangeKind, ItemRecord, RunRecord, Store, StoreError};

/// Output formats of `crawld export`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jsonl,
    Csv,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the export: {0}")]
    Write(#[from] std::io::Error),
    #[error("cannot write CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("target {target} has item kinds {kinds}: CSV needs one, choose it with --kind")]
    KindNeeded { target: TargetId, kinds: String },
}

const META: [&str; 6] = [
    "_kind",
    "_key",
    "_page",
    "_first_seen",
    "_last_seen",
    "_last_changed",
];

/// Writes the current (not removed) items of `target`, optionally of one kind.
/// `config` gives CSV its column order; without it columns follow the items.
/// Returns how many items were written.
pub fn export(
    store: &Store,
    target: &TargetId,
    config: Option<&Target>,
    kind: Option<&str>,
    format: Format,
    out: &mut dyn Write,
) -> Result<u64, ExportError> {
    let items = store.items(target).filter(|r| match r {
        Ok(item) => item.removed_ms.is_none() && kind.is_none_or(|k| item.kind == k),
        Err(_) => true,
    });
    match format {
        Format::Jsonl => {
            let mut n = 0;
            for item in items {
                serde_json::to_writer(&mut *out, &flatten(&item?)).map_err(std::io::Error::from)?;
                out.write_all(b"\n")?;
                n += 1;
            }
            out.flush()?;
            Ok(n)
        }
        Format::Csv => {
            let items: Vec<ItemRecord> = items.collect::<Result<_, _>>()?;
            let mut kinds: Vec<&str> = items.iter().map(|i| i.kind.as_str()).collect();
            kinds.sort_unstable();
            kinds.dedup();
            if kinds.len() > 1 {
                return Err(ExportError::KindNeeded {
                    target: target.clone(),
                    kinds: kinds.join(", "),
                });
            }
            let columns = csv_columns(config, kinds.first().copied(), &items);
            let mut w = csv::Writer::from_writer(out);
            w.write_record(&columns)?;
            for item in &items {
                let flat = flatten(item);
                w.write_record(columns.iter().map(|c| cell(flat.get(c.as_str()))))?;
            }
            w.flush()?;
            Ok(items.len() as u64)
        }
    }
}

fn csv_columns(config: Option<&Target>, kind: Option<&str>, items: &[ItemRecord]) -> Vec<String> {
    let mut columns: Vec<String> = vec!["_key".into()];
    let configured = config.and_then(|t| t.items.iter().find(|k| Some(k.name.as_str()) == kind));
    match configured {
        Some(k) => columns.extend(k.fields.iter().map(|f| f.name.clone())),
        None => {
            for item in items {
                for name in item.value.keys() {
                    if !columns.contains(name) {
                        columns.push(name.clone());
                    }
                }
            }
        }
    }
    columns.extend(["_page", "_first_seen", "_last_seen", "_last_changed"].map(String::from));
    columns
}

/// A CSV cell: strings as they are, lists and objects as JSON, null as empty.
fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The item's fields followed by its metadata.
pub fn flatten(item: &ItemRecord) -> Map<String, Value> {
    let mut out = Map::with_capacity(item.value.len() + META.len());
    out.insert("_kind".into(), item.kind.clone().into());
    out.insert("_key".into(), item.key.clone().into());
    for (k, v) in &item.value {
        out.insert(k.clone(), v.clone());
    }
    out.insert("_page".into(), item.page.clone().into());
    out.insert("_first_seen".into(), rfc3339(item.first_seen_ms).into());
    out.insert("_last_seen".into(), rfc3339(item.last_seen_ms).into());
    out.insert("_last_changed".into(), rfc3339(item.last_changed_ms).into());
    out
}

/// Milliseconds since the epoch as RFC 3339 in UTC.
pub fn rfc3339(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

/// One line of the change feed.
pub fn change_line(event: &ChangeEvent) -> Value {
    let mut out = Map::new();
    out.insert(
        "change".into(),
        serde_json::to_value(event.change).unwrap_or(Value::Null),
    );
    out.insert("_kind".into(), event.kind.clone().into());
    out.insert("_key".into(), event.key.clone().into());
    if event.change == ChangeKind::Changed {
        out.insert("fields".into(), event.fields.clone().into());
    }
    out.insert("run".into(), event.run.0.into());
    out.insert("at".into(), rfc3339(event.at_ms).into());
    out.insert("_page".into(), event.page.clone().into());
    out.insert("value".into(), Value::Object(event.value.clone()));
    Value::Object(out)
}

/// Writes change events as JSON Lines: those of the target's last run (with
/// the runs it resumed), or, with `since`, of every run after that one.
pub fn export_changes(
    store: &Store,
    target: &TargetId,
    since: Option<RunId>,
    out: &mut dyn Write,
) -> Result<u64, ExportError> {
    let runs: Vec<RunRecord> = store.runs(target).collect::<Result<_, _>>()?;
    let ids: Vec<RunId> = match since {
        Some(after) => runs.iter().map(|r| r.id).filter(|&id| id > after).collect(),
        None => {
            let mut chain = Vec::new();
            let mut cursor = runs.last();
            while let Some(run) = cursor {
                chain.push(run.id);
                cursor = run
                    .resumed_from
                    .and_then(|p| runs.iter().find(|r| r.id == p));
            }
            chain.reverse();
            chain
        }
    };
    let mut n = 0;
    for id in ids {
        for event in store.events(target, id) {
            serde_json::to_writer(&mut *out, &change_line(&event?))
                .map_err(std::io::Error::from)?;
            out.write_all(b"\n")?;
            n += 1;
        }
    }
    out.flush()?;
    Ok(n)
}

/// Writes the run's change events as JSON Lines to the target's
/// `changes_jsonl` path (relative to the state dir).
pub fn write_run_changes(
    store: &Store,
    run: &RunRecord,
    template: &str,
) -> Result<std::path::PathBuf, StoreError> {
    let relative = template
        .replace("{target}", run.target.as_str())
        .replace("{run}", &run.id.to_string());
    let path = store.state_dir().join(relative);
    let io = |source| StoreError::Io {
        what: "cannot write the changes file",
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).map_err(io)?);
    for event in store.events(&run.target, run.id) {
        let line = change_line(&event?);
        serde_json::to_writer(&mut out, &line).map_err(|e| io(e.into()))?;
        std::io::Write::write_all(&mut out, b"\n").map_err(io)?;
    }
    std::io::Write::flush(&mut out).map_err(io)?;
    Ok(path)
}
