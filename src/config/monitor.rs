//! `[monitor]`: the thresholds of a target's monitors. Every key has a
//! default, so a target without the table is monitored too.

use std::collections::BTreeMap;
use std::time::Duration;

use toml::Spanned;

use super::compile::Compiler;
use super::raw::RawMonitor;
use super::ItemKind;
use crate::health::MonitorKind;

/// Fire `failure_rate` above this share of failed pages…
pub const DEFAULT_FAILURE_RATE: f64 = 0.10;
/// …when the run attempted at least this many pages.
pub const DEFAULT_MIN_PAGES: u64 = 20;
/// Fire `item_count` when items fall by more than this share of the baseline.
pub const DEFAULT_ITEM_DROP: f64 = 0.5;
/// Fire `field_coverage` when a field's coverage falls by more than this.
pub const DEFAULT_COVERAGE_DROP: f64 = 0.2;
/// The baseline: the median of this many earlier completed runs of a mode.
pub const DEFAULT_BASELINE_RUNS: usize = 5;
/// Fire `overdue` after this many schedule intervals without a completed run.
pub const DEFAULT_OVERDUE: f64 = 2.0;
/// Re-send a still-firing alert after this long.
pub const DEFAULT_REPEAT: Duration = Duration::from_secs(24 * 3600);
/// Fire `host_blocked` when this share of a host's answers are 403 or 429.
pub const DEFAULT_BLOCKED_SHARE: f64 = 0.5;

/// A monitor fires only once its condition held in this many consecutive
/// judgements (Prometheus' `for:`): two for the rate monitors, which one
/// unlucky run can cross, one for the others.
pub fn default_fire_after(kind: MonitorKind) -> u32 {
    match kind {
        MonitorKind::FailureRate | MonitorKind::HostBlocked => 2,
        _ => 1,
    }
}

/// The most consecutive runs `fire_after` may ask for.
pub const MAX_FIRE_AFTER: i64 = 20;

/// `[monitor]`, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorConfig {
    pub failure_rate: f64,
    pub min_pages: u64,
    /// Fire `item_count` below this many items in a run (`None`: no floor).
    pub min_items: Option<u64>,
    pub item_drop: f64,
    pub coverage_drop: f64,
    /// Explicit floors per `KIND.FIELD`, shares 0..=1.
    pub min_coverage: BTreeMap<String, f64>,
    pub baseline_runs: usize,
    pub overdue: f64,
    pub repeat: Duration,
    pub blocked_share: f64,
    /// Monitors turned off for this target.
    pub disabled: Vec<MonitorKind>,
    /// `fire_after` as written; the others take [`default_fire_after`].
    pub fire_after: BTreeMap<MonitorKind, u32>,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            failure_rate: DEFAULT_FAILURE_RATE,
            min_pages: DEFAULT_MIN_PAGES,
            min_items: None,
            item_drop: DEFAULT_ITEM_DROP,
            coverage_drop: DEFAULT_COVERAGE_DROP,
            min_coverage: BTreeMap::new(),
            baseline_runs: DEFAULT_BASELINE_RUNS,
            overdue: DEFAULT_OVERDUE,
            repeat: DEFAULT_REPEAT,
            blocked_share: DEFAULT_BLOCKED_SHARE,
            disabled: Vec::new(),
            fire_after: BTreeMap::new(),
        }
    }
}

impl MonitorConfig {
    pub fn enabled(&self, kind: MonitorKind) -> bool {
        !self.disabled.contains(&kind)
    }

    /// The consecutive breaching judgements `kind` needs to fire.
    pub fn fire_after(&self, kind: MonitorKind) -> u32 {
        self.fire_after
            .get(&kind)
            .copied()
            .unwrap_or_else(|| default_fire_after(kind))
    }
}

/// A share written as a number from 0 to 1.
fn share(key: &str) -> impl Fn(&f64) -> Result<f64, String> + '_ {
    move |&v| {
        if (0.0..=1.0).contains(&v) {
            Ok(v)
        } else {
            Err(format!(
                "{key} is a share from 0 to 1 (0.1 = 10 %), not {v}"
            ))
        }
    }
}

/// Compiles `[monitor]`; `None` when a key has an error (recorded in `c`).
pub(super) fn compile(
    c: &mut Compiler,
    raw: Option<&Spanned<RawMonitor>>,
    items: &[ItemKind],
) -> Option<MonitorConfig> {
    let mut m = MonitorConfig::default();
    let Some(raw) = raw.map(Spanned::get_ref) else {
        return Some(m);
    };
    let before = c.errors.len();
    let take_share = |c: &mut Compiler, v: &Option<Spanned<f64>>, key: &str, slot: &mut f64| {
        if let Some(v) = v {
            if let Some(x) = c.check(v, &format!("monitor.{key}"), share(key)) {
                *slot = x;
            }
        }
    };
    take_share(c, &raw.failure_rate, "failure_rate", &mut m.failure_rate);
    take_share(c, &raw.item_drop, "item_drop", &mut m.item_drop);
    take_share(c, &raw.coverage_drop, "coverage_drop", &mut m.coverage_drop);
    take_share(c, &raw.blocked_share, "blocked_share", &mut m.blocked_share);
    let count = |c: &mut Compiler, v: &Spanned<i64>, key: &str, max: i64| {
        c.check(v, &format!("monitor.{key}"), |&n| {
            (0..=max)
                .contains(&n)
                .then_some(n.unsigned_abs())
                .ok_or_else(|| format!("{key} must be between 0 and {max}"))
        })
    };
    if let Some(n) = raw
        .min_pages
        .as_ref()
        .and_then(|v| count(c, v, "min_pages", i64::MAX))
    {
        m.min_pages = n;
    }
    m.min_items = raw
        .min_items
        .as_ref()
        .and_then(|v| count(c, v, "min_items", i64::MAX));
    if let Some(v) = &raw.baseline_runs {
        let n = c.check(v, "monitor.baseline_runs", |&n| {
            usize::try_from(n)
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| "baseline_runs must be between 1 and 100".to_owned())
        });
        m.baseline_runs = n.unwrap_or(m.baseline_runs);
    }
    if let Some(v) = &raw.overdue {
        let x = c.check(v, "monitor.overdue", |&x| {
            (1.0..=100.0).contains(&x).then_some(x).ok_or_else(|| {
                format!("overdue counts the schedule's firings: from 1.0 to 100, not {x}")
            })
        });
        m.overdue = x.unwrap_or(m.overdue);
    }
    if let Some(v) = &raw.repeat {
        let d = c.check(v, "monitor.repeat", |s| super::values::duration(s));
        m.repeat = d.unwrap_or(m.repeat);
    }
    m.min_coverage = min_coverage(c, raw, items);
    m.disabled = disabled(c, raw);
    m.fire_after = fire_after(c, raw);
    (c.errors.len() == before).then_some(m)
}

/// `min_coverage`: the valid floors.
fn min_coverage(c: &mut Compiler, raw: &RawMonitor, items: &[ItemKind]) -> BTreeMap<String, f64> {
    let mut floors = BTreeMap::new();
    for (name, v) in raw.min_coverage.iter().flat_map(|t| t.get_ref()) {
        let key = format!("monitor.min_coverage.\"{name}\"");
        let field = c.check(v, &key, |_| known_field(name, items));
        let floor = c.check(v, &key, share("a min_coverage floor"));
        if let (Some(()), Some(floor)) = (field, floor) {
            floors.insert(name.clone(), floor);
        }
    }
    floors
}

/// `disable`: the monitors named, each one known.
fn disabled(c: &mut Compiler, raw: &RawMonitor) -> Vec<MonitorKind> {
    let mut kinds = Vec::new();
    for v in raw.disable.iter().flatten() {
        let kind = c.check(v, "monitor.disable", |s| {
            MonitorKind::parse(s).ok_or_else(|| {
                let names: Vec<&str> = MonitorKind::ALL.iter().map(|k| k.name()).collect();
                format!(
                    "unknown monitor {s:?}: the monitors are {}",
                    names.join(", ")
                )
            })
        });
        kinds.extend(kind);
    }
    kinds
}

/// `fire_after`: run-end monitors, each from 1 to [`MAX_FIRE_AFTER`] runs.
fn fire_after(c: &mut Compiler, raw: &RawMonitor) -> BTreeMap<MonitorKind, u32> {
    let mut out = BTreeMap::new();
    for (name, v) in raw.fire_after.iter().flat_map(|t| t.get_ref()) {
        let key = format!("monitor.fire_after.{name}");
        let kind = c.check(v, &key, |_| {
            MonitorKind::parse(name)
                .filter(|k| MonitorKind::RUN_END.contains(k))
                .ok_or_else(|| {
                    let names: Vec<&str> = MonitorKind::RUN_END.iter().map(|k| k.name()).collect();
                    format!(
                        "fire_after counts runs, so it takes the monitors judged when a run ends: {}, not {name:?}",
                        names.join(", ")
                    )
                })
        });
        let n = c.check(v, &key, |&n| {
            u32::try_from(n)
                .ok()
                .filter(|n| (1..=MAX_FIRE_AFTER).contains(&i64::from(*n)))
                .ok_or_else(|| format!("fire_after must be between 1 and {MAX_FIRE_AFTER} runs"))
        });
        if let (Some(kind), Some(n)) = (kind, n) {
            out.insert(kind, n);
        }
    }
    out
}

/// `KIND.FIELD` must name a field of an item kind of the target.
fn known_field(name: &str, items: &[ItemKind]) -> Result<(), String> {
    let (kind, field) = name.split_once('.').ok_or_else(|| {
        format!("min_coverage keys are \"KIND.FIELD\" (e.g. \"product.price\"), not {name:?}")
    })?;
    let item = items
        .iter()
        .find(|k| k.name == kind)
        .ok_or_else(|| format!("no item kind {kind:?} in this target's [items]"))?;
    if item.fields.iter().any(|f| f.name == field) {
        Ok(())
    } else {
        let fields: Vec<&str> = item.fields.iter().map(|f| f.name.as_str()).collect();
        Err(format!(
            "[items.{kind}] has no field {field:?}; its fields are {}",
            fields.join(", ")
        ))
    }
}
