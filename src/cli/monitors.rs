//! The monitors of a foreground run (`crawld crawl`): judged when it ends,
//! printed after its summary, and, with `--alert`, observed and sent as the
//! daemon would; with `--notify`, the run's item changes are sent too.

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
    /// Send the run's item changes to the target's `[notify]` channels.
    pub notify: bool,
    /// With `alert`: the target's channels, and every channel by name.
    channels: Vec<ChannelName>,
    /// With `notify`: the channels of the target's change notices.
    notify_channels: Vec<ChannelName>,
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

    /// With `--notify`.
    pub(crate) fn with_notify(mut self, notify: bool) -> Self {
        self.notify = notify;
        self
    }

    /// The channels `--alert` and `--notify` send to.
    pub(crate) fn channels_of(&mut self, set: &TargetSet, target: &Target) {
        self.channels = set.channels_for(target);
        self.notify_channels = set.notify_channels_for(target);
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
    let (t, r) = (target.clone(), run.clone());
    let (alerting, channels) = (watch.alert, watch.channels.clone());
    let judged = store
        .call(move |s| judge_and_observe(s, &t, &r, alerting, &channels))
        .await;
    let states = match judged {
        Ok(states) => states,
        Err(e) => {
            errln!("warning: the monitors were not evaluated: {e}");
            return false;
        }
    };
    out!("{}", monitor::render(&states));
    if watch.notify {
        queue_changes(store, target, run, watch).await;
    }
    if watch.alert || watch.notify {
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

/// Queues the run's change notices (`--notify`) and says how many.
async fn queue_changes(store: &Arc<Store>, target: &Arc<Target>, run: &RunRecord, watch: &Watch) {
    if target.notify.is_none() {
        errln!(
            "warning: --notify: target {} has no [notify] table, so no change notices are sent",
            target.id
        );
        return;
    }
    if watch.notify_channels.is_empty() {
        errln!(
            "warning: --notify: target {} has no channels for its change notices (set [notify] channels, alerts, or a default channel)",
            target.id
        );
    }
    let (t, r, channels) = (target.clone(), run.clone(), watch.notify_channels.clone());
    let queued = store
        .call(move |s| alert::queue_changes(s, &t, &r, &channels, now_ms()))
        .await;
    match queued {
        Ok(0) => outln!("Change notices: nothing to send"),
        Ok(n) => outln!("Change notices: {n} queued"),
        Err(e) => errln!("warning: the change notices were not queued: {e}"),
    }
}

/// Delivers what is queued, within [`SEND_WITHIN`], and says how it went.
async fn send(store: &Arc<Store>, watch: &Watch) {
    match alert::deliver_pending(store.clone(), &watch.all, SEND_WITHIN).await {
        Ok(d) => {
            if d.delivered + d.pending + d.failed > 0 {
                outln!(
                    "{}: {} delivered, {} still queued (the daemon sends them when it runs)",
                    if watch.alert { "Alerts" } else { "Notices" },
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
