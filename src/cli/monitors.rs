//! The monitors of a foreground run (`crawld crawl`): judged when it ends,
//! printed after its summary, and, with `--alert`, observed and sent as the
//! daemon would.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::alert;
use crate::config::{Channel, Target, TargetSet};
use crate::health::MonitorState;
use crate::ids::ChannelName;
use crate::monitor::{self, Judged};
use crate::store::{now_ms, RunRecord, Store, StoreError};

/// How long `crawld crawl --alert` waits for its alerts to go out; what is
/// not delivered by then stays queued for the daemon.
const SEND_WITHIN: Duration = Duration::from_secs(30);

/// What `crawld crawl` does with its monitors.
#[derive(Debug, Clone, Default)]
pub(crate) struct Watch {
    /// Exit 3 when a monitor fires.
    pub fail_on_alert: bool,
    /// Send the alerts of monitors that change state to the target's channels.
    pub alert: bool,
    /// With `alert`: the target's channels, and every channel by name.
    channels: Vec<ChannelName>,
    all: BTreeMap<ChannelName, Arc<Channel>>,
}

impl Watch {
    pub(crate) fn new(fail_on_alert: bool, alert: bool) -> Self {
        Watch {
            fail_on_alert,
            alert,
            ..Watch::default()
        }
    }

    /// The channels `--alert` sends to.
    pub(crate) fn channels_of(&mut self, set: &TargetSet, target: &Target) {
        self.channels = set.channels_for(target);
        self.all = set.channels.clone();
    }
}

/// Judges the run's monitors and prints them; true when one fires.
pub(super) async fn judge(
    store: &Arc<Store>,
    target: &Arc<Target>,
    run: &RunRecord,
    watch: &Watch,
) -> bool {
    let (s, t, r) = (store.clone(), target.clone(), run.clone());
    let (alerting, channels) = (watch.alert, watch.channels.clone());
    let judged =
        tokio::task::spawn_blocking(move || judge_and_observe(&s, &t, &r, alerting, &channels))
            .await
            .unwrap_or_else(|e| {
                Err(StoreError::Io {
                    what: "the monitors' judgement failed",
                    path: std::path::PathBuf::new(),
                    source: std::io::Error::other(e.to_string()),
                })
            });
    let states = match judged {
        Ok(states) => states,
        Err(e) => {
            errln!("warning: the monitors were not evaluated: {e}");
            return false;
        }
    };
    out!("{}", monitor::render(&states));
    if watch.alert {
        send(store, watch).await;
    }
    states.iter().any(MonitorState::firing)
}

/// The states to show: with `--alert` the target's whole list as
/// observed (alerts queued); without, this run's judgement.
fn judge_and_observe(
    store: &Store,
    target: &Target,
    run: &RunRecord,
    alerting: bool,
    channels: &[ChannelName],
) -> Result<Vec<MonitorState>, StoreError> {
    let Judged { scope, states } = monitor::judge_run(store, target, run, false)?;
    if !alerting {
        return Ok(states);
    }
    let all = alert::observe(
        store,
        &target.id,
        channels,
        &target.monitor,
        &scope,
        states,
        now_ms(),
    )?;
    // The clock monitors are the daemon's: a foreground run shows its own.
    Ok(all
        .into_iter()
        .filter(|s| scope.contains(&s.monitor))
        .collect())
}

/// Delivers what is queued, within [`SEND_WITHIN`], and says how it went.
async fn send(store: &Arc<Store>, watch: &Watch) {
    match alert::deliver_pending(store.clone(), &watch.all, SEND_WITHIN).await {
        Ok(d) => {
            if d.delivered + d.pending + d.failed > 0 {
                outln!(
                    "Alerts: {} delivered, {} still queued (the daemon sends them when it runs)",
                    d.delivered,
                    d.pending
                );
            }
            for (channel, error) in d.errors {
                errln!("warning: channel {channel} did not take its alerts: {error}");
            }
        }
        Err(e) => errln!("warning: the alerts were not sent: {e}"),
    }
}
