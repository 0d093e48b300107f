//! What a channel's queue sends next, from what waits in it.
//!
//! - A `firing` notice whose `resolved` waits behind it was never seen: the
//!   two go out as one `resolved` message that says when it fired.
//! - What is still current goes first: a notice of a monitor whose state
//!   the receiver does not know yet comes before such stale pairs, while the
//!   notices of one alert keep their order.
//! - For the channels people read (Slack, Discord, email), the notices
//!   raised by one judgement of one target (same target, same time) go out
//!   as one message. Webhooks and commands get one notice each, as a
//!   machine receiver keeps one incident per alert.

use crate::store::{Notice, NoticeState, OutboxEntry};

/// One message: the queue entries it delivers, and what it says.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Message {
    pub entries: Vec<OutboxEntry>,
    pub notices: Vec<Notice>,
}

/// A run of the queue that goes out as one notice: one entry, or a
/// `firing` with the `resolved` that followed it.
struct Unit {
    /// Indices into the queue, oldest first.
    entries: Vec<usize>,
    notice: Notice,
    /// A pair whose news is old: it fired and resolved unseen.
    stale: bool,
}

fn same_alert(a: &Notice, b: &Notice) -> bool {
    a.target == b.target && a.monitor == b.monitor && a.subject == b.subject
}

/// The queue's entries (oldest first) as units.
fn units(queue: &[OutboxEntry]) -> Vec<Unit> {
    let mut taken = vec![false; queue.len()];
    let mut out = Vec::new();
    for (i, e) in queue.iter().enumerate() {
        if taken[i] {
            continue;
        }
        taken[i] = true;
        let next =
            (i + 1..queue.len()).find(|&j| !taken[j] && same_alert(&queue[j].notice, &e.notice));
        let pair = next.filter(|&j| {
            e.notice.state == NoticeState::Firing && queue[j].notice.state == NoticeState::Resolved
        });
        match pair {
            Some(j) => {
                taken[j] = true;
                let resolved = &queue[j].notice;
                let mut n = resolved.clone();
                n.message = format!(
                    "fired at {} and resolved at {} before this channel could be told; now: {}",
                    e.notice.at, resolved.at, resolved.message
                );
                out.push(Unit {
                    entries: vec![i, j],
                    notice: n,
                    stale: true,
                });
            }
            None => out.push(Unit {
                entries: vec![i],
                notice: e.notice.clone(),
                stale: false,
            }),
        }
    }
    out
}

/// The next message for a channel whose queue is `queue` (oldest first);
/// `group`: the channel is read by people. `None` when nothing waits.
pub(super) fn next(queue: &[OutboxEntry], group: bool) -> Option<Message> {
    let units = units(queue);
    // A unit may go once no earlier unit of its alert waits.
    let free = |k: usize| {
        !units[..k]
            .iter()
            .any(|u| same_alert(&u.notice, &units[k].notice))
    };
    let first = (0..units.len())
        .find(|&k| !units[k].stale && free(k))
        .or_else(|| (!units.is_empty()).then_some(0))?;
    let mut chosen = vec![first];
    if group {
        let head = &units[first].notice;
        chosen.extend((0..units.len()).filter(|&k| {
            k != first
                && units[k].stale == units[first].stale
                && units[k].notice.target == head.target
                && units[k].notice.at == head.at
                && free(k)
        }));
        chosen.sort_unstable();
    }
    let mut entries = Vec::new();
    let mut notices = Vec::new();
    for k in chosen {
        entries.extend(units[k].entries.iter().map(|&i| queue[i].clone()));
        notices.push(units[k].notice.clone());
    }
    Some(Message { entries, notices })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ChannelName;

    fn entry(seq: u64, monitor: &str, state: NoticeState, at: &str) -> OutboxEntry {
        OutboxEntry {
            v: 1,
            seq,
            channel: ChannelName::new("ops"),
            notice: Notice {
                version: 1,
                target: "books".into(),
                monitor: monitor.into(),
                subject: String::new(),
                state,
                value: 0.0,
                threshold: 0.0,
                run: Some(1),
                message: format!("{monitor} {}", state.name()),
                since: at.into(),
                at: at.into(),
                host: None,
                dashboard: None,
            },
            attempts: 0,
            next_attempt_ms: 0,
            queued_ms: 0,
        }
    }

    fn seqs(m: &Message) -> Vec<u64> {
        m.entries.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn one_judgement_is_one_message_for_people_and_one_each_for_machines() {
        let q = vec![
            entry(1, "failure_rate", NoticeState::Firing, "t1"),
            entry(2, "host_blocked", NoticeState::Firing, "t1"),
            entry(3, "item_count", NoticeState::Firing, "t2"),
        ];
        let m = next(&q, true).unwrap();
        assert_eq!(seqs(&m), [1, 2]);
        assert_eq!(m.notices.len(), 2);
        assert_eq!(seqs(&next(&q, false).unwrap()), [1]);
    }

    #[test]
    fn a_firing_resolved_unseen_is_one_message_after_what_is_current() {
        let q = vec![
            entry(1, "failure_rate", NoticeState::Firing, "t1"),
            entry(2, "item_count", NoticeState::Firing, "t2"),
            entry(3, "failure_rate", NoticeState::Resolved, "t3"),
        ];
        let m = next(&q, false).unwrap();
        assert_eq!(seqs(&m), [2], "the current one first");
        let rest = vec![q[0].clone(), q[2].clone()];
        let m = next(&rest, false).unwrap();
        assert_eq!(seqs(&m), [1, 3]);
        assert_eq!(m.notices.len(), 1);
        assert_eq!(m.notices[0].state, NoticeState::Resolved);
        assert!(
            m.notices[0]
                .message
                .starts_with("fired at t1 and resolved at t3"),
            "{}",
            m.notices[0].message
        );
    }

    #[test]
    fn an_alert_keeps_its_order() {
        // Fired, resolved unseen, fired again: the pair goes before the new firing.
        let q = vec![
            entry(1, "failure_rate", NoticeState::Firing, "t1"),
            entry(2, "failure_rate", NoticeState::Resolved, "t2"),
            entry(3, "failure_rate", NoticeState::Firing, "t3"),
        ];
        assert_eq!(seqs(&next(&q, true).unwrap()), [1, 2]);
        assert!(next(&[], true).is_none());
    }
}
