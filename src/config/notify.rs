//! `[notify]`: which of a run's item changes a target sends to alert
//! channels, and where. Every key has a default; without the table a target
//! sends no change notices.

use toml::Spanned;

use super::compile::{Compiler, Context};
use super::raw::RawNotify;
use super::ItemKind;
use crate::ids::ChannelName;

/// At most this many changes are listed in one message; the rest are counted.
pub const DEFAULT_NOTIFY_MAX_ITEMS: usize = 100;

/// The words `on` takes.
const CHANGES: [&str; 3] = ["new", "changed", "removed"];

/// `[notify]`, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyConfig {
    /// Send items that appeared (`new`).
    pub new: bool,
    /// Send items whose value changed (`changed`), see [`NotifyConfig::fields`].
    pub changed: bool,
    /// Send items a full run found gone (`removed`).
    pub removed: bool,
    /// A `changed` item is sent only when one of these fields changed;
    /// empty: any field.
    pub fields: Vec<String>,
    /// `channels = [...]`; `None`: the target's alert channels.
    pub channels: Option<Vec<ChannelName>>,
    /// Changes listed per message (the rest are counted).
    pub max_items: usize,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            new: true,
            changed: true,
            removed: true,
            fields: Vec::new(),
            channels: None,
            max_items: DEFAULT_NOTIFY_MAX_ITEMS,
        }
    }
}

impl NotifyConfig {
    /// A `changed` item whose changed fields are `changed` is sent.
    pub fn wants_changed(&self, changed: &[String]) -> bool {
        self.changed && (self.fields.is_empty() || changed.iter().any(|f| self.fields.contains(f)))
    }
}

/// Compiles `[notify]`; `None` without the table or when it has errors
/// (which are in `c`).
pub(super) fn compile(
    c: &mut Compiler,
    raw: Option<&Spanned<RawNotify>>,
    cx: &Context,
    items: &[ItemKind],
) -> Option<NotifyConfig> {
    let raw = raw?.get_ref();
    let before = c.errors.len();
    let mut out = NotifyConfig::default();
    if let Some(on) = &raw.on {
        out.new = false;
        out.changed = false;
        out.removed = false;
        for word in on.get_ref() {
            match word.get_ref().as_str() {
                "new" => out.new = true,
                "changed" => out.changed = true,
                "removed" => out.removed = true,
                other => c.err(
                    word.span(),
                    "notify.on",
                    format!(
                        "unknown change {other:?}; write one of {}",
                        CHANGES.join(", ")
                    ),
                ),
            }
        }
        if on.get_ref().is_empty() {
            c.err(
                on.span(),
                "notify.on",
                format!(
                    "on is empty, so nothing would be sent: name some of {} (or remove [notify])",
                    CHANGES.join(", ")
                ),
            );
        }
    }
    if let Some(fields) = &raw.fields {
        let known: Vec<&str> = items
            .iter()
            .flat_map(|k| k.fields.iter().map(|f| f.name.as_str()))
            .collect();
        for f in fields.get_ref() {
            let name = f.get_ref();
            if !known.contains(&name.as_str()) {
                let msg = if known.is_empty() {
                    format!("unknown field {name:?}: the target has no item fields")
                } else {
                    format!(
                        "unknown field {name:?}; the items have {}",
                        known.join(", ")
                    )
                };
                c.err(f.span(), "notify.fields", msg);
            } else if !out.fields.contains(name) {
                out.fields.push(name.clone());
            }
        }
    }
    if let Some(names) = &raw.channels {
        let mut channels = Vec::new();
        for name in names.get_ref() {
            if let Some(n) = c.check(name, "notify.channels", |n| {
                super::channel::lookup_channel(n, cx)
            }) {
                if !channels.contains(&n) {
                    channels.push(n);
                }
            }
        }
        out.channels = Some(channels);
    }
    if let Some(m) = &raw.max_items {
        if let Some(n) = c.check(m, "notify.max_items", |&n| {
            usize::try_from(n)
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| "max_items must be at least 1".to_owned())
        }) {
            out.max_items = n;
        }
    }
    (c.errors.len() == before).then_some(out)
}
