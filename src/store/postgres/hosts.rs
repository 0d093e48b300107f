//! Work shared out between the nodes: host leases (one node at a time
//! fetches from a host, in turns when two have work for it) and roles
//! (work one node does for all: the clock monitors, a channel's delivery).
//! See V2__cluster.sql for the tables.

use std::sync::Arc;
use std::time::Duration;

use super::{StoreError, Tables};

/// What a round of host leases found: the hosts held (with the backoff
/// end the last holder left, for those just taken), and those to give up
/// now because another node has waited a turn for them.
#[derive(Debug, Default)]
pub struct HostRound {
    pub held: Vec<(String, Option<i64>)>,
    pub yield_now: Vec<String>,
    /// Held hosts another node waits for: given up as soon as idle.
    pub contested: Vec<String>,
}

impl Tables {
    /// One round of this node's host leases, in one transaction: gives up
    /// `release` (leaving each host's backoff end for the next node),
    /// renews `keep`, and takes those of `want` that are free or expired.
    /// Returns the hosts held now, with the backoff end left by the last
    /// holder for those just taken.
    pub fn sync_hosts(
        &self,
        want: Vec<String>,
        keep: Vec<String>,
        release: Vec<(String, Option<i64>)>,
        turn: Duration,
    ) -> Result<HostRound, StoreError> {
        let Some(node) = self.node.clone() else {
            let mut held: Vec<(String, Option<i64>)> =
                want.into_iter().map(|h| (h, None)).collect();
            held.extend(keep.into_iter().map(|h| (h, None)));
            return Ok(HostRound {
                held,
                ..HostRound::default()
            });
        };
        let turn = turn.as_secs_f64();
        let failed = Arc::new(self.failed("writing to"));
        let args = Arc::new((want, keep, release));
        self.retrying(move |pool, place| {
            let (args, failed, node) = (args.clone(), failed.clone(), node.clone());
            async move {
                let (want, keep, release) = &*args;
                let mut client = Self::client(&pool, &place, "connecting to").await?;
                let tx = client.transaction().await.map_err(&*failed)?;
                if !release.is_empty() {
                    let (hosts, until): (Vec<&String>, Vec<Option<i64>>) =
                        release.iter().map(|(h, u)| (h, *u)).unzip();
                    tx.execute(
                        "UPDATE crawld.host_leases h SET node = '', expires = now(), \
                           closed_until_ms = r.until \
                         FROM unnest($2::text[], $3::bigint[]) AS r(host, until) \
                         WHERE h.host = r.host AND h.node = $1",
                        &[&node.id, &hosts, &until],
                    )
                    .await
                    .map_err(&*failed)?;
                }
                let mut round = HostRound::default();
                if !keep.is_empty() {
                    // Renewed; a host another node waits for, held for a
                    // turn since it began to wait, is to be given up.
                    let rows = tx
                        .query(
                            "UPDATE crawld.host_leases SET expires = now() + make_interval(secs => $3) \
                             WHERE node = $1 AND host = ANY($2) \
                             RETURNING host, (wanted IS NOT NULL \
                               AND greatest(wanted, held_since) < now() - make_interval(secs => $4)), \
                               wanted IS NOT NULL",
                            &[&node.id, keep, &node.secs(), &turn],
                        )
                        .await
                        .map_err(&*failed)?;
                    for r in &rows {
                        let host: String = r.get(0);
                        if r.get::<_, Option<bool>>(1).unwrap_or(false) {
                            round.yield_now.push(host.clone());
                        }
                        if r.get::<_, bool>(2) {
                            round.contested.push(host.clone());
                        }
                        round.held.push((host, None));
                    }
                }
                if !want.is_empty() {
                    let rows = tx
                        .query(
                            "INSERT INTO crawld.host_leases AS h (host, node, expires, held_since) \
                             SELECT w, $1, now() + make_interval(secs => $3), now() \
                             FROM unnest($2::text[]) AS w \
                             ON CONFLICT (host) DO UPDATE SET node = EXCLUDED.node, \
                               expires = EXCLUDED.expires, \
                               held_since = CASE WHEN h.node = EXCLUDED.node THEN h.held_since ELSE now() END, \
                               wanted = CASE WHEN h.node = EXCLUDED.node THEN h.wanted ELSE NULL END \
                             WHERE h.expires < now() OR h.node = EXCLUDED.node \
                             RETURNING host, closed_until_ms",
                            &[&node.id, want, &node.secs()],
                        )
                        .await
                        .map_err(&*failed)?;
                    let granted: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
                    round.held.extend(
                        rows.iter()
                            .map(|r| (r.get::<_, String>(0), r.get::<_, Option<i64>>(1))),
                    );
                    // The others: another node has them; it is told this
                    // one waits (once, from when it began to).
                    let waiting: Vec<&String> =
                        want.iter().filter(|w| !granted.contains(w)).collect();
                    if !waiting.is_empty() {
                        tx.execute(
                            "UPDATE crawld.host_leases SET wanted = coalesce(wanted, now()) \
                             WHERE host = ANY($2) AND node <> $1 AND node <> ''",
                            &[&node.id, &waiting],
                        )
                        .await
                        .map_err(&*failed)?;
                    }
                }
                tx.commit().await.map_err(&*failed)?;
                Ok(round)
            }
        })
    }

    /// Takes or renews `role` for this node for `secs` seconds: whether this
    /// node holds it now.
    pub fn hold_role(&self, role: &str, secs: f64) -> Result<bool, StoreError> {
        let Some(node) = self.node.as_ref() else {
            return Ok(true);
        };
        let rows = self.rows(
            "INSERT INTO crawld.roles AS r (role, node, expires) \
             VALUES ($1, $2, now() + make_interval(secs => $3)) \
             ON CONFLICT (role) DO UPDATE SET node = EXCLUDED.node, expires = EXCLUDED.expires \
             WHERE r.expires < now() OR r.node = EXCLUDED.node \
             RETURNING node",
            vec![
                Box::new(role.to_owned()),
                Box::new(node.id.clone()),
                Box::new(secs),
            ],
        )?;
        Ok(!rows.is_empty())
    }
}
