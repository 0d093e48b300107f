//! Alerts: monitor states turned into notices, queued in the store, and
//! delivered to the channels people use.
//!
//! ```text
//! monitor states ─ observe (state) ─► store: alert state + outbox (one batch)
//!                                           │
//!        Delivery (daemon) / deliver_pending (foreground) ◄┘
//!           one queue per channel ─ send ─► webhook | slack | discord | email | exec
//! ```
//!
//! `state` decides what to send (firing once, repeats, resolved), `queue`
//! delivers one channel's queue in order with backoff and a rate limit,
//! `deliver` runs the queues, `send` talks to each kind of channel and
//! `text` writes what people read.

mod changes;
mod deliver;
pub mod digest;
mod plan;
mod queue;
mod send;
mod state;
pub mod text;

pub use changes::{catch_up_changes, digest as change_digest, mark_notify_start, queue_changes};
pub use deliver::{deliver_pending, ChannelMap, Delivery, Drained, Kicker};
pub use queue::{Backoff, BACKOFF_FIRST, BACKOFF_MAX};
pub use send::{Delivered, SendError, Sender};
pub use state::{forget, notice, observe, rfc3339};

use crate::store::{Notice, NoticeState, NOTICE_VERSION};

use crate::config::Channel;

/// Sends a `test` notice straight to `channel`, without the store (so it
/// works while a daemon holds it): `crawld alert test`.
pub async fn send_test(channel: &Channel) -> Result<Delivered, SendError> {
    let at = rfc3339(crate::store::now_ms());
    let notice = Notice {
        version: NOTICE_VERSION,
        target: String::new(),
        monitor: "test".into(),
        subject: String::new(),
        state: NoticeState::Test,
        value: 0.0,
        threshold: 0.0,
        run: None,
        message: format!(
            "a test of channel {} ({}): alerts sent to it arrive here",
            channel.name,
            channel.kind.name()
        ),
        since: at.clone(),
        at,
        host: None,
        dashboard: None,
    };
    Sender::new().send(channel, &notice).await
}
