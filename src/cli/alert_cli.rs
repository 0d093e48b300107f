//! `crawld alert test CHANNEL`: one `test` notice sent straight to a
//! channel, without the store, so that it works while a daemon runs.

use std::path::Path;

use super::{fail, load, print_errors};
use crate::alert;
use crate::error::Exit;
use crate::ids::ChannelName;

/// Sends the test notice; exit 0 when the channel took it, 69 when it
/// refused or could not be reached, 78 for configuration errors.
pub(super) async fn test(configs: &Path, name: &str) -> Exit {
    let report = match load(configs) {
        Ok(r) => r,
        Err(exit) => return exit,
    };
    let errors = report.all_errors();
    let Some(channel) = report.set.channels.get(&ChannelName::new(name)) else {
        let key = format!("channels.{name}");
        let own: Vec<_> = errors
            .iter()
            .filter(|e| {
                e.key
                    .as_deref()
                    .is_some_and(|k| k == key || k.starts_with(&format!("{key}.")))
            })
            .cloned()
            .collect();
        if !own.is_empty() {
            print_errors(&own);
            return fail(
                Exit::Config,
                format!("channel {name} has configuration errors"),
            );
        }
        let known: Vec<&str> = report.set.channels.keys().map(|c| c.as_str()).collect();
        let known = if known.is_empty() {
            "none; declare one in a [channels.NAME] table".to_owned()
        } else {
            known.join(", ")
        };
        let mut message = format!(
            "no channel {name:?} in {} (channels: {known})",
            configs.display()
        );
        if !errors.is_empty() {
            message.push_str(&format!(
                "; {} configuration error(s) may hide it: see `crawld check`",
                errors.len()
            ));
        }
        return fail(Exit::Config, message);
    };
    if !errors.is_empty() {
        errln!(
            "warning: {} configuration error(s) in the configs directory (see `crawld check`)",
            errors.len()
        );
    }
    let kind = channel.kind.name();
    let endpoint = channel.endpoint();
    match alert::send_test(channel).await {
        Ok(said) => {
            outln!("Test alert delivered to channel {name} ({kind}, {endpoint}): {said}.");
            Exit::Ok
        }
        Err(e) => fail(
            Exit::Unavailable,
            format!("channel {name} ({kind}) did not take the test alert: {e}"),
        ),
    }
}
